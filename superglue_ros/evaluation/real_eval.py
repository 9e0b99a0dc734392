"""Relative-pose evaluation on real camera motion (the validation split of the datasets README).

Sets: 'kitti07' (KITTI 07, pairs at gaps 1/3/10 frames), 'euroc' (EuRoC V1_01 stereo pairs,
distorted lenses) and 'statue' (SfM photo pairs under 30 deg, approximate ground truth). Keypoints
are found on the images as stored and undistorted before the essential matrix, so every method
sees the same lens. Methods that share an extractor object (SuperPoint for MNN and SuperGlue)
share its features, which halves the cost of the learned rows and makes their comparison one of
matchers only.
"""

from __future__ import annotations

import pathlib
import time

import numpy as np
from tqdm import tqdm

from ..geometry import DEFAULT_ESTIMATOR
from .pose_eval import extract_at, matched_points, pose_result, refined_points, summarize_pose
from .real_pairs import RealPair, euroc_stereo_pairs, kitti_pairs, photo_pairs, undistort_points

REAL_SETS = ("kitti07", "euroc", "statue")


def load_real_set(name: str, root, max_pairs=0, photo_pairs_count=100, seed=0) -> list[RealPair]:
    """Pairs of one validation set under `root` (../shared/datasets/real). max_pairs > 0 keeps
    that many, evenly spread over the list (so a KITTI subset still has every gap)."""
    root = pathlib.Path(root)
    if name == "kitti07":
        pairs = kitti_pairs(root / "kitti" / "07")
    elif name == "euroc":
        pairs = euroc_stereo_pairs(root / "euroc_v101_micro")
    elif name == "statue":
        pairs = photo_pairs(root / "statue_of_liberty", photo_pairs_count, seed=seed)
    else:
        raise ValueError(f"unknown real set {name!r}; choose from {REAL_SETS}")
    if not pairs:
        raise ValueError(f"no pairs found for {name!r} under {root}")
    if 0 < max_pairs < len(pairs):
        keep = np.unique(np.linspace(0, len(pairs) - 1, max_pairs).round().astype(int))
        pairs = [pairs[i] for i in keep]
    return pairs


def evaluate_real(
    methods: dict,
    pairs: list[RealPair],
    resize=None,
    threshold_px=1.0,
    estimator=DEFAULT_ESTIMATOR,
    epipolar_threshold=5e-4,
    progress=False,
    return_per_pair=False,
    desc="real",
    refine: dict | None = None,
) -> dict:
    """methods: {name: (extractor, matcher)} -> {name: summary (+ per_pair)}.

    Pose AUC@5/10/20 deg, matches, RANSAC inliers and their ratio, epipolar precision (as
    pose_eval.evaluate_pose). extract_ms is per image and counted once per shared extractor.
    refine: {name: 'lk' | 'none'} per method (default 'none'): 'lk' refines the matched points
    of view 1 as the node does (``pose_eval.refined_points``, before undistortion).
    """
    refine = refine or {}
    per_pair = {name: [] for name in methods}
    extractors = {id(e): e for e, _ in methods.values()}
    for pair in tqdm(pairs, desc=desc, disable=not progress, leave=False):
        images = (pair.image0, pair.image1)
        feats, extract_ms = {}, {}
        for key, extractor in extractors.items():
            start = time.perf_counter()
            feats[key] = [extract_at(extractor, image, resize) for image in images]
            extract_ms[key] = 1000 * (time.perf_counter() - start) / 2
        for name, (extractor, matcher) in methods.items():
            feats0, feats1 = feats[id(extractor)]
            start = time.perf_counter()
            matches = matcher.match(feats0, feats1)
            pts0, pts1 = matched_points(feats0, feats1, matches)
            pts1 = refined_points(*images, pts0, pts1, resize, refine.get(name, "none"))
            match_ms = 1000 * (time.perf_counter() - start)  # matching + refinement
            pts0 = undistort_points(pts0, pair.K0, pair.dist0)
            pts1 = undistort_points(pts1, pair.K1, pair.dist1)
            per_pair[name].append(
                dict(
                    name=pair.name,
                    num_keypoints0=len(feats0),
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
                    extract_ms=extract_ms[id(extractor)],
                    match_ms=match_ms,
                )
            )
    results = {}
    for name, rows in per_pair.items():
        results[name] = summarize_pose(rows)
        if return_per_pair:
            results[name]["per_pair"] = rows
    return results
