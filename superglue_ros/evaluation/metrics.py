"""Matching metrics with exact ground truth (homography or relative pose).

Definitions follow the SuperPoint / SuperGlue papers: repeatability and match correctness at a
pixel threshold in the region both images see, homography corner error, relative pose error
max(angle(R), angle(t)) and the area under the cumulative error curve (AUC).
"""

from __future__ import annotations

import numpy as np

from ..homography import warp_points


def _inside(pts: np.ndarray, image_size) -> np.ndarray:
    """bool [N]: (x, y) within [0, w-1] x [0, h-1]."""
    w, h = image_size
    return (
        (pts[:, 0] >= 0)
        & (pts[:, 0] <= w - 1)
        & (pts[:, 1] >= 0)
        & (pts[:, 1] <= h - 1)
        & np.isfinite(pts).all(1)
    )


def _distances(pts0: np.ndarray, pts1: np.ndarray) -> np.ndarray:
    """Euclidean distances [N0,N1]."""
    if len(pts0) == 0 or len(pts1) == 0:
        return np.zeros((len(pts0), len(pts1)))
    return np.linalg.norm(pts0[:, None].astype(np.float64) - pts1[None].astype(np.float64), axis=-1)


def repeatability(kpts0, kpts1, H, image_size0, image_size1, threshold=3.0) -> float:
    """Fraction of keypoints in the shared region re-detected within `threshold` px.

    kpts0 [N0,2], kpts1 [N1,2]; H maps image0 -> image1 pixels. Keypoints of image0 whose warp
    falls outside image1 (and vice versa) are not counted. (c0 + c1) / (n0 + n1) as in
    SuperPoint; 0 when neither image has a keypoint in the shared region.
    """
    kpts0 = np.asarray(kpts0, np.float64).reshape(-1, 2)
    kpts1 = np.asarray(kpts1, np.float64).reshape(-1, 2)
    warped0 = warp_points(H, kpts0)
    warped1 = warp_points(np.linalg.inv(H), kpts1)
    shared0 = _inside(warped0, image_size1)
    shared1 = _inside(warped1, image_size0)
    n0, n1 = shared0.sum(), shared1.sum()
    if n0 + n1 == 0:
        return 0.0
    dist = _distances(warped0[shared0], kpts1[shared1])
    c0 = (dist.min(1) <= threshold).sum() if dist.size else 0
    c1 = (dist.min(0) <= threshold).sum() if dist.size else 0
    return float((c0 + c1) / (n0 + n1))


def ground_truth_matches(kpts0, kpts1, H, image_size1, threshold=3.0) -> np.ndarray:
    """int64 [N0]: GT match of each keypoint0 (mutual nearest within threshold) or -1."""
    kpts0 = np.asarray(kpts0, np.float64).reshape(-1, 2)
    kpts1 = np.asarray(kpts1, np.float64).reshape(-1, 2)
    gt = np.full(len(kpts0), -1, np.int64)
    if len(kpts0) == 0 or len(kpts1) == 0:
        return gt
    warped0 = warp_points(H, kpts0)
    dist = _distances(warped0, kpts1)
    dist[~_inside(warped0, image_size1)] = np.inf
    nn01, nn10 = dist.argmin(1), dist.argmin(0)
    ok = (nn10[nn01] == np.arange(len(kpts0))) & (dist[np.arange(len(kpts0)), nn01] <= threshold)
    gt[ok] = nn01[ok]
    return gt


def match_precision_recall(kpts0, kpts1, matches0, H, image_size1, threshold=3.0) -> dict:
    """Precision and recall of predicted matches under a known homography.

    matches0: int [N0] index into kpts1 or -1. A match is correct when the warped keypoint0
    lies within `threshold` px of its matched keypoint1. Precision = correct / predicted (nan
    without predictions); recall = predicted matches that equal the GT match (mutual nearest
    within threshold) / GT matches (nan without GT matches).
    """
    kpts0 = np.asarray(kpts0, np.float64).reshape(-1, 2)
    kpts1 = np.asarray(kpts1, np.float64).reshape(-1, 2)
    matches0 = np.asarray(matches0, np.int64).reshape(-1)
    idx0 = np.flatnonzero(matches0 >= 0)
    idx1 = matches0[idx0]
    errors = (
        np.linalg.norm(warp_points(H, kpts0[idx0]) - kpts1[idx1], axis=1)
        if len(idx0)
        else np.zeros(0)
    )
    correct = errors <= threshold
    gt = ground_truth_matches(kpts0, kpts1, H, image_size1, threshold)
    num_gt = int((gt >= 0).sum())
    hits = int(((gt >= 0) & (gt == matches0)).sum())
    return dict(
        precision=float(correct.mean()) if len(idx0) else float("nan"),
        recall=hits / num_gt if num_gt else float("nan"),
        num_matches=int(len(idx0)),
        num_correct=int(correct.sum()),
        num_gt=num_gt,
    )


def homography_corner_error(H_est, H_gt, image_size) -> float:
    """Mean distance (px) between the image0 corners warped by H_est and by H_gt; inf if
    H_est is None."""
    if H_est is None:
        return float("inf")
    w, h = image_size
    corners = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float64)
    error = np.linalg.norm(warp_points(H_est, corners) - warp_points(H_gt, corners), axis=1)
    error = error.mean()
    return float(error) if np.isfinite(error) else float("inf")


def angle_error_mat(R_est, R_gt) -> float:
    """Rotation angle (degrees) of R_est^T R_gt."""
    cos = (np.trace(np.asarray(R_est).T @ np.asarray(R_gt)) - 1) / 2
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def angle_error_vec(v_est, v_gt) -> float:
    """Angle (degrees) between two vectors; 180 when one is zero."""
    v_est, v_gt = (
        np.asarray(v_est, np.float64).reshape(-1),
        np.asarray(v_gt, np.float64).reshape(-1),
    )
    norm = np.linalg.norm(v_est) * np.linalg.norm(v_gt)
    if norm == 0:
        return 180.0
    return float(np.degrees(np.arccos(np.clip(v_est @ v_gt / norm, -1.0, 1.0))))


def relative_pose_error(T_0to1, R, t) -> tuple[float, float]:
    """(rotation error, translation direction error) in degrees against the 4x4 GT T_0to1.

    The translation of an essential matrix has no sign, so the error is min(e, 180 - e).
    """
    T_0to1 = np.asarray(T_0to1, np.float64).reshape(4, 4)
    if R is None or t is None:
        return 180.0, 180.0
    err_t = angle_error_vec(t, T_0to1[:3, 3])
    return angle_error_mat(R, T_0to1[:3, :3]), min(err_t, 180.0 - err_t)


def error_auc(errors, thresholds) -> list[float]:
    """Area under the cumulative error curve up to each threshold, normalised to [0, 1].

    The curve (error, fraction of pairs with error <= it) starts at (0, 0) and is linear
    between sorted errors; failures are inf (or nan) and only count in the denominator.
    """
    errors = np.nan_to_num(np.asarray(errors, np.float64).reshape(-1), nan=np.inf)
    if len(errors) == 0:
        return [0.0 for _ in thresholds]
    errors = np.sort(errors)
    recall = np.arange(1, len(errors) + 1) / len(errors)
    errors = np.r_[0.0, errors]
    recall = np.r_[0.0, recall]
    aucs = []
    for threshold in thresholds:
        last = np.searchsorted(errors, threshold, side="right")
        x = np.r_[errors[:last], threshold]
        y = np.r_[recall[:last], recall[last - 1]]
        aucs.append(float(np.trapezoid(y, x) / threshold))
    return aucs
