"""The managed node (superglue_ros/ros/lifecycle_node.py) driven through its real lifecycle
services, as `ros2 lifecycle set` and nav2's lifecycle manager do: no correspondences before
activate, correspondences after, none after deactivate, again after a second activate; cleanup
releases the models; a configure with unusable weights fails with one error line and leaves
the node unconfigured."""

import time

from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState

from ros_helpers import check_inliers_against_homography, image_msg, running_node
from superglue_ros.frontend.synthetic import make_sequence
from superglue_ros.ros.lifecycle_node import SuperGlueLifecycleNode
from superglue_ros.ros.messages import stamp_to_ns

SEQUENCE = make_sequence(num_frames=200, loop_frames=200)
OVERRIDES = dict(
    preset="orb",
    reliability="reliable",
    warn_throttle_s=0.0,
    geometric_model="homography",
    loop_geometric_model="homography",
)


class Lifecycle:
    """ChangeState / GetState clients of the node under test, on the probe."""

    def __init__(self, probe, node):
        fqn = node.get_fully_qualified_name()
        self.probe = probe
        self.change = probe.create_client(ChangeState, f"{fqn}/change_state")
        self.get = probe.create_client(GetState, f"{fqn}/get_state")
        assert self.change.wait_for_service(timeout_sec=10.0) and self.get.wait_for_service(
            timeout_sec=10.0
        )

    def _call(self, client, request):
        future = client.call_async(request)
        self.probe.wait_for(future.done, 120.0, f"{client.srv_name} response")
        return future.result()

    def transition(self, transition_id: int) -> bool:
        return self._call(
            self.change, ChangeState.Request(transition=Transition(id=transition_id))
        ).success

    def state(self) -> str:
        return self._call(self.get, GetState.Request()).current_state.label


def _send(probe, frames: list[int], stamps: dict) -> list[int]:
    sent = []
    for index in frames:
        stamp = 10**9 + index * 100_000_000
        stamps[stamp] = index
        probe.image_pub.publish(image_msg(SEQUENCE.frame(index), stamp, "cam"))
        sent.append(stamp)
        time.sleep(0.1)
    return sent


def _answered(probe, stamps: list[int]) -> list:
    """What the probe received for these stamps (call it holding probe.lock, as wait_for does)."""
    return [m for m in probe.correspondences if stamp_to_ns(m.header.stamp) in stamps]


def test_transitions_gate_processing():
    with running_node(OVERRIDES, node_class=SuperGlueLifecycleNode, wait=False) as (node, probe):
        life = Lifecycle(probe, node)
        stamps: dict[int, int] = {}
        assert life.state() == "unconfigured" and node.extractor is None
        assert probe.image_pub.get_subscription_count() == 0

        assert life.transition(Transition.TRANSITION_CONFIGURE)
        assert life.state() == "inactive" and node.extractor.name == "orb"
        assert probe.image_pub.get_subscription_count() == 0  # inactive: nothing subscribed
        early = _send(probe, [0, 1, 2], stamps)
        time.sleep(1.0)
        with probe.lock:
            assert _answered(probe, early) == [] and not probe.keyframes

        assert life.transition(Transition.TRANSITION_ACTIVATE)
        assert life.state() == "active"
        probe.wait_for_node()
        live = _send(probe, [3, 4, 5, 6], stamps)
        probe.wait_for(lambda: len(_answered(probe, live)) == 3, 30.0, "odometry of frames 4-6")
        with probe.lock:
            replies = _answered(probe, live)
        for msg in replies:
            check_inliers_against_homography(SEQUENCE, stamps, msg, 30)
        assert probe.call_verify(0, [99]).success  # the services are up while active

        assert life.transition(Transition.TRANSITION_DEACTIVATE)
        assert life.state() == "inactive"
        probe.wait_for(
            lambda: probe.image_pub.get_subscription_count() == 0,
            10.0,
            "the image subscription to go",
        )
        with probe.lock:
            before = len(probe.correspondences)
        paused = _send(probe, [7, 8, 9], stamps)
        time.sleep(1.0)
        with probe.lock:
            assert _answered(probe, paused) == [] and len(probe.correspondences) == before
        probe.wait_for(lambda: not probe.verify.service_is_ready(), 10.0, "verify_loop to go")

        assert life.transition(Transition.TRANSITION_ACTIVATE)  # again: same keyframes go on
        probe.wait_for_node()
        again = _send(probe, [10, 11], stamps)
        probe.wait_for(
            lambda: len(_answered(probe, again)) == 2, 30.0, "odometry after re-activate"
        )
        with probe.lock:
            assert {m.session_id for m in _answered(probe, again)} == {replies[0].session_id}

        assert life.transition(Transition.TRANSITION_DEACTIVATE)
        assert life.transition(Transition.TRANSITION_CLEANUP)
        assert life.state() == "unconfigured"
        assert node.extractor is None and node.cameras == []
        assert life.transition(Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
        assert life.state() == "finalized"
        assert node.stats() == {}


def test_configure_with_missing_weights_fails_and_stays_unconfigured():
    path = "/nonexistent/dir/superglue.pth"
    overrides = dict(extractor="orb", matcher="superglue", superglue_weights=path)
    with running_node(overrides, node_class=SuperGlueLifecycleNode, wait=False) as (node, probe):
        life = Lifecycle(probe, node)
        assert not life.transition(Transition.TRANSITION_CONFIGURE)
        assert life.state() == "unconfigured"
        line = probe.log_containing("configure failed: ")
        assert path in line and node.extractor is None


def test_entry_point_starts_unconfigured_and_refuses_bad_parameters():
    """`superglue-lifecycle-node` as a process: a bad parameter ends it at once (exit 2, one
    line); good ones leave it unconfigured, without models, until someone configures it, and
    SIGINT ends it cleanly."""
    import pathlib
    import subprocess
    import sys

    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    cmd = [sys.executable, "-m", "superglue_ros.ros.lifecycle_node", "--ros-args"]
    cwd = pathlib.Path(__file__).resolve().parents[1]
    bad = subprocess.run(
        cmd + ["-p", "preset:=nonsense"], capture_output=True, text=True, timeout=120, cwd=cwd
    )
    fatal = [line for line in (bad.stdout + bad.stderr).splitlines() if "cannot start" in line]
    assert bad.returncode == 2 and len(fatal) == 1 and "'preset'" in fatal[0], bad.stderr

    process = subprocess.Popen(
        cmd + ["-p", "preset:=orb", "-r", "__ns:=/lifecycle_cli"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=cwd,
    )
    context = Context()
    rclpy.init(context=context)
    node = Node("lifecycle_cli_client", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        client = node.create_client(GetState, "/lifecycle_cli/superglue_node/get_state")
        assert client.wait_for_service(timeout_sec=60.0), "no get_state service"
        future = client.call_async(GetState.Request())
        executor.spin_until_future_complete(future, timeout_sec=20.0)
        assert future.result().current_state.label == "unconfigured"
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
        process.send_signal(2)
        output = process.communicate(timeout=30)[0]
    assert process.returncode == 0, output
