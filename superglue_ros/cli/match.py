"""`superglue-match`: match image pairs listed in a file, like the reference match_pairs script.

    superglue-match --input_pairs pairs.txt --input_dir images/ --output_dir out/ \
        [--resize 640 | --resize 640 480 | --resize -1] [--matcher superglue | --config c.yaml]

Images are extracted at the node's working size by default (as many pixels as 640x480, aspect
kept, never upscaled); --resize gives the reference script's options (--resize 640 480: its
default, that exact size).

Writes out/{stem0}_{stem1}_matches.npz with keypoints0 [N0,2] and keypoints1 [N1,2] in ORIGINAL
image pixels, matches [N0] (index into keypoints1 or -1) and match_confidence [N0], as the
reference script does, plus matched_points1 [N0,2]: where keypoint i of image 0 lies in image 1,
refined to sub-pixel as the node refines its matches (--refine lk, the default; NaN where
unmatched; with --refine none the matched keypoints1). --viz also writes
{stem0}_{stem1}_matches.png with the refined points. A malformed line or unreadable image is
reported and skipped.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import cv2
import numpy as np
from tqdm import tqdm

from .. import images
from ..features import (
    COMPONENT_DEFAULTS,
    PRESETS,
    build_components,
    check_options,
    component_names,
)
from ..evaluation.pose_eval import working_size
from ..frontend.pipeline import FrontEnd
from ..refinement import REFINEMENTS, refine_original_points

DEFAULT_MATCHER = "superglue"


def resized_shape(width: int, height: int, resize: list[int] | None) -> tuple[int, int]:
    """(new_width, new_height). None (the default) is the node's default rule: about
    working_width x working_height pixels (640x480), aspect kept, never upscaled. As in the
    reference scripts, [W, H] is that exact size, [D] scales the larger side to D, [-1] (or
    any D <= 0) keeps the size."""
    if resize is None:
        target = (FrontEnd.default_conf["working_width"], FrontEnd.default_conf["working_height"])
        return images.working_size(width, height, target, FrontEnd.default_conf["resize_mode"])
    if len(resize) == 2:
        return images.working_size(width, height, resize, "stretch")
    return working_size(width, height, resize)  # superglue-eval's rule for [D] and [-1]


def load_config(path, preset=DEFAULT_MATCHER) -> dict:
    """Component config for ``features.build_components`` (preset, extractor/matcher names,
    extractor_options, matcher_options) from a YAML file of the form
        preset: superglue            # optional, default --matcher
        extractor: {name: superpoint, max_keypoints: 1024}
        matcher: {name: superglue, match_threshold: 0.2}
    """
    components = dict(preset=preset)
    if path is None:
        return components
    import yaml

    path = pathlib.Path(path)
    try:
        config = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"cannot read config {path}: {error}") from None
    if not isinstance(config, dict):
        raise ValueError(f"config {path}: expected a mapping at the top level")
    check_options(f"config {path}", config, ("preset", "extractor", "matcher"), "key")
    if "preset" in config:
        components["preset"] = config["preset"]
    for key in ("extractor", "matcher"):
        section = config.get(key) or {}
        if not isinstance(section, dict):
            raise ValueError(f"config {path}: {key!r} must be a mapping")
        section = dict(section)
        if "name" in section:
            components[key] = section.pop("name")
        components[f"{key}_options"] = section
    component_names(components)  # an unknown preset is named with the file
    return components


def parse_pairs(path) -> list[tuple[int, str, list[str]]]:
    """(line number, raw line, fields) of each non-blank, non-comment line."""
    lines = []
    for number, line in enumerate(pathlib.Path(path).read_text().splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            lines.append((number, line, line.split()))
    return lines


def read_image(path: pathlib.Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        reason = "file not found" if not path.exists() else "not a readable image"
        raise ValueError(f"cannot read image {path}: {reason}")
    return image


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="superglue-match",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--input_pairs",
        required=True,
        help="text file, one pair per line: name0 name1 [ignored columns]",
    )
    parser.add_argument("--input_dir", default=".", help="folder the image names refer to")
    parser.add_argument("--output_dir", default="match_output")
    parser.add_argument(
        "--resize",
        type=int,
        nargs="+",
        default=None,
        help="D: larger side to D; W H: exact size; -1: keep (default: like the node, as "
        "many pixels as 640x480, keeping the aspect ratio)",
    )
    parser.add_argument("--max_keypoints", type=int, default=1024, help="-1 = no limit")
    parser.add_argument(
        "--match_threshold",
        type=float,
        default=COMPONENT_DEFAULTS["match_threshold"],
        help="SuperGlue's match threshold (as the reference's --match_threshold)",
    )
    parser.add_argument(
        "--matcher",
        default=DEFAULT_MATCHER,
        choices=sorted(PRESETS),
        help="preset (extractor + matcher)",
    )
    parser.add_argument(
        "--config", help="YAML with extractor/matcher options (overrides --matcher)"
    )
    parser.add_argument(
        "--refine",
        default=FrontEnd.default_conf["refine_matches"],
        choices=REFINEMENTS,
        help="sub-pixel refinement of matched_points1 (the node's refine_matches)",
    )
    parser.add_argument("--device", default="auto", help="'auto', 'cpu' or 'cuda'")
    parser.add_argument("--viz", action="store_true", help="also write match images")
    args = parser.parse_args(argv)
    if args.resize is not None and len(args.resize) > 2:
        parser.error("--resize takes one value (max dimension, -1 = keep) or two (W H)")
    if args.resize is not None and len(args.resize) == 2 and min(args.resize) <= 0:
        parser.error("--resize W H needs positive values")
    return args


def match_pair(extractor, matcher, image0, image1, resize, refine="none"):
    """Extract at the working resolution, match, map keypoints back to original pixels.

    Returns (feats0, feats1, matches, matched_points1) with features in original pixel
    coordinates; matched_points1 [N0,2]: keypoint i's match in image 1 (NaN where unmatched),
    refined on the working images when refine is 'lk' (as the node refines).
    """
    feats, works = [], []
    for image in (image0, image1):
        height, width = image.shape[:2]
        new_w, new_h = resized_shape(width, height, resize)
        if (new_w, new_h) != (width, height):
            work = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
            f = extractor.extract(work)
            f = f.scaled(width / new_w, height / new_h, (width, height))
        else:
            work = image
            f = extractor.extract(image)
        feats.append(f)
        works.append(work if work.ndim == 2 else cv2.cvtColor(work, cv2.COLOR_BGR2GRAY))
    matches = matcher.match(feats[0], feats[1])
    idx0, idx1 = matches.indices()
    points1 = feats[1].keypoints[idx1].astype(np.float64)
    if refine != "none":
        points1 = refine_original_points(
            works[0],
            works[1],
            feats[0].keypoints[idx0],
            points1,
            feats[0].image_size,
            feats[1].image_size,
        )
    matched_points1 = np.full((len(feats[0].keypoints), 2), np.nan, np.float32)
    matched_points1[idx0] = points1
    return feats[0], feats[1], matches, matched_points1


def save_viz(path, image0, image1, feats0, feats1, matches, matched_points1):
    from ..geometry import verify
    from ..visualization import draw_matches

    idx0, _ = matches.indices()
    pts0, pts1 = feats0.keypoints[idx0], matched_points1[idx0]
    model = verify(pts0, pts1, model="fundamental")
    inliers = model.inliers if model.kind != "none" else None
    text = [
        f"{len(feats0)}:{len(feats1)} keypoints, {len(idx0)} matches",
        f"{model.num_inliers} fundamental inliers"
        if model.kind != "none"
        else "too few matches for a fundamental matrix",
    ]
    cv2.imwrite(str(path), draw_matches(image0, image1, pts0, pts1, inliers, text))


def main(argv=None) -> int:
    """Returns 0 when every pair was matched, 1 when some were skipped, 2 on a setup error."""
    args = parse_args(argv)
    try:
        # a max_keypoints in the config's extractor section wins over --max_keypoints
        components = dict(
            load_config(args.config, args.matcher),
            max_keypoints=args.max_keypoints,
            match_threshold=args.match_threshold,
            device=args.device,
        )
        extractor, matcher = build_components(components)
        pairs = parse_pairs(args.input_pairs)
    except (ValueError, OSError, RuntimeError) as error:
        print(f"superglue-match: error: {error}", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))
    input_dir, output_dir = pathlib.Path(args.input_dir), pathlib.Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    print(
        f"{len(pairs)} pairs, extractor {extractor.name}, matcher {matcher.name}, "
        f"output {output_dir}"
    )
    skipped = 0
    for number, line, fields in tqdm(pairs, desc="matching"):
        where = f"{args.input_pairs}:{number}"
        if len(fields) < 2:
            tqdm.write(f'skipping {where}: expected "name0 name1 [...]", got {line.strip()!r}')
            skipped += 1
            continue
        try:
            image0 = read_image(input_dir / fields[0])
            image1 = read_image(input_dir / fields[1])
            feats0, feats1, matches, points1 = match_pair(
                extractor, matcher, image0, image1, args.resize, args.refine
            )
            stem = f"{pathlib.Path(fields[0]).stem}_{pathlib.Path(fields[1]).stem}_matches"
            np.savez(
                output_dir / f"{stem}.npz",
                keypoints0=feats0.keypoints,
                keypoints1=feats1.keypoints,
                matches=matches.matches0,
                match_confidence=matches.scores0,
                matched_points1=points1,
            )
            if args.viz:
                save_viz(
                    output_dir / f"{stem}.png", image0, image1, feats0, feats1, matches, points1
                )
        except Exception as error:  # one bad pair must not abort a long batch
            tqdm.write(f"skipping {where}: {type(error).__name__}: {error}")
            skipped += 1
    print(f"matched {len(pairs) - skipped} pair(s), skipped {skipped}; output in {output_dir}")
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
