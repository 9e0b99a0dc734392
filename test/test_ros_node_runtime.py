"""A running superglue_node changed and watched from outside over DDS: front-end parameters set
through its set_parameters service change what the next frames and requests get, and
/diagnostics goes OK -> STALE when images stop -> ERROR when only bad ones arrive -> OK again.

Plumbing, so the fast ORB preset on the synthetic plane (exact homography ground truth)."""

import time

from diagnostic_msgs.msg import DiagnosticStatus
from rcl_interfaces.srv import DescribeParameters
from superglue_ros_msgs.msg import Correspondences, LoopResult

from ros_helpers import check_inliers_against_homography, image_msg, running_node
from superglue_ros.frontend.synthetic import make_sequence
from superglue_ros.ros.messages import make_header
from sensor_msgs.msg import Image

SEQUENCE = make_sequence(num_frames=200, loop_frames=200)
PLANE = dict(geometric_model="homography", loop_geometric_model="homography")


class Frames:
    """Good frames of SEQUENCE with increasing stamps (10 Hz in stamp time)."""

    def __init__(self, probe):
        self.probe, self.index, self.stamp_ns, self.frame_of = probe, 0, 10**9, {}

    def send(self) -> int:
        self.stamp_ns += 100_000_000
        self.frame_of[self.stamp_ns] = self.index
        self.probe.image_pub.publish(image_msg(SEQUENCE.frame(self.index), self.stamp_ns, "cam"))
        self.index += 1
        return self.stamp_ns

    def good(self) -> Correspondences:
        reply = self.probe.correspondence_for(self.send())
        check_inliers_against_homography(SEQUENCE, self.frame_of, reply, 30)
        return reply


def test_front_end_parameters_change_the_running_node():
    """Keyframe policy and loop threshold set at run time reach the running FrontEnd; a
    read-only, an unknown-choice and an out-of-range value are refused with a reason and
    change nothing."""
    overrides = dict(
        preset="orb",
        reliability="reliable",
        warn_throttle_s=0.0,
        loop_closure=False,
        max_frames=0,
        max_interval_s=0.0,
        min_inliers=0,
        min_inlier_ratio=0.0,
        min_gap_frames=1,
        loop_min_id_gap=1,
        **PLANE,
    )
    with running_node(overrides) as (node, probe):
        fqn = node.get_fully_qualified_name()
        frames = Frames(probe)
        frames.send()
        probe.wait_for(lambda: probe.keyframes, what="the first keyframe")
        # no policy rule can fire: every frame tracks keyframe 0
        replies = [frames.good() for _ in range(3)]
        assert [(r.query_is_keyframe, r.reference_id) for r in replies] == [(False, 0)] * 3

        [result] = probe.set_parameters(fqn, max_frames=2)
        assert result.successful, result.reason
        # frame 4 is 4 frames after keyframe 0 (>= 2): keyframe 1; frame 5 tracks it; frame 6
        # is 2 after it: keyframe 2
        replies = [frames.good() for _ in range(4)]
        assert [r.query_is_keyframe for r in replies] == [True, False, True, False]
        assert [r.reference_id for r in replies] == [0, 1, 1, 2]
        assert [cam.frontend.conf["max_frames"] for cam in node.cameras] == [2]

        # the loop threshold: the same pair verified, then rejected one inlier short
        first = probe.call_verify(2, [0])
        assert first.success and first.results[0].status == LoopResult.VERIFIED, first.message
        inliers = first.results[0].correspondences.num_inliers
        assert inliers >= 40
        [result] = probe.set_parameters(fqn, min_loop_inliers=inliers + 1)
        assert result.successful, result.reason
        second = probe.call_verify(2, [0])
        assert second.results[0].status == LoopResult.REJECTED
        assert second.results[0].correspondences.num_inliers == inliers
        assert f"{inliers} inliers < min_loop_inliers {inliers + 1}" in second.results[0].message

        refused = probe.set_parameters(fqn, working_width=320)
        assert not refused[0].successful and "read-only" in refused[0].reason
        refused = probe.set_parameters(fqn, geometric_model="bogus")
        assert not refused[0].successful and "is not one of" in refused[0].reason
        refused = probe.set_parameters(fqn, min_inlier_ratio=2.0)
        assert not refused[0].successful
        conf = node.cameras[0].frontend.conf
        assert (conf["working_width"], conf["geometric_model"], conf["min_inlier_ratio"]) == (
            640,
            "homography",
            0.0,
        )
        assert node.get_parameter("geometric_model").value == "homography"

        # the cache bound evicts at once, keeping the newest keyframe
        [result] = probe.set_parameters(fqn, max_keyframes=1)
        assert result.successful and node.cameras[0].frontend.cache.ids() == [2]
        assert probe.call_verify(2, [0]).results[0].status == LoopResult.EVICTED
        assert frames.good().reference_id == 2  # still running, on the kept keyframe

        client = probe.create_client(DescribeParameters, f"{fqn}/describe_parameters")
        assert client.wait_for_service(timeout_sec=10.0)
        future = client.call_async(
            DescribeParameters.Request(names=["working_width", "min_inliers"])
        )
        probe.wait_for(future.done, 20.0, "describe_parameters")
        width, min_inliers = future.result().descriptors
        assert (
            width.read_only
            and "cached keyframes were extracted at the working size" in width.description
        )
        assert not min_inliers.read_only and "writable at run time" in min_inliers.description
        assert node.stats()[""]["failed"] == 0


def _levels_since(probe, node, start: int) -> list[tuple[bytes, str]]:
    """(level, message) of the node's camera in the diagnostics received after index start."""
    prefix = node.get_fully_qualified_name() + ":"
    return [
        (status.level, status.message)
        for array in probe.diagnostics[start:]
        for status in array.status
        if status.name.startswith(prefix)
    ]


def _wait_level(probe, node, level: bytes, feed=None, timeout: float = 20.0) -> str:
    """Call feed() every 0.2 s (when given) until a diagnostics status of `level` arrives that
    was published after this call began; its message."""
    with probe.lock:
        start = len(probe.diagnostics)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if feed is not None:
            feed()
        with probe.lock:
            found = [m for lv, m in _levels_since(probe, node, start) if lv == level]
        if found:
            return found[0]
        time.sleep(0.2)
    with probe.lock:
        seen = _levels_since(probe, node, start)
    raise AssertionError(f"no diagnostics level {level!r} within {timeout} s; saw {seen[-5:]}")


def test_diagnostics_ok_stale_error_and_back_to_ok():
    overrides = dict(
        preset="orb",
        reliability="reliable",
        warn_throttle_s=0.0,
        diagnostics_period=0.2,
        diagnostics_window_s=1.0,
        stale_timeout_s=1.0,
        **PLANE,
    )
    with running_node(overrides) as (node, probe):
        frames = Frames(probe)
        message = _wait_level(probe, node, DiagnosticStatus.OK, feed=frames.send)
        assert message.startswith("last 1 s:") and " 0 failed, 0 rejected" in message
        # OK comes with the first image received; its processing may still be under way
        probe.wait_for(lambda: node.stats()[""]["processed"] > 0, 20.0, "a processed frame")
        processed = node.stats()[""]["processed"]
        assert processed > 0

        message = _wait_level(probe, node, DiagnosticStatus.STALE)  # images stopped
        assert message.startswith("no image for ") and float(message.split()[3]) >= 1.0

        def bad():  # an unsupported encoding: rejected on arrival, every one
            msg = Image(
                header=make_header(frames.stamp_ns, "cam"),
                height=48,
                width=64,
                encoding="yuv422",
                step=128,
            )
            msg.data = bytes(48 * 128)
            probe.image_pub.publish(msg)

        message = _wait_level(probe, node, DiagnosticStatus.ERROR, feed=bad)
        assert message.startswith("every frame failed or was rejected")

        message = _wait_level(probe, node, DiagnosticStatus.OK, feed=frames.send)
        assert " 0 rejected" in message
        assert node.stats()[""]["processed"] > processed and node.stats()[""]["rejected"] > 0
