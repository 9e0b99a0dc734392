"""Measure OpenCV's robust estimators (and poselib when installed) on synthetic two-view data.

Known models, Gaussian pixel noise and uniform outliers give exact errors, which is how the
default estimator of superglue_ros.geometry was chosen. Run:
    python -m superglue_ros.evaluation.robust_estimators [--trials 100]
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from .. import geometry
from .metrics import angle_error_mat, angle_error_vec, homography_corner_error

WIDTH, HEIGHT = 640, 480
K = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])


def synthetic_two_view(rng, num_points=300, outlier_ratio=0.4, noise_px=1.0):
    """Random rigid motion and a 3D point cloud -> (pts0, pts1 [K,2], is_inlier, R, t)."""
    angle = np.radians(rng.uniform(5, 25))
    axis = rng.normal(size=3)
    R, _ = cv2.Rodrigues(axis / np.linalg.norm(axis) * angle)
    t = rng.normal(size=3)
    t /= np.linalg.norm(t)
    pts0, pts1 = [], []
    while len(pts0) < num_points:
        X = rng.uniform([-3, -3, 5], [3, 3, 12], (4 * num_points, 3))
        X1 = X @ R.T + t
        x0 = X @ K.T
        x1 = X1 @ K.T
        ok = X1[:, 2] > 0.1
        x0, x1 = x0[:, :2] / x0[:, 2:], x1[:, :2] / x1[:, 2:]
        for x in (x0, x1):
            ok &= (x[:, 0] >= 0) & (x[:, 0] < WIDTH) & (x[:, 1] >= 0) & (x[:, 1] < HEIGHT)
        pts0.extend(x0[ok])
        pts1.extend(x1[ok])
    pts0 = np.array(pts0[:num_points]) + rng.normal(0, noise_px, (num_points, 2))
    pts1 = np.array(pts1[:num_points]) + rng.normal(0, noise_px, (num_points, 2))
    is_inlier = rng.random(num_points) >= outlier_ratio
    pts1[~is_inlier] = rng.uniform([0, 0], [WIDTH, HEIGHT], ((~is_inlier).sum(), 2))
    return pts0, pts1, is_inlier, R, t


def synthetic_homography(rng, num_points=300, outlier_ratio=0.4, noise_px=1.0):
    """Random homography (corners moved by up to 25% of the size) -> (pts0, pts1, inl, H)."""
    corners = np.array([[0, 0], [WIDTH, 0], [WIDTH, HEIGHT], [0, HEIGHT]], np.float64)
    moved = corners + rng.uniform(-0.25, 0.25, (4, 2)) * [WIDTH, HEIGHT]
    H = cv2.getPerspectiveTransform(corners.astype(np.float32), moved.astype(np.float32))
    pts0 = rng.uniform([0, 0], [WIDTH, HEIGHT], (num_points, 2))
    proj = np.c_[pts0, np.ones(num_points)] @ H.T
    pts1 = proj[:, :2] / proj[:, 2:] + rng.normal(0, noise_px, (num_points, 2))
    pts0 = pts0 + rng.normal(0, noise_px, (num_points, 2))
    is_inlier = rng.random(num_points) >= outlier_ratio
    pts1[~is_inlier] = rng.uniform([0, 0], [WIDTH, HEIGHT], ((~is_inlier).sum(), 2))
    return pts0, pts1, is_inlier, H


def _f1(pred, true) -> float:
    tp = (pred & true).sum()
    return 2 * tp / max(pred.sum() + true.sum(), 1)


def measure(trials=100, outlier_ratio=0.4, noise_px=1.0, threshold_px=2.0, seed=0):
    """dict estimator -> dict of median/mean errors, inlier F1 and ms per call."""
    names = ["magsac", "accurate", "usac", "ransac"]
    try:
        import poselib  # noqa: F401

        names.append("poselib")
    except ImportError:
        pass
    rows = {}
    for name in names:
        rng = np.random.default_rng(seed)
        err_pose, f1_e, time_e, err_h, f1_h, time_h = [], [], [], [], [], []
        for _ in range(trials):
            pts0, pts1, inl, R, t = synthetic_two_view(
                rng, outlier_ratio=outlier_ratio, noise_px=noise_px
            )
            start = time.perf_counter()
            model = geometry.verify(pts0, pts1, K, K, threshold_px=threshold_px, estimator=name)
            R_est, t_est, mask = model.R, model.t, model.inliers
            time_e.append(time.perf_counter() - start)
            if R_est is None:
                err_pose.append(180.0)
            else:
                err_pose.append(max(angle_error_mat(R_est, R), angle_error_vec(t_est, t)))
            f1_e.append(_f1(mask, inl))
            pts0, pts1, inl, H = synthetic_homography(
                rng, outlier_ratio=outlier_ratio, noise_px=noise_px
            )
            start = time.perf_counter()
            H_est, mask = geometry.estimate_homography(pts0, pts1, threshold_px, name)
            time_h.append(time.perf_counter() - start)
            err_h.append(
                np.inf if H_est is None else homography_corner_error(H_est, H, (WIDTH, HEIGHT))
            )
            f1_h.append(_f1(mask, inl))
        rows[name] = dict(
            pose_err_median_deg=float(np.median(err_pose)),
            pose_err_mean_deg=float(np.mean(err_pose)),
            E_inlier_f1=float(np.mean(f1_e)),
            E_ms=1000 * float(np.mean(time_e)),
            H_corner_err_median_px=float(np.median(err_h)),
            H_corner_err_mean_px=float(np.mean(err_h)),
            H_inlier_f1=float(np.mean(f1_h)),
            H_ms=1000 * float(np.mean(time_h)),
        )
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--outlier_ratio", type=float, nargs="+", default=[0.4, 0.7])
    parser.add_argument("--noise_px", type=float, default=1.0)
    parser.add_argument("--threshold_px", type=float, default=2.0)
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    for ratio in args.outlier_ratio:
        rows = measure(args.trials, ratio, args.noise_px, args.threshold_px)
        print(
            f"\noutliers {ratio:.0%}, noise {args.noise_px} px, threshold "
            f"{args.threshold_px} px, {args.trials} trials"
        )
        keys = list(next(iter(rows.values())))
        print(f"{'estimator':10s}" + "".join(f"{k:>24s}" for k in keys))
        for name, row in rows.items():
            print(f"{name:10s}" + "".join(f"{row[k]:24.3f}" for k in keys))


if __name__ == "__main__":
    main()
