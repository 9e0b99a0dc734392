"""Relative-pose evaluation on calibrated image pairs.

Pairs file format (one pair per line, as in the SuperGlue reference evaluation):
    name0 name1 rot0 rot1 K0(9 values) K1(9) T_0to1(16, row-major 4x4)
T_0to1 maps camera-0 coordinates to camera-1 coordinates (X1 = R X0 + t). rot0/rot1 are EXIF
rotations in multiples of 90 degrees; only 0 is supported here.
"""

from __future__ import annotations

import pathlib
import time
from dataclasses import dataclass

import cv2
import numpy as np
from tqdm import tqdm

from ..geometry import DEFAULT_ESTIMATOR, normalize_points, verify
from .. import images
from ..refinement import REFINEMENTS, refine_original_points
from .metrics import error_auc, relative_pose_error

AUC_THRESHOLDS_DEG = (5, 10, 20)
NUM_COLUMNS = 2 + 2 + 9 + 9 + 16


@dataclass
class PosePair:
    name0: str
    name1: str
    K0: np.ndarray  # 3x3
    K1: np.ndarray  # 3x3
    T_0to1: np.ndarray  # 4x4


def parse_pose_pair(line: str, where: str = "") -> PosePair:
    """One pairs-file line -> PosePair; ValueError naming `where` on malformed input."""
    fields = line.split()
    if len(fields) != NUM_COLUMNS:
        raise ValueError(
            f"{where}: expected {NUM_COLUMNS} columns (name0 name1 rot0 rot1 "
            f"K0(9) K1(9) T_0to1(16)), got {len(fields)}"
        )
    try:
        rot0, rot1 = int(fields[2]), int(fields[3])
        values = np.array(fields[4:], np.float64)
    except ValueError as error:
        raise ValueError(f"{where}: non-numeric value ({error})") from None
    if rot0 % 4 or rot1 % 4:
        raise ValueError(f"{where}: EXIF rotations {rot0} {rot1} are not supported (only 0)")
    return PosePair(
        fields[0],
        fields[1],
        values[:9].reshape(3, 3),
        values[9:18].reshape(3, 3),
        values[18:].reshape(4, 4),
    )


def read_pose_pairs(path) -> list[PosePair]:
    """Parse a pairs file; blank lines and '#' comments are skipped."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pairs file not found: {path}")
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            pairs.append(parse_pose_pair(line, f"{path}:{number}"))
    return pairs


def format_pose_pair(pair: PosePair) -> str:
    values = np.r_[pair.K0.reshape(-1), pair.K1.reshape(-1), pair.T_0to1.reshape(-1)]
    return " ".join([pair.name0, pair.name1, "0", "0"] + [repr(float(v)) for v in values])


def relative_transform(R0, t0, R1, t1) -> np.ndarray:
    """4x4 T_0to1 from world-to-camera poses (X_i = R_i X_w + t_i)."""
    T = np.eye(4)
    T[:3, :3] = R1 @ R0.T
    T[:3, 3] = t1 - R1 @ R0.T @ t0
    return T


def read_middlebury_par(par_file) -> dict:
    """Middlebury multi-view `*_par.txt` -> {name: (K, R, t)} (projection = K [R t])."""
    lines = pathlib.Path(par_file).read_text().split("\n")
    return parse_cameras(lines[1:], par_file, 2)  # first line: number of cameras


def numbered_rows(lines, columns: int, layout: str, source="", first_number=1):
    """(line number, fields) of each non-empty line of a whitespace table; ValueError naming
    source:line when a line has another number of fields than `columns` (`layout` says which)."""
    for number, line in enumerate(lines, first_number):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != columns:
            raise ValueError(
                f"{source}:{number}: expected {columns} columns ({layout}), got {len(fields)}"
            )
        yield number, fields


def parse_cameras(lines, source="", first_number=1) -> dict:
    """Lines `name K(9) R(9) t(3)` (world-to-camera, x = K (R X + t)) -> {name: (K, R, t)};
    ValueError naming source:line on malformed input."""
    cameras = {}
    for number, fields in numbered_rows(lines, 22, "name K(9) R(9) t(3)", source, first_number):
        try:
            values = np.array(fields[1:], np.float64)
        except ValueError as error:
            raise ValueError(f"{source}:{number}: non-numeric value ({error})") from None
        cameras[fields[0]] = (values[:9].reshape(3, 3), values[9:18].reshape(3, 3), values[18:21])
    return cameras


def make_middlebury_pairs(
    par_file, image_dir=None, min_angle_deg=5.0, max_angle_deg=25.0
) -> list[PosePair]:
    """Pairs of views whose relative rotation lies in [min_angle_deg, max_angle_deg]
    (moderate baselines; neighbours on the templeRing are 7.7 deg apart). With image_dir,
    only views whose image file exists there are used."""
    cameras = read_middlebury_par(par_file)
    names = sorted(cameras)
    if image_dir is not None:
        names = [n for n in names if (pathlib.Path(image_dir) / n).is_file()]
    pairs = []
    for i, name0 in enumerate(names):
        K0, R0, t0 = cameras[name0]
        for name1 in names[i + 1 :]:
            K1, R1, t1 = cameras[name1]
            T = relative_transform(R0, t0, R1, t1)
            angle = np.degrees(np.arccos(np.clip((np.trace(T[:3, :3]) - 1) / 2, -1, 1)))
            if min_angle_deg <= angle <= max_angle_deg:
                pairs.append(PosePair(name0, name1, K0, K1, T))
    return pairs


def write_pose_pairs(path, pairs: list[PosePair]) -> None:
    pathlib.Path(path).write_text("".join(format_pose_pair(p) + "\n" for p in pairs))


def epipolar_errors(pts0, pts1, T_0to1, K0, K1) -> np.ndarray:
    """Symmetric squared epipolar distance [K] in normalised coordinates under the GT pose."""
    if len(pts0) == 0:
        return np.zeros(0)
    n0 = np.c_[normalize_points(pts0, K0), np.ones(len(pts0))]
    n1 = np.c_[normalize_points(pts1, K1), np.ones(len(pts1))]
    t = T_0to1[:3, 3]
    t_skew = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])
    E = t_skew @ T_0to1[:3, :3]
    Ep0 = n0 @ E.T
    Etp1 = n1 @ E
    d = np.sum(n1 * Ep0, 1)
    return d**2 * (
        1.0 / (Ep0[:, 0] ** 2 + Ep0[:, 1] ** 2) + 1.0 / (Etp1[:, 0] ** 2 + Etp1[:, 1] ** 2)
    )


def working_size(width: int, height: int, resize) -> tuple[int, int]:
    """(w, h) the extractor sees. resize: None, -1 or [-1] keeps the image; n or [n] scales the
    longest side to n (the reference scripts' --resize n, upscaling too); [W, H] is the node's
    default rule for working_width x working_height: W*H pixels (rounded), aspect kept, never
    upscaled (``images.working_size``, resize_mode 'pixels')."""
    values = [] if resize is None else list(np.atleast_1d(resize))
    if len(values) == 2:
        return images.working_size(width, height, values, "pixels")
    if len(values) == 1 and values[0] > 0:
        scale = values[0] / max(width, height)
        return max(1, round(width * scale)), max(1, round(height * scale))
    if len(values) <= 1:
        return width, height
    raise ValueError(f"resize takes one value (longest side) or two (W H), got {resize}")


def working_image(image: np.ndarray, resize=None) -> np.ndarray:
    """`image` brought to working_size(resize) (INTER_AREA, as the node), or itself."""
    height, width = image.shape[:2]
    size = working_size(width, height, resize)
    if size == (width, height):
        return image
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def extract_at(extractor, image: np.ndarray, resize=None):
    """Features of `image` extracted at working_size(resize), keypoints in original pixels."""
    small = working_image(image, resize)
    if small is image:
        return extractor.extract(image)
    height, width = image.shape[:2]
    sx, sy = width / small.shape[1], height / small.shape[0]
    return extractor.extract(small).scaled(sx, sy, (width, height))


def pose_result(
    pts0,
    pts1,
    K0,
    K1,
    T_0to1,
    threshold_px=1.0,
    estimator=DEFAULT_ESTIMATOR,
    epipolar_threshold=5e-4,
) -> dict:
    """Per-pair pose metrics of matched pixels pts0/pts1 [K,2] (pinhole, undistorted):
    E fitted by geometry.verify, pose error max(rotation, translation angle) in degrees,
    match precision by symmetric epipolar distance under the ground truth."""
    model = verify(
        pts0, pts1, K0, K1, model="essential", threshold_px=threshold_px, estimator=estimator
    )
    err_R, err_t = relative_pose_error(T_0to1, model.R, model.t)
    correct = epipolar_errors(pts0, pts1, T_0to1, K0, K1) < epipolar_threshold
    num = len(pts0)
    return dict(
        num_matches=num,
        num_correct=int(correct.sum()),
        precision=float(correct.mean()) if num else float("nan"),
        num_inliers=model.num_inliers,
        inlier_ratio=model.num_inliers / num if num else float("nan"),
        error_R=err_R,
        error_t=err_t,
        error_pose=max(err_R, err_t),
    )


def matched_points(feats0, feats1, matches) -> tuple[np.ndarray, np.ndarray]:
    idx0, idx1 = matches.indices()
    return (feats0.keypoints[idx0].astype(np.float64), feats1.keypoints[idx1].astype(np.float64))


def refined_points(image0, image1, pts0, pts1, resize=None, refine="none") -> np.ndarray:
    """pts1 [K,2] (original pixels) refined as the node refines its odometry matches: on the
    images brought to working_size(resize) (``refinement.refine_original_points``, the node's
    default window and shift); refine 'none' returns pts1."""
    if refine not in REFINEMENTS:
        raise ValueError(f"refine must be one of {list(REFINEMENTS)}, got {refine!r}")
    if refine == "none" or len(pts1) == 0:
        return pts1
    sizes = [(image.shape[1], image.shape[0]) for image in (image0, image1)]
    work0, work1 = (working_image(image, resize) for image in (image0, image1))
    return refine_original_points(work0, work1, pts0, pts1, sizes[0], sizes[1])


def epipolar_distances_px(pts0, pts1, T_0to1, K0, K1) -> np.ndarray:
    """Mean of the two point-to-epipolar-line distances [K] in pixels under the GT pose
    (pinhole pixels; the threshold people reason in, unlike epipolar_errors)."""
    if len(pts0) == 0:
        return np.zeros(0)
    t = T_0to1[:3, 3]
    E = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]]) @ T_0to1[:3, :3]
    F = np.linalg.inv(K1).T @ E @ np.linalg.inv(K0)
    h0, h1 = np.c_[pts0, np.ones(len(pts0))], np.c_[pts1, np.ones(len(pts1))]
    lines1, lines0 = h0 @ F.T, h1 @ F
    residual = np.abs((h1 * lines1).sum(1))
    return 0.5 * (
        residual / np.hypot(lines1[:, 0], lines1[:, 1])
        + residual / np.hypot(lines0[:, 0], lines0[:, 1])
    )


def evaluate_pose(
    extractor,
    matcher,
    pairs: list[PosePair],
    input_dir,
    resize=-1,
    threshold_px=1.0,
    estimator=DEFAULT_ESTIMATOR,
    epipolar_threshold=5e-4,
    progress=False,
    return_per_pair=False,
    desc="pose",
    refine="none",
) -> dict:
    """Relative-pose AUC at 5/10/20 degrees (error = max(rotation, translation angle)) with
    E estimated by geometry.verify, plus match precision by epipolar distance.

    resize: see working_size (-1 keeps the images); keypoints are mapped back to original
    pixels before estimation (K stays valid). refine: 'lk' refines the matched points of view 1
    as the node does (``refined_points``).
    """
    input_dir = pathlib.Path(input_dir)
    per_pair = []
    for pair in tqdm(pairs, desc=desc, disable=not progress, leave=False):
        feats, images_read = [], []
        start = time.perf_counter()
        for name in (pair.name0, pair.name1):
            image = cv2.imread(str(input_dir / name), cv2.IMREAD_GRAYSCALE)
            if image is None:
                raise ValueError(f"cannot read image {input_dir / name}")
            images_read.append(image)
            feats.append(extract_at(extractor, image, resize))
        extract_s = (time.perf_counter() - start) / 2
        start = time.perf_counter()
        matches = matcher.match(feats[0], feats[1])
        match_s = time.perf_counter() - start
        pts0, pts1 = matched_points(feats[0], feats[1], matches)
        pts1 = refined_points(*images_read, pts0, pts1, resize, refine)
        per_pair.append(
            dict(
                name=f"{pair.name0} {pair.name1}",
                num_keypoints0=len(feats[0]),
                **pose_result(
                    pts0,
                    pts1,
                    pair.K0,
                    pair.K1,
                    pair.T_0to1,
                    threshold_px,
                    estimator,
                    epipolar_threshold,
                ),
                extract_ms=1000 * extract_s,
                match_ms=1000 * match_s,
            )
        )
    summary = summarize_pose(per_pair)
    if return_per_pair:
        summary["per_pair"] = per_pair
    return summary


def summarize_pose(per_pair: list[dict], thresholds=AUC_THRESHOLDS_DEG) -> dict:
    summary = dict(num_pairs=len(per_pair))
    for key in (
        "precision",
        "num_keypoints0",
        "num_matches",
        "num_correct",
        "num_inliers",
        "inlier_ratio",
        "extract_ms",
        "match_ms",
    ):
        values = np.array([p[key] for p in per_pair if key in p], np.float64)
        values = values[np.isfinite(values)]
        summary[key] = float(values.mean()) if len(values) else float("nan")
    aucs = error_auc([p["error_pose"] for p in per_pair], thresholds)
    for threshold, auc in zip(thresholds, aucs):
        summary[f"pose_auc@{threshold}deg"] = auc
    return summary
