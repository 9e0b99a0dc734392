"""Geometric verification of correspondences with well-kept robust estimators.

Matches are only useful to SLAM once the outliers are gone; this module fits an essential
matrix (intrinsics known), a fundamental matrix or a homography and returns the inlier mask,
plus the relative pose (R, t) for the essential case. No hand-written RANSAC: OpenCV's USAC
framework and PoseLib (LO-RANSAC + bundle refinement) do the work.

Defaults chosen by measurement (``python -m superglue_ros.evaluation.robust_estimators`` and
SIFT matches on Middlebury templeRing, 51 pairs, pose AUC@5/10/20 deg at 1 px):
  essential:   'poselib'  templeRing 91.7/95.9/97.9 vs USAC_ACCURATE 83.7/89.9/94.2,
               USAC_MAGSAC 81.8/89.0/93.7, RANSAC 56.6/77.3/88.6; synthetic (40% outliers,
               0.5 px noise) median pose error 0.49 deg vs 0.57 ACCURATE, 0.67 MAGSAC.
  homography / fundamental: 'magsac' (MAGSAC++)  synthetic median corner error 0.25 px vs
               0.40 ACCURATE, 0.54 poselib, 0.73 RANSAC (40% outliers, 0.5 px noise).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .timing import stage

ESTIMATORS = {
    "magsac": cv2.USAC_MAGSAC,  # MAGSAC++ scoring, threshold-robust
    "accurate": cv2.USAC_ACCURATE,  # GC-RANSAC local optimisation
    "usac": cv2.USAC_DEFAULT,
    "prosac": cv2.USAC_PROSAC,  # expects points sorted by confidence
    "ransac": cv2.RANSAC,  # classic RANSAC
    "lmeds": cv2.LMEDS,
    "poselib": None,  # PoseLib, essential and homography only
}
DEFAULT_ESTIMATORS = {"essential": "poselib", "fundamental": "magsac", "homography": "magsac"}
# PoseLib's own default runs at least 1000 RANSAC iterations whatever the inlier ratio. Measured
# (250 synthetic correspondences, 1 px noise, 40 trials each): with 100 the pose errors are
# identical (its adaptive stopping still decides) and a fit costs 3.2 ms instead of 19.0 ms at
# 20% outliers, 6.6 vs 13.6 ms at 40%; at 60% both run the same ~2500 iterations.
POSELIB_MIN_ITERATIONS = 100
# On real video the inlier ratio is low and the adaptive count reaches the cap: KITTI 07 odometry
# matches of the node (120 pairs at gaps 1/3/10, median inlier ratio 0.58, p10 0.26) took
# p90 190 ms / max 275 ms per fit at 10000 iterations on a loaded 2-core machine. Trying the
# matches best-score first (PROSAC, PoseLib's progressive sampling) finds the model early, so a
# cap of 500 keeps the pose AUC@5/10/20 (72.4/82.8/88.1 vs 73.0/82.7/87.6) at p90 41 ms, max 58
# ms; a cap without the ordering loses 8 points at gap 10 (python -m
# superglue_ros.evaluation.geometry_budget). FrontEnd's essential_max_iterations uses this.
ESSENTIAL_MAX_ITERATIONS = 500
DEFAULT_ESTIMATOR = None  # None = the per-model default of DEFAULT_ESTIMATORS
MIN_POINTS = {"homography": 4, "fundamental": 8, "essential": 5}


@dataclass
class GeometricModel:
    """Result of verify().

    kind: 'essential' | 'fundamental' | 'homography' | 'none'
    matrix: 3x3 model (zeros when kind == 'none')
    inliers: bool [K], one per input correspondence
    R, t: rotation 3x3 and unit translation (3,) from camera 0 to camera 1 (x1 = R x0 + t),
        essential only, else None
    """

    kind: str
    matrix: np.ndarray
    inliers: np.ndarray
    R: np.ndarray | None = None
    t: np.ndarray | None = None

    @property
    def num_inliers(self) -> int:
        return int(self.inliers.sum())

    @classmethod
    def none(cls, num_points: int) -> "GeometricModel":
        return cls("none", np.zeros((3, 3)), np.zeros(num_points, bool))


def _points(pts, name) -> np.ndarray:
    pts = np.asarray(pts, np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"{name} must have shape [K,2], got {pts.shape}")
    return np.ascontiguousarray(pts)


def _estimator(estimator: str | None, model: str) -> str:
    estimator = DEFAULT_ESTIMATORS[model] if estimator is None else estimator
    if estimator not in ESTIMATORS:
        raise ValueError(
            f"unknown robust estimator {estimator!r}; choose from {sorted(ESTIMATORS)}"
        )
    if estimator == "poselib" and model == "fundamental":
        raise ValueError("estimator 'poselib' is used for essential and homography only")
    return estimator


def _poselib():
    try:
        import poselib
    except ImportError as error:
        raise ImportError(
            "estimator 'poselib' needs the poselib package (pip install "
            "poselib, listed in requirements.txt) or choose e.g. "
            "estimator='accurate'"
        ) from error
    return poselib


def _skew(v) -> np.ndarray:
    return np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]], np.float64)


def _best_first(scores, num_points) -> np.ndarray | None:
    """Order [K] of the correspondences by decreasing score (None without scores)."""
    if scores is None:
        return None
    scores = np.asarray(scores, np.float64).reshape(-1)
    if len(scores) != num_points:
        raise ValueError(f"scores has {len(scores)} values for {num_points} correspondences")
    return np.argsort(-scores, kind="stable")


def _poselib_options(order, **options) -> dict:
    if order is not None:
        options["progressive_sampling"] = True
    return options


def _unorder(inliers, order) -> np.ndarray:
    """Inlier mask of sorted correspondences -> mask in the caller's order."""
    inliers = np.asarray(inliers, bool)
    if order is None:
        return inliers
    out = np.zeros(len(order), bool)
    out[order] = inliers
    return out


def _mask(mask, num_points) -> np.ndarray:
    if mask is None:
        return np.zeros(num_points, bool)
    return np.asarray(mask).reshape(-1).astype(bool)


# OpenCV's USAC estimators (every cv2 call below) can fail an internal assertion instead of returning no model on
# near-degenerate input: ORB matches of a planar scene refined to sub-pixel (nearly exact
# homography correspondences, two of them on one point) made findFundamentalMat raise
# "(-215:Assertion failed) !model.empty() in function 'setModelParameters'" on 2 of 120 frames.
# A failed estimate is what the callers already handle, so such an error counts as one.


def estimate_homography(
    pts0,
    pts1,
    threshold_px=2.0,
    estimator=DEFAULT_ESTIMATOR,
    confidence=0.9999,
    max_iters=10000,
    scores=None,
):
    """H (3x3, pts1 ~ H pts0) and inlier mask bool [K], or (None, all False). scores [K]
    (match confidences): PoseLib samples the best first (PROSAC); ignored by OpenCV."""
    pts0, pts1 = _points(pts0, "pts0"), _points(pts1, "pts1")
    if len(pts0) < MIN_POINTS["homography"]:
        return None, np.zeros(len(pts0), bool)
    estimator = _estimator(estimator, "homography")
    if estimator == "poselib":
        order = _best_first(scores, len(pts0))
        sorted0, sorted1 = (pts0, pts1) if order is None else (pts0[order], pts1[order])
        H, info = _poselib().estimate_homography(
            sorted0,
            sorted1,
            _poselib_options(
                order,
                max_reproj_error=threshold_px,
                max_iterations=max_iters,
                min_iterations=POSELIB_MIN_ITERATIONS,
                success_prob=confidence,
            ),
        )
        mask = _unorder(info["inliers"], order)
        H = None if mask.sum() < 4 else np.asarray(H, np.float64)
    else:
        try:
            H, mask = cv2.findHomography(
                pts0,
                pts1,
                ESTIMATORS[estimator],
                threshold_px,
                maxIters=max_iters,
                confidence=confidence,
            )
        except cv2.error:  # OpenCV on degenerate input, see estimate_homography
            return None, np.zeros(len(pts0), bool)
    if H is None or H.shape != (3, 3):
        return None, np.zeros(len(pts0), bool)
    return H, _mask(mask, len(pts0))


def estimate_fundamental(
    pts0, pts1, threshold_px=2.0, estimator=DEFAULT_ESTIMATOR, confidence=0.9999, max_iters=10000
):
    """F (3x3, x1^T F x0 = 0) and inlier mask bool [K], or (None, all False)."""
    pts0, pts1 = _points(pts0, "pts0"), _points(pts1, "pts1")
    if len(pts0) < MIN_POINTS["fundamental"]:
        return None, np.zeros(len(pts0), bool)
    method = ESTIMATORS[_estimator(estimator, "fundamental")]
    try:
        F, mask = cv2.findFundamentalMat(pts0, pts1, method, threshold_px, confidence, max_iters)
    except cv2.error:  # OpenCV on degenerate input, see estimate_homography
        return None, np.zeros(len(pts0), bool)
    if F is None or F.shape != (3, 3):  # 7-point can return up to 3 stacked solutions
        return None, np.zeros(len(pts0), bool)
    return F, _mask(mask, len(pts0))


def normalize_points(pts, K) -> np.ndarray:
    """Pixels [K,2] -> normalised camera coordinates [K,2] (K^-1 applied)."""
    pts = _points(pts, "pts")
    homogeneous = np.c_[pts, np.ones(len(pts))] @ np.linalg.inv(np.asarray(K, np.float64)).T
    return homogeneous[:, :2] / homogeneous[:, 2:]


def estimate_essential(
    pts0,
    pts1,
    K0,
    K1,
    threshold_px=2.0,
    estimator=DEFAULT_ESTIMATOR,
    confidence=0.9999,
    max_iters=10000,
    scores=None,
):
    """(E, inliers bool [K], R, t) with x1 = R x0 + t, |t| = 1; (None, all False, None, None).

    scores [K] (match confidences): PoseLib samples the best first (PROSAC), which keeps the
    pose under a small ``max_iters`` (see ESSENTIAL_MAX_ITERATIONS); ignored by OpenCV.

    PoseLib takes the two pinhole cameras directly (skew ignored) and refines the pose on the
    inliers. OpenCV's USAC scores (MAGSAC++ in particular) assume pixel-scale residuals, so points of
    image 1 are re-expressed in the pixel frame of camera 0 (K0 K1^-1 x1, same normalised
    coordinates) and E is fitted in pixels with K0; R, t come from the normalised points.
    """
    pts0, pts1 = _points(pts0, "pts0"), _points(pts1, "pts1")
    failed = (None, np.zeros(len(pts0), bool), None, None)
    if len(pts0) < MIN_POINTS["essential"]:
        return failed
    K0, K1 = np.asarray(K0, np.float64), np.asarray(K1, np.float64)
    estimator = _estimator(estimator, "essential")
    if estimator == "poselib":
        cameras = [
            dict(
                model="PINHOLE",
                width=int(2 * K[0, 2] + 1),
                height=int(2 * K[1, 2] + 1),
                params=[K[0, 0], K[1, 1], K[0, 2], K[1, 2]],
            )
            for K in (K0, K1)
        ]
        order = _best_first(scores, len(pts0))
        sorted0, sorted1 = (pts0, pts1) if order is None else (pts0[order], pts1[order])
        pose, info = _poselib().estimate_relative_pose(
            sorted0,
            sorted1,
            cameras[0],
            cameras[1],
            _poselib_options(
                order,
                max_epipolar_error=threshold_px,
                max_iterations=max_iters,
                min_iterations=POSELIB_MIN_ITERATIONS,
                success_prob=confidence,
            ),
        )
        inliers = _unorder(info["inliers"], order)
        t = np.asarray(pose.t, np.float64).reshape(3)
        if inliers.sum() < MIN_POINTS["essential"] or np.linalg.norm(t) == 0:
            return failed
        R, t = np.asarray(pose.R, np.float64), t / np.linalg.norm(t)
        return _skew(t) @ R, inliers, R, t
    n0, n1 = normalize_points(pts0, K0), normalize_points(pts1, K1)
    pts1_in_0 = np.c_[n1, np.ones(len(n1))] @ K0[:2].T
    try:
        E, mask = cv2.findEssentialMat(
            pts0,
            pts1_in_0,
            K0,
            method=ESTIMATORS[estimator],
            prob=confidence,
            threshold=threshold_px,
            maxIters=max_iters,
        )
    except cv2.error:  # OpenCV on degenerate input, see estimate_homography
        return failed
    if E is None or E.shape[0] < 3 or E.shape[1] != 3:
        return failed
    inliers = _mask(mask, len(pts0))
    best = None
    for i in range(E.shape[0] // 3):  # RANSAC/LMEDS may return several candidates
        E_i = E[3 * i : 3 * i + 3]
        count, R, t, _ = cv2.recoverPose(
            E_i, n0, n1, np.eye(3), mask=inliers.astype(np.uint8).copy()
        )
        if best is None or count > best[0]:
            best = (count, E_i, R, t.reshape(3))
    _, E, R, t = best
    return E, inliers, R, t


def verify(
    pts0,
    pts1,
    K0=None,
    K1=None,
    model="auto",
    threshold_px=2.0,
    estimator=DEFAULT_ESTIMATOR,
    confidence=0.9999,
    max_iters=10000,
    scores=None,
) -> GeometricModel:
    """Fit a two-view model to correspondences pts0 [K,2] <-> pts1 [K,2] (pixels).

    model: 'auto' (essential when both K0 and K1 are given, else fundamental), 'essential',
    'fundamental' or 'homography'. estimator: a key of ESTIMATORS, None = the measured
    per-model default (DEFAULT_ESTIMATORS). scores [K]: match confidences, tried best first by
    PoseLib (PROSAC). Too few points or a failed fit give kind 'none' with all inliers False,
    never an exception. Timed as stage 'geometry' (timing.py) when the caller records.
    """
    with stage("geometry"):
        return _verify(
            pts0, pts1, K0, K1, model, threshold_px, estimator, confidence, max_iters, scores
        )


def _verify(
    pts0, pts1, K0, K1, model, threshold_px, estimator, confidence, max_iters, scores
) -> GeometricModel:
    pts0, pts1 = _points(pts0, "pts0"), _points(pts1, "pts1")
    if len(pts0) != len(pts1):
        raise ValueError(f"pts0 has {len(pts0)} points but pts1 has {len(pts1)}")
    if model == "auto":
        model = "essential" if K0 is not None and K1 is not None else "fundamental"
    options = dict(
        threshold_px=threshold_px, estimator=estimator, confidence=confidence, max_iters=max_iters
    )
    if model == "essential":
        if K0 is None or K1 is None:
            raise ValueError("model 'essential' needs both K0 and K1")
        E, inliers, R, t = estimate_essential(pts0, pts1, K0, K1, scores=scores, **options)
        if E is None:
            return GeometricModel.none(len(pts0))
        return GeometricModel("essential", E, inliers, R, t)
    if model == "fundamental":
        F, inliers = estimate_fundamental(pts0, pts1, **options)
        return (
            GeometricModel.none(len(pts0))
            if F is None
            else GeometricModel("fundamental", F, inliers)
        )
    if model == "homography":
        H, inliers = estimate_homography(pts0, pts1, scores=scores, **options)
        return (
            GeometricModel.none(len(pts0))
            if H is None
            else GeometricModel("homography", H, inliers)
        )
    raise ValueError(
        f"unknown model {model!r}; expected 'auto', 'essential', 'fundamental' or 'homography'"
    )
