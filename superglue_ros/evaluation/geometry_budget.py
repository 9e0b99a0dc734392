"""What essential-matrix RANSAC costs on real frames, and what its budget does to the pose.

Why (issue 14): on real video the matcher's inlier ratio is far lower than on the benchmark's
synthetic pairs, and PoseLib's iteration count grows as log(1 - p) / log(1 - w^5) with the
inlier ratio w: the VO worker spent a quarter of its time there. This replays the node's own
odometry matches (``FrontEnd`` with the given preset, default parameters) on a KITTI-format
sequence with ground-truth poses (``poses.txt``: frame index + 3x4 camera-to-world, ``K.txt``),
pairs at the given frame gaps, and runs ``geometry.verify`` with each budget on the very same
matches (uniform sampling, or best match score first): median / p90 / max time per fit, pose
AUC@5/10/20 deg (max of rotation and translation direction errors) and the inliers found.

    python -m superglue_ros.evaluation.geometry_budget --sequence ../shared/datasets/real/kitti/07
"""

from __future__ import annotations

import argparse
import json
import pathlib
import pickle
import time

import cv2
import numpy as np

from .. import geometry
from .metrics import error_auc, relative_pose_error

# name -> (verify() options, pass the match scores: PoseLib samples best first)
BUDGETS = {
    "iters 10000 (before)": (dict(max_iters=10000), False),
    "iters 1000": (dict(max_iters=1000), False),
    "iters 500": (dict(max_iters=500), False),
    "iters 10000 best-first": (dict(max_iters=10000), True),
    "iters 1000 best-first": (dict(max_iters=1000), True),
    "iters 500 best-first (node)": (dict(max_iters=500), True),
    "iters 250 best-first": (dict(max_iters=250), True),
}


def read_kitti(folder: pathlib.Path):
    """(image paths by frame index, camera-to-world 4x4 by frame index, K [3,3])."""
    poses = {}
    for line in (folder / "poses.txt").read_text().split("\n"):
        if line.strip():
            values = line.split()
            T = np.eye(4)
            T[:3] = np.array(values[1:13], np.float64).reshape(3, 4)
            poses[int(values[0])] = T
    K = np.loadtxt(folder / "K.txt").reshape(3, 3)
    images = {int(p.stem): p for p in sorted((folder / "image_0").iterdir())}
    return images, poses, K


def collect_matches(folder, gaps, stride, preset, limit):
    """[(gap, ref frame, query frame, pts_ref [M,2], pts_query [M,2], scores [M], T_0to1 [4,4])]."""
    from ..frontend.pipeline import Frame, FrontEnd

    images, poses, K = read_kitti(pathlib.Path(folder))
    frontend = FrontEnd.from_config(dict(preset=preset, device="cpu"), dict(loop_closure=False))
    out = []
    ids = sorted(set(images) & set(poses))
    for gap in gaps:
        starts = [i for i in ids[::stride] if i + gap in images and i + gap in poses][:limit]
        for i in starts:
            frontend.reset()
            frontend.process(Frame(cv2.imread(str(images[i]), cv2.IMREAD_GRAYSCALE), 1, "cam", K))
            result = frontend.process(
                Frame(cv2.imread(str(images[i + gap]), cv2.IMREAD_GRAYSCALE), 2, "cam", K)
            )
            corr = result.odometry
            T_0to1 = np.linalg.inv(poses[i + gap]) @ poses[i]
            out.append(
                (
                    gap,
                    i,
                    i + gap,
                    corr.reference_points.astype(np.float64),
                    corr.query_points.astype(np.float64),
                    corr.scores,
                    T_0to1,
                )
            )
    return out, K


def evaluate(pairs, K, budgets, threshold_px=2.0, repeats=1):
    """Per budget: timing and pose accuracy over all pairs and per gap."""
    results = {}
    for name, (options, use_scores) in budgets.items():
        times, errors, inliers, per_gap = [], [], [], {}
        for gap, _, _, pts_ref, pts_query, scores, T in pairs:
            best = None
            for _ in range(repeats):
                t0 = time.perf_counter()
                model = geometry.verify(
                    pts_ref,
                    pts_query,
                    K,
                    K,
                    model="essential",
                    threshold_px=threshold_px,
                    scores=scores if use_scores else None,
                    **options,
                )
                dt = time.perf_counter() - t0
                best = dt if best is None else min(best, dt)
            times.append(best)
            err = (
                max(relative_pose_error(T, model.R, model.t))
                if model.kind == "essential"
                else np.inf
            )
            errors.append(err)
            inliers.append(model.num_inliers)
            per_gap.setdefault(gap, []).append(err)
        ms = np.array(times) * 1000
        results[name] = dict(
            options=dict(options, best_first=use_scores),
            pairs=len(pairs),
            time_ms=dict(
                median=round(float(np.median(ms)), 2),
                p90=round(float(np.percentile(ms, 90)), 2),
                max=round(float(ms.max()), 2),
                mean=round(float(ms.mean()), 2),
            ),
            auc_5_10_20=[round(100 * a, 1) for a in error_auc(errors, (5, 10, 20))],
            auc_by_gap={
                int(g): [round(100 * a, 1) for a in error_auc(e, (5, 10, 20))]
                for g, e in sorted(per_gap.items())
            },
            median_error_deg=round(float(np.median(errors)), 3),
            mean_inliers=round(float(np.mean(inliers)), 1),
        )
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m superglue_ros.evaluation.geometry_budget",
        description=__doc__.split("\n")[0],
    )
    p.add_argument(
        "--sequence", required=True, help="KITTI-format folder (image_0/, poses.txt, K.txt)"
    )
    p.add_argument("--gaps", default="1,3,10", help="frame gaps of the pairs")
    p.add_argument("--stride", type=int, default=3, help="every n-th frame starts a pair")
    p.add_argument("--limit", type=int, default=50, help="pairs per gap at most")
    p.add_argument("--preset", default="superglue")
    p.add_argument(
        "--repeats", type=int, default=3, help="fits per pair and budget (the fastest is kept)"
    )
    p.add_argument("--output", default="geometry_budget.json")
    p.add_argument(
        "--cache", default=None, help="pickle of the matches: read if present, else written"
    )
    args = p.parse_args(argv)
    if args.cache and pathlib.Path(args.cache).is_file():
        with open(args.cache, "rb") as f:
            pairs, K = pickle.load(f)
    else:
        pairs, K = collect_matches(
            args.sequence,
            [int(g) for g in args.gaps.split(",")],
            args.stride,
            args.preset,
            args.limit,
        )
        if args.cache:
            with open(args.cache, "wb") as f:
                pickle.dump((pairs, K), f)
    ratios = []
    for name, options in {"before": dict(max_iters=10000)}.items():
        for _, _, _, pts_ref, pts_query, _, _ in pairs:
            model = geometry.verify(pts_ref, pts_query, K, K, model="essential", **options)
            ratios.append(model.num_inliers / max(1, len(pts_ref)))
    results = evaluate(pairs, K, BUDGETS, repeats=args.repeats)
    summary = dict(
        sequence=str(args.sequence),
        preset=args.preset,
        pairs=len(pairs),
        mean_matches=round(float(np.mean([len(p[3]) for p in pairs])), 1),
        inlier_ratio=dict(
            median=round(float(np.median(ratios)), 3),
            p10=round(float(np.percentile(ratios, 10)), 3),
        ),
        budgets=results,
    )
    print(
        f"{len(pairs)} pairs, {summary['mean_matches']} matches on average, inlier ratio median "
        f"{summary['inlier_ratio']['median']} (p10 {summary['inlier_ratio']['p10']})"
    )
    print(f"{'budget':24s} {'median ms':>10s} {'p90 ms':>8s} {'max ms':>8s}  AUC@5/10/20   by gap")
    for name, r in results.items():
        print(
            f"{name:24s} {r['time_ms']['median']:10.2f} {r['time_ms']['p90']:8.2f} "
            f"{r['time_ms']['max']:8.2f}  {r['auc_5_10_20']}  {r['auc_by_gap']}"
        )
    pathlib.Path(args.output).write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
