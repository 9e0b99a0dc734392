"""The relative pose of an essential-matrix fit in the form a SLAM back-end consumes.

Why: the verified model gives (R, t) with X_query = R X_reference + t and |t| = 1. A pose-graph
back-end wants the query camera's pose in the reference camera's frame and how much to trust it.
This module turns (R, t) into that pose (position, quaternion) and derives a 6x6 covariance from
the inliers: the Jacobian of their Sampson distances (normalised camera coordinates) with
respect to a perturbation of the pose, scaled by the residual variance of the fit (Gauss-Newton
approximation, Hartley & Zisserman ch. 5). Monocular scale is unobservable; the variance along
the direction of travel is set to UNKNOWN_SCALE_VARIANCE so a back-end never takes the unit
length of the translation for a measurement.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

# variance [unit^2] of the translation along its own direction: the length is not measured
UNKNOWN_SCALE_VARIANCE = 1e6
_STEP = 1e-6  # finite-difference step of the pose perturbation [rad, unit]


@dataclass
class RelativePose:
    """Pose of the query camera in the reference camera's optical frame.

    position: (3,) unit-norm camera centre of the query in the reference frame (-R^T t)
    quaternion: (4,) (x, y, z, w) rotation query frame -> reference frame (R^T)
    covariance: (6, 6) over (x, y, z, rotation about the reference frame's x, y, z axes), the
        ROS PoseWithCovariance order; UNKNOWN_SCALE_VARIANCE along the position's direction
    sigma: RMS Sampson distance of the inliers [normalised units, ~ pixels / focal length]
    """

    position: np.ndarray
    quaternion: np.ndarray
    covariance: np.ndarray
    sigma: float


def _skew(v) -> np.ndarray:
    return np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]], np.float64)


def sampson_distances(E, x0, x1) -> np.ndarray:
    """Signed first-order geometric errors [K] of x1^T E x0 = 0 for normalised points [K,2]."""
    h0 = np.c_[x0, np.ones(len(x0))]
    h1 = np.c_[x1, np.ones(len(x1))]
    Ex0 = h0 @ E.T
    Etx1 = h1 @ E
    numerator = np.sum(h1 * Ex0, axis=1)
    denominator = np.sqrt(Ex0[:, 0] ** 2 + Ex0[:, 1] ** 2 + Etx1[:, 0] ** 2 + Etx1[:, 1] ** 2)
    return numerator / np.maximum(denominator, 1e-12)


def _essential_of(rotation_rq, centre) -> np.ndarray:
    """E of the query pose (rotation query -> reference, centre in the reference frame)."""
    R = rotation_rq.T
    return _skew(-R @ centre) @ R


def relative_pose(R, t, x0, x1) -> RelativePose:
    """RelativePose of a fit X_1 = R X_0 + t (|t| = 1) from its inliers x0, x1 [K,2] (normalised
    camera coordinates of the reference and query images, undistorted; K >= 6)."""
    R, t = np.asarray(R, np.float64), np.asarray(t, np.float64).reshape(3)
    x0, x1 = np.asarray(x0, np.float64), np.asarray(x1, np.float64)
    if len(x0) < 6:
        raise ValueError(f"a pose covariance needs at least 6 inliers, got {len(x0)}")
    rotation_rq, centre = R.T, -R.T @ t
    residuals = sampson_distances(_essential_of(rotation_rq, centre), x0, x1)
    jacobian = np.empty((len(x0), 6))
    for k in range(6):  # central differences: position, then rotation about the parent axes
        delta = np.zeros(6)
        delta[k] = _STEP
        plus, minus = [], []
        for sign, out in ((1, plus), (-1, minus)):
            turn = Rotation.from_rotvec(sign * delta[3:]).as_matrix()
            out.append(
                sampson_distances(
                    _essential_of(turn @ rotation_rq, centre + sign * delta[:3]), x0, x1
                )
            )
        jacobian[:, k] = (plus[0] - minus[0]) / (2 * _STEP)
    dof = max(len(x0) - 5, 1)  # an essential matrix has 5 degrees of freedom
    variance = float(residuals @ residuals) / dof
    # The errors do not depend on the length of the translation: invert the information on the
    # 5 observable directions only (orthonormal basis B of the complement of that direction),
    # then give the length its documented variance.
    direction = np.r_[centre / np.linalg.norm(centre), np.zeros(3)]
    basis = np.linalg.svd(np.eye(6) - np.outer(direction, direction))[0][:, :5]
    information = (jacobian @ basis).T @ (jacobian @ basis) / max(variance, 1e-18)
    covariance = basis @ np.linalg.inv(information) @ basis.T
    covariance = 0.5 * (covariance + covariance.T) + UNKNOWN_SCALE_VARIANCE * np.outer(
        direction, direction
    )
    return RelativePose(
        centre, Rotation.from_matrix(rotation_rq).as_quat(), covariance, float(np.sqrt(variance))
    )
