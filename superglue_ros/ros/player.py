"""superglue-player: publishes the synthetic loop sequence as a camera would.

The default input of the demo and of the node's end-to-end tests: frames of
``frontend.synthetic`` (photos shipped with scikit-image, smooth camera motion that comes
back to its start) on ``image`` (sensor_msgs/Image) and ``camera_info`` at a fixed rate.
Stamps are wall time at a steady 1/rate spacing; ``published`` maps each stamp back to the
sequence index so a test can look up the exact ground-truth homography.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from ..frontend.synthetic import SyntheticSequence, make_sequence
from .messages import make_header

ENCODINGS = ("bgr8", "rgb8", "mono8")


def frame_to_image_msg(frame_bgr: np.ndarray, encoding: str, stamp_ns: int, frame_id: str) -> Image:
    """BGR uint8 [H,W,3] -> sensor_msgs/Image in the requested encoding."""
    import cv2

    if encoding == "rgb8":
        data = np.ascontiguousarray(frame_bgr[:, :, ::-1])
    elif encoding == "mono8":
        data = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)
    elif encoding == "bgr8":
        data = np.ascontiguousarray(frame_bgr)
    else:
        raise ValueError(f"unsupported player encoding {encoding!r} (choose from {ENCODINGS})")
    h, w = data.shape[:2]
    msg = Image(
        header=make_header(stamp_ns, frame_id),
        height=h,
        width=w,
        encoding=encoding,
        is_bigendian=0,
        step=w * (1 if data.ndim == 2 else 3),
    )
    msg.data = data.tobytes()
    return msg


def camera_info_msg(
    K: np.ndarray, width: int, height: int, stamp_ns: int, frame_id: str
) -> CameraInfo:
    msg = CameraInfo(header=make_header(stamp_ns, frame_id), width=width, height=height)
    msg.distortion_model = "plumb_bob"
    msg.d = [0.0] * 5
    msg.k = np.asarray(K, float).reshape(9)
    msg.r = np.eye(3).reshape(9)
    msg.p = np.hstack([np.asarray(K, float), np.zeros((3, 1))]).reshape(12)
    return msg


class SequencePlayer(Node):
    """Publishes `sequence` once (or `loops` times) at `rate` Hz, then sets `done`. Stamps are
    1/rate apart from the first frame's wall time, or (`wall_stamps`) each frame's own wall
    time at publishing, as a camera stamps its captures even when the timer falls behind."""

    def __init__(
        self,
        sequence: SyntheticSequence,
        rate: float = 10.0,
        encoding: str = "bgr8",
        frame_id: str = "synthetic_camera",
        loops: int = 1,
        reliable: bool = False,
        publish_camera_info: bool = True,
        node_name: str = "superglue_player",
        wall_stamps: bool = False,
        **kwargs,
    ):
        super().__init__(node_name, **kwargs)
        if encoding not in ENCODINGS:
            raise ValueError(f"unsupported player encoding {encoding!r} (choose from {ENCODINGS})")
        self.sequence, self.encoding, self.frame_id = sequence, encoding, frame_id
        self.wall_stamps = wall_stamps
        self.total = len(sequence) * max(1, int(loops))
        qos = QoSProfile(
            depth=1,
            reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        )
        self.image_pub = self.create_publisher(Image, "image", qos)
        self.info_pub = (
            self.create_publisher(CameraInfo, "camera_info", qos) if publish_camera_info else None
        )
        self.period_ns = int(round(1e9 / rate))
        self.published: list[tuple[int, int]] = []  # (sequence index, stamp_ns)
        self.done = False
        self._start_ns = None
        self.timer = self.create_timer(1.0 / rate, self._tick)

    def _tick(self) -> None:
        k = len(self.published)
        if k >= self.total:
            self.done = True
            self.timer.cancel()
            return
        if self._start_ns is None:
            self._start_ns = time.time_ns()
        index = k % len(self.sequence)
        stamp_ns = time.time_ns() if self.wall_stamps else self._start_ns + k * self.period_ns
        if self.info_pub is not None:
            self.info_pub.publish(
                camera_info_msg(
                    self.sequence.K,
                    self.sequence.width,
                    self.sequence.height,
                    stamp_ns,
                    self.frame_id,
                )
            )
        self.image_pub.publish(
            frame_to_image_msg(self.sequence.frame(index), self.encoding, stamp_ns, self.frame_id)
        )
        self.published.append((index, stamp_ns))


def wait_for_subscribers(node: Node, publisher, executor, timeout_s: float) -> bool:
    """Spin until `publisher` has a subscriber (discovery) or the timeout passes."""
    deadline = time.monotonic() + timeout_s
    while publisher.get_subscription_count() == 0 and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    return publisher.get_subscription_count() > 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `superglue-player`; takes --ros-args (e.g. -r image:=/cam/image)."""
    args = list(sys.argv[1:] if argv is None else argv)
    own = rclpy.utilities.remove_ros_args(["superglue-player"] + args)[1:]
    parser = argparse.ArgumentParser(prog="superglue-player", description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=10.0, help="frames per second (default 10)")
    parser.add_argument(
        "--frames", type=int, default=80, help="frames in the sequence (default 80)"
    )
    parser.add_argument("--loops", type=int, default=1, help="times the sequence is played")
    parser.add_argument("--encoding", choices=ENCODINGS, default="bgr8")
    parser.add_argument("--frame-id", default="synthetic_camera")
    parser.add_argument(
        "--reliable", action="store_true", help="RELIABLE QoS (default best effort)"
    )
    parser.add_argument(
        "--wait-subscriber",
        type=float,
        default=10.0,
        help="seconds to wait for a subscriber before starting (default 10)",
    )
    options = parser.parse_args(own)
    if options.rate <= 0:
        parser.error("--rate must be > 0")

    sequence = make_sequence(num_frames=options.frames)
    rclpy.init(args=["superglue-player"] + args)
    try:
        player = SequencePlayer(
            sequence,
            options.rate,
            options.encoding,
            options.frame_id,
            options.loops,
            options.reliable,
        )
        executor = rclpy.executors.SingleThreadedExecutor()
        executor.add_node(player)
        player.timer.cancel()
        if not wait_for_subscribers(player, player.image_pub, executor, options.wait_subscriber):
            player.get_logger().warning("no subscriber on image yet; publishing anyway")
        player.timer.reset()
        while rclpy.ok() and not player.done:
            executor.spin_once(timeout_sec=0.1)
        player.get_logger().info(f"published {len(player.published)} frames")
        player.destroy_node()
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == "__main__":
    sys.exit(main())
