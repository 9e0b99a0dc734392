"""sensor_msgs Image / CompressedImage / CameraInfo messages -> arrays and CameraModel.

Only the unpacking of messages lives here: the decoding of camera bytes, the dtype/range
handling and the checks are the core's (``superglue_ros.images``; calibration fields ->
CameraModel in ``superglue_ros.camera``), shared with ``superglue-offline`` and the benchmark.
Messages are read by attribute only (no ROS import), so rosbags' deserialised messages work too.
cv_bridge decodes the common 8-bit encodings when it is importable.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..camera import CameraModel, camera_matrix, camera_model

# ImageConversionError and check_compressed are the node's names for the core's
from ..images import (
    DEFAULT_MAX_PIXELS,
    ImageConversionError,
    check_compressed,  # noqa: F401
    compressed_to_array,
    image_to_array,
)

try:  # cv_bridge is optional: ROS installs ship it, the PyPI wheels do not
    from cv_bridge import CvBridge

    _BRIDGE = CvBridge()
except Exception:  # noqa: BLE001 - any import/initialisation failure means "not available"
    _BRIDGE = None

_CV_BRIDGE_ENCODINGS = {"mono8", "bgr8", "rgb8", "bgra8", "rgba8"}


def image_msg_to_array(
    msg,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    mono16_scaling: str = "range",
    warn: Callable[[str], None] | None = None,
) -> np.ndarray:
    """sensor_msgs/Image -> uint8 gray [H,W] or BGR [H,W,3]; ImageConversionError if unusable."""
    if _BRIDGE is not None and msg.encoding in _CV_BRIDGE_ENCODINGS:
        if msg.height * msg.width > max_pixels or msg.height == 0 or msg.width == 0:
            # same size checks as the numpy path, before cv_bridge allocates anything
            image_to_array(
                msg.encoding, msg.height, msg.width, msg.step, b"", max_pixels=max_pixels
            )
        try:
            desired = "mono8" if msg.encoding == "mono8" else "bgr8"
            return np.ascontiguousarray(_BRIDGE.imgmsg_to_cv2(msg, desired_encoding=desired)).copy()
        except Exception as error:  # noqa: BLE001 - cv_bridge raises its own error types
            raise ImageConversionError(f"cv_bridge: {error}") from error
    return image_to_array(
        msg.encoding,
        msg.height,
        msg.width,
        msg.step,
        msg.data,
        bool(msg.is_bigendian),
        max_pixels=max_pixels,
        mono16_scaling=mono16_scaling,
        warn=warn,
    )


def compressed_msg_to_array(
    msg, *, max_pixels: int = DEFAULT_MAX_PIXELS, mono16_scaling: str = "range"
) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg/png) -> uint8 gray [H,W] or BGR [H,W,3]."""
    return compressed_to_array(
        msg.format, msg.data, max_pixels=max_pixels, mono16_scaling=mono16_scaling
    )


def camera_info_to_K(
    msg, image_size: tuple[int, int] | None = None, warn: Callable[[str], None] | None = None
) -> np.ndarray | None:
    """sensor_msgs/CameraInfo -> K [3,3] in original pixels, or None (reason sent to `warn`)."""
    return camera_matrix(msg.k, int(msg.width), int(msg.height), image_size, warn)


def camera_info_to_model(
    msg,
    image_size: tuple[int, int] | None = None,
    rectified: bool = False,
    warn: Callable[[str], None] | None = None,
) -> CameraModel | None:
    """sensor_msgs/CameraInfo -> CameraModel (K + distortion, or P for rectified images), or
    None (reason sent to `warn`)."""
    return camera_model(
        msg.k,
        msg.d,
        msg.p,
        msg.distortion_model,
        int(msg.width),
        int(msg.height),
        image_size,
        rectified,
        warn,
    )
