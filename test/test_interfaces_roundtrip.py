"""Every superglue_ros_msgs message and the VerifyLoop service cross real DDS intact.

Path of a message: publisher node (this process) -> DDS on loopback -> echo node
(a separate process, this file run as a script) -> DDS -> subscriber node (this
process). The service: client node (this process) -> server node (echo process).
Every field is filled with a value different from its default (checked), and the
received copy must equal the sent one field by field.
"""

import os
import subprocess
import sys
import time

import numpy as np
import pytest

import rclpy  # installed by scripts/setup.sh: a missing one is a failure, not a skip
from builtin_interfaces.msg import Time
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import Header
from superglue_ros_msgs.msg import Correspondences, KeyframeFeatures, LoopCandidates, LoopResult
from superglue_ros_msgs.srv import GetKeyframe, VerifyLoop
from geometry_msgs.msg import Point, Quaternion

MESSAGE_TYPES = [Correspondences, KeyframeFeatures, LoopCandidates, LoopResult]
TOPIC_PREFIX = "/superglue_ros_test"
SERVICE_NAME = TOPIC_PREFIX + "/verify_loop"
GET_KEYFRAME_NAME = TOPIC_PREFIX + "/get_keyframe"
U64_MAX = 2**64 - 1
QOS = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
DEADLINE_S = 60.0  # failure bound only, never asserted as a speed


# ----------------------------------------------------------------------------------------
# Fully populated messages (values exact in float32, ids beyond 32 bits)


def make_correspondences(seed: int = 0) -> Correspondences:
    rng = np.random.default_rng(seed)
    m = 57  # number of matches
    msg = Correspondences()
    msg.header = Header(
        stamp=Time(sec=1_700_000_000 + seed, nanosec=123_456_789), frame_id="cam0_optical"
    )
    msg.kind = Correspondences.LOOP_CLOSURE
    msg.session_id = f"3f2a9c-{seed}"
    msg.query_id = U64_MAX - seed
    msg.reference_id = 2**40 + 7 + seed
    msg.reference_stamp = Time(sec=1_699_999_000, nanosec=987_654_321)
    msg.reference_frame_id = "cam0_optical_ref"
    msg.query_is_keyframe = True
    msg.query_width, msg.query_height = 1241, 376
    msg.reference_width, msg.reference_height = 1242, 375
    msg.num_query_keypoints, msg.num_reference_keypoints = 1024, 987
    msg.query_points = (rng.integers(0, 4 * 1241, 2 * m) / 4.0).astype(np.float32)
    msg.reference_points = (rng.integers(0, 4 * 1242, 2 * m) / 4.0).astype(np.float32)
    msg.query_keypoint_indices = rng.permutation(1024)[:m].astype(np.uint32)
    msg.reference_keypoint_indices = rng.permutation(987)[:m].astype(np.uint32)
    msg.scores = (rng.integers(1, 256, m) / 256.0).astype(np.float32)
    msg.inliers = [bool(b) for b in rng.integers(0, 2, m)]
    msg.inliers[0] = True
    msg.model_type = Correspondences.MODEL_ESSENTIAL
    msg.model = rng.normal(size=9)
    msg.num_inliers = sum(msg.inliers)
    msg.pose_valid = True
    angle = 0.1 + 0.01 * seed
    msg.rotation = np.array(
        [[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]]
    ).reshape(-1)
    t = rng.normal(size=3)
    msg.translation = t / np.linalg.norm(t)
    msg.pose.pose.position = Point(x=0.25, y=-0.5, z=0.75 + seed)
    msg.pose.pose.orientation = Quaternion(x=0.125, y=-0.25, z=0.5, w=0.8125)
    msg.pose.covariance = rng.normal(size=36)
    msg.processing_time = 0.03125
    msg.extractor = "superpoint"
    msg.matcher = "superglue"
    return msg


def make_keyframe_features() -> KeyframeFeatures:
    rng = np.random.default_rng(1)
    n, d = 300, 256  # about 300 kB: several UDP fragments
    msg = KeyframeFeatures()
    msg.header = Header(stamp=Time(sec=42, nanosec=999_999_999), frame_id="cam1_optical")
    msg.id = 2**63 + 11
    msg.session_id = "3f2a9c"
    msg.width, msg.height = 640, 480
    msg.keypoints = (rng.integers(0, 8 * 480, 2 * n) / 8.0).astype(np.float32)
    msg.scores = rng.random(n).astype(np.float32)
    msg.descriptor_dim = d
    desc = rng.normal(size=(n, d)).astype(np.float32)
    desc /= np.linalg.norm(desc, axis=1, keepdims=True)
    msg.descriptors = desc.reshape(-1)
    msg.global_descriptor = rng.random(4096).astype(np.float32)
    msg.extractor = "superpoint"
    return msg


def make_loop_candidates() -> LoopCandidates:
    msg = LoopCandidates()
    msg.header = Header(stamp=Time(sec=7, nanosec=5), frame_id="map")
    msg.query_id = 2**33 + 1
    msg.candidate_ids = [0, 3, 2**33, U64_MAX]
    msg.candidate_scores = [0.875, 0.5, 0.25, 0.0625]
    return msg


def make_loop_result(
    candidate_id: int = 2**35 + 3, status: int = LoopResult.VERIFIED
) -> LoopResult:
    msg = LoopResult()
    msg.candidate_id = candidate_id
    msg.status = status
    msg.message = f"candidate {candidate_id}: 31 inliers >= min_inliers 25"
    msg.correspondences = make_correspondences(seed=candidate_id % 1000)
    return msg


MAKERS = {
    Correspondences: make_correspondences,
    KeyframeFeatures: make_keyframe_features,
    LoopCandidates: make_loop_candidates,
    LoopResult: make_loop_result,
}


def make_request() -> VerifyLoop.Request:
    req = VerifyLoop.Request()
    req.query_id = 2**50 + 9
    req.candidate_ids = [5, 2**45, U64_MAX]
    return req


def make_response(req: VerifyLoop.Request) -> VerifyLoop.Response:
    """The server's answer: built from the request, so it also proves the request arrived intact."""
    statuses = [
        LoopResult.VERIFIED,
        LoopResult.REJECTED,
        LoopResult.EVICTED,
        LoopResult.UNKNOWN_CANDIDATE,
        LoopResult.UNKNOWN_QUERY,
        LoopResult.FAILED,
    ]
    res = VerifyLoop.Response()
    res.success = True
    res.message = f"query {req.query_id}: {len(req.candidate_ids)} candidates"
    res.results = [
        make_loop_result(c, statuses[i % len(statuses)]) for i, c in enumerate(req.candidate_ids)
    ]
    return res


def make_get_keyframe_response(req: GetKeyframe.Request) -> GetKeyframe.Response:
    res = GetKeyframe.Response(success=True, message=f"keyframe {req.id}")
    res.keyframe = make_keyframe_features()
    res.keyframe.id = req.id
    return res


# ----------------------------------------------------------------------------------------
# Field-by-field comparison over the rosidl introspection


def _leaf(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if hasattr(value, "typecode"):  # array.array of a sequence field
        return value.tolist()
    return value


def assert_fields_equal(sent, received, path="msg"):
    assert type(sent) is type(received), f"{path}: type {type(received)} != {type(sent)}"
    for name in sent.get_fields_and_field_types():
        a, b = getattr(sent, name), getattr(received, name)
        where = f"{path}.{name}"
        if hasattr(a, "get_fields_and_field_types"):
            assert_fields_equal(a, b, where)
        elif isinstance(a, list) and a and hasattr(a[0], "get_fields_and_field_types"):
            assert len(a) == len(b), f"{where}: {len(b)} elements != {len(a)}"
            for i, (x, y) in enumerate(zip(a, b)):
                assert_fields_equal(x, y, f"{where}[{i}]")
        else:
            assert _leaf(a) == _leaf(b), f"{where}: received {_leaf(b)!r} != sent {_leaf(a)!r}"


def assert_all_fields_set(msg, path="msg"):
    """Every field differs from a default-constructed one, so no field goes untested."""
    default = type(msg)()
    for name in msg.get_fields_and_field_types():
        value, dflt = getattr(msg, name), getattr(default, name)
        where = f"{path}.{name}"
        if hasattr(value, "get_fields_and_field_types"):
            assert_all_fields_set(value, where)
        elif isinstance(value, list) and value and hasattr(value[0], "get_fields_and_field_types"):
            for i, x in enumerate(value):
                assert_all_fields_set(x, f"{where}[{i}]")
        else:
            assert _leaf(value) != _leaf(dflt), (
                f"{where} keeps its default {_leaf(dflt)!r}: fill it in the test"
            )


def topic_in(msg_type):
    return f"{TOPIC_PREFIX}/in_{msg_type.__name__.lower()}"


def topic_out(msg_type):
    return f"{TOPIC_PREFIX}/out_{msg_type.__name__.lower()}"


# ----------------------------------------------------------------------------------------
# The echo process


def run_echo():
    """Echo node: republish each message type in -> out, serve VerifyLoop. Runs until killed."""
    rclpy.init()
    node = rclpy.create_node("superglue_ros_test_echo")
    for msg_type in MESSAGE_TYPES:
        pub = node.create_publisher(msg_type, topic_out(msg_type), QOS)
        node.create_subscription(msg_type, topic_in(msg_type), pub.publish, QOS)

    def serve(request, response):
        expected = make_response(request)
        response.success, response.message, response.results = (
            expected.success,
            expected.message,
            expected.results,
        )
        return response

    def serve_keyframe(request, response):
        expected = make_get_keyframe_response(request)
        response.success, response.message, response.keyframe = (
            expected.success,
            expected.message,
            expected.keyframe,
        )
        return response

    node.create_service(VerifyLoop, SERVICE_NAME, serve)
    node.create_service(GetKeyframe, GET_KEYFRAME_NAME, serve_keyframe)
    print("READY", flush=True)
    rclpy.spin(node)


@pytest.fixture(scope="module")
def echo_process():
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--echo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    line = proc.stdout.readline()
    if line.strip() != "READY":
        try:  # the rest of its output says why
            rest = proc.communicate(timeout=10)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            rest = proc.communicate()[0]
        pytest.fail(f"echo node did not start: {line}{rest}")
    yield proc
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


# ----------------------------------------------------------------------------------------
# Tests


def test_domain_id_is_isolated():
    domain = int(os.environ["ROS_DOMAIN_ID"])
    assert 1 <= domain <= 100


@pytest.mark.parametrize("msg_type", MESSAGE_TYPES, ids=lambda t: t.__name__)
def test_message_round_trip(msg_type, echo_process, ros_context):
    sent = MAKERS[msg_type]()
    assert_all_fields_set(sent)

    publisher_node = rclpy.create_node("superglue_ros_test_publisher", context=ros_context)
    subscriber_node = rclpy.create_node("superglue_ros_test_subscriber", context=ros_context)
    received = []
    subscriber_node.create_subscription(msg_type, topic_out(msg_type), received.append, QOS)
    pub = publisher_node.create_publisher(msg_type, topic_in(msg_type), QOS)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(publisher_node)
    executor.add_node(subscriber_node)
    try:
        end = time.monotonic() + DEADLINE_S
        # Publish until the echo has matched both ends and the copy came back
        # (discovery takes a moment; repeated copies are identical).
        while not received and time.monotonic() < end:
            pub.publish(sent)
            executor.spin_once(timeout_sec=0.2)
        assert received, (
            f"no {msg_type.__name__} came back through the echo node within {DEADLINE_S} s"
        )
        assert_fields_equal(sent, received[0])
        # ...and it is a genuinely different object that crossed DDS
        assert received[0] is not sent
    finally:
        executor.shutdown()
        publisher_node.destroy_node()
        subscriber_node.destroy_node()


def call_echo_service(ros_context, srv_type, name, request):
    """The echo process's answer to `request` on service `name` (fails after DEADLINE_S)."""
    client_node = rclpy.create_node(
        f"superglue_ros_test_client_{srv_type.__name__.lower()}", context=ros_context
    )
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(client_node)
    try:
        client = client_node.create_client(srv_type, name)
        assert client.wait_for_service(timeout_sec=DEADLINE_S), f"{name} not available"
        future = client.call_async(request)
        executor.spin_until_future_complete(future, timeout_sec=DEADLINE_S)
        assert future.done(), f"no {srv_type.__name__} response"
        return future.result()
    finally:
        executor.shutdown()
        client_node.destroy_node()


def test_verify_loop_service_round_trip(echo_process, ros_context):
    request = make_request()
    assert_all_fields_set(request)
    expected = make_response(request)
    assert_all_fields_set(expected)
    response = call_echo_service(ros_context, VerifyLoop, SERVICE_NAME, request)
    assert_fields_equal(expected, response)
    assert [r.candidate_id for r in response.results] == list(request.candidate_ids)
    assert response.results[0].status == LoopResult.VERIFIED


def test_get_keyframe_service_round_trip(echo_process, ros_context):
    request = GetKeyframe.Request(id=2**62 + 5)
    assert_all_fields_set(request)
    expected = make_get_keyframe_response(request)
    assert_all_fields_set(expected)
    response = call_echo_service(ros_context, GetKeyframe, GET_KEYFRAME_NAME, request)
    assert_fields_equal(expected, response)
    assert response.keyframe.id == request.id


def test_field_comparison_detects_a_change():
    """The comparison used above is not vacuous: one changed float fails it."""
    a, b = make_keyframe_features(), make_keyframe_features()
    assert_fields_equal(a, b)
    desc = np.array(b.descriptors)
    desc[1234] += 0.5
    b.descriptors = desc
    with pytest.raises(AssertionError, match="descriptors"):
        assert_fields_equal(a, b)
    c = make_correspondences()
    c.model_type = Correspondences.MODEL_NONE
    with pytest.raises(AssertionError, match="model_type"):
        assert_all_fields_set(c)


if __name__ == "__main__" and "--echo" in sys.argv:
    run_echo()
