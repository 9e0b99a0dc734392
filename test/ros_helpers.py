"""Shared fixtures for the node tests: a real SuperGlueNode and a probe node talking over DDS.

Both live in one rclpy Context (the conftest's per-run ROS_DOMAIN_ID keeps runs apart) and
spin on a background CallbackPoolExecutor (the node's own), so a test reads like a script: publish, then
`probe.wait_for(...)` what the node published.
"""

from __future__ import annotations

import itertools
import threading
import time
from contextlib import contextmanager

import numpy as np
import rclpy
from rcl_interfaces.msg import Log
from rclpy.context import Context
from superglue_ros.ros.executor import CallbackPoolExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from superglue_ros_msgs.msg import Correspondences, KeyframeFeatures, LoopCandidates
from superglue_ros_msgs.srv import GetKeyframe, VerifyLoop
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseWithCovarianceStamped

from image_helpers import png_bomb  # noqa: F401 - the node tests' helper too
from superglue_ros.ros.messages import make_header, stamp_to_ns
from superglue_ros.ros.node import SuperGlueNode

_NAMES = itertools.count()


def image_msg(
    image: np.ndarray, stamp_ns: int, frame_id: str = "cam", encoding: str | None = None
) -> Image:
    """uint8 gray/BGR array -> Image (mono8/bgr8 unless `encoding` says otherwise)."""
    image = np.ascontiguousarray(image)
    if encoding is None:
        encoding = "mono8" if image.ndim == 2 else "bgr8"
    h, w = image.shape[:2]
    msg = Image(
        header=make_header(stamp_ns, frame_id),
        height=h,
        width=w,
        encoding=encoding,
        is_bigendian=0,
        step=image.strides[0] if image.size else 0,
    )
    msg.data = image.tobytes()
    return msg


class Probe(Node):
    """Publishes camera input to the node under test and records everything it publishes."""

    def __init__(
        self, context: Context, prefix: str = "", namespace: str = "", node_name: str = ""
    ):
        # unique names: rosout routes logs by node name across the whole process
        super().__init__(
            f"superglue_test_probe_{next(_NAMES)}", namespace=namespace, context=context
        )
        self.node_name = node_name  # keep only this node's /rosout lines ('' = all)
        t = (lambda name: f"{prefix}/{name}") if prefix else (lambda name: name)
        sensor = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = self.create_publisher(Image, t("image"), sensor)
        self.compressed_pub = self.create_publisher(CompressedImage, t("image/compressed"), sensor)
        self.info_pub = self.create_publisher(CameraInfo, t("camera_info"), sensor)
        self.candidates_pub = self.create_publisher(LoopCandidates, t("loop_candidates"), 10)
        self.verify = self.create_client(
            VerifyLoop, t("verify_loop"), qos_profile=QoSProfile(depth=100)
        )
        self.get_keyframe = self.create_client(GetKeyframe, t("get_keyframe"))
        self.lock = threading.Lock()
        self.correspondences: list[Correspondences] = []
        self.keyframes: list[KeyframeFeatures] = []
        self.relative_poses: list[PoseWithCovarianceStamped] = []
        self.debug_images: list[Image] = []
        self.diagnostics: list[DiagnosticArray] = []
        self.logs: list[str] = []
        keep = lambda store: lambda msg: self._keep(store, msg)  # noqa: E731
        self.create_subscription(
            Correspondences, t("correspondences"), keep(self.correspondences), 100
        )
        self.create_subscription(KeyframeFeatures, t("keyframes"), keep(self.keyframes), 100)
        self.create_subscription(
            PoseWithCovarianceStamped, t("relative_pose"), keep(self.relative_poses), 100
        )
        self.create_subscription(Image, t("debug_image"), keep(self.debug_images), 10)
        self.create_subscription(DiagnosticArray, "/diagnostics", keep(self.diagnostics), 10)
        self.create_subscription(Log, "/rosout", self._on_log, 1000)

    def _on_log(self, msg: Log) -> None:
        if not self.node_name or msg.name.split(".")[-1] == self.node_name:
            self._keep(self.logs, msg.msg)

    def _keep(self, store: list, msg) -> None:
        with self.lock:
            store.append(msg)

    def wait_for(self, predicate, timeout: float = 20.0, what: str = "condition"):
        """Poll `predicate()` until truthy; return its value or fail with `what`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                value = predicate()
            if value:
                return value
            time.sleep(0.02)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")

    def correspondence_for(self, stamp_ns: int, kind: int = Correspondences.ODOMETRY, timeout=20.0):
        """The Correspondences of the frame with this stamp (waits for it)."""
        return self.wait_for(
            lambda: next(
                (
                    m
                    for m in self.correspondences
                    if stamp_to_ns(m.header.stamp) == stamp_ns and m.kind == kind
                ),
                None,
            ),
            timeout,
            f"Correspondences for stamp {stamp_ns}",
        )

    def log_containing(self, text: str, timeout: float = 10.0) -> str:
        return self.wait_for(
            lambda: next((m for m in self.logs if text in m), None),
            timeout,
            f"a log line containing {text!r}",
        )

    def call_verify(self, query_id: int, candidate_ids, timeout: float = 30.0):
        assert self.verify.wait_for_service(timeout_sec=10.0), "verify_loop service not available"
        request = VerifyLoop.Request(
            query_id=int(query_id), candidate_ids=[int(c) for c in candidate_ids]
        )
        future = self.verify.call_async(request)
        self.wait_for(future.done, timeout, "the verify_loop response")
        return future.result()

    def call_get_keyframe(self, keyframe_id: int, timeout: float = 30.0):
        assert self.get_keyframe.wait_for_service(timeout_sec=10.0), "get_keyframe not available"
        future = self.get_keyframe.call_async(GetKeyframe.Request(id=int(keyframe_id)))
        self.wait_for(future.done, timeout, "the get_keyframe response")
        return future.result()

    def set_parameters(self, node_fqn: str, timeout: float = 20.0, **values) -> list:
        """Set parameters through the node's own set_parameters service (as `ros2 param set`
        does); one rcl_interfaces/SetParametersResult per value, in order."""
        from rcl_interfaces.srv import SetParameters

        client = self.create_client(SetParameters, f"{node_fqn}/set_parameters")
        try:
            assert client.wait_for_service(timeout_sec=10.0), "set_parameters not available"
            request = SetParameters.Request(
                parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]
            )
            future = client.call_async(request)
            self.wait_for(future.done, timeout, "the set_parameters response")
            return list(future.result().results)
        finally:
            self.destroy_client(client)

    def wait_for_node(self, timeout: float = 10.0) -> None:
        """Discovery: the node's image subscription and correspondences publisher are matched."""
        self.wait_for(
            lambda: (
                self.image_pub.get_subscription_count() > 0
                or self.compressed_pub.get_subscription_count() > 0
            ),
            timeout,
            "node discovery",
        )
        topic = self._corr_topic()
        self.wait_for(
            lambda: self.count_publishers(topic) > 0, timeout, "correspondences publisher"
        )

    def _corr_topic(self) -> str:
        for sub in self.subscriptions:
            if sub.msg_type is Correspondences:
                return sub.topic_name
        raise RuntimeError("no correspondences subscription")


@contextmanager
def running_node(
    overrides: dict | None = None,
    prefix: str = "",
    ros_args: list[str] | None = None,
    num_threads: int = 4,
    more_prefixes: tuple[str, ...] = (),
    node_class=SuperGlueNode,
    wait: bool = True,
):
    """Yield (node, probe) spinning in the background; everything is torn down afterwards.
    `more_prefixes`: extra probes (other camera namespaces) in `probe.others[prefix]`.
    `node_class`: e.g. the lifecycle node, with `wait=False` (it subscribes only once active)."""
    context = Context()
    rclpy.init(
        context=context, args=["superglue-test"] + (["--ros-args", *ros_args] if ros_args else [])
    )
    params = [Parameter(k, value=v) for k, v in (overrides or {}).items()]
    node = probe = None
    executor = CallbackPoolExecutor(num_threads=num_threads, context=context)
    thread = None
    try:
        # each node in its own namespace, so nodes of different tests never answer each other
        n = next(_NAMES)
        namespace, name = f"/sgtest{n}", f"superglue_node_{n}"
        node = node_class(name, namespace=namespace, context=context, parameter_overrides=params)
        probe = Probe(context, prefix, namespace, name)
        probe.others = {p: Probe(context, p, namespace, name) for p in more_prefixes}
        for n in (node, probe, *probe.others.values()):
            executor.add_node(n)
        thread = threading.Thread(target=executor.spin, daemon=True)
        thread.start()
        for p in (probe, *probe.others.values()):
            if wait:
                p.wait_for_node()
        yield node, probe
    finally:
        executor.shutdown(timeout_sec=5.0)
        if thread is not None:
            thread.join(timeout=10.0)
        for n in (*getattr(probe, "others", {}).values(), probe, node):
            if n is not None:
                n.destroy_node()
        if context.ok():
            rclpy.shutdown(context=context)


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc), after a garbage collection and
    glibc's malloc_trim: freed memory that the allocator merely caches in its per-thread arenas
    (the executor runs several threads) is returned to the OS first, so a growth between two
    readings means memory that is still referenced, not allocator slack."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass  # not glibc: read RSS as it is
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmRSS not found in /proc/self/status")


def check_inliers_against_homography(sequence, frame_of: dict, msg, min_inliers: int) -> None:
    """A Correspondences of the synthetic `sequence` (frame_of: stamp -> frame index): at least
    `min_inliers` inliers, >= 90% of them within 3 px of the exact homography."""
    q = frame_of[stamp_to_ns(msg.header.stamp)]
    r = frame_of[stamp_to_ns(msg.reference_stamp)]
    inl = np.asarray(msg.inliers, bool)
    ref = np.reshape(msg.reference_points, (-1, 2))[inl]
    query = np.reshape(msg.query_points, (-1, 2))[inl]
    errors = np.linalg.norm(sequence.warp_points(r, q, ref) - query, axis=1)
    assert inl.sum() >= min_inliers, f"{inl.sum()} inliers (frame {q} vs frame {r})"
    assert (errors < 3.0).mean() >= 0.9, f"{(errors < 3.0).mean():.2f} within 3 px"
