"""relative_pose: the query camera's pose in the reference frame, and a covariance that predicts
the spread of real essential-matrix fits (Monte Carlo over noisy synthetic views)."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from superglue_ros.geometry import estimate_essential, normalize_points
from superglue_ros.relative_pose import UNKNOWN_SCALE_VARIANCE, relative_pose, sampson_distances

K = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
R_TRUE = Rotation.from_rotvec([0.02, -0.15, 0.03]).as_matrix()
T_TRUE = np.array([0.8, 0.1, 0.2]) / np.linalg.norm([0.8, 0.1, 0.2])


def project(points):
    uv = points @ K.T
    return uv[:, :2] / uv[:, 2:]


def views(rng, n=300, noise_px=0.0):
    """Pixels of n points seen by camera 0 (identity) and camera 1 (X1 = R X0 + t)."""
    X0 = np.c_[rng.uniform(-3, 3, (n, 2)), rng.uniform(4, 10, n)]
    X1 = X0 @ R_TRUE.T + T_TRUE
    p0, p1 = project(X0), project(X1)
    return p0 + rng.normal(0, noise_px, p0.shape), p1 + rng.normal(0, noise_px, p1.shape)


def test_pose_is_the_query_camera_in_the_reference_frame():
    p0, p1 = views(np.random.default_rng(0))
    pose = relative_pose(R_TRUE, T_TRUE, normalize_points(p0, K), normalize_points(p1, K))
    np.testing.assert_allclose(pose.position, -R_TRUE.T @ T_TRUE, atol=1e-12)
    np.testing.assert_allclose(
        Rotation.from_quat(pose.quaternion).as_matrix(), R_TRUE.T, atol=1e-12
    )
    assert pose.sigma < 1e-9  # exact correspondences: no residual
    E = (
        np.array(
            [[0, -T_TRUE[2], T_TRUE[1]], [T_TRUE[2], 0, -T_TRUE[0]], [-T_TRUE[1], T_TRUE[0], 0]]
        )
        @ R_TRUE
    )
    assert (
        np.abs(sampson_distances(E, normalize_points(p0, K), normalize_points(p1, K))).max() < 1e-12
    )
    with pytest.raises(ValueError, match="at least 6 inliers"):
        relative_pose(R_TRUE, T_TRUE, np.zeros((5, 2)), np.zeros((5, 2)))


def test_covariance_predicts_the_spread_of_fits():
    """40 fits on independently noisy views (1 px): the predicted rotation covariance (mean over
    the fits) agrees with the empirical one within a factor 2 in trace, and so does the
    translation direction's spread across the direction of travel; along it the variance is the
    documented 'unknown scale'."""
    rng = np.random.default_rng(1)
    rotation_errors, position_errors, predicted, predicted_across = [], [], [], []
    for _ in range(40):
        p0, p1 = views(rng, noise_px=1.0)
        E, inliers, R, t = estimate_essential(p0, p1, K, K, threshold_px=3.0)
        assert inliers.mean() > 0.95
        x0, x1 = normalize_points(p0[inliers], K), normalize_points(p1[inliers], K)
        pose = relative_pose(R, t, x0, x1)
        predicted.append(pose.covariance)
        # spread of the position across its own direction (along it: the unknown scale)
        own = np.eye(3) - np.outer(pose.position, pose.position)
        predicted_across.append(np.trace(own @ pose.covariance[:3, :3] @ own))
        # error as a perturbation of the truth in the reference frame (the covariance's axes)
        rotation_errors.append(Rotation.from_matrix(R.T @ R_TRUE).as_rotvec())
        position_errors.append(pose.position - (-R_TRUE.T @ T_TRUE))
        # Sampson distance: the 4-d noise (1 px in both images) projected on one direction,
        # ~ 1 px / 500 px focal length
        assert 1.5e-3 < pose.sigma < 2.5e-3, pose.sigma
    predicted = np.mean(predicted, axis=0)
    empirical_rotation = np.cov(np.array(rotation_errors).T)
    ratio = np.trace(predicted[3:, 3:]) / np.trace(empirical_rotation)
    assert 0.5 < ratio < 2.0, ratio
    direction = -R_TRUE.T @ T_TRUE
    across = np.eye(3) - np.outer(direction, direction)
    empirical_across = np.trace(across @ np.cov(np.array(position_errors).T) @ across)
    ratio = np.mean(predicted_across) / empirical_across
    assert 0.5 < ratio < 2.0, ratio
    assert pose.position @ pose.covariance[:3, :3] @ pose.position == pytest.approx(
        UNKNOWN_SCALE_VARIANCE, rel=1e-3
    )
    assert np.all(np.linalg.eigvalsh(pose.covariance) > 0)
