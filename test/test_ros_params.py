"""config/superglue.yaml against the declared parameters, and the node as a real subprocess:
params file + remapping, a namespaced launch, and fail-fast start-up on bad weights/params."""

import pathlib
import subprocess
import sys
import time

import cv2
import pytest
import rclpy
import yaml
from rcl_interfaces.srv import GetParameters, DescribeParameters
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from superglue_ros_msgs.msg import Correspondences

from ros_helpers import image_msg
from superglue_ros.frontend.synthetic import make_sequence
from superglue_ros.ros.demo import shipped_weights_present
from superglue_ros.ros.parameters import all_parameters

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIG = REPO / "config" / "superglue.yaml"
NODE_CMD = [sys.executable, "-m", "superglue_ros.ros.node"]
NODE_KEY = "/**/superglue_node"


def load_config(path=CONFIG) -> dict:
    data = yaml.safe_load(path.read_text())
    assert list(data) == [NODE_KEY], f"unexpected top-level keys {list(data)}"
    return data[NODE_KEY]["ros__parameters"]


def test_yaml_lists_every_parameter_with_its_declared_default():
    params = load_config()
    specs = {spec.name: spec.default for spec in all_parameters()}
    assert sorted(params) == sorted(specs)
    for name, default in specs.items():
        assert params[name] == default and type(params[name]) is type(default), name


def test_every_yaml_parameter_has_a_comment():
    lines = CONFIG.read_text().splitlines()
    names = set(load_config())
    for i, line in enumerate(lines):
        key = line.strip().split(":")[0]
        if line.startswith("    ") and key in names:
            assert lines[i - 1].strip().startswith("#"), f"{key} has no comment above it"


def test_yaml_marks_exactly_the_writable_parameters():
    """The comment above each key says '(writable at run time)' iff its descriptor does."""
    lines = CONFIG.read_text().splitlines()
    specs = {spec.name: spec for spec in all_parameters()}
    for i, line in enumerate(lines):
        key = line.strip().split(":")[0]
        if line.startswith("    ") and key in specs:
            comment = []
            for above in reversed(lines[:i]):
                if not above.strip().startswith("#"):
                    break
                comment.insert(0, above.strip("# "))
            marked = "(writable at run time)" in " ".join(comment)
            assert marked == (not specs[key].read_only), key
    writable = {name for name, spec in specs.items() if not spec.read_only}
    assert {"min_inliers", "max_frames", "min_loop_inliers", "stale_timeout_s"} <= writable
    assert not {"working_width", "global_descriptor", "preset", "cameras"} & writable


def test_declared_descriptors_have_descriptions_and_ranges():
    """Read back through the node's own describe_parameters service in a subprocess-free way."""
    from ros_helpers import running_node

    with running_node(dict(preset="orb")) as (node, probe):
        client = probe.create_client(
            DescribeParameters, f"{node.get_fully_qualified_name()}/describe_parameters"
        )
        assert client.wait_for_service(timeout_sec=10.0)
        names = [spec.name for spec in all_parameters()]
        future = client.call_async(DescribeParameters.Request(names=names))
        probe.wait_for(future.done, 20.0, "describe_parameters")
        described = {d.name: d for d in future.result().descriptors}
    assert sorted(described) == sorted(names)
    assert all(d.description for d in described.values())
    assert described["max_keypoints"].integer_range[0].from_value == -1
    assert described["min_inlier_ratio"].floating_point_range[0].to_value == 1.0
    assert described["preset"].read_only and not described["debug_image"].read_only


class Client:
    """A probe in its own context that publishes frames and collects Correspondences."""

    def __init__(self, image_topic: str, corr_topic: str):
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = Node("params_test_client", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.pub = self.node.create_publisher(
            Image, image_topic, QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        )
        self.received = []
        self.node.create_subscription(Correspondences, corr_topic, self.received.append, 10)

    def spin_until(self, predicate, timeout: float, process=None) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process is not None and process.poll() is not None:
                return False
            self.executor.spin_once(timeout_sec=0.05)
            if predicate():
                return True
        return False

    def get_parameters(self, node_fqn: str, names: list[str]) -> list:
        client = self.node.create_client(GetParameters, f"{node_fqn}/get_parameters")
        assert client.wait_for_service(timeout_sec=20.0)
        future = client.call_async(GetParameters.Request(names=names))
        assert self.spin_until(future.done, 20.0)
        return [rclpy.parameter.parameter_value_to_python(v) for v in future.result().values]

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def start_node(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        NODE_CMD + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO
    )


def stop_node(process: subprocess.Popen) -> str:
    if process.poll() is None:
        process.send_signal(2)  # SIGINT, as ros2 launch / Ctrl-C would
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.communicate()[0]


def run_until_correspondences(client: Client, process, frames) -> list:
    """Publish frames (every 3 s at most) until two Correspondences came back.

    Frames are sent as 320x240 mono8: the node subscribes best-effort (the file's default),
    and large best-effort messages split into many UDP fragments are easily lost on a loaded
    machine; small frames keep this test about parameters and remapping.
    """
    assert client.spin_until(lambda: client.pub.get_subscription_count() > 0, 60.0, process), (
        "the node never subscribed to the remapped image topic"
    )
    for k, frame in enumerate(frames):
        small = cv2.cvtColor(
            cv2.resize(frame, (320, 240), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY
        )
        client.pub.publish(image_msg(small, 10**9 + k * 10**8, "cam"))
        if client.spin_until(lambda: len(client.received) >= 2, 3.0, process):
            break
    return client.received


def test_params_file_and_remapping_in_a_subprocess():
    """`superglue-node --ros-args --params-file config/superglue.yaml -r image:=/cam/image`."""
    args = ["--ros-args", "--params-file", str(CONFIG), "-r", "image:=/cam/image"]
    if not shipped_weights_present():  # the file's preset needs the shipped weights
        args += ["-p", "preset:=orb"]
    process = start_node(args)
    client = Client("/cam/image", "/correspondences")
    sequence = make_sequence(num_frames=40, loop_frames=400)
    try:
        received = run_until_correspondences(
            client, process, [sequence.frame(i) for i in range(40)]
        )
        values = client.get_parameters(
            "/superglue_node", ["working_width", "reliability", "preset"]
        )
    finally:
        client.close()
        output = stop_node(process)
    assert received, f"no Correspondences on /correspondences; node output:\n{output}"
    assert received[0].kind == Correspondences.ODOMETRY and len(received[0].query_points) > 0
    assert (received[0].query_width, received[0].query_height) == (320, 240)
    assert values[:2] == [640, "best_effort"]
    assert process.returncode == 0, output


def test_namespaced_node_reads_the_wildcard_params_file(tmp_path):
    """The /**/superglue_node key applies in a namespace (as `ros2 launch ... namespace:=front`)."""
    config = load_config()
    config.update(preset="orb", max_keypoints=300, loop_top_k=2, debug_image="never")
    custom = tmp_path / "custom.yaml"
    custom.write_text(yaml.safe_dump({NODE_KEY: {"ros__parameters": config}}))
    process = start_node(["--ros-args", "--params-file", str(custom), "-r", "__ns:=/front"])
    client = Client("/front/image", "/front/correspondences")
    sequence = make_sequence(num_frames=40, loop_frames=400)
    try:
        received = run_until_correspondences(
            client, process, [sequence.frame(i) for i in range(40)]
        )
        values = client.get_parameters(
            "/front/superglue_node", ["preset", "max_keypoints", "loop_top_k", "debug_image"]
        )
    finally:
        client.close()
        output = stop_node(process)
    assert values == ["orb", 300, 2, "never"], output
    assert received and received[0].num_query_keypoints <= 300, output


@pytest.mark.parametrize("case", ["missing", "corrupt", "bad_param", "out_of_range"])
def test_start_up_fails_fast_with_a_clear_line(tmp_path, case):
    if case == "missing":
        path = "/nonexistent/dir/superglue.pth"
        args = [
            "-p",
            "extractor:=orb",
            "-p",
            "matcher:=superglue",
            "-p",
            f"superglue_weights:={path}",
        ]
        expected = [path]
    elif case == "corrupt":
        path = tmp_path / "superpoint.pth"
        path.write_bytes(b"this is not a torch checkpoint" * 10)
        args = ["-p", "preset:=superpoint-mnn", "-p", f"superpoint_weights:={path}"]
        expected = [str(path)]
    elif case == "bad_param":
        args = ["-p", "preset:=nonsense"]
        expected = ["'preset'", "nonsense"]
    else:
        args = ["-p", "max_keypoints:=99999"]
        expected = ["'max_keypoints'"]
    started = time.monotonic()
    result = subprocess.run(
        NODE_CMD + ["--ros-args", *args], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    fatal = [line for line in output.splitlines() if "cannot start" in line]
    assert len(fatal) == 1, output
    assert all(text in fatal[0] for text in expected), fatal[0]
    assert "Traceback" not in output
    print(f"{case}: exit 2 after {time.monotonic() - started:.1f} s: {fatal[0]}")
