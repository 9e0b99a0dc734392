"""Front-end values -> superglue_ros_msgs, field by field with exact values."""

import numpy as np
from superglue_ros_msgs.msg import Correspondences, LoopResult

from superglue_ros.feature_types import Features
from superglue_ros.frontend.keyframes import Keyframe
from superglue_ros.frontend.pipeline import Correspondence, LoopVerification
from superglue_ros.geometry import GeometricModel
from superglue_ros.relative_pose import RelativePose
from superglue_ros.images import image_to_array
from superglue_ros.ros.messages import (
    array_to_image_msg,
    correspondence_to_msg,
    keyframe_to_msg,
    loop_result_to_msg,
    ns_to_stamp,
    relative_pose_msg,
    stamp_to_ns,
)


def make_correspondence(kind="odometry", model_kind="essential"):
    R = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    t = np.array([0.6, 0.0, 0.8])
    # query camera in the reference frame: centre -R^T t, orientation R^T (a -90 deg turn about z)
    pose = RelativePose(
        np.array([0.0, 0.6, -0.8]),
        np.array([0.0, 0.0, -np.sqrt(0.5), np.sqrt(0.5)]),
        np.diag([1e6, 2.0, 3.0, 4.0, 5.0, 6.0]),
        1e-3,
    )
    model = GeometricModel(
        model_kind,
        np.arange(9.0).reshape(3, 3),
        np.array([True, False, True]),
        R if model_kind == "essential" else None,
        t if model_kind == "essential" else None,
    )
    return Correspondence(
        kind=kind,
        query_id=12,
        reference_id=3,
        query_stamp_ns=5_000_000_123,
        reference_stamp_ns=4_000_000_456,
        frame_id="cam_optical",
        query_points=np.array([[1.5, 2.5], [3.0, 4.0], [639.0, 479.0]], np.float32),
        reference_points=np.array([[1.0, 2.0], [3.5, 4.5], [0.0, 0.0]], np.float32),
        scores=np.array([0.9, 0.5, 0.25], np.float32),
        inliers=np.array([True, False, True]),
        model=model,
        num_keypoints_query=100,
        num_keypoints_reference=90,
        processing_time_s=0.125,
        query_indices=np.array([7, 8, 9]),
        reference_indices=np.array([0, 1, 2]),
        query_is_keyframe=kind == "loop_closure",
        reference_frame_id="cam_optical",
        query_image_size=(640, 480),
        reference_image_size=(640, 480),
        pose=pose if model_kind == "essential" else None,
    )


def test_stamp_round_trip():
    for ns in (0, 1, 999_999_999, 1_000_000_000, 1_795_310_000_123_456_789):
        assert stamp_to_ns(ns_to_stamp(ns)) == ns


def test_correspondence_fields_exact():
    msg = correspondence_to_msg(
        make_correspondence(), extractor="superpoint", matcher="superglue", session_id="run-1"
    )
    assert Correspondences().kind == Correspondences.UNKNOWN == 0  # an unfilled kind is no odometry
    assert msg.session_id == "run-1"
    assert msg.kind == Correspondences.ODOMETRY and (msg.query_id, msg.reference_id) == (12, 3)
    assert stamp_to_ns(msg.header.stamp) == 5_000_000_123 and msg.header.frame_id == "cam_optical"
    assert (
        stamp_to_ns(msg.reference_stamp) == 4_000_000_456
        and msg.reference_frame_id == "cam_optical"
    )
    assert (msg.query_width, msg.query_height, msg.reference_width, msg.reference_height) == (
        640,
        480,
        640,
        480,
    )
    assert list(msg.query_points) == [1.5, 2.5, 3.0, 4.0, 639.0, 479.0]
    assert list(msg.reference_points) == [1.0, 2.0, 3.5, 4.5, 0.0, 0.0]
    assert list(msg.query_keypoint_indices) == [7, 8, 9] and list(
        msg.reference_keypoint_indices
    ) == [0, 1, 2]
    assert list(msg.scores) == [np.float32(0.9), 0.5, 0.25]
    assert list(msg.inliers) == [True, False, True] and msg.num_inliers == 2
    assert msg.model_type == Correspondences.MODEL_ESSENTIAL and list(msg.model) == list(range(9))
    assert msg.pose_valid and list(msg.rotation) == [0, -1, 0, 1, 0, 0, 0, 0, 1]
    assert list(msg.translation) == [0.6, 0.0, 0.8]
    position, orientation = msg.pose.pose.position, msg.pose.pose.orientation
    assert (position.x, position.y, position.z) == (0.0, 0.6, -0.8)
    assert (orientation.x, orientation.y, orientation.z, orientation.w) == (
        0.0,
        0.0,
        -np.sqrt(0.5),
        np.sqrt(0.5),
    )
    assert list(msg.pose.covariance) == list(np.diag([1e6, 2.0, 3.0, 4.0, 5.0, 6.0]).reshape(36))
    stamped = relative_pose_msg(msg)
    assert stamped.header.frame_id == "cam_optical" and stamped.header.stamp == msg.header.stamp
    assert stamped.pose == msg.pose
    assert (msg.num_query_keypoints, msg.num_reference_keypoints) == (100, 90)
    assert msg.processing_time == 0.125 and (msg.extractor, msg.matcher) == (
        "superpoint",
        "superglue",
    )
    assert not msg.query_is_keyframe


def test_loop_closure_without_pose_and_unverified():
    corr = make_correspondence("loop_closure", "homography")
    msg = correspondence_to_msg(corr)
    assert msg.kind == Correspondences.LOOP_CLOSURE and msg.query_is_keyframe
    assert msg.model_type == Correspondences.MODEL_HOMOGRAPHY and not msg.pose_valid
    # no pose: NaN everywhere, never mistaken for the identity
    assert np.isnan(msg.rotation).all() and np.isnan(msg.translation).all()
    assert np.isnan(msg.pose.covariance).all() and np.isnan(msg.pose.pose.orientation.w)
    assert np.isnan(
        [msg.pose.pose.position.x, msg.pose.pose.position.y, msg.pose.pose.position.z]
    ).all()
    corr.inliers = np.zeros(0, bool)
    corr.model = GeometricModel("none", np.zeros((3, 3)), np.zeros(0, bool))
    msg = correspondence_to_msg(corr)
    assert list(msg.inliers) == [] and msg.num_inliers == 0
    assert msg.model_type == Correspondences.MODEL_NONE and list(msg.model) == [0.0] * 9


def test_keyframe_with_binary_descriptors():
    desc = np.array([[0, 255] + [7] * 30, [1] * 32], np.uint8)
    feats = Features(
        np.array([[10, 20], [30.5, 40.5]], np.float32),
        np.array([0.5, 0.25], np.float32),
        desc,
        (640, 480),
    )
    kf = Keyframe(4, 7_000_000_001, "cam", (640, 480), feats, np.array([0.6, 0.8], np.float32))
    msg = keyframe_to_msg(kf, "orb", session_id="run-1")
    assert msg.session_id == "run-1"
    assert (
        msg.id == 4
        and stamp_to_ns(msg.header.stamp) == 7_000_000_001
        and msg.header.frame_id == "cam"
    )
    assert (msg.width, msg.height, msg.descriptor_dim) == (640, 480, 32)
    assert list(msg.keypoints) == [10, 20, 30.5, 40.5] and list(msg.scores) == [0.5, 0.25]
    np.testing.assert_array_equal(np.reshape(msg.descriptors, (2, 32)), desc.astype(np.float32))
    np.testing.assert_allclose(msg.global_descriptor, [0.6, 0.8], rtol=1e-7)
    assert msg.extractor == "orb"


def test_loop_results_statuses_and_messages():
    corr_msg = correspondence_to_msg(make_correspondence("loop_closure"))
    verified = loop_result_to_msg(
        LoopVerification(3, "verified", make_correspondence("loop_closure")), corr_msg
    )
    assert verified.status == LoopResult.VERIFIED and verified.candidate_id == 3
    assert (
        verified.message == "2 inliers of 3 matches" and verified.correspondences.num_inliers == 2
    )
    expected = {
        "rejected": LoopResult.REJECTED,
        "unknown_query": LoopResult.UNKNOWN_QUERY,
        "unknown_candidate": LoopResult.UNKNOWN_CANDIDATE,
        "evicted": LoopResult.EVICTED,
        "failed": LoopResult.FAILED,
    }
    for status, code in expected.items():
        result = loop_result_to_msg(LoopVerification(9, status, None, message=f"why {status}"))
        assert result.status == code and result.message == f"why {status}"
    assert "never seen" in loop_result_to_msg(LoopVerification(9, "unknown_query", None)).message


def test_debug_image_message_round_trip():
    rng = np.random.default_rng(1)
    for image in (
        rng.integers(0, 256, (7, 9, 3), dtype=np.uint8),
        rng.integers(0, 256, (7, 9), dtype=np.uint8),
    ):
        msg = array_to_image_msg(image, 42, "cam")
        assert (
            msg.encoding == ("bgr8" if image.ndim == 3 else "mono8")
            and stamp_to_ns(msg.header.stamp) == 42
        )
        np.testing.assert_array_equal(
            image_to_array(msg.encoding, msg.height, msg.width, msg.step, msg.data), image
        )
