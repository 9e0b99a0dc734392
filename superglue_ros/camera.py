"""Camera model for the geometry: pinhole intrinsics plus lens distortion, without ROS.

Keypoints and published points stay in the pixels of the image as it was received; only the
two-view geometry needs ideal pinhole coordinates, because an essential matrix relates
undistorted rays. ``CameraModel.undistort`` maps observed pixels to the pixels an ideal
pinhole camera with the same K would have seen, so thresholds stay in pixels and the
estimators take K unchanged.

Distortion models (names and coefficient order as in sensor_msgs/CameraInfo):
  'none'                 no distortion (also: all coefficients zero, or rectified images)
  'plumb_bob'            radial-tangential (k1, k2, p1, p2[, k3]); EuRoC's 'radial-tangential'
  'rational_polynomial'  (k1, k2, p1, p2, k3, k4, k5, k6)
  'equidistant'          fisheye (k1, k2, k3, k4), OpenCV's cv2.fisheye model
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

DISTORTION_MODELS = ('none', 'plumb_bob', 'rational_polynomial', 'equidistant')
# coefficient counts accepted per model (OpenCV takes 4, 5 or 8 for the polynomial models)
_COEFFICIENTS = {'none': (0,), 'plumb_bob': (4, 5), 'rational_polynomial': (8,),
                 'equidistant': (4,)}
# The iterative inversion stops at 1e-12 change or 100 iterations: OpenCV's default (5
# iterations) leaves errors of pixels at the corners of strongly distorted lenses (EuRoC).
_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)


class CameraModelError(ValueError):
    """Intrinsics or distortion that cannot describe a camera; the message says why."""


def validate_intrinsics(K) -> str | None:
    """Why ``K`` is unusable (None when it is a valid 3x3 pinhole matrix)."""
    try:
        K = np.asarray(K, dtype=np.float64)
    except (TypeError, ValueError) as err:
        return f"K is not numeric: {err}"
    if K.shape != (3, 3):
        return f"K must be 3x3, got shape {K.shape}"
    if not np.all(np.isfinite(K)):
        return "K contains NaN or inf"
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        return f"K has non-positive focal length (fx={K[0, 0]}, fy={K[1, 1]})"
    if abs(K[2, 2] - 1.0) > 1e-6 or np.any(K[2, :2] != 0):
        return "K's last row must be [0, 0, 1]"
    return None


@dataclass(frozen=True)
class CameraModel:
    """K [3,3] (pixels of the image as received), D (coefficients of ``distortion_model``),
    and the image size (w, h) the calibration is for ((0, 0) = unknown)."""

    K: np.ndarray
    D: np.ndarray = field(default_factory=lambda: np.zeros(0))
    distortion_model: str = 'none'
    image_size: tuple[int, int] = (0, 0)

    def __post_init__(self):
        problem = validate_intrinsics(self.K)
        if problem:
            raise CameraModelError(problem)
        if self.distortion_model not in DISTORTION_MODELS:
            raise CameraModelError(f"unsupported distortion model '{self.distortion_model}' "
                                   f"(supported: {', '.join(DISTORTION_MODELS)})")
        D = np.asarray(self.D, np.float64).reshape(-1)
        if not np.all(np.isfinite(D)):
            raise CameraModelError('distortion coefficients contain NaN or inf')
        if self.distortion_model != 'none' and D.size not in _COEFFICIENTS[self.distortion_model]:
            raise CameraModelError(
                f"distortion model '{self.distortion_model}' takes "
                f"{' or '.join(map(str, _COEFFICIENTS[self.distortion_model]))} coefficients, "
                f'got {D.size}')
        object.__setattr__(self, 'K', np.asarray(self.K, np.float64).copy())
        object.__setattr__(self, 'D', D.copy())
        object.__setattr__(self, 'image_size', tuple(int(v) for v in self.image_size))

    @classmethod
    def pinhole(cls, K, image_size: tuple[int, int] = (0, 0)) -> 'CameraModel':
        """A distortion-free camera (rectified images, or K alone)."""
        return cls(np.asarray(K, np.float64), np.zeros(0), 'none', image_size)

    @property
    def is_distorted(self) -> bool:
        return self.distortion_model != 'none' and bool(np.any(self.D != 0))

    def undistort(self, points) -> np.ndarray:
        """Observed pixels [N,2] -> pixels of the ideal pinhole camera with the same K [N,2]
        (float64). Without distortion the points come back unchanged (a copy)."""
        pts = np.asarray(points, np.float64).reshape(-1, 2)
        if not self.is_distorted or len(pts) == 0:
            return pts.copy()
        src = np.ascontiguousarray(pts[:, None, :])
        if self.distortion_model == 'equidistant':
            out = cv2.fisheye.undistortPoints(src, self.K, self.D, R=np.eye(3), P=self.K,
                                              criteria=_CRITERIA)
        else:
            out = cv2.undistortPoints(src, self.K, self.D, R=np.eye(3), P=self.K,
                                      criteria=_CRITERIA)
        return out.reshape(-1, 2).astype(np.float64)

    def distort(self, points) -> np.ndarray:
        """Ideal pinhole pixels [N,2] -> observed pixels [N,2] (the inverse of ``undistort``)."""
        pts = np.asarray(points, np.float64).reshape(-1, 2)
        if not self.is_distorted or len(pts) == 0:
            return pts.copy()
        rays = np.c_[pts, np.ones(len(pts))] @ np.linalg.inv(self.K).T
        if self.distortion_model == 'equidistant':
            out = cv2.fisheye.distortPoints(np.ascontiguousarray(rays[:, None, :2]), self.K, self.D)
        else:
            out, _ = cv2.projectPoints(rays, np.zeros(3), np.zeros(3), self.K, self.D)
        return out.reshape(-1, 2).astype(np.float64)

    @property
    def nbytes(self) -> int:
        return int(self.K.nbytes + self.D.nbytes)
