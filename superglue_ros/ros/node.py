"""superglue_node: camera streams -> FrontEnd -> correspondence messages.

A thin adapter. Subscription callbacks check stamp and frame_id (``StreamGate``) and the
image's size (raw images are converted, compressed ones checked from their header only), and
keep only the newest frame per camera (a frame still waiting when a newer one arrives is
dropped and counted, never queued). Three worker threads:
  extract   decodes compressed frames, pairs each frame with its camera_info and extracts its
            features (``FrontEnd.extract``), then hands it over through a one-frame slot;
  odometry  matches it (``FrontEnd.process(extracted, defer_loop=True)``) and publishes the
            keyframe, the ODOMETRY message and its relative pose at once. The two overlap:
            frame t+1 is extracted while frame t is matched, each stage on half the cores
            (``stage_threads``);
  loop      runs the new keyframes' loop jobs (``FrontEnd.run_loop_job``) at a lower OS
            priority, newest first from a bounded queue (``loop_queue_size``; the oldest job is
            dropped and counted when it is full), and publishes the LOOP_CLOSURE messages.
The models are shared through one lock per model in which odometry goes first. Loop requests
(topic and service) run on their own callback group with a bounded number in flight, so they
never hold up the image callbacks. SIGINT/SIGTERM stop the workers before the ROS context is
shut down. Set-up is cut into ``configure_pipeline`` (models, front-ends, publishers) and
``activate_pipeline`` (inputs, services, timers, workers), with ``deactivate_pipeline`` /
``cleanup_pipeline`` undoing them: the plain node runs the first two in its constructor, the
lifecycle node (lifecycle_node.py) on its transitions. Writable parameters reach the running
front-ends through ``FrontEnd.update_conf``; the diagnostics level comes from diagnostics.py.

Per camera namespace ``<cam>`` ('' = the node's namespace):
  subscribes  <cam>/image (sensor_msgs/Image) or <cam>/image/compressed, <cam>/camera_info,
              <cam>/loop_candidates (superglue_ros_msgs/LoopCandidates)
  publishes   <cam>/correspondences, <cam>/relative_pose, <cam>/keyframes, <cam>/debug_image
  services    <cam>/verify_loop (superglue_ros_msgs/VerifyLoop), <cam>/get_keyframe
              (superglue_ros_msgs/GetKeyframe), <cam>/reset (superglue_ros_msgs/Reset)
and /diagnostics (diagnostic_msgs/DiagnosticArray) for the node.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
import uuid
from collections import deque

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseWithCovarianceStamped
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.exceptions import NameValidationException, ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy, HistoryPolicy, DurabilityPolicy
from rclpy.service import Service
from rclpy.signals import SignalHandlerOptions
from rclpy.timer import Timer
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from superglue_ros_msgs.msg import Correspondences, KeyframeFeatures, LoopCandidates, LoopResult
from superglue_ros_msgs.srv import GetKeyframe, Reset, VerifyLoop

from ..features import (
    COMPONENT_DEFAULTS,
    build_components,
    component_names,
    resolve_device,
    runtime_of,
)
from ..frontend.model_lock import FOREGROUND
from ..frontend.pipeline import ExtractedFrame, Frame, FrameRejectedError, FrontEnd, LoopJob
from ..heap import TRIM_PERIOD_S, bound_heap, trim_heap
from .conversions import ImageConversionError, check_compressed
from .diagnostics import LEVEL_NAMES, CountWindow, Counts, DiagnosticsConf, camera_level
from .executor import CallbackPoolExecutor
from .messages import (
    array_to_image_msg,
    camera_info_to_model,
    compressed_msg_to_array,
    correspondence_to_msg,
    image_msg_to_array,
    keyframe_to_msg,
    loop_result_to_msg,
    relative_pose_msg,
    stamp_to_ns,
)
from .parameters import ParameterSpec, all_parameters, check_value, descriptor_text
from .stream_gate import StreamGate
from .streams import CameraStream, PendingFrame, ThrottledLog, topic_name

NODE_NAME = "superglue_node"
CAMERA_INFO_QOS_CHECK_S = 1.0  # how often camera_info publishers are checked for latched ones
REQUEST_QUEUE_DEPTH = 100  # verify_loop requests the middleware holds before dropping the oldest
LOOP_WORKER_NICE = 10  # added to the loop worker thread's nice value (Linux, best effort)


def stage_threads() -> int:
    """Intra-op threads of each pipeline stage (extraction, odometry): half the usable cores,
    since the two run at once. On 2 cores one each: the node at 30 Hz measured 17.0-18.3 Hz
    processed against 15.7 with two threads per stage, which then oversubscribe the cores."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 2
    return max(1, cores // 2)


class StartupError(RuntimeError):
    """The node cannot start (bad weights, bad parameters); the message says what and where."""


# ------------------------------------------------------------------------------------------
# small helpers
# ------------------------------------------------------------------------------------------


# ------------------------------------------------------------------------------------------
# the node
# ------------------------------------------------------------------------------------------


class SuperGlueNode(Node):
    """See the module docstring. Raises StartupError when models or parameters are unusable."""

    def __init__(self, node_name: str = NODE_NAME, *, autostart: bool = True, **kwargs):
        """autostart False (the lifecycle node): declare and check the parameters only; the
        models, topics and workers come with ``configure_pipeline`` / ``activate_pipeline``."""
        super().__init__(node_name, **kwargs)
        self._wake = threading.Condition()
        self._stop = False
        self._worker = self._extract_worker = None
        # extraction -> odometry hand-off: one extracted frame at most (see _extract_work)
        self._handoff = threading.Condition()
        self._ready: tuple[CameraStream, PendingFrame, ExtractedFrame] | None = None
        self._extraction_ended = False
        self._loop_worker = None
        self._loop_wake = threading.Condition()
        self._loop_jobs: deque[tuple[CameraStream, LoopJob]] = deque()  # oldest left, newest right
        self._loop_busy = False
        self._heap_trimmed_at = time.monotonic()  # see superglue_ros.heap
        self._heap_trim_ms = 0.0  # how long the last trim took
        self._config_lock = threading.Lock()  # parameter changes vs configure / cleanup
        self._counter_lock = threading.Lock()  # counters bumped by callbacks, workers and requests
        self.cameras: list[CameraStream] = []
        self.extractor = self.matcher = self.device = self.diagnostics_pub = None
        self._inputs: list = []  # subscriptions, services and timers of the active state
        self._specs = {spec.name: spec for spec in all_parameters()}
        for spec in self._specs.values():
            try:
                self._declare(spec)
            except (ParameterException, NameValidationException) as error:
                raise StartupError(f"invalid parameter '{spec.name}': {error}") from error
        p = {name: self.get_parameter(name).value for name in self._specs}
        for spec in self._specs.values():
            problem = check_value(spec, p[spec.name])
            if problem:
                raise StartupError(problem)
        self.p = p
        self.warn = ThrottledLog(self.get_logger(), p["warn_throttle_s"])
        self.add_on_set_parameters_callback(self._on_set_parameters)
        # names this run: keyframe ids restart at 0 with every start, (session_id, id) does not
        self.session_id = uuid.uuid4().hex[:16]
        if autostart:
            self.configure_pipeline()
            self.activate_pipeline()

    # -- states: configured (models, front-ends, publishers), active (inputs, workers) -------

    def configure_pipeline(self) -> None:
        """Build the models, one FrontEnd per camera and the publishers. StartupError when the
        models or the front-end parameters are unusable (nothing is left half-built)."""
        with self._config_lock:
            p = self.p
            self.device = resolve_device(p["device"])
            self.extractor, self.matcher = self._build_models(p)
            self._prepare_matcher(p["max_keypoints"])
            frontend_conf = {key: p[key] for key in FrontEnd.default_conf}
            names = list(p["cameras"]) or [""]
            if len(set(names)) != len(names):
                raise StartupError(f"parameter 'cameras' has duplicate namespaces: {names}")
            self._request_slots = threading.BoundedSemaphore(p["max_pending_requests"])
            cameras = []
            try:
                for name in names:
                    try:
                        frontend = FrontEnd(self.extractor, self.matcher, frontend_conf)
                    except (ValueError, TypeError) as error:
                        raise StartupError(f"invalid front-end parameters: {error}") from error
                    gate = StreamGate({key: p[key] for key in StreamGate.default_conf})
                    cam = CameraStream(name, frontend, gate)
                    try:
                        self._create_outputs(cam)
                    except NameValidationException as error:
                        raise StartupError(
                            f"invalid camera namespace {name!r} in 'cameras': {error}"
                        ) from error
                    cameras.append(cam)
            except StartupError:
                for cam in cameras:
                    self._destroy_outputs(cam)
                self.extractor = self.matcher = None
                raise
            self.cameras = cameras
            self.diagnostics_pub = self._make_publisher(DiagnosticArray, "/diagnostics", 10)

    def activate_pipeline(self) -> None:
        """Subscribe, offer the services, start the timers and the two workers."""
        p = self.p
        # depth 5 as SensorDataQoS: a depth-1 reader lost a quarter of KITTI frames at 5 Hz
        # while the executor was slow to take them (uncounted); the latest-frame slot below
        # still keeps only the newest, and counts what it replaces as dropped
        qos = QoSProfile(
            depth=5,
            history=HistoryPolicy.KEEP_LAST,
            durability=DurabilityPolicy.VOLATILE,
            reliability=(
                ReliabilityPolicy.BEST_EFFORT
                if p["reliability"] == "best_effort"
                else ReliabilityPolicy.RELIABLE
            ),
        )
        self._sensor_group = MutuallyExclusiveCallbackGroup()
        self.request_group = ReentrantCallbackGroup()
        now = time.monotonic()
        for cam in self.cameras:
            cam.last_diag = (now, cam.processed, cam.dropped)
            cam.last_image_s = now  # STALE counts from here until the first image
            cam.window = CountWindow(now, _counts(cam))
            cam.first_info_waited = False
            self._create_inputs(cam, qos, self._sensor_group)
        self._inputs.append(
            self.create_timer(
                CAMERA_INFO_QOS_CHECK_S,
                self._watch_camera_info_publishers,
                callback_group=MutuallyExclusiveCallbackGroup(),
            )
        )
        self._inputs.append(
            self.create_timer(
                p["diagnostics_period"],
                self._publish_diagnostics,
                callback_group=MutuallyExclusiveCallbackGroup(),
            )
        )
        self._stop = False
        self._next_camera = 0
        self._ready, self._extraction_ended = None, False
        self._extract_worker = threading.Thread(
            target=self._extract_work, name="superglue_extract", daemon=True
        )
        self._worker = threading.Thread(target=self._work, name="superglue_worker", daemon=True)
        self._extract_worker.start()
        if p["overlap_stages"]:
            self._worker.start()
        else:
            self._worker = None
        self._loop_worker = threading.Thread(
            target=self._loop_work, name="superglue_loop", daemon=True
        )
        self._loop_worker.start()
        self.get_logger().info(
            f"ready: {self.extractor.name}+{self.matcher.name} on {self.device}, cameras "
            f"{[c.name or '.' for c in self.cameras]}, input "
            f"{'image/compressed' if p['use_compressed'] else 'image'} ({p['reliability']}), "
            f"working size {p['working_width']}x{p['working_height']}"
        )

    def deactivate_pipeline(self) -> None:
        """Stop the workers (the frame in progress is finished and published), then drop the
        subscriptions, services and timers, and the frames still waiting."""
        self.stop_worker()
        for entity in self._inputs:
            if isinstance(entity, Timer):
                self.destroy_timer(entity)
            elif isinstance(entity, Service):
                self.destroy_service(entity)
            else:
                self.destroy_subscription(entity)
        self._inputs = []
        with self._wake:
            for cam in self.cameras:
                cam.info_subscriptions = []
                if cam.pending is not None:
                    cam.pending = None
                    self._count(cam, "dropped")

    def cleanup_pipeline(self) -> None:
        """Release the publishers, front-ends (their keyframes) and models."""
        with self._config_lock:
            for cam in self.cameras:
                self._destroy_outputs(cam)
            if getattr(self, "diagnostics_pub", None) is not None:
                self._drop_publisher(self.diagnostics_pub)
                self.diagnostics_pub = None
            self.cameras = []
            self.extractor = self.matcher = None

    def _make_publisher(self, msg_type, topic: str, qos):
        """The lifecycle node makes lifecycle publishers (silent while inactive)."""
        return self.create_publisher(msg_type, topic, qos)

    def _drop_publisher(self, publisher) -> None:
        self.destroy_publisher(publisher)

    # -- set-up ------------------------------------------------------------------------------

    def _declare(self, spec: ParameterSpec) -> None:
        descriptor = ParameterDescriptor(
            description=descriptor_text(spec), read_only=spec.read_only
        )
        if spec.choices:
            descriptor.additional_constraints = f"one of {list(spec.choices)}"
        if spec.range is not None:
            lo, hi, *step = spec.range
            if isinstance(spec.default, bool):
                pass
            elif isinstance(spec.default, int):
                descriptor.integer_range = [
                    IntegerRange(
                        from_value=int(lo), to_value=int(hi), step=int(step[0]) if step else 1
                    )
                ]
            else:
                descriptor.floating_point_range = [
                    FloatingPointRange(
                        from_value=float(lo),
                        to_value=float(hi),
                        step=float(step[0]) if step else 0.0,
                    )
                ]
        default = spec.default
        if isinstance(default, list):
            default = Parameter(spec.name, Parameter.Type.STRING_ARRAY, list(default)).value
        self.declare_parameter(spec.name, default, descriptor)

    def _on_set_parameters(self, params) -> SetParametersResult:
        """Writable parameters (rclpy has checked read-only and ranges already): validated as a
        whole first, then applied to every camera's running FrontEnd between two frames
        (``FrontEnd.update_conf`` waits for the frame in progress) and to ``self.p``."""
        for param in params:
            spec = self._specs.get(param.name)
            problem = check_value(spec, param.value) if spec else None
            if problem:
                return SetParametersResult(successful=False, reason=problem)
        frontend = {
            param.name: param.value for param in params if param.name in FrontEnd.default_conf
        }
        with self._config_lock:
            if frontend:
                try:
                    FrontEnd.checked_conf(
                        frontend, base={k: self.p[k] for k in FrontEnd.default_conf}
                    )
                    for cam in self.cameras:  # all share one conf, so none can fail after this
                        cam.frontend.update_conf(frontend)
                except ValueError as error:
                    return SetParametersResult(successful=False, reason=str(error))
            for param in params:
                if param.name in self.p:
                    self.p[param.name] = param.value
                if param.name == "warn_throttle_s":
                    self.warn.period_s = param.value
        if frontend and self.cameras:
            self.get_logger().info(
                f"front-end parameters applied to {len(self.cameras)} camera(s): {frontend}"
            )
        return SetParametersResult(successful=True)

    def _prepare_matcher(self, max_keypoints: int) -> None:
        """Compile the matcher's shapes for every keypoint count now, not on the frame that
        first needs one (mid-stream, each cost 110-130 ms of latency and about 20 MiB)."""
        t0 = time.perf_counter()
        try:
            shapes = self.matcher.prepare(max_keypoints)
        except RuntimeError as error:  # the first frame of each shape compiles it instead
            self.get_logger().warning(f"matcher warm-up failed, shapes compile on use: {error}")
            return
        if shapes:
            self.get_logger().info(
                f"matcher compiled for {shapes} keypoint counts in {time.perf_counter() - t0:.2f} s"
            )

    def _build_models(self, p: dict):
        """Extractor and matcher from the component parameters through
        ``features.build_components``, as every entry point builds them (one YAML, one model);
        any problem (weights, names) becomes one clear StartupError."""
        conf = {key: p[key] for key in COMPONENT_DEFAULTS}
        try:
            extractor_name, matcher_name = component_names(conf)
            if p["overlap_stages"]:  # the learned models run in two stages at once
                threads = dict(threads=stage_threads())
                if extractor_name == "superpoint":
                    conf["extractor_options"] = threads
                if matcher_name == "superglue":
                    conf["matcher_options"] = threads
            return build_components(conf)
        except (OSError, RuntimeError, ValueError, KeyError) as error:
            try:
                names = "+".join(component_names(conf))
            except ValueError:
                names = f"preset {conf['preset']!r}"
            raise StartupError(f"cannot build {names}: {type(error).__name__}: {error}") from error

    def _create_outputs(self, cam: CameraStream) -> None:
        # late subscribers (a back-end started after the node) still get the recent keyframes
        keyframe_qos = QoSProfile(
            depth=self.p["keyframe_history"],
            history=HistoryPolicy.KEEP_LAST,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
            reliability=ReliabilityPolicy.RELIABLE,
        )
        make = self._make_publisher
        cam.publishers = dict(
            correspondences=make(Correspondences, topic_name(cam.name, "correspondences"), 10),
            relative_pose=make(
                PoseWithCovarianceStamped, topic_name(cam.name, "relative_pose"), 10
            ),
            keyframes=make(KeyframeFeatures, topic_name(cam.name, "keyframes"), keyframe_qos),
            debug_image=make(Image, topic_name(cam.name, "debug_image"), 1),
        )

    def _destroy_outputs(self, cam: CameraStream) -> None:
        for publisher in cam.publishers.values():
            self._drop_publisher(publisher)
        cam.publishers = {}

    def _create_inputs(self, cam: CameraStream, qos: QoSProfile, sensor_group) -> None:
        """Subscriptions and services of one camera (kept in self._inputs)."""
        keep = self._inputs.append
        if self.p["use_compressed"]:
            keep(
                self.create_subscription(
                    CompressedImage,
                    topic_name(cam.name, "image/compressed"),
                    lambda msg, c=cam: self._on_image(c, msg, True),
                    qos,
                    callback_group=sensor_group,
                )
            )
        else:
            keep(
                self.create_subscription(
                    Image,
                    topic_name(cam.name, "image"),
                    lambda msg, c=cam: self._on_image(c, msg, False),
                    qos,
                    callback_group=sensor_group,
                )
            )
        # Volatile here; a second, transient-local subscription is added when a latched
        # publisher shows up (_watch_camera_info_publishers).
        info_qos = QoSProfile(
            depth=10,
            history=HistoryPolicy.KEEP_LAST,
            durability=DurabilityPolicy.VOLATILE,
            reliability=qos.reliability,
        )
        cam.info_subscriptions = [
            self.create_subscription(
                CameraInfo,
                topic_name(cam.name, "camera_info"),
                lambda msg, c=cam: self._on_camera_info(c, msg),
                info_qos,
                callback_group=sensor_group,
            )
        ]
        keep(cam.info_subscriptions[0])
        keep(
            self.create_subscription(
                LoopCandidates,
                topic_name(cam.name, "loop_candidates"),
                lambda msg, c=cam: self._on_loop_candidates(c, msg),
                10,
                callback_group=self.request_group,
            )
        )
        keep(
            self.create_service(
                VerifyLoop,
                topic_name(cam.name, "verify_loop"),
                lambda req, res, c=cam: self._on_verify_loop(c, req, res),
                qos_profile=QoSProfile(depth=REQUEST_QUEUE_DEPTH),
                callback_group=self.request_group,
            )
        )
        keep(
            self.create_service(
                GetKeyframe,
                topic_name(cam.name, "get_keyframe"),
                lambda req, res, c=cam: self._on_get_keyframe(c, req, res),
                qos_profile=QoSProfile(depth=REQUEST_QUEUE_DEPTH),
                callback_group=self.request_group,
            )
        )
        keep(
            self.create_service(
                Reset,
                topic_name(cam.name, "reset"),
                lambda req, res, c=cam: self._on_reset(c, res),
                callback_group=self.request_group,
            )
        )

    def _count(self, cam: CameraStream, counter: str) -> None:
        """+1 on a counter that several threads bump (``x += 1`` is not atomic)."""
        with self._counter_lock:
            setattr(cam, counter, getattr(cam, counter) + 1)

    # -- image callbacks: convert, check, keep the newest ------------------------------------

    def _on_image(self, cam: CameraStream, msg, compressed: bool) -> None:
        received = cam.last_image_s = time.monotonic()
        where = f"camera '{cam.name or '.'}'"
        stamp_ns = stamp_to_ns(msg.header.stamp)
        decision = cam.gate.check(stamp_ns, msg.header.frame_id, self.get_clock().now().nanoseconds)
        if decision.action == "skip":
            self._count(cam, "rejected")
            self.warn(f"{where}: {decision.message}")
            return
        if decision.action == "reset":
            self.get_logger().warning(f"{where}: {decision.message}")
            with self._wake:
                cam.reset_pending = True  # the worker resets the FrontEnd before the next frame
        image, payload = None, None
        try:
            if compressed:  # header only: decoding waits for the worker, after the drop policy
                check_compressed(msg.format, msg.data, self.p["max_image_pixels"])
                payload = msg
            else:
                image = image_msg_to_array(
                    msg,
                    max_pixels=self.p["max_image_pixels"],
                    mono16_scaling=self.p["mono16_scaling"],
                    warn=lambda text: self.warn(f"{where}: {text}"),
                )
        except ImageConversionError as error:
            self._count(cam, "rejected")
            self.warn(f"{where}: image rejected: {error}")
            return
        with self._wake:
            if cam.pending is not None:
                self._count(cam, "dropped")
            cam.pending = PendingFrame(
                image, stamp_ns, msg.header.frame_id, received, decision.generation, payload
            )
            self._wake.notify()

    def _watch_camera_info_publishers(self) -> None:
        """Subscribe transient-local as well once a latched camera_info publisher appears.

        A calibration published once (transient-local) reaches only a transient-local
        subscription, but such a subscription is incompatible with the volatile publishers of
        most drivers (both sides would log a QoS warning), so it is made only when needed,
        with the publisher's reliability. Messages seen by both subscriptions are kept once.
        """
        for cam in self.cameras:
            if len(cam.info_subscriptions) != 1:
                continue
            topic = cam.info_subscriptions[0].topic_name
            latched = [
                i
                for i in self.get_publishers_info_by_topic(topic)
                if i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL
            ]
            if not latched:
                continue
            qos = QoSProfile(
                depth=1,
                history=HistoryPolicy.KEEP_LAST,
                durability=DurabilityPolicy.TRANSIENT_LOCAL,
                reliability=latched[0].qos_profile.reliability,
            )
            cam.info_subscriptions.append(
                self.create_subscription(
                    CameraInfo,
                    topic,
                    lambda msg, c=cam: self._on_camera_info(c, msg),
                    qos,
                    callback_group=self._sensor_group,
                )
            )
            self._inputs.append(cam.info_subscriptions[-1])
            self.get_logger().info(
                f"camera '{cam.name or '.'}': {topic} has a transient-local "
                "(latched) publisher: subscribed transient-local too"
            )

    def _on_camera_info(self, cam: CameraStream, msg: CameraInfo) -> None:
        calibration = (
            msg.height,
            msg.width,
            msg.distortion_model,
            tuple(msg.d),
            tuple(msg.k),
            tuple(msg.r),
            tuple(msg.p),
            msg.binning_x,
            msg.binning_y,
            (msg.roi.x_offset, msg.roi.y_offset, msg.roi.height, msg.roi.width, msg.roi.do_rectify),
        )
        cam.camera_infos.add(stamp_to_ns(msg.header.stamp), msg.header.frame_id, msg, calibration)

    def _camera_for(self, cam: CameraStream, item: PendingFrame):
        """(CameraModel or None, problem): the calibration paired with this frame. No camera_info
        ever received: (None, '') and the frame is matched without intrinsics. A problem (none
        with the frame's stamp, another frame_id) means the frame is skipped."""
        if cam.camera_infos.received == 0:
            # The first frame of a camera waits for a first camera_info when someone publishes
            # one (the two topics are not ordered): a first keyframe without K would keep the
            # essential model off until the next keyframe. Without publisher, or afterwards, a
            # camera without camera_info is matched without intrinsics.
            if cam.first_info_waited or cam.info_subscriptions[0].get_publisher_count() == 0:
                return None, ""
            cam.first_info_waited = True
            if not cam.camera_infos.wait_for_first(self.p["camera_info_wait_s"]):
                return None, ""
        match = cam.camera_infos.find(
            item.stamp_ns,
            item.frame_id,
            self.p["camera_info_sync"],
            round(self.p["camera_info_tolerance_s"] * 1e9),
            self.p["camera_info_wait_s"],
            check_frame_id=self.p["frame_id_check"],
        )
        if match.info is None:
            return None, match.problem
        cam.info_from_neighbours += match.from_neighbours
        height, width = item.image.shape[:2]
        cached_info, cached_size, camera = cam.camera_cache
        if cached_info is not match.info or cached_size != (width, height):
            where = f"camera '{cam.name or '.'}'"
            camera = camera_info_to_model(
                match.info,
                (width, height),
                self.p["rectified_input"],
                warn=lambda text: self.warn(f"{where}: {text}"),
            )
            cam.camera_cache = (match.info, (width, height), camera)
        return camera, ""

    # -- worker ------------------------------------------------------------------------------

    def _take_next(self) -> tuple[CameraStream, PendingFrame] | None:
        with self._wake:
            while not self._stop:
                n = len(self.cameras)
                for k in range(n):
                    cam = self.cameras[(self._next_camera + k) % n]
                    if cam.pending is not None:
                        self._next_camera = (self._next_camera + k + 1) % n
                        item, cam.pending = cam.pending, None
                        return cam, item
                self._wake.wait(0.5)
        return None

    def _extract_work(self) -> None:
        """Extraction thread: the newest pending frame -> features, handed to ``_work``
        (``overlap_stages``) or processed here to the end (the default).

        It takes a frame only once the hand-off slot is empty (the odometry thread took the
        previous one), so the extracted frame waits at most for one frame's matching, and
        extraction of frame t+1 overlaps matching of frame t on the second core."""
        overlap = self.p["overlap_stages"]
        if overlap:
            import torch

            torch.set_num_threads(stage_threads())  # this thread's own torch ops (OpenMP)
        try:
            while True:
                with self._handoff:
                    while self._ready is not None and not self._stop:
                        self._handoff.wait(0.5)
                job = self._take_next()
                if job is None:
                    return
                cam, item = job
                if not overlap:  # the whole frame on this thread, one odometry turn
                    with FOREGROUND.busy():
                        if not self._extract_and_process(cam, item):
                            return
                    continue
                try:
                    extracted = self._extract(cam, item)
                except Exception as error:  # noqa: BLE001 - the worker must outlive any bad frame
                    if not self._frame_failed(cam, error):
                        return
                    continue
                if extracted is None:
                    continue
                with self._handoff:
                    self._ready = (cam, item, extracted)
                    self._handoff.notify_all()
        finally:
            with self._handoff:
                self._extraction_ended = True
                self._handoff.notify_all()

    def _extract_and_process(self, cam: CameraStream, item: PendingFrame) -> bool:
        """One frame from start to end; False when the node is shutting down."""
        try:
            extracted = self._extract(cam, item)
            if extracted is not None:
                self._process(cam, item, extracted)
        except Exception as error:  # noqa: BLE001 - the worker must outlive any bad frame
            return self._frame_failed(cam, error)
        return True

    def _work(self) -> None:
        """Odometry thread: matching, keyframes and publishing of the extracted frames."""
        import torch

        torch.set_num_threads(stage_threads())
        while True:
            with self._handoff:
                while self._ready is None and not self._extraction_ended:
                    self._handoff.wait(0.5)
                if self._ready is None:
                    return  # stopped, and the last extracted frame is published
                cam, item, extracted = self._ready
                self._ready = None
                self._handoff.notify_all()
            try:
                self._process(cam, item, extracted)
            except Exception as error:  # noqa: BLE001 - the worker must outlive any bad frame
                if not self._frame_failed(cam, error):
                    return

    def _frame_failed(self, cam: CameraStream, error: Exception) -> bool:
        """Count and report a frame that failed; False when the node is shutting down."""
        if not self.context.ok():
            return False  # shut down from outside while publishing: nothing to report
        self._count(cam, "failed")
        self.warn(
            f"camera '{cam.name or '.'}': processing failed: {type(error).__name__}: {error}",
            level="error",
        )
        return True

    def _apply_pending_reset(self, cam: CameraStream) -> None:
        with self._wake:
            if not cam.reset_pending:
                return
            cam.reset_pending = False
        cam.frontend.reset()
        cam.debug.clear()

    def _extract(self, cam: CameraStream, item: PendingFrame) -> ExtractedFrame | None:
        """Decode, pair with its camera_info and extract features; None when the frame is
        dropped or rejected (counted and reported)."""
        started = time.monotonic()
        if item.generation != cam.gate.generation:
            self._count(cam, "dropped")  # let through before a reset: it belongs to the old stream
            return None
        where = f"camera '{cam.name or '.'}'"
        if item.image is None:
            try:
                item.image = compressed_msg_to_array(
                    item.compressed,
                    max_pixels=self.p["max_image_pixels"],
                    mono16_scaling=self.p["mono16_scaling"],
                )
            except ImageConversionError as error:
                self._count(cam, "rejected")
                self.warn(f"{where}: image rejected: {error}")
                return None
            item.compressed = None
        camera, problem = self._camera_for(cam, item)
        if problem:
            self._count(cam, "rejected")
            self.warn(f"{where}: frame {item.stamp_ns} ns skipped: {problem}")
            return None
        try:
            extracted = cam.frontend.extract(
                Frame(item.image, item.stamp_ns, item.frame_id, camera=camera)
            )
        except FrameRejectedError as error:
            self._count(cam, "rejected")
            self.warn(f"{where}: frame rejected: {error}")
            return None
        item.extract_s = time.monotonic() - started
        return extracted

    def _process(self, cam: CameraStream, item: PendingFrame, extracted: ExtractedFrame) -> None:
        started = time.monotonic()
        self._apply_pending_reset(cam)
        if item.generation != cam.gate.generation:
            self._count(cam, "dropped")  # extracted before a reset: it belongs to the old stream
            return
        where = f"camera '{cam.name or '.'}'"
        try:
            result = cam.frontend.process(extracted, defer_loop=True)
        except FrameRejectedError as error:
            self._count(cam, "rejected")
            self.warn(f"{where}: frame rejected: {error}")
            return
        cam.gate.accepted(item.stamp_ns, item.frame_id, item.generation)
        for text in result.warnings:
            self.warn(f"camera '{cam.name or '.'}': {text}")
        pubs = cam.publishers
        names = dict(extractor=self.extractor.name, matcher=self.matcher.name)
        if result.is_keyframe and result.keyframe is not None:
            pubs["keyframes"].publish(
                keyframe_to_msg(result.keyframe, self.extractor.name, self.session_id)
            )
            cam.keyframes += 1
        if result.odometry is not None:
            odometry = self._corr_msg(cam, result.odometry, names)
            pubs["correspondences"].publish(odometry)
            if odometry.pose_valid:
                pubs["relative_pose"].publish(relative_pose_msg(odometry))
        cam.latencies_s.append(time.monotonic() - item.received)
        try:
            self._publish_debug(cam, item, result)
        finally:
            # after the debug image, which keeps the keyframe's small copy the loop job draws on;
            # queued before the frame counts as processed, so that "all processed and the loop
            # worker idle" (loop_idle) means every loop closure is out
            if result.loop_job is not None:
                self._queue_loop_job(cam, result.loop_job)
            cam.processed += 1
            cam.extract_times_s.append(item.extract_s)
            cam.vo_times_s.append(time.monotonic() - started)

    # -- loop worker -------------------------------------------------------------------------

    def _queue_loop_job(self, cam: CameraStream, job: LoopJob) -> None:
        with self._loop_wake:
            if self._stop:
                cam.frontend.cancel_loop_job(job)
                return
            self._loop_jobs.append((cam, job))
            while len(self._loop_jobs) > self.p["loop_queue_size"]:
                old_cam, old_job = self._loop_jobs.popleft()
                old_cam.frontend.cancel_loop_job(old_job)
                self._count(old_cam, "loop_jobs_dropped")
                self.warn(
                    f"camera '{old_cam.name or '.'}': loop closure of keyframe "
                    f"{old_job.keyframe.id} dropped: the loop queue is full "
                    f"(loop_queue_size {self.p['loop_queue_size']})"
                )
            self._loop_wake.notify()

    def _loop_work(self) -> None:
        try:  # below the odometry worker; threads this one starts (torch's pool) inherit it
            os.setpriority(
                os.PRIO_PROCESS,
                threading.get_native_id(),
                os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) + LOOP_WORKER_NICE,
            )
        except (AttributeError, OSError, ValueError) as error:
            self.get_logger().info(f"loop worker keeps the default priority: {error}")
        while True:
            with self._loop_wake:
                self._loop_busy = False
                while not self._loop_jobs and not self._stop:
                    self._loop_wake.wait(0.5)
                if self._stop:
                    return
                cam, job = self._loop_jobs.pop()  # newest first
                self._loop_busy = True
            try:
                self._run_loop_job(cam, job)
            except Exception as error:  # noqa: BLE001 - the worker must outlive any bad job
                cam.frontend.cancel_loop_job(job)
                if self._stop:
                    return  # shutting down: the publishers may be gone already
                self.warn(
                    f"camera '{cam.name or '.'}': loop closure failed: "
                    f"{type(error).__name__}: {error}",
                    level="error",
                )

    def _run_loop_job(self, cam: CameraStream, job: LoopJob) -> None:
        started = time.monotonic()
        cam.loop_waits_s.append(started - job.created_s)
        outcome = cam.frontend.run_loop_job(
            job, background=True, behind=lambda: bool(self._loop_jobs)
        )
        for text in outcome.warnings:
            self.warn(f"camera '{cam.name or '.'}': {text}")
        names = dict(extractor=self.extractor.name, matcher=self.matcher.name)
        for loop in outcome.loop_closures:
            cam.publishers["correspondences"].publish(self._corr_msg(cam, loop, names))
            self._count(cam, "loop_closures")
        cam.loop_jobs_done += 1
        cam.loop_times_s.append(time.monotonic() - started)
        if outcome.loop_closures and self._debug_wanted(cam):
            strongest = max(outcome.loop_closures, key=lambda c: int(np.count_nonzero(c.inliers)))
            query_image, query_scale = cam.debug.keyframe_image(job.keyframe.id)
            if query_image is not None:
                self._draw_debug(
                    cam,
                    strongest,
                    query_image,
                    query_scale,
                    job.keyframe.stamp_ns,
                    job.keyframe.frame_id,
                )

    def loop_idle(self) -> bool:
        """No loop job queued or running (tests and the demo wait for this before they stop)."""
        with self._loop_wake:
            return not self._loop_jobs and not self._loop_busy

    def _corr_msg(self, cam: CameraStream, corr, names: dict):
        ref = cam.frontend.cache.get(corr.reference_id)
        reference_size = (
            corr.reference_image_size
            if any(corr.reference_image_size)
            else (ref.image_size if ref is not None else (0, 0))
        )
        return correspondence_to_msg(
            corr,
            query_size=corr.query_image_size,
            reference_size=reference_size,
            reference_frame_id=ref.frame_id if ref is not None else "",
            session_id=self.session_id,
            **names,
        )

    # -- debug image -------------------------------------------------------------------------

    def _debug_wanted(self, cam: CameraStream) -> bool:
        mode = self.p["debug_image"]
        return mode == "always" or (
            mode == "on_subscribe" and cam.publishers["debug_image"].get_subscription_count() > 0
        )

    def _publish_debug(self, cam: CameraStream, item: PendingFrame, result) -> None:
        if not self._debug_wanted(cam):
            cam.debug.clear()
            return
        keyframe_id = result.keyframe.id if result.is_keyframe and result.keyframe else None
        small, scale = cam.debug.add_frame(
            item.image, keyframe_id, cam.frontend.cache.ids(), self.p["debug_image_width"]
        )
        if result.odometry is not None:
            self._draw_debug(cam, result.odometry, small, scale, item.stamp_ns, item.frame_id)

    def _draw_debug(
        self, cam: CameraStream, corr, query_image, query_scale: float, stamp_ns: int, frame_id: str
    ) -> None:
        """Publish `corr` drawn on the query's small image next to its reference keyframe's."""
        canvas = cam.debug.draw(corr, query_image, query_scale, cam.frontend.cache)
        if canvas is not None:
            cam.publishers["debug_image"].publish(array_to_image_msg(canvas, stamp_ns, frame_id))

    # -- loop requests -----------------------------------------------------------------------

    def _verify(
        self,
        cam: CameraStream,
        query_id: int,
        candidate_ids: list[int],
        candidate_scores: list[float] | None = None,
    ):
        """(success, summary, [LoopResult]) for one request; never raises. success is False
        when the request could not be processed: busy, query unknown/evicted, matcher error."""
        where = f"camera '{cam.name or '.'}'"
        if not self._request_slots.acquire(blocking=False):
            text = (
                f"busy: {self.p['max_pending_requests']} loop requests already in progress "
                "(max_pending_requests); retry later"
            )
            self.warn(f"{where}: loop request for keyframe {query_id} refused, {text}")
            return (
                False,
                text,
                [
                    LoopResult(candidate_id=int(c), status=LoopResult.BUSY, message=text)
                    for c in candidate_ids
                ],
            )
        try:
            results = cam.frontend.verify_loop(
                int(query_id), [int(c) for c in candidate_ids], candidate_scores
            )
        except Exception as error:  # noqa: BLE001 - a request must never take the node down
            text = f"verification failed: {type(error).__name__}: {error}"
            self.warn(f"{where}: {text}", level="error")
            return (
                False,
                text,
                [
                    LoopResult(candidate_id=int(c), status=LoopResult.FAILED, message=text)
                    for c in candidate_ids
                ],
            )
        finally:
            self._request_slots.release()
        names = dict(extractor=self.extractor.name, matcher=self.matcher.name)
        msgs = [
            loop_result_to_msg(
                r,
                self._corr_msg(cam, r.correspondence, names)
                if r.correspondence is not None
                else None,
            )
            for r in results
        ]
        statuses = [r.status for r in results]
        for status in (
            "unknown_query",
            "unknown_candidate",
            "evicted",
            "self_loop",
            "too_close",
            "too_many_candidates",
            "failed",
        ):
            if status in statuses:
                self.warn(
                    f"{where}: loop request query {query_id}: "
                    f"{statuses.count(status)} candidate(s) {status}"
                )
        query_missing = any(r.query_missing for r in results)
        success = not query_missing and "failed" not in statuses
        summary = f"{statuses.count('verified')} of {len(statuses)} candidates verified"
        if query_missing:
            summary = f"{results[0].message}; " + summary
        elif not success:
            summary = "matching failed; " + summary
        return success, summary, msgs

    def _on_verify_loop(self, cam: CameraStream, request, response):
        response.success, response.message, response.results = self._verify(
            cam, request.query_id, list(request.candidate_ids)
        )
        return response

    def _on_loop_candidates(self, cam: CameraStream, msg) -> None:
        candidate_ids, scores = list(msg.candidate_ids), list(msg.candidate_scores) or None
        if scores is not None and len(scores) != len(candidate_ids):
            self.warn(
                f"camera '{cam.name or '.'}': loop_candidates for keyframe {msg.query_id}: "
                f"{len(scores)} candidate_scores for {len(candidate_ids)} candidate_ids, "
                "scores ignored"
            )
            scores = None
        _, _, results = self._verify(cam, msg.query_id, candidate_ids, scores)
        for result in results:
            if result.status == LoopResult.VERIFIED:
                cam.publishers["correspondences"].publish(result.correspondences)
                self._count(cam, "loop_closures")

    def _on_get_keyframe(self, cam: CameraStream, request, response):
        """A keyframe still in the cache, as it was published; else why not."""
        keyframe = cam.frontend.cache.get(request.id)
        if keyframe is not None:
            response.success, response.message = True, ""
            response.keyframe = keyframe_to_msg(keyframe, self.extractor.name, self.session_id)
        elif cam.frontend.cache.was_evicted(request.id):
            response.success = False
            response.message = f"keyframe {request.id} was evicted from the bounded cache"
        else:
            response.success = False
            response.message = f"keyframe {request.id} was never seen in session {self.session_id}"
        return response

    def _on_reset(self, cam: CameraStream, response):
        """The reset service: forget this camera's keyframes, time and frame_id."""
        with self._wake:
            if cam.pending is not None:
                cam.pending = None
                self._count(cam, "dropped")
            cam.reset_pending = False
        cam.gate.reset()
        forgotten = cam.frontend.reset()  # waits for a frame in progress
        cam.debug.clear()
        response.success = True
        response.message = f"camera '{cam.name or '.'}' reset: {forgotten} keyframes forgotten"
        self.get_logger().info(f"{response.message} (reset service)")
        return response

    # -- diagnostics -------------------------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        if now - self._heap_trimmed_at >= TRIM_PERIOD_S:
            self._heap_trimmed_at = now
            trim_heap()
            self._heap_trim_ms = 1000 * (time.monotonic() - now)
        cameras, publisher, extractor, matcher = (
            self.cameras,
            self.diagnostics_pub,
            self.extractor,
            self.matcher,
        )
        if publisher is None or extractor is None:
            return  # a tick that raced a lifecycle cleanup
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        for cam in cameras:
            t0, processed0, dropped0 = cam.last_diag
            dt = max(now - t0, 1e-6)
            cam.last_diag = (now, cam.processed, cam.dropped)
            with self._loop_wake:
                queued = sum(1 for c, _ in self._loop_jobs if c is cam)
            values = dict(
                processed_fps=f"{(cam.processed - processed0) / dt:.2f}",
                dropped_fps=f"{(cam.dropped - dropped0) / dt:.2f}",
                frames_processed=cam.processed,
                frames_dropped=cam.dropped,
                frames_rejected=cam.rejected,
                camera_info_from_neighbours=cam.info_from_neighbours,
                frames_failed=cam.failed,
                keyframes=cam.keyframes,
                loop_closures=cam.loop_closures,
                latency_p50_ms=f"{_percentile_ms(cam.latencies_s, 50):.1f}",
                latency_p90_ms=f"{_percentile_ms(cam.latencies_s, 90):.1f}",
                extraction_worker_p50_ms=f"{_percentile_ms(cam.extract_times_s, 50):.1f}",
                odometry_worker_p50_ms=f"{_percentile_ms(cam.vo_times_s, 50):.1f}",
                loop_worker_p50_ms=f"{_percentile_ms(cam.loop_times_s, 50):.1f}",
                loop_wait_p50_ms=f"{_percentile_ms(cam.loop_waits_s, 50):.1f}",
                loop_jobs_done=cam.loop_jobs_done,
                loop_jobs_dropped=cam.loop_jobs_dropped,
                loop_jobs_queued=queued,
                cache_keyframes=len(cam.frontend.cache),
                cache_bytes=cam.frontend.cache.nbytes(),
                heap_trim_ms=f"{self._heap_trim_ms:.1f}",
                device=str(self.device),
                extractor=extractor.name,
                matcher=matcher.name,
                extractor_runtime=" ".join(filter(None, runtime_of(extractor))),
                matcher_runtime=" ".join(filter(None, runtime_of(matcher))),
            )
            level, message = self._camera_level(cam, now)
            values["level"] = LEVEL_NAMES[level]
            status = DiagnosticStatus(
                name=f"{self.get_fully_qualified_name()}: {cam.name or 'camera'}",
                hardware_id=cam.frame_id or "",
                level=bytes([level]),
                message=message,
                values=[KeyValue(key=k, value=str(v)) for k, v in values.items()],
            )
            array.status.append(status)
        publisher.publish(array)

    def _camera_level(self, cam: CameraStream, now: float) -> tuple[int, str]:
        """OK/WARN/ERROR/STALE of one camera over the recent window (diagnostics.py)."""
        p = self.p
        conf = DiagnosticsConf(
            window_s=p["diagnostics_window_s"],
            warn_failure_share=p["diagnostics_warn_failure_share"],
            warn_drop_share=p["diagnostics_warn_drop_share"],
            stale_timeout_s=p["stale_timeout_s"],
        )
        recent = cam.window.push(now, _counts(cam), conf.window_s)
        return camera_level(recent, now - cam.last_image_s, conf)

    # -- life cycle --------------------------------------------------------------------------

    def stats(self) -> dict:
        """Counters per camera (used by the demo and tests in the same process)."""
        out = {}
        for cam in self.cameras:
            lat = np.array(cam.latencies_s, float)
            out[cam.name] = dict(
                processed=cam.processed,
                dropped=cam.dropped,
                rejected=cam.rejected,
                failed=cam.failed,
                keyframes=cam.keyframes,
                loop_closures=cam.loop_closures,
                latency_p50_s=float(np.percentile(lat, 50)) if lat.size else None,
                latency_p90_s=float(np.percentile(lat, 90)) if lat.size else None,
                latencies_s=lat.tolist(),
                extraction_worker_s=list(cam.extract_times_s),
                odometry_worker_s=list(cam.vo_times_s),
                loop_worker_s=list(cam.loop_times_s),
                loop_wait_s=list(cam.loop_waits_s),
                loop_jobs_done=cam.loop_jobs_done,
                loop_jobs_dropped=cam.loop_jobs_dropped,
            )
        return out

    def stop_worker(self, timeout_s: float = 10.0) -> None:
        """Let the worker finish the frame in progress (and publish it), then end it."""
        with self._wake:
            self._stop = True
            self._wake.notify_all()
        with self._handoff:
            self._handoff.notify_all()
        with self._loop_wake:
            self._stop = True
            for cam, job in self._loop_jobs:
                cam.frontend.cancel_loop_job(job)
            self._loop_jobs.clear()
            self._loop_wake.notify_all()
        for worker in (self._extract_worker, self._worker, self._loop_worker):
            if worker is not None and worker is not threading.current_thread():
                worker.join(timeout=timeout_s)

    def destroy_node(self):
        self.stop_worker()
        return super().destroy_node()


def _counts(cam: CameraStream) -> Counts:
    return Counts(
        processed=cam.processed, dropped=cam.dropped, rejected=cam.rejected, failed=cam.failed
    )


def _percentile_ms(values, q: float) -> float:
    values = np.asarray(values, float)
    return float(np.percentile(values, q) * 1000) if values.size else float("nan")


def main(argv: list[str] | None = None, node_class=None, prog: str = "superglue-node") -> int:
    """Entry point of `superglue-node` / `ros2 run superglue_ros superglue_node` (and, with
    node_class, of the lifecycle variant).

    Takes standard ROS arguments (`--ros-args --params-file F -r image:=/cam/image -p k:=v`).
    Exit code 2 when the node cannot start (weights, parameters), with one clear log line.
    """
    node_class = node_class or SuperGlueNode
    args = list(sys.argv[1:] if argv is None else argv)
    own = rclpy.utilities.remove_ros_args([prog] + args)[1:]
    parser = argparse.ArgumentParser(
        prog=prog,
        description="SuperPoint/SuperGlue correspondences for a SLAM "
        "front-end. Configure with ROS parameters: --ros-args --params-file config/superglue.yaml",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="executor threads (default: max_pending_requests + 2)",
    )
    options = parser.parse_args(own)
    heap_settings = bound_heap()  # before any worker thread exists (see superglue_ros.heap)
    import torch

    torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))

    # SIGINT/SIGTERM only record the request: the worker is stopped while the context is still
    # valid (rclpy's own handlers would shut the context down under a publishing worker). The
    # handler takes no lock: it runs in the main thread between two bytecodes, and the
    # threading.Event.set() it called before deadlocked when the signal interrupted the main
    # thread's own Event.wait() while that held the Event's lock (seen in session 9: a node
    # that never exited after SIGTERM, its main thread blocked in the handler's set()).
    rclpy.init(args=[prog] + args, signal_handler_options=SignalHandlerOptions.NO)
    signals_received: list[int] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda number, _frame: signals_received.append(number))
    node = None
    try:
        try:
            node = node_class()
        except StartupError as error:
            rclpy.logging.get_logger(NODE_NAME).fatal(f"cannot start: {error}")
            return 2
        node.get_logger().info(f"heap settings: {heap_settings}")
        threads = options.threads or node.p["max_pending_requests"] + 2
        executor = CallbackPoolExecutor(num_threads=threads)
        executor.add_node(node)
        spinner = threading.Thread(
            target=_spin, args=(executor,), name="superglue_spin", daemon=True
        )
        spinner.start()
        while not signals_received and spinner.is_alive():
            time.sleep(0.2)  # a signal's handler runs at once; no lock is held here
        node.get_logger().info("shutting down")
        node.stop_worker()
        executor.shutdown()
        spinner.join(timeout=10.0)
        return 0
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


def _spin(executor) -> None:
    try:
        executor.spin()
    except ExternalShutdownException:
        pass


if __name__ == "__main__":
    sys.exit(main())
