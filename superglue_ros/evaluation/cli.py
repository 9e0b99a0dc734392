"""`superglue-eval`: compare matchers on synthetic homographies, calibrated pairs, real motion.

    superglue-eval --images DIR [--num_pairs 200 --seed 0] --methods orb,sift,superglue --output out/
    superglue-eval --pairs pairs.txt --input_dir DIR --output out/
    superglue-eval --middlebury_par templeR_par.txt --input_dir DIR --output out/
    superglue-eval --real ../shared/datasets/real [--real_sets kitti07,euroc,statue]
                   --resize 640 480 --methods sift,superglue,superglue+lk --output out/
A method is a preset, or a preset + '+lk': the same features and matches with the matched points
of the second image refined as the node refines them (refinement.py, its refine_matches).
Prints a table (one per set with --real) and writes results.json and results.png to --output.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys

import numpy as np

from ..features import PRECISIONS, PRESETS, build_components
from ..geometry import DEFAULT_ESTIMATOR, ESTIMATORS
from ..refinement import REFINEMENTS
from .real_eval import REAL_SETS

HOMOGRAPHY_COLUMNS = [
    "repeatability",
    "precision",
    "recall",
    "num_matches",
    "auc_robust@1px",
    "auc_robust@3px",
    "auc_robust@5px",
    "auc_dlt@1px",
    "auc_dlt@3px",
    "auc_dlt@5px",
    "extract_ms",
    "match_ms",
]
POSE_COLUMNS = [
    "precision",
    "num_matches",
    "pose_auc@5deg",
    "pose_auc@10deg",
    "pose_auc@20deg",
    "extract_ms",
    "match_ms",
]
REAL_COLUMNS = [
    "pose_auc@5deg",
    "pose_auc@10deg",
    "pose_auc@20deg",
    "num_matches",
    "num_inliers",
    "inlier_ratio",
    "precision",
    "extract_ms",
    "match_ms",
]


def format_table(results: dict, columns: list[str]) -> str:
    """Plain-text table, one row per method; ratios in percent."""
    header = f"{'method':16s}" + "".join(f"{c:>16s}" for c in columns)
    rows = [header, "-" * len(header)]
    for method, summary in results.items():
        cells = []
        for column in columns:
            value = summary.get(column, float("nan"))
            percent = column.startswith(
                ("auc", "pose_auc", "precision", "recall", "repeatability", "inlier_ratio")
            )
            cells.append(f"{100 * value:16.1f}" if percent else f"{value:16.1f}")
        rows.append(f"{method:16s}" + "".join(cells))
    return "\n".join(rows)


def plot_results(results: dict, columns: list[str], path, title: str) -> None:
    """Grouped bar chart of the percentage metrics per method (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [c for c in columns if not c.endswith("_ms") and not c.startswith("num_")]
    methods = list(results)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(metrics) * max(1, len(methods)) / 2), 4))
    width = 0.8 / max(1, len(methods))
    x = np.arange(len(metrics))
    for i, method in enumerate(methods):
        values = [100 * results[method].get(m, float("nan")) for m in metrics]
        ax.bar(x + i * width - 0.4 + width / 2, values, width, label=method)
    ax.set_xticks(x, metrics, rotation=30, ha="right")
    ax.set_ylabel("%")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_real_results(results_by_set: dict, path, title: str) -> None:
    """One panel per real set: pose AUC@5/10/20 deg per method (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = ["pose_auc@5deg", "pose_auc@10deg", "pose_auc@20deg"]
    fig, axes = plt.subplots(
        1, len(results_by_set), figsize=(4.5 * len(results_by_set), 4), squeeze=False
    )
    for ax, (set_name, results) in zip(axes[0], results_by_set.items()):
        width = 0.8 / max(1, len(results))
        x = np.arange(len(metrics))
        for i, (method, summary) in enumerate(results.items()):
            values = [100 * summary.get(m, float("nan")) for m in metrics]
            ax.bar(x + i * width - 0.4 + width / 2, values, width, label=method)
        ax.set_xticks(x, ["AUC@5", "AUC@10", "AUC@20"])
        ax.set_ylim(0, 100)
        ax.set_title(f"{set_name} ({next(iter(results.values()))['num_pairs']} pairs)")
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("pose AUC %")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _json_safe(value):
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if not math.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        prog="superglue-eval",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    mode = parser.add_argument_group("data (choose one)")
    mode.add_argument("--images", help="folder of photos for synthetic homography pairs")
    mode.add_argument("--pairs", help="pose pairs file: name0 name1 rot0 rot1 K0 K1 T_0to1")
    mode.add_argument(
        "--middlebury_par",
        help="Middlebury *_par.txt: build pose pairs of "
        "moderate baseline (written to OUTPUT/pairs.txt) and evaluate them",
    )
    mode.add_argument(
        "--real",
        help="real-motion validation sets: the datasets/real folder "
        "(kitti/07, euroc_v101_micro, statue_of_liberty)",
    )
    parser.add_argument(
        "--real_sets", default=",".join(REAL_SETS), help="comma-separated sets of --real"
    )
    parser.add_argument(
        "--photo_pairs",
        type=int,
        default=100,
        help="--real statue: seeded choice of this many pairs under 30 deg",
    )
    parser.add_argument(
        "--max_pairs",
        type=int,
        default=0,
        help="--real: at most this many pairs per set, evenly spread (0 = all)",
    )
    parser.add_argument("--input_dir", help="image folder of --pairs / --middlebury_par")
    parser.add_argument("--num_pairs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--difficulty", type=float, default=1.0, help="homography difficulty (0 = identity)"
    )
    parser.add_argument(
        "--methods",
        default="orb,sift,superpoint-mnn,superglue",
        help=f"comma-separated presets from {sorted(PRESETS)}, each optionally with "
        "'+lk' (matched points refined as the node refines them)",
    )
    parser.add_argument("--max_keypoints", type=int, default=512)
    parser.add_argument("--superpoint_weights", help="SuperPoint weights (default: shipped)")
    parser.add_argument("--superglue_weights", help="SuperGlue weights (default: shipped)")
    parser.add_argument(
        "--runtime",
        default="fast",
        choices=("fast", "reference"),
        help="learned models' runtime (features.py); with the default fp32 "
        "precision 'fast' gives the reference results, about 2x sooner",
    )
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=PRECISIONS,
        help="learned networks' precision: fp32 measures the weights; 'auto' "
        "the runtime's choice, what the node runs (fast: int8 SuperPoint backbone "
        "with weights that carry int8 scales, else bf16 on CPUs with native bf16)",
    )
    parser.add_argument(
        "--estimator",
        default=DEFAULT_ESTIMATOR,
        choices=sorted(ESTIMATORS),
        help="robust estimator (default: poselib for E, magsac for H)",
    )
    parser.add_argument(
        "--threshold_px",
        type=float,
        default=3.0,
        help="correctness threshold for repeatability/precision/recall",
    )
    parser.add_argument(
        "--ransac_threshold_px",
        type=float,
        default=None,
        help="robust estimator threshold (default 3 px homography, 1 px pose)",
    )
    parser.add_argument("--min_angle", type=float, default=5.0)
    parser.add_argument("--max_angle", type=float, default=25.0)
    parser.add_argument(
        "--resize",
        type=int,
        nargs="+",
        default=[-1],
        help="pose/real modes: working size for extraction: N = longest side "
        "(the reference scripts' --resize N), W H = W*H pixels keeping the aspect (the "
        "node's default rule), -1 = keep",
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--output", default="eval_out", help="folder for results.json/png")
    args = parser.parse_args(argv)
    if sum(x is not None for x in (args.images, args.pairs, args.middlebury_par, args.real)) != 1:
        parser.error("give exactly one of --images, --pairs, --middlebury_par, --real")
    if len(args.resize) > 2:
        parser.error("--resize takes one value (longest side, -1 = keep) or two (W H)")
    args.real_sets = [s.strip() for s in args.real_sets.split(",") if s.strip()]
    if args.real and not set(args.real_sets) <= set(REAL_SETS):
        parser.error(
            f"unknown real set(s) {sorted(set(args.real_sets) - set(REAL_SETS))}; "
            f"choose from {list(REAL_SETS)}"
        )
    if (args.pairs or args.middlebury_par) and not args.input_dir:
        parser.error("--pairs/--middlebury_par need --input_dir")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [
        m
        for m in methods
        if split_method(m)[0] not in PRESETS or split_method(m)[1] not in REFINEMENTS
    ]
    if unknown:
        parser.error(
            f"unknown method(s) {unknown}; choose from {sorted(PRESETS)}, each optionally "
            f"with '+' and one of {list(REFINEMENTS)}"
        )
    args.methods = methods
    return args


def split_method(name: str) -> tuple[str, str]:
    """'superglue+lk' -> ('superglue', 'lk'); 'superglue' -> ('superglue', 'none')."""
    preset, _, refine = name.partition("+")
    return preset, refine or "none"


def build_method(name, args):
    """(extractor, matcher) of preset `name` with the command line's model options."""
    return build_components(
        dict(
            preset=split_method(name)[0],
            runtime=args.runtime,
            inference_precision=args.precision,
            superpoint_weights=args.superpoint_weights,
            superglue_weights=args.superglue_weights,
            max_keypoints=args.max_keypoints,
            device=args.device,
        )
    )


def build_methods(args) -> tuple[dict, dict]:
    """({name: (extractor, matcher)}, {name: reason skipped}); presets with the same extractor
    and options share one extractor object (evaluate_real then extracts once for them)."""
    methods, failures, extractors = {}, {}, {}
    for name in args.methods:
        try:
            extractor, matcher = build_method(name, args)
        except Exception as error:  # missing weights etc.: report, evaluate the others
            failures[name] = f"{type(error).__name__}: {error}"
            print(f"skipping {name}: {failures[name]}", file=sys.stderr)
            continue
        key = (PRESETS[split_method(name)[0]][0], repr(sorted(extractor.conf.items())))
        methods[name] = (extractors.setdefault(key, extractor), matcher)
    return methods, failures


def main_real(args, output: pathlib.Path) -> int:
    """--real: one table per validation set, all methods on the same pairs in one run."""
    from .real_eval import evaluate_real, load_real_set

    methods, failures = build_methods(args)
    if not methods:
        return 1
    resize = None if args.resize == [-1] else args.resize
    threshold = 1.0 if args.ransac_threshold_px is None else args.ransac_threshold_px
    results = {}
    for set_name in args.real_sets:
        pairs = load_real_set(set_name, args.real, args.max_pairs, args.photo_pairs, args.seed)
        results[set_name] = evaluate_real(
            methods,
            pairs,
            resize,
            threshold,
            args.estimator,
            progress=True,
            return_per_pair=True,
            desc=set_name,
            refine={name: split_method(name)[1] for name in methods},
        )
        summaries = {
            name: {k: v for k, v in r.items() if k != "per_pair"}
            for name, r in results[set_name].items()
        }
        print(f"{set_name}: {len(pairs)} pairs")
        print(format_table(summaries, REAL_COLUMNS))
    title = (
        f"real motion, resize {' x '.join(map(str, args.resize))}, "
        f"{args.max_keypoints} keypoints, {args.runtime}/{args.precision}"
    )
    report = dict(title=title, args=vars(args), results=results, skipped=failures)
    (output / "results.json").write_text(json.dumps(_json_safe(report), indent=1))
    plot_real_results(
        {
            s: {m: {k: v for k, v in r.items() if k != "per_pair"} for m, r in by_method.items()}
            for s, by_method in results.items()
        },
        output / "results.png",
        title,
    )
    print(f"wrote {output / 'results.json'} and {output / 'results.png'}")
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))
    from .homography_eval import evaluate_homography
    from .pose_eval import evaluate_pose, make_middlebury_pairs, read_pose_pairs, write_pose_pairs
    from .synthetic import make_homography_pairs

    output = pathlib.Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    if args.real:
        return main_real(args, output)
    if args.images:
        pairs = make_homography_pairs(
            args.images, args.num_pairs, args.seed, difficulty=args.difficulty
        )
        columns, title = HOMOGRAPHY_COLUMNS, f"{len(pairs)} synthetic pairs from {args.images}"
        threshold = 3.0 if args.ransac_threshold_px is None else args.ransac_threshold_px

        def run(extractor, matcher, name):
            return evaluate_homography(
                extractor,
                matcher,
                pairs,
                args.threshold_px,
                threshold,
                args.estimator,
                progress=True,
                return_per_pair=True,
                desc=name,
                refine=split_method(name)[1],
            )
    else:
        if args.middlebury_par:
            pose_pairs = make_middlebury_pairs(
                args.middlebury_par, args.input_dir, args.min_angle, args.max_angle
            )
            write_pose_pairs(output / "pairs.txt", pose_pairs)
            print(f"{len(pose_pairs)} pairs written to {output / 'pairs.txt'}")
        else:
            pose_pairs = read_pose_pairs(args.pairs)
        if not pose_pairs:
            print("error: no pose pairs to evaluate", file=sys.stderr)
            return 1
        columns, title = POSE_COLUMNS, f"{len(pose_pairs)} pose pairs from {args.input_dir}"
        threshold = 1.0 if args.ransac_threshold_px is None else args.ransac_threshold_px

        def run(extractor, matcher, name):
            return evaluate_pose(
                extractor,
                matcher,
                pose_pairs,
                args.input_dir,
                args.resize,
                threshold,
                args.estimator,
                progress=True,
                return_per_pair=True,
                desc=name,
                refine=split_method(name)[1],
            )

    methods, failures = build_methods(args)
    results = {
        name: run(extractor, matcher, name) for name, (extractor, matcher) in methods.items()
    }
    summaries = {
        name: {k: v for k, v in r.items() if k != "per_pair"} for name, r in results.items()
    }
    print(title)
    print(format_table(summaries, columns))
    report = dict(
        title=title, args={k: v for k, v in vars(args).items()}, results=results, skipped=failures
    )
    (output / "results.json").write_text(json.dumps(_json_safe(report), indent=1))
    if summaries:
        plot_results(summaries, columns, output / "results.png", title)
    print(f"wrote {output / 'results.json'} and {output / 'results.png'}")
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
