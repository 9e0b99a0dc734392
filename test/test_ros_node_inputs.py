"""Bad input to a running superglue_node over DDS: each kind gets a clear log line (read back
from /rosout), the node keeps running, and the next good frame still gets its Correspondences,
whose inliers agree with the synthetic sequence's exact ground truth.

Plumbing only, so the fast ORB preset; the accuracy of the learned matcher is tested in
test_ros_node_sequence.py.
"""

import time

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from superglue_ros_msgs.msg import Correspondences, LoopCandidates, LoopResult

from ros_helpers import image_msg, running_node, check_inliers_against_homography
from superglue_ros.frontend.synthetic import make_sequence
from superglue_ros.ros.messages import make_header, stamp_to_ns

SEQUENCE = make_sequence(num_frames=200, loop_frames=200)  # slow motion: ORB tracks easily
FRAME_ID = "cam"
# the scene is a plane, where the fundamental matrix is degenerate: verify with a homography
PLANE = dict(geometric_model="homography", loop_geometric_model="homography")


class Stream:
    """Good frames with increasing stamps; `good()` sends one and returns its Correspondences
    after checking them against ground truth."""

    def __init__(self, probe, compressed=False):
        self.probe, self.compressed, self.index, self.stamp_ns = probe, compressed, 0, 10**9
        self.frame_of: dict[int, int] = {}  # stamp -> sequence index of the good frames

    def next_stamp(self) -> int:
        self.stamp_ns += 100_000_000
        return self.stamp_ns

    def send(self, image=None, stamp_ns=None, frame_id=FRAME_ID, encoding=None):
        stamp_ns = self.next_stamp() if stamp_ns is None else stamp_ns
        if image is None:
            image = SEQUENCE.frame(self.index % len(SEQUENCE))
            self.frame_of.setdefault(stamp_ns, self.index % len(SEQUENCE))
        self.index += 1
        if self.compressed:
            msg = CompressedImage(header=make_header(stamp_ns, frame_id), format="jpeg")
            msg.data = cv2.imencode(".jpg", image)[1].tobytes()
            self.probe.compressed_pub.publish(msg)
        else:
            self.probe.image_pub.publish(image_msg(image, stamp_ns, frame_id, encoding))
        return stamp_ns

    def good(self, check=True):
        stamp = self.send()
        reply = self.probe.correspondence_for(stamp)
        if check:
            self.check(reply)
        return reply

    def check(self, msg, min_inliers=30):
        """>= 90% of the inliers within 3 px of the exact homography, and enough of them."""
        check_inliers_against_homography(SEQUENCE, self.frame_of, msg, min_inliers)


@pytest.fixture(scope="module")
def node_probe():
    overrides = dict(
        preset="orb",
        reliability="reliable",
        max_image_pixels=2_000_000,
        warn_throttle_s=0.0,
        max_pending_requests=1,
        max_keyframes=4,
        min_gap_frames=1,
        max_frames=2,
        loop_min_id_gap=2,
        **PLANE,
    )
    with running_node(overrides) as (node, probe):
        stream = Stream(probe)
        first = stream.send()
        probe.wait_for(
            lambda: any(stamp_to_ns(k.header.stamp) == first for k in probe.keyframes),
            what="the first keyframe",
        )
        yield node, probe, stream


def raw(encoding, height, width, step, data, frame_id=FRAME_ID, stamp_ns=0) -> Image:
    msg = Image(
        header=make_header(stamp_ns, frame_id),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=step,
    )
    msg.data = bytes(data)
    return msg


BAD_IMAGES = {
    "unsupported encoding": (
        lambda: raw("yuv422", 48, 64, 128, bytes(48 * 128)),
        "unsupported encoding 'yuv422'",
    ),
    "step/size mismatch": (
        lambda: raw("bgr8", 48, 64, 192, bytes(192 * 48 - 7)),
        "data size 9209 does not match step*height",
    ),
    "step smaller than a row": (
        lambda: raw("bgr8", 48, 64, 100, bytes(100 * 48)),
        "step 100 < width*channels*bytes 192",
    ),
    "zero-size image": (lambda: raw("mono8", 0, 64, 64, b""), "zero-size image (64x0)"),
    "huge image": (
        lambda: raw("mono8", 1100, 2000, 2000, bytes(2000 * 1100)),
        "image too large: 2000x1100 = 2200000 pixels > max_image_pixels 2000000",
    ),
    "all-NaN float image": (
        lambda: raw("32FC1", 48, 64, 256, np.full((48, 64), np.nan, np.float32).tobytes()),
        "has no finite pixel",
    ),
}


@pytest.mark.parametrize("case", list(BAD_IMAGES))
def test_bad_image_is_logged_and_node_keeps_working(node_probe, case):
    node, probe, stream = node_probe
    make, expected = BAD_IMAGES[case]
    rejected_before = node.stats()[""]["rejected"]
    msg = make()
    msg.header.stamp = make_header(stream.next_stamp(), FRAME_ID).stamp
    probe.image_pub.publish(msg)
    line = probe.log_containing(expected)
    assert "image rejected" in line
    probe.wait_for(lambda: node.stats()[""]["rejected"] > rejected_before, what="rejection count")
    reply = stream.good()
    assert reply.kind == Correspondences.ODOMETRY and len(reply.query_points) > 0
    assert node.stats()[""]["failed"] == 0


def test_float_image_with_nan_is_used_and_reported(node_probe):
    node, probe, stream = node_probe
    gray = cv2.cvtColor(SEQUENCE.frame(stream.index), cv2.COLOR_BGR2GRAY).astype(np.float32) / 255
    gray[::7, ::5] = np.nan
    gray[3, :] = np.inf
    stamp = stream.send(gray, encoding="32FC1")
    stream.frame_of[stamp] = stream.index - 1  # the same view: it may become the reference
    probe.log_containing("NaN/inf pixels set to 0")
    reply = probe.correspondence_for(stamp)  # the frame itself is processed
    assert reply.query_width == 640 and reply.query_height == 480
    assert stream.good().kind == Correspondences.ODOMETRY


def test_stale_stamps_and_foreign_frame_id_are_skipped(node_probe):
    node, probe, stream = node_probe
    last = stream.good()
    last_stamp = stamp_to_ns(last.header.stamp)
    stream.send(stamp_ns=last_stamp)
    probe.log_containing(f"duplicate stamp {last_stamp} ns")
    stream.send(stamp_ns=last_stamp - 50_000_000)
    probe.log_containing(f"out-of-order stamp {last_stamp - 50_000_000} ns")
    intruder = stream.send(frame_id="intruder_cam")
    probe.log_containing("frame from unknown camera frame_id 'intruder_cam'")
    reply = stream.good()
    with probe.lock:  # none of the skipped frames was published
        stamps = [stamp_to_ns(m.header.stamp) for m in probe.correspondences]
    assert stamps.count(last_stamp) == 1 and intruder not in stamps
    assert stamp_to_ns(reply.header.stamp) == stream.stamp_ns


def test_unknown_and_evicted_keyframe_ids(node_probe):
    node, probe, stream = node_probe
    for _ in range(8):  # max_frames=2, max_keyframes=4: one keyframe gets evicted
        stream.good()
    # which one: the oldest not pinned by a loop job when the bound was passed; get_keyframe says
    probe.wait_for(node.loop_idle, 60, "the loop worker to finish its jobs")
    known = sorted({k.id for k in probe.keyframes})
    assert 0 in known and len(known) > 4
    gone = [k for k in known if not probe.call_get_keyframe(k).success]
    assert len(gone) >= 1
    reply = probe.call_get_keyframe(gone[0])
    assert "evicted" in reply.message and reply.keyframe.id == 0  # nothing sent with it
    latest, previous = known[-1], known[-2]
    older = max(k for k in known if k not in gone and k <= latest - 2)  # loop_min_id_gap 2
    response = probe.call_verify(latest, [older, gone[0], 10**6, latest, previous])
    assert response.success
    statuses = [r.status for r in response.results]
    assert statuses[0] in (LoopResult.VERIFIED, LoopResult.REJECTED)
    assert response.results[0].correspondences.kind == Correspondences.LOOP_CLOSURE
    assert response.results[0].correspondences.reference_id == older
    assert statuses[1:] == [
        LoopResult.EVICTED,
        LoopResult.UNKNOWN_CANDIDATE,
        LoopResult.SELF_LOOP,
        LoopResult.TOO_CLOSE,
    ]
    assert "evicted" in response.results[1].message
    assert "loop_min_id_gap 2" in response.results[4].message
    assert all(r.correspondences.num_query_keypoints == 0 for r in response.results[1:])

    unknown = probe.call_verify(10**6, [latest])
    assert not unknown.success and "unknown" in unknown.message
    assert [r.status for r in unknown.results] == [LoopResult.UNKNOWN_QUERY]
    evicted = probe.call_verify(gone[0], [latest])
    assert not evicted.success and f"query keyframe {gone[0]} was evicted" in evicted.message
    assert [r.status for r in evicted.results] == [LoopResult.EVICTED]
    probe.log_containing(f"loop request query {10**6}: 1 candidate(s) unknown_query")

    probe.candidates_pub.publish(LoopCandidates(query_id=10**6 + 1, candidate_ids=[latest]))
    probe.log_containing(f"loop request query {10**6 + 1}: 1 candidate(s) unknown_query")
    assert stream.good().kind == Correspondences.ODOMETRY


def test_request_flood_is_bounded_and_images_keep_flowing():
    """40 verify_loop requests at once (each matching 16 SIFT keyframe pairs) while frames
    stream in: at most max_pending_requests run, the rest are answered at once with an
    explicit busy status, every request gets an answer, and frames keep being processed."""
    from superglue_ros_msgs.srv import VerifyLoop

    overrides = dict(
        preset="sift",
        max_keypoints=2048,
        reliability="reliable",
        warn_throttle_s=0.0,
        max_pending_requests=1,
        min_gap_frames=1,
        max_frames=1,
        loop_min_id_gap=1,
        **PLANE,
    )
    with running_node(overrides) as (node, probe):
        stream = Stream(probe)
        stream.send()
        probe.wait_for(lambda: probe.keyframes, what="first keyframe")
        for _ in range(3):
            stream.good()
        ids = sorted({k.id for k in probe.keyframes})
        request = VerifyLoop.Request(query_id=ids[-1], candidate_ids=(ids[:-1] * 16)[:16])
        futures = [probe.verify.call_async(request) for _ in range(40)]
        processed_before = node.stats()[""]["processed"]
        for _ in range(3):
            stream.send()
            time.sleep(0.1)
        probe.wait_for(lambda: all(f.done() for f in futures), 300.0, "all 40 responses")
        busy = 0
        for future in futures:
            response = future.result()
            assert len(response.results) == 16
            if response.success:
                assert all(
                    r.status in (LoopResult.VERIFIED, LoopResult.REJECTED) for r in response.results
                )
            else:
                busy += 1
                assert response.message.startswith("busy: 1 loop requests already in progress")
                assert all(r.status == LoopResult.BUSY for r in response.results)
        print(f"flood: {busy} of 40 requests answered busy")
        assert 0 < busy < 40
        probe.log_containing("refused, busy")
        assert stream.good().kind == Correspondences.ODOMETRY
        probe.wait_for(
            lambda: node.stats()[""]["processed"] > processed_before, what="frames counted"
        )
        assert node.stats()[""]["failed"] == 0


def test_camera_info_zero_focal_length_is_ignored_with_a_warning():
    # one camera_info, then frames: a calibration that holds until the next ('latest')
    overrides = dict(
        preset="orb", reliability="reliable", warn_throttle_s=0.0, camera_info_sync="latest"
    )
    with running_node(overrides) as (node, probe):
        stream = Stream(probe)
        K = SEQUENCE.K

        def info(k):
            msg = CameraInfo(header=make_header(stream.stamp_ns, FRAME_ID), width=640, height=480)
            msg.k = np.asarray(k, float).reshape(9)
            probe.info_pub.publish(msg)
            time.sleep(0.3)

        info(K)
        stream.send()
        probe.wait_for(lambda: probe.keyframes, what="first keyframe")
        assert stream.good().model_type == Correspondences.MODEL_ESSENTIAL
        bad = K.copy()
        bad[0, 0] = bad[1, 1] = 0.0
        info(bad)
        reply = stream.good(check=False)  # fundamental on a plane: inliers not all exact
        probe.log_containing("zero or negative focal length (fx=0, fy=0)")
        assert reply.model_type == Correspondences.MODEL_FUNDAMENTAL and not reply.pose_valid
        assert node.stats()[""]["failed"] == 0


def test_compressed_input_and_undecodable_payload():
    with running_node(
        dict(
            preset="orb", reliability="reliable", use_compressed=True, warn_throttle_s=0.0, **PLANE
        )
    ) as (node, probe):
        stream = Stream(probe, compressed=True)
        stream.send()
        probe.wait_for(lambda: probe.keyframes, what="first keyframe from a jpeg")
        garbage = CompressedImage(header=make_header(stream.next_stamp(), FRAME_ID), format="jpeg")
        garbage.data = b"\xff\xd8 definitely not a jpeg"
        probe.compressed_pub.publish(garbage)
        probe.log_containing("could not decode compressed image (format 'jpeg', 24 bytes)")
        reply = stream.good()
        assert reply.query_width == 640 and len(reply.query_points) > 0


def test_two_cameras_have_separate_topics_and_state():
    overrides = dict(preset="orb", reliability="reliable", cameras=["left", "right"], **PLANE)
    with running_node(overrides, prefix="left", more_prefixes=("right",)) as (node, left):
        right = left.others["right"]
        streams = {"left": Stream(left), "right": Stream(right)}
        streams["right"].index = 50  # a different view
        for name, stream in streams.items():
            stream.send()
        for probe in (left, right):
            probe.wait_for(lambda p=probe: p.keyframes, what="first keyframe per camera")
        replies = {name: stream.good() for name, stream in streams.items()}
        assert {m.id for m in left.keyframes} == {m.id for m in right.keyframes} == {0}
        assert replies["left"].reference_id == replies["right"].reference_id == 0
        left_kf0 = np.reshape(left.keyframes[0].keypoints, (-1, 2))
        right_kf0 = np.reshape(right.keyframes[0].keypoints, (-1, 2))
        assert not np.array_equal(left_kf0, right_kf0)  # each camera has its own keyframe 0
        for probe in (left, right):  # each camera answers on its own verify_loop service
            answer = probe.call_verify(0, [99])
            assert answer.success and answer.results[0].status == LoopResult.UNKNOWN_CANDIDATE
        # a frame counts as processed after its replies are out (and its debug image drawn)
        left.wait_for(
            lambda: [node.stats()[name]["processed"] for name in streams] == [2, 2],
            what="two frames processed per camera",
        )
        with left.lock:
            assert all(m.header.frame_id == FRAME_ID for m in left.correspondences)


def test_diagnostics_and_debug_image(node_probe):
    """/diagnostics carries the node's counters; debug_image is drawn because the probe
    subscribes (mode on_subscribe) and shows the frame it belongs to."""
    node, probe, stream = node_probe
    reply = stream.good()
    stamp = stamp_to_ns(reply.header.stamp)
    debug = probe.wait_for(
        lambda: next((m for m in probe.debug_images if stamp_to_ns(m.header.stamp) == stamp), None),
        what="the debug image of the last frame",
    )
    assert debug.encoding == "bgr8" and debug.height == 480 and debug.width > 2 * 600
    assert debug.header.frame_id == FRAME_ID
    processed = node.stats()[""]["processed"]

    def fresh():
        for array in reversed(probe.diagnostics):
            for status in array.status:
                if not status.name.startswith(node.get_fully_qualified_name() + ":"):
                    continue
                values = {kv.key: kv.value for kv in status.values}
                if int(values.get("frames_processed", -1)) >= processed:
                    return status, values
        return None

    status, values = probe.wait_for(fresh, 10.0, "a diagnostics message")
    assert status.name.endswith(": camera") and status.hardware_id == FRAME_ID
    assert {
        "processed_fps",
        "dropped_fps",
        "latency_p50_ms",
        "latency_p90_ms",
        "cache_keyframes",
        "cache_bytes",
        "device",
        "extractor",
        "matcher",
        "frames_dropped",
        "heap_trim_ms",
    } <= set(values)
    assert float(values["heap_trim_ms"]) >= 0.0
    assert (values["device"], values["extractor"], values["matcher"]) == (
        "cpu",
        "orb",
        "ratio-hamming",
    )
    assert values["extractor_runtime"] == values["matcher_runtime"] == "opencv"
    assert 1 <= int(values["cache_keyframes"]) <= 4 and int(values["cache_bytes"]) > 0
    assert float(values["latency_p90_ms"]) >= float(values["latency_p50_ms"]) > 0
