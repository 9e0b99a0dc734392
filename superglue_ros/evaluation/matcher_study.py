"""Why SuperGlue does (not) beat mutual nearest neighbour on real motion (issue 10, part 3).

On the same SuperPoint features of real pairs (default KITTI 07), computes SuperGlue's score
matrix once per pair and re-runs only what is studied: match-threshold sweep, Sinkhorn
iterations, dustbin score, Sinkhorn over the raw descriptors (what SuperGlue is before training,
its identity initialisation), MNN with a descriptor-distance threshold, and an oracle that keeps
only matches within 1 px of the ground-truth epipolar line (what perfect outlier rejection would
give with these keypoints). Also the confidence calibration (fraction of correct matches per
score bin) and the dustbin mass. Run:
    python -m superglue_ros.evaluation.matcher_study --real ../shared/datasets/real \
        [--max_pairs 60 --resize 640 480 --max_keypoints 1024 --output runs/matcher_study]
With ``--images DIR`` instead (synthetic homographies, as superglue-eval --images): SuperGlue
at each match threshold of SWEEP_THRESHOLDS beside MNN on one extraction per image, to tell a
mis-calibrated dustbin (some threshold reaches MNN) from a weaker assignment (none does), over
all pairs and per kind of warp (WARP_BINS: zoom, rotation):
    python -m superglue_ros.evaluation.matcher_study \
        --images ../shared/datasets/photos/bsds500_test --num_pairs 100 --max_keypoints 512
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np
import torch
from tqdm import tqdm

from ..baselines import MutualNearestNeighborMatcher
from ..features import build_preset
from .metrics import error_auc
from .pose_eval import epipolar_distances_px, extract_at, pose_result, summarize_pose
from .real_eval import load_real_set
from .real_pairs import undistort_points

CORRECT_PX = 2.0  # a match is correct within this GT epipolar distance (px, original image)
THRESHOLDS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)
ITERATIONS = (5, 10, 20, 50, 100, 200)
BIN_OFFSETS = (-4.0, -2.0, -1.0, 1.0, 2.0, 4.0)
MNN_DISTANCES = (0.6, 0.7, 0.8, 0.9, 1.0, 1.1)
IDENTITY_INIT_SCALE = 15.0**2 / 16.0  # untrained SuperGlue: final_proj 15 I, / sqrt(256)
IDENTITY_INIT_BIN = 1.0
SWEEP_THRESHOLDS = (0.01, 0.05, 0.1, 0.2, 0.4)


def superglue_scores(model, feats0, feats1) -> torch.Tensor:
    """SuperGlue's score matrix [1,M,N] (before Sinkhorn) of two Features."""

    def side(f):
        return (
            torch.from_numpy(f.keypoints)[None],
            torch.from_numpy(f.scores)[None],
            torch.from_numpy(np.ascontiguousarray(f.descriptors, np.float32))[None],
            torch.tensor([f.image_size], dtype=torch.float32),
        )

    with torch.inference_mode():
        enc0, enc1 = model.encode(*side(feats0)), model.encode(*side(feats1))
        return model.match_scores(enc0, enc1).float()


def assignment_matches(scores, alpha, iterations):
    """(idx0, idx1, confidence, dustbin mass per row [M]) of the mutual argmax, no threshold."""
    from ..models.superglue import extract_matches, scaling_optimal_transport

    with torch.inference_mode():
        log_p = scaling_optimal_transport(scores, torch.tensor(float(alpha)), iterations)
        out = extract_matches(log_p, 0.0)
    matches0 = out["matches0"][0].numpy()
    idx0 = np.flatnonzero(matches0 >= 0)
    return (
        idx0,
        matches0[idx0],
        out["matching_scores0"][0].numpy()[idx0],
        log_p[0, :-1, -1].exp().numpy(),
    )


def auc5_difference(rows, reference_rows, resamples=2000, seed=0) -> tuple[float, float]:
    """5-95% bootstrap interval of AUC@5(rows) - AUC@5(reference) over resampled pairs (the
    same pairs for both): tells a real difference from the pose noise of a few pairs."""
    errors = np.array([r["error_pose"] for r in rows])
    reference = np.array([r["error_pose"] for r in reference_rows])
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(resamples):
        pick = rng.integers(0, len(errors), len(errors))
        diffs.append(error_auc(errors[pick], [5])[0] - error_auc(reference[pick], [5])[0])
    low, high = np.percentile(diffs, [5, 95])
    return float(low), float(high)


def study(pairs, extractor, model, resize, threshold_px=1.0, progress=True, sift=None) -> dict:
    """Per variant: pose summary (AUC@5/10/20, matches, inliers); plus calibration data."""
    alpha = float(model.bin_score.detach())
    rows: dict[str, list] = {}
    calibration = []  # (confidence, correct) of every SuperGlue match at threshold 0
    dustbin = dict(correct=[], wrong=[], rows=[])
    mnn = MutualNearestNeighborMatcher()
    overlap = []

    def record(name, pair, pts0, pts1):
        residual = epipolar_distances_px(pts0, pts1, pair.T_0to1, pair.K0, pair.K1)
        close = residual[residual < 4.0]  # roughly right matches: their localisation noise
        rows.setdefault(name, []).append(
            dict(
                name=pair.name,
                **pose_result(pts0, pts1, pair.K0, pair.K1, pair.T_0to1, threshold_px),
                within_1px=int((residual < 1.0).sum()),
                median_px_close=float(np.median(close)) if len(close) else float("nan"),
            )
        )

    for pair in tqdm(pairs, desc="study", disable=not progress, leave=False):
        images = (pair.image0, pair.image1)
        if sift is not None:  # the classical reference on the same pairs
            s0, s1 = (extract_at(sift[0], image, resize) for image in images)
            i0, i1 = sift[1].match(s0, s1).indices()
            record(
                "sift",
                pair,
                undistort_points(s0.keypoints[i0], pair.K0, pair.dist0),
                undistort_points(s1.keypoints[i1], pair.K1, pair.dist1),
            )
        feats0, feats1 = (extract_at(extractor, image, resize) for image in images)
        kpts0 = undistort_points(feats0.keypoints, pair.K0, pair.dist0)
        kpts1 = undistort_points(feats1.keypoints, pair.K1, pair.dist1)

        def errors(i0, i1):
            return epipolar_distances_px(kpts0[i0], kpts1[i1], pair.T_0to1, pair.K0, pair.K1)

        # mutual nearest neighbour, plain and with a descriptor-distance threshold
        sim = feats0.descriptors @ feats1.descriptors.T
        m0, m1 = mnn.match(feats0, feats1).indices()
        distance = np.sqrt(np.maximum(2 - 2 * sim[m0, m1], 0))
        record("mnn", pair, kpts0[m0], kpts1[m1])
        for d in MNN_DISTANCES:
            keep = distance <= d
            record(f"mnn dist<={d}", pair, kpts0[m0[keep]], kpts1[m1[keep]])
        keep = errors(m0, m1) < 1.0
        record("mnn oracle<1px", pair, kpts0[m0[keep]], kpts1[m1[keep]])

        scores = superglue_scores(model, feats0, feats1)
        for iterations in ITERATIONS:
            i0, i1, conf, bin_mass = assignment_matches(scores, alpha, iterations)
            for t in THRESHOLDS if iterations == 100 else (0.2,):
                keep = conf > t
                record(f"sg t={t} it={iterations}", pair, kpts0[i0[keep]], kpts1[i1[keep]])
            if iterations == 100:
                correct = errors(i0, i1) < CORRECT_PX
                calibration.extend(zip(conf.tolist(), correct.tolist()))
                dustbin["correct"].extend(bin_mass[i0[correct]].tolist())
                dustbin["wrong"].extend(bin_mass[i0[~correct]].tolist())
                dustbin["rows"].append(float((bin_mass > 0.5).mean()))
                sg = set(zip(i0[conf > 0.2].tolist(), i1[conf > 0.2].tolist()))
                overlap.append(len(sg & set(zip(m0.tolist(), m1.tolist()))) / max(len(sg), 1))
                keep = (conf > 0.2) & (errors(i0, i1) < 1.0)
                record("sg oracle<1px", pair, kpts0[i0[keep]], kpts1[i1[keep]])
        for offset in BIN_OFFSETS:
            i0, i1, conf, _ = assignment_matches(scores, alpha + offset, 100)
            keep = conf > 0.2
            record(f"sg bin{offset:+g}", pair, kpts0[i0[keep]], kpts1[i1[keep]])
        raw = torch.from_numpy(IDENTITY_INIT_SCALE * sim.astype(np.float32))[None]
        i0, i1, conf, _ = assignment_matches(raw, IDENTITY_INIT_BIN, 100)
        keep = conf > 0.2
        record("sinkhorn raw desc", pair, kpts0[i0[keep]], kpts1[i1[keep]])

    results = {name: summarize_pose(r) for name, r in rows.items()}
    for name, r in rows.items():
        results[name]["within_1px"] = float(np.mean([x["within_1px"] for x in r]))
        results[name]["median_px_close"] = float(np.nanmedian([x["median_px_close"] for x in r]))
        results[name]["auc5_minus_mnn_90ci"] = auc5_difference(r, rows["mnn"])
    confidence, correct = (np.array(x) for x in zip(*calibration))
    edges = np.linspace(0, 1, 11)
    bins = np.clip(np.digitize(confidence, edges) - 1, 0, 9)
    reliability = [
        dict(
            low=float(edges[b]),
            high=float(edges[b + 1]),
            count=int((bins == b).sum()),
            correct=float(correct[bins == b].mean()) if (bins == b).any() else None,
        )
        for b in range(10)
    ]
    return dict(
        variants=results,
        per_pair=rows,
        bin_score=alpha,
        reliability=reliability,
        dustbin_mass_correct=float(np.mean(dustbin["correct"])),
        dustbin_mass_wrong=float(np.mean(dustbin["wrong"])),
        rows_to_dustbin=float(np.mean(dustbin["rows"])),
        sg_matches_also_mnn=float(np.mean(overlap)),
        correct_px=CORRECT_PX,
    )


def plot_study(report: dict, path) -> None:
    """Left: AUC@5 and matches vs match threshold; right: reliability diagram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = report["variants"]
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 4))
    aucs = [100 * variants[f"sg t={t} it=100"]["pose_auc@5deg"] for t in THRESHOLDS]
    ax0.plot(THRESHOLDS, aucs, "o-", label="SuperGlue AUC@5")
    ax0.axhline(100 * variants["mnn"]["pose_auc@5deg"], color="g", ls="--", label="MNN AUC@5")
    ax0.axhline(
        100 * variants["sg oracle<1px"]["pose_auc@5deg"],
        color="k",
        ls=":",
        label="SuperGlue oracle (<1 px)",
    )
    ax0.set_xlabel("match threshold")
    ax0.set_ylabel("pose AUC@5 %")
    ax0.legend(fontsize=8)
    ax0.grid(alpha=0.3)
    bins = [b for b in report["reliability"] if b["count"]]
    centres = [(b["low"] + b["high"]) / 2 for b in bins]
    ax1.bar(centres, [b["correct"] for b in bins], width=0.09, label="fraction correct")
    ax1.plot([0, 1], [0, 1], "k--", label="calibrated")
    ax1.set_xlabel("SuperGlue confidence")
    ax1.set_ylabel(f"correct (< {report['correct_px']} px epipolar)")
    ax1.legend(fontsize=8)
    ax1.grid(alpha=0.3)
    fig.suptitle(report["title"], fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


class _Extracted:
    """An extractor that returns features computed beforehand ({id(image): Features}), so that
    every matcher of a sweep sees the same extraction."""

    def __init__(self, feats: dict):
        self.feats = feats

    def extract(self, image):
        return self.feats[id(image)]


# Kinds of warp the sweep also reports on their own (rotation [deg] and scale of H at the image
# centre, homography.local_rotation_scale): the shipped SuperGlue trails MNN mostly on
# zoomed-out and strongly rotated pairs (model card, "Session 14").
WARP_BINS = {
    "scale < 0.85": lambda rotation, scale: scale < 0.85,
    "scale 0.85-1.15": lambda rotation, scale: 0.85 <= scale < 1.15,
    "scale >= 1.15": lambda rotation, scale: scale >= 1.15,
    "|rotation| < 15 deg": lambda rotation, scale: abs(rotation) < 15,
    "|rotation| >= 15 deg": lambda rotation, scale: abs(rotation) >= 15,
}


def warp_kinds(pair) -> list[str]:
    """The WARP_BINS a HomographyPair falls in (one scale bin and one rotation bin)."""
    from ..homography import local_rotation_scale

    width, height = pair.image_size
    rotation, scale = local_rotation_scale(pair.H, ((width - 1) / 2, (height - 1) / 2))
    return [name for name, inside in WARP_BINS.items() if inside(rotation, scale)]


def homography_sweep(
    pairs, extractor, weights=None, thresholds=SWEEP_THRESHOLDS, progress=True
) -> dict:
    """Synthetic HomographyPairs -> {'all': {matcher: summarize_homography row}, 'by_warp':
    {WARP_BINS name: {'num_pairs': n, matcher: row}}}; matchers 'mnn' and 'superglue t=T':
    MNN and SuperGlue (fast runtime, fp32, `weights` or the shipped file) at each match
    threshold, one extraction per image for all. A bin without pairs is left out."""
    from ..features import build_matcher
    from .homography_eval import evaluate_pair, summarize_homography

    matchers = {"mnn": build_matcher("mnn")}
    for t in thresholds:
        conf = dict(runtime="fast", precision="fp32", match_threshold=float(t))
        if weights:
            conf["weights"] = str(weights)
        matchers[f"superglue t={t:g}"] = build_matcher("superglue", **conf)
    rows: dict[str, list] = {name: [] for name in matchers}
    for pair in tqdm(pairs, desc="homographies", disable=not progress, leave=False):
        fixed = _Extracted({id(im): extractor.extract(im) for im in (pair.image0, pair.image1)})
        for name, matcher in matchers.items():
            rows[name].append(evaluate_pair(fixed, matcher, pair))
    kinds = [warp_kinds(pair) for pair in pairs]
    by_warp = {}
    for kind in WARP_BINS:
        inside = [kind in k for k in kinds]
        if any(inside):
            by_warp[kind] = dict(num_pairs=int(sum(inside)))
            for name, r in rows.items():
                by_warp[kind][name] = summarize_homography([x for x, i in zip(r, inside) if i])
    return dict(all={name: summarize_homography(r) for name, r in rows.items()}, by_warp=by_warp)


def main_homography(args) -> int:
    from .synthetic import make_homography_pairs

    pairs = make_homography_pairs(args.images, args.num_pairs, args.seed)
    extractor, _ = build_preset(
        "superglue",
        extractor=dict(max_keypoints=args.max_keypoints, runtime="fast", precision="fp32"),
    )
    report = homography_sweep(pairs, extractor, args.superglue_weights)
    print(f"{len(pairs)} synthetic pairs from {args.images}, {args.max_keypoints} keypoints, fp32")
    print(
        f"{'matcher':18s}{'AUC@1px':>9s}{'AUC@3px':>9s}{'AUC@5px':>9s}{'prec.%':>8s}"
        f"{'recall%':>9s}{'matches':>9s}"
    )
    for name, r in report["all"].items():
        print(
            f"{name:18s}{100 * r['auc_robust@1px']:9.1f}{100 * r['auc_robust@3px']:9.1f}"
            f"{100 * r['auc_robust@5px']:9.1f}{100 * r['precision']:8.1f}"
            f"{100 * r['recall']:9.1f}{r['num_matches']:9.1f}"
        )
    names = list(report["all"])
    print("\nby kind of warp (H at the image centre): H AUC@3px / recall %")
    print(f"{'warp':22s}{'pairs':>6s}" + "".join(f"{name:>20s}" for name in names))
    for kind, row in report["by_warp"].items():
        cells = "".join(
            f"{100 * row[n]['auc_robust@3px']:12.1f} / {100 * row[n]['recall']:5.1f}" for n in names
        )
        print(f"{kind:22s}{row['num_pairs']:6d}{cells}")
    output = pathlib.Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "homography_sweep.json").write_text(json.dumps(report, indent=1, default=float))
    print(f"wrote {output / 'homography_sweep.json'}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--real", help="the datasets/real folder")
    data.add_argument("--images", help="photos for synthetic homographies (threshold sweep)")
    parser.add_argument("--num_pairs", type=int, default=100, help="--images: pairs")
    parser.add_argument("--seed", type=int, default=0, help="--images: pair seed")
    parser.add_argument("--superglue_weights", help="--images: SuperGlue file (default: shipped)")
    parser.add_argument("--set", default="kitti07")
    parser.add_argument("--max_pairs", type=int, default=0, help="0 = all")
    parser.add_argument(
        "--resize", type=int, nargs="+", default=[640, 480], help="as superglue-eval's --resize"
    )
    parser.add_argument("--max_keypoints", type=int, default=1024)
    parser.add_argument("--output", default="runs/matcher_study")
    args = parser.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    if args.images:
        return main_homography(args)
    pairs = load_real_set(args.set, args.real, args.max_pairs)
    extractor, matcher = build_preset(
        "superglue",
        extractor=dict(max_keypoints=args.max_keypoints, precision="fp32"),
        matcher=dict(runtime="reference"),
    )
    resize = None if args.resize == [-1] else args.resize
    report = study(
        pairs,
        extractor,
        matcher.model,
        resize,
        sift=build_preset("sift", max_keypoints=args.max_keypoints),
    )
    report["title"] = (
        f"{args.set}, {len(pairs)} pairs, resize {args.resize}, "
        f"{args.max_keypoints} keypoints, shipped weights, fp32"
    )
    print(report["title"])
    print(
        f"{'variant':22s}{'AUC@5':>8s}{'AUC@10':>8s}{'AUC@20':>8s}{'matches':>9s}"
        f"{'inliers':>9s}{'inl.%':>7s}{'<1px':>7s}{'med.px':>7s}  AUC@5 - MNN (90% CI)"
    )
    for name, r in report["variants"].items():
        low, high = r["auc5_minus_mnn_90ci"]
        print(
            f"{name:22s}{100 * r['pose_auc@5deg']:8.1f}{100 * r['pose_auc@10deg']:8.1f}"
            f"{100 * r['pose_auc@20deg']:8.1f}{r['num_matches']:9.1f}{r['num_inliers']:9.1f}"
            f"{100 * r['inlier_ratio']:7.1f}{r['within_1px']:7.1f}{r['median_px_close']:7.2f}"
            f"  [{100 * low:+.1f}, {100 * high:+.1f}]"
        )
    print(
        f"bin score {report['bin_score']:.3f}; rows sent to the dustbin (mass > 0.5) "
        f"{100 * report['rows_to_dustbin']:.1f}%; dustbin mass of matched rows: correct "
        f"{report['dustbin_mass_correct']:.3f}, wrong {report['dustbin_mass_wrong']:.3f}; "
        f"SuperGlue matches (t=0.2) that MNN also makes: "
        f"{100 * report['sg_matches_also_mnn']:.1f}%"
    )
    print(
        "reliability (confidence bin: count, fraction within "
        f"{report['correct_px']} px of the GT epipolar line):"
    )
    for b in report["reliability"]:
        if b["count"]:
            print(f"  {b['low']:.1f}-{b['high']:.1f}: {b['count']:6d}  {b['correct']:.3f}")
    output = pathlib.Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    (output / "study.json").write_text(json.dumps(report, indent=1, default=float))
    plot_study(report, output / "study.png")
    print(f"wrote {output / 'study.json'} and {output / 'study.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
