"""superglue-player as a subprocess (exact frames on the wire) and superglue-demo end to end
with the fast ORB preset (the README's `make demo` uses the shipped SuperGlue weights)."""

import json
import subprocess
import sys
import time

import cv2
import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from superglue_ros.frontend.synthetic import make_sequence
from superglue_ros.images import image_to_array
from superglue_ros.ros.demo import main as demo_main


def test_player_publishes_the_exact_sequence_frames_and_intrinsics():
    frames = 6
    sequence = make_sequence(num_frames=frames)
    context = Context()
    rclpy.init(context=context)
    node = Node("player_test_listener", context=context)
    images, infos = [], []
    qos = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)
    node.create_subscription(Image, "/sim/image", images.append, qos)
    node.create_subscription(CameraInfo, "/sim/camera_info", infos.append, qos)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "superglue_ros.ros.player",
            "--frames",
            str(frames),
            "--rate",
            "5",
            "--reliable",
            "--encoding",
            "rgb8",
            "--ros-args",
            "-r",
            "__ns:=/sim",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while len(images) < frames and time.monotonic() < deadline and process.poll() is None:
            executor.spin_once(timeout_sec=0.05)
        output = process.communicate(timeout=30)[0]
    finally:
        if process.poll() is None:
            process.kill()
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=context)
    assert process.returncode == 0, output
    assert len(images) == frames and len(infos) == frames, output
    for i, msg in enumerate(images):
        assert msg.encoding == "rgb8" and (msg.width, msg.height) == (640, 480)
        decoded = image_to_array(msg.encoding, msg.height, msg.width, msg.step, msg.data)
        np.testing.assert_array_equal(decoded, sequence.frame(i))
    stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in images]
    assert np.all(np.diff(stamps) == 200_000_000)  # steady 1/rate spacing
    np.testing.assert_allclose(np.reshape(infos[0].k, (3, 3)), sequence.K)


def test_demo_runs_the_node_and_writes_a_report(tmp_path, capsys):
    out = tmp_path / "demo"
    assert (
        demo_main(["--output-dir", str(out), "--preset", "orb", "--frames", "40", "--rate", "10"])
        == 0
    )
    printed = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert (out / "report.txt").read_text() in printed
    assert report["extractor"] == "orb" and report["frames_published"] == 40
    assert report["frames_processed"] >= 5
    assert report["frames_processed"] + report["frames_dropped"] + report["frames_rejected"] <= 40
    assert report["vo_messages"] == report["frames_processed"] - 1
    assert report["keyframes"][0]["frame"] == 0
    assert report["latency_p50_ms"] > 0 and report["latency_p90_ms"] >= report["latency_p50_ms"]
    assert "debug_last.png" in report["files"]
    debug = cv2.imread(str(out / "debug_last.png"))
    assert debug is not None and debug.shape[0] >= 240 and debug.shape[1] > 640
