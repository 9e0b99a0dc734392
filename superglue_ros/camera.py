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
from typing import Callable

import cv2
import numpy as np

DISTORTION_MODELS = ("none", "plumb_bob", "rational_polynomial", "equidistant")
# coefficient counts accepted per model (OpenCV takes 4, 5 or 8 for the polynomial models)
_COEFFICIENTS = {
    "none": (0,),
    "plumb_bob": (4, 5),
    "rational_polynomial": (8,),
    "equidistant": (4,),
}
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
    distortion_model: str = "none"
    image_size: tuple[int, int] = (0, 0)

    def __post_init__(self):
        problem = validate_intrinsics(self.K)
        if problem:
            raise CameraModelError(problem)
        if self.distortion_model not in DISTORTION_MODELS:
            raise CameraModelError(
                f"unsupported distortion model '{self.distortion_model}' "
                f"(supported: {', '.join(DISTORTION_MODELS)})"
            )
        D = np.asarray(self.D, np.float64).reshape(-1)
        if not np.all(np.isfinite(D)):
            raise CameraModelError("distortion coefficients contain NaN or inf")
        if self.distortion_model != "none" and D.size not in _COEFFICIENTS[self.distortion_model]:
            raise CameraModelError(
                f"distortion model '{self.distortion_model}' takes "
                f"{' or '.join(map(str, _COEFFICIENTS[self.distortion_model]))} coefficients, "
                f"got {D.size}"
            )
        object.__setattr__(self, "K", np.asarray(self.K, np.float64).copy())
        object.__setattr__(self, "D", D.copy())
        object.__setattr__(self, "image_size", tuple(int(v) for v in self.image_size))

    @classmethod
    def pinhole(cls, K, image_size: tuple[int, int] = (0, 0)) -> "CameraModel":
        """A distortion-free camera (rectified images, or K alone)."""
        return cls(np.asarray(K, np.float64), np.zeros(0), "none", image_size)

    @property
    def is_distorted(self) -> bool:
        return self.distortion_model != "none" and bool(np.any(self.D != 0))

    def undistort(self, points) -> np.ndarray:
        """Observed pixels [N,2] -> pixels of the ideal pinhole camera with the same K [N,2]
        (float64). Without distortion the points come back unchanged (a copy)."""
        pts = np.asarray(points, np.float64).reshape(-1, 2)
        if not self.is_distorted or len(pts) == 0:
            return pts.copy()
        src = np.ascontiguousarray(pts[:, None, :])
        if self.distortion_model == "equidistant":
            out = cv2.fisheye.undistortPoints(
                src, self.K, self.D, R=np.eye(3), P=self.K, criteria=_CRITERIA
            )
        else:
            out = cv2.undistortPoints(
                src, self.K, self.D, R=np.eye(3), P=self.K, criteria=_CRITERIA
            )
        return out.reshape(-1, 2).astype(np.float64)

    def distort(self, points) -> np.ndarray:
        """Ideal pinhole pixels [N,2] -> observed pixels [N,2] (the inverse of ``undistort``)."""
        pts = np.asarray(points, np.float64).reshape(-1, 2)
        if not self.is_distorted or len(pts) == 0:
            return pts.copy()
        rays = np.c_[pts, np.ones(len(pts))] @ np.linalg.inv(self.K).T
        if self.distortion_model == "equidistant":
            out = cv2.fisheye.distortPoints(np.ascontiguousarray(rays[:, None, :2]), self.K, self.D)
        else:
            out, _ = cv2.projectPoints(rays, np.zeros(3), np.zeros(3), self.K, self.D)
        return out.reshape(-1, 2).astype(np.float64)

    @property
    def nbytes(self) -> int:
        return int(self.K.nbytes + self.D.nbytes)


# ------------------------------------------------------------------------------------------
# calibration fields (as in sensor_msgs/CameraInfo and rosbag readers) -> CameraModel
# ------------------------------------------------------------------------------------------


def camera_matrix(
    k,
    width: int = 0,
    height: int = 0,
    image_size: tuple[int, int] | None = None,
    warn: Callable[[str], None] | None = None,
) -> np.ndarray | None:
    """CameraInfo.k (9 values, row-major) -> K [3,3] float64, or None when unusable.

    Unusable: non-finite values, zero/negative focal length (an uncalibrated camera
    publishes all zeros), or a calibration size that differs from the image's (w, h).
    Each case is reported through `warn`; the caller then matches without intrinsics.
    """
    K = np.asarray(k, dtype=np.float64).reshape(-1)
    if K.size != 9:
        _warn(warn, f"camera_info K has {K.size} values, expected 9: ignored")
        return None
    K = K.reshape(3, 3)
    if not np.all(np.isfinite(K)):
        _warn(warn, "camera_info K has NaN/inf values: ignored")
        return None
    fx, fy = K[0, 0], K[1, 1]
    if fx <= 0 or fy <= 0:
        _warn(
            warn,
            f"camera_info has zero or negative focal length (fx={fx:g}, fy={fy:g}): "
            "K ignored, matching without intrinsics",
        )
        return None
    if image_size is not None and width > 0 and height > 0 and (width, height) != tuple(image_size):
        _warn(
            warn,
            f"camera_info size {width}x{height} differs from image size "
            f"{image_size[0]}x{image_size[1]}: K ignored",
        )
        return None
    return K


def camera_model(
    k,
    d,
    p,
    distortion_model: str,
    width: int = 0,
    height: int = 0,
    image_size: tuple[int, int] | None = None,
    rectified: bool = False,
    warn: Callable[[str], None] | None = None,
) -> CameraModel | None:
    """CameraInfo fields (k: 9 values, d: N, p: 12, distortion_model, width, height) ->
    CameraModel, or None when unusable (reason sent to `warn`; the caller then matches
    without intrinsics).

    rectified=False: the images are the camera's raw ones: K with the distortion D.
    rectified=True: the images are rectified (image_rect): the pinhole P[:, :3], no distortion
    (the ROS convention for rectified images; P's 4th column, a stereo baseline, is not needed
    for two views of one camera).
    An all-zero D (or an empty one) is a pinhole camera whatever distortion_model says.
    """
    if rectified:
        P = np.asarray(p, dtype=np.float64).reshape(-1)
        if P.size != 12:
            _warn(
                warn, f"camera_info P has {P.size} values, expected 12 (rectified_input): ignored"
            )
            return None
        K = camera_matrix(
            P.reshape(3, 4)[:, :3].reshape(9), width, height, image_size, _prefixed(warn, "P: ")
        )
        return None if K is None else CameraModel.pinhole(K, _size(width, height))
    K = camera_matrix(k, width, height, image_size, warn)
    if K is None:
        return None
    D = np.asarray(d, dtype=np.float64).reshape(-1)
    model = distortion_model.strip().lower()
    if D.size == 0 or (np.all(np.isfinite(D)) and not np.any(D)):
        return CameraModel.pinhole(K, _size(width, height))
    try:
        return CameraModel(K, D, model, _size(width, height))
    except CameraModelError as error:
        _warn(
            warn,
            f"camera_info distortion ({distortion_model!r}, {D.size} coefficients) "
            f"unusable: {error}; camera_info ignored, matching without intrinsics",
        )
        return None


def _size(width: int, height: int) -> tuple[int, int]:
    return (int(width), int(height)) if width > 0 and height > 0 else (0, 0)


def _prefixed(warn, prefix: str):
    return None if warn is None else (lambda text: warn(prefix + text))


def _warn(warn, text: str) -> None:
    if warn is not None:
        warn(text)
