"""Evaluate an extractor + matcher on synthetic homography pairs.

Library entry point for `superglue-eval --images` and for periodic validation during training.
"""

from __future__ import annotations

import time

import cv2
import numpy as np
from tqdm import tqdm

from ..geometry import DEFAULT_ESTIMATOR, estimate_homography
from .pose_eval import refined_points
from .metrics import error_auc, homography_corner_error, match_precision_recall, repeatability

AUC_THRESHOLDS_PX = (1, 3, 5)


def evaluate_pair(
    extractor,
    matcher,
    pair,
    threshold_px=3.0,
    ransac_threshold_px=3.0,
    estimator=DEFAULT_ESTIMATOR,
    refine="none",
) -> dict:
    """Metrics of one HomographyPair (see evaluate_homography); refine 'lk' refines the
    matched points of image1 before the homography fits (precision/recall see the keypoints)."""
    start = time.perf_counter()
    feats0 = extractor.extract(pair.image0)
    feats1 = extractor.extract(pair.image1)
    extract_s = (time.perf_counter() - start) / 2
    start = time.perf_counter()
    matches = matcher.match(feats0, feats1)
    match_s = time.perf_counter() - start
    size = pair.image_size
    pr = match_precision_recall(
        feats0.keypoints, feats1.keypoints, matches.matches0, pair.H, size, threshold_px
    )
    idx0, idx1 = matches.indices()
    pts0 = feats0.keypoints[idx0].astype(np.float64)
    pts1 = refined_points(
        pair.image0, pair.image1, pts0, feats1.keypoints[idx1].astype(np.float64), None, refine
    )
    H_robust, inliers = estimate_homography(pts0, pts1, ransac_threshold_px, estimator)
    H_dlt = None
    if len(pts0) >= 4:
        H_dlt, _ = cv2.findHomography(pts0, pts1, 0)
    return dict(
        name=pair.name,
        num_keypoints0=len(feats0),
        num_keypoints1=len(feats1),
        repeatability=repeatability(
            feats0.keypoints, feats1.keypoints, pair.H, size, size, threshold_px
        ),
        **pr,
        num_inliers=int(inliers.sum()),
        corner_error_robust=homography_corner_error(H_robust, pair.H, size),
        corner_error_dlt=homography_corner_error(H_dlt, pair.H, size),
        extract_ms=1000 * extract_s,
        match_ms=1000 * match_s,
    )


def summarize_homography(per_pair: list[dict], thresholds=AUC_THRESHOLDS_PX) -> dict:
    """Means over pairs (precision/recall over pairs where defined) and corner-error AUCs."""

    def mean(key):
        values = np.array([p[key] for p in per_pair], np.float64)
        values = values[np.isfinite(values)]
        return float(values.mean()) if len(values) else float("nan")

    summary = dict(num_pairs=len(per_pair))
    for key in (
        "repeatability",
        "precision",
        "recall",
        "num_keypoints0",
        "num_matches",
        "num_correct",
        "num_inliers",
        "extract_ms",
        "match_ms",
    ):
        summary[key] = mean(key)
    for kind in ("robust", "dlt"):
        aucs = error_auc([p[f"corner_error_{kind}"] for p in per_pair], thresholds)
        for threshold, auc in zip(thresholds, aucs):
            summary[f"auc_{kind}@{threshold}px"] = auc
    return summary


def evaluate_homography(
    extractor,
    matcher,
    pairs,
    threshold_px=3.0,
    ransac_threshold_px=3.0,
    estimator=DEFAULT_ESTIMATOR,
    progress=False,
    return_per_pair=False,
    desc="homography",
    refine="none",
) -> dict:
    """Repeatability, precision/recall at threshold_px, corner-error AUC at 1/3/5 px with a
    robust estimator (USAC, `estimator`) and with DLT on all matches (cv2.findHomography
    method 0). pairs: sequence of HomographyPair. Returns the summary dict (plus
    'per_pair' when return_per_pair). refine: see evaluate_pair."""
    per_pair = [
        evaluate_pair(
            extractor, matcher, pair, threshold_px, ransac_threshold_px, estimator, refine
        )
        for pair in tqdm(pairs, desc=desc, disable=not progress, leave=False)
    ]
    summary = summarize_homography(per_pair)
    if return_per_pair:
        summary["per_pair"] = per_pair
    return summary
