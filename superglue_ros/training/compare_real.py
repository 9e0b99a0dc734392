"""Candidate SuperGlue files against the shipped one and the baselines, in one real-motion run.

What decides whether a trained SuperGlue ships: the validation sets of `superglue-eval --real`
(KITTI 07 gaps 1/3/10, EuRoC stereo, statue), SIFT/ORB/SuperPoint+MNN measured in the same run,
every SuperGlue file on the same (shared) SuperPoint features. Run:
    python -m superglue_ros.training.compare_real --real ../shared/datasets/real \
        --candidate new=runs/sg_real/superglue.pth [--sets kitti07,euroc] [--max_pairs 0] \
        [--methods sift,superpoint-mnn+lk,superglue+lk]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import torch


def build(
    candidates: dict, max_keypoints=1024, methods=("orb", "sift", "superpoint-mnn", "superglue")
) -> dict:
    """{name: (extractor, matcher)}: the presets (fast runtime, fp32, as superglue-eval; a
    method may end in '+lk', see superglue-eval) plus one 'superglue <name>' and one
    'superglue <name>+lk' row per candidate file, all learned rows on one extractor."""
    from ..evaluation.cli import split_method
    from ..features import build_matcher, build_preset

    out, sp = {}, None
    for name in methods:
        preset = split_method(name)[0]
        learned = preset in ("superpoint-mnn", "superglue")
        conf = dict(runtime="fast", precision="fp32") if learned else {}
        extractor, matcher = build_preset(
            preset,
            extractor=dict(max_keypoints=max_keypoints, **conf),
            matcher=conf if preset == "superglue" else {},
        )
        if learned:
            sp = sp or extractor
            extractor = sp
        out[name] = (extractor, matcher)
    for name, path in candidates.items():
        matcher = build_matcher("superglue", weights=str(path), runtime="fast", precision="fp32")
        out[f"superglue {name}"] = out[f"superglue {name}+lk"] = (sp, matcher)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--real", required=True, help="the datasets/real folder")
    p.add_argument("--candidate", action="append", default=[], metavar="NAME=PATH")
    p.add_argument("--sets", default="kitti07,euroc")
    p.add_argument("--max_pairs", type=int, default=0)
    p.add_argument("--max_keypoints", type=int, default=1024)
    p.add_argument("--resize", type=int, nargs="+", default=[640, 480], help="as superglue-eval's")
    p.add_argument("--methods", default="orb,sift,superpoint-mnn,superglue")
    p.add_argument("--output", default="runs/compare_real")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from ..evaluation.cli import REAL_COLUMNS, format_table, split_method
    from ..evaluation.real_eval import evaluate_real, load_real_set

    candidates = dict(c.split("=", 1) for c in args.candidate)
    methods = build(candidates, args.max_keypoints, tuple(args.methods.split(",")))
    results = {}
    for set_name in args.sets.split(","):
        pairs = load_real_set(set_name, args.real, args.max_pairs)
        results[set_name] = evaluate_real(
            methods,
            pairs,
            args.resize,
            progress=True,
            desc=set_name,
            refine={name: split_method(name)[1] for name in methods},
        )
        print(f"{set_name}: {len(pairs)} pairs")
        print(format_table(results[set_name], REAL_COLUMNS), flush=True)
    out = pathlib.Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(
        json.dumps(dict(args=vars(args), results=results), indent=1, default=float)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
