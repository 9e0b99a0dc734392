"""ROS messages <-> the front-end's plain values.

Incoming (re-exported from `conversions`): sensor_msgs Image / CompressedImage / CameraInfo ->
numpy. Outgoing: Correspondence / Keyframe / LoopVerification ->
superglue_ros_msgs, and a BGR/gray array -> sensor_msgs/Image for the debug view.
Array fields are filled through array.array so large point lists are copied in one go
instead of being validated element by element by the generated setters.
"""

from __future__ import annotations

import array

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, PoseWithCovariance, PoseWithCovarianceStamped, Quaternion
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from superglue_ros_msgs.msg import Correspondences, KeyframeFeatures, LoopResult

from .conversions import (  # noqa: F401 - re-exported for callers of the former home
    camera_info_to_K,
    camera_info_to_model,
    compressed_msg_to_array,
    image_msg_to_array,
)

MODEL_TYPES = {
    "none": Correspondences.MODEL_NONE,
    "essential": Correspondences.MODEL_ESSENTIAL,
    "fundamental": Correspondences.MODEL_FUNDAMENTAL,
    "homography": Correspondences.MODEL_HOMOGRAPHY,
}
KINDS = {"odometry": Correspondences.ODOMETRY, "loop_closure": Correspondences.LOOP_CLOSURE}
_NAN = float("nan")
LOOP_STATUSES = {
    "verified": LoopResult.VERIFIED,
    "rejected": LoopResult.REJECTED,
    "unknown_query": LoopResult.UNKNOWN_QUERY,
    "unknown_candidate": LoopResult.UNKNOWN_CANDIDATE,
    "evicted": LoopResult.EVICTED,
    "failed": LoopResult.FAILED,
    "busy": LoopResult.BUSY,
    "too_many_candidates": LoopResult.TOO_MANY_CANDIDATES,
    "self_loop": LoopResult.SELF_LOOP,
    "too_close": LoopResult.TOO_CLOSE,
}


# ------------------------------------------------------------------------------------------
# time
# ------------------------------------------------------------------------------------------


def stamp_to_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(ns: int) -> Time:
    return Time(sec=int(ns) // 1_000_000_000, nanosec=int(ns) % 1_000_000_000)


def make_header(stamp_ns: int, frame_id: str) -> Header:
    return Header(stamp=ns_to_stamp(stamp_ns), frame_id=frame_id)


# ------------------------------------------------------------------------------------------
# incoming
# ------------------------------------------------------------------------------------------

# image_msg_to_array, compressed_msg_to_array, camera_info_to_K, camera_info_to_model:
# ros/conversions.py (imported above)


# ------------------------------------------------------------------------------------------
# outgoing
# ------------------------------------------------------------------------------------------


def _f32(values) -> array.array:
    out = array.array("f")
    out.frombytes(np.ascontiguousarray(values, np.float32).tobytes())
    return out


def _u32(values) -> array.array:
    out = array.array("I")
    assert out.itemsize == 4
    out.frombytes(np.ascontiguousarray(values, np.uint32).tobytes())
    return out


def array_to_image_msg(image: np.ndarray, stamp_ns: int, frame_id: str) -> Image:
    """uint8 gray [H,W] (mono8) or BGR [H,W,3] (bgr8) -> sensor_msgs/Image."""
    image = np.ascontiguousarray(image, np.uint8)
    msg = Image(header=make_header(stamp_ns, frame_id), height=image.shape[0], width=image.shape[1])
    msg.encoding = "mono8" if image.ndim == 2 else "bgr8"
    msg.is_bigendian = 0
    msg.step = image.shape[1] * (1 if image.ndim == 2 else image.shape[2])
    msg.data = image.tobytes()
    return msg


def pose_to_msg(pose, out: PoseWithCovariance | None = None) -> PoseWithCovariance:
    """relative_pose.RelativePose (or None = no pose) -> geometry_msgs/PoseWithCovariance; no
    pose gives NaN everywhere, so it can never be taken for the identity."""
    out = PoseWithCovariance() if out is None else out
    if pose is None:
        position, quaternion, covariance = [_NAN] * 3, [_NAN] * 4, [_NAN] * 36
    else:
        position, quaternion = pose.position.tolist(), pose.quaternion.tolist()
        covariance = np.asarray(pose.covariance, np.float64).reshape(36)
    out.pose.position = Point(x=position[0], y=position[1], z=position[2])
    out.pose.orientation = Quaternion(
        x=quaternion[0], y=quaternion[1], z=quaternion[2], w=quaternion[3]
    )
    out.covariance = covariance
    return out


def relative_pose_msg(msg: Correspondences) -> PoseWithCovarianceStamped:
    """The `relative_pose` topic's message of a Correspondences with pose_valid: stamp of the
    query image, frame_id of the reference keyframe's camera (parent frame of the pose)."""
    return PoseWithCovarianceStamped(
        header=Header(stamp=msg.header.stamp, frame_id=msg.reference_frame_id), pose=msg.pose
    )


def correspondence_to_msg(
    corr,
    *,
    extractor: str = "",
    matcher: str = "",
    query_size: tuple[int, int] | None = None,
    reference_size: tuple[int, int] | None = None,
    query_is_keyframe: bool = False,
    reference_frame_id: str = "",
    session_id: str = "",
) -> Correspondences:
    """frontend.Correspondence -> superglue_ros_msgs/Correspondences (points in original px).

    Image sizes default to the correspondence's own (query_image_size, reference_image_size).
    """
    query_size = query_size or getattr(corr, "query_image_size", None) or (0, 0)
    reference_size = reference_size or getattr(corr, "reference_image_size", None) or (0, 0)
    msg = Correspondences()
    msg.header = make_header(corr.query_stamp_ns, corr.frame_id)
    msg.kind = KINDS[corr.kind]
    msg.session_id = session_id
    msg.query_id = int(corr.query_id)
    msg.reference_id = int(corr.reference_id)
    msg.reference_stamp = ns_to_stamp(corr.reference_stamp_ns)
    msg.reference_frame_id = getattr(corr, "reference_frame_id", None) or reference_frame_id
    msg.query_is_keyframe = bool(getattr(corr, "query_is_keyframe", query_is_keyframe))
    msg.query_width, msg.query_height = (int(v) for v in query_size)
    msg.reference_width, msg.reference_height = (int(v) for v in reference_size)
    msg.num_query_keypoints = int(corr.num_keypoints_query)
    msg.num_reference_keypoints = int(corr.num_keypoints_reference)
    msg.query_points = _f32(np.reshape(corr.query_points, -1))
    msg.reference_points = _f32(np.reshape(corr.reference_points, -1))
    for name, field in (
        ("query_indices", "query_keypoint_indices"),
        ("reference_indices", "reference_keypoint_indices"),
    ):
        indices = getattr(corr, name, None)
        if indices is not None:
            setattr(msg, field, _u32(indices))
    msg.scores = _f32(corr.scores)
    inliers = np.asarray(corr.inliers, bool).reshape(-1)
    msg.inliers = inliers.tolist()
    msg.num_inliers = int(inliers.sum())
    model = corr.model
    kind = getattr(model, "kind", "none") if model is not None else "none"
    msg.model_type = MODEL_TYPES.get(kind, Correspondences.MODEL_NONE)
    if msg.model_type != Correspondences.MODEL_NONE and model.matrix is not None:
        msg.model = np.asarray(model.matrix, np.float64).reshape(9)
    pose = getattr(corr, "pose", None)
    if pose is not None and model is not None and getattr(model, "R", None) is not None:
        msg.pose_valid = True
        msg.rotation = np.asarray(model.R, np.float64).reshape(9)
        msg.translation = np.asarray(model.t, np.float64).reshape(3)
    else:
        pose = None
        msg.rotation, msg.translation = [_NAN] * 9, [_NAN] * 3
    pose_to_msg(pose, msg.pose)
    msg.processing_time = float(corr.processing_time_s)
    msg.extractor = extractor
    msg.matcher = matcher
    return msg


def keyframe_to_msg(kf, extractor: str = "", session_id: str = "") -> KeyframeFeatures:
    """frontend.Keyframe -> superglue_ros_msgs/KeyframeFeatures (keypoints in original px)."""
    feats = kf.features
    msg = KeyframeFeatures(
        header=make_header(kf.stamp_ns, kf.frame_id), id=int(kf.id), session_id=session_id
    )
    msg.width, msg.height = (int(v) for v in kf.image_size)
    msg.keypoints = _f32(np.reshape(feats.keypoints, -1))
    msg.scores = _f32(feats.scores)
    desc = np.asarray(feats.descriptors)
    msg.descriptor_dim = int(desc.shape[1]) if desc.ndim == 2 else 0
    msg.descriptors = _f32(desc.reshape(-1))  # uint8 ORB bytes become 0..255 floats
    if kf.global_descriptor is not None:
        msg.global_descriptor = _f32(np.reshape(kf.global_descriptor, -1))
    msg.extractor = extractor
    return msg


def loop_result_to_msg(result, correspondences: Correspondences | None = None) -> LoopResult:
    """frontend.LoopVerification -> superglue_ros_msgs/LoopResult with a readable reason."""
    msg = LoopResult(candidate_id=int(result.candidate_id))
    msg.status = LOOP_STATUSES.get(result.status, LoopResult.FAILED)
    text = getattr(result, "message", "") or ""
    if not text:
        text = {
            "unknown_query": "query keyframe id was never seen",
            "unknown_candidate": "candidate keyframe id was never seen",
            "evicted": "keyframe was evicted from the bounded cache",
        }.get(result.status, "")
        if result.correspondence is not None:
            n = int(np.count_nonzero(result.correspondence.inliers))
            text = f"{n} inliers of {len(result.correspondence.scores)} matches"
    msg.message = text
    if correspondences is not None:
        msg.correspondences = correspondences
    return msg
