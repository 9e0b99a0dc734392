"""superglue_node: camera streams -> FrontEnd -> correspondence messages.

A thin adapter. Subscription callbacks convert the message to an array and keep only the
newest frame per camera (a frame still waiting when a newer one arrives is dropped and
counted, never queued). Two worker threads:
  odometry  hands frames to each camera's ``FrontEnd.process(defer_loop=True)`` and publishes
            the keyframe and ODOMETRY message at once;
  loop      runs the new keyframes' loop jobs (``FrontEnd.run_loop_job``) at a lower OS
            priority, newest first from a bounded queue (``loop_queue_size``; the oldest job is
            dropped and counted when it is full), and publishes the LOOP_CLOSURE messages.
The models are shared through one lock per model in which odometry goes first. Loop requests
(topic and service) run on their own callback group with a bounded number in flight, so they
never hold up the image callbacks.

Per camera namespace ``<cam>`` ('' = the node's namespace):
  subscribes  <cam>/image (sensor_msgs/Image) or <cam>/image/compressed, <cam>/camera_info,
              <cam>/loop_candidates (superglue_ros_msgs/LoopCandidates)
  publishes   <cam>/correspondences, <cam>/keyframes, <cam>/debug_image
  service     <cam>/verify_loop (superglue_ros_msgs/VerifyLoop)
and /diagnostics (diagnostic_msgs/DiagnosticArray) for the node.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.exceptions import NameValidationException, ParameterException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy, HistoryPolicy, DurabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from superglue_ros_msgs.msg import Correspondences, KeyframeFeatures, LoopCandidates, LoopResult
from superglue_ros_msgs.srv import VerifyLoop

from ..features import build_extractor, build_matcher, learned_options, resolve_device, PRESETS
from ..frontend.pipeline import Frame, FrameRejectedError, FrontEnd, LoopJob
from .conversions import ImageConversionError
from .messages import (array_to_image_msg, camera_info_to_K, compressed_msg_to_array,
                       correspondence_to_msg, image_msg_to_array, keyframe_to_msg,
                       loop_result_to_msg, stamp_to_ns)
from .parameters import ParameterSpec, all_parameters, check_value

NODE_NAME = 'superglue_node'
LATENCY_WINDOW = 200
REQUEST_QUEUE_DEPTH = 100   # verify_loop requests the middleware holds before dropping the oldest
LOOP_WORKER_NICE = 10       # added to the loop worker thread's nice value (Linux, best effort)


class StartupError(RuntimeError):
    """The node cannot start (bad weights, bad parameters); the message says what and where."""


# ------------------------------------------------------------------------------------------
# small helpers
# ------------------------------------------------------------------------------------------

class ThrottledLog:
    """Log each kind of warning at most once per `period_s`, then report how many were hidden.

    The kind is the text with numbers masked, so 'step 10 < ...' and 'step 12 < ...' are one
    kind but an unsupported encoding and a size mismatch are two.
    """

    def __init__(self, logger, period_s: float):
        self.logger, self.period_s = logger, period_s
        self._last: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def __call__(self, text: str, level: str = 'warning') -> None:
        key = re.sub(r'\d+(\.\d+)?', '#', text)
        now = time.monotonic()
        with self._lock:
            if len(self._last) > 1000:   # bounded even if senders vary the text endlessly
                self._last.clear()
            last, hidden = self._last.get(key, (-1e18, 0))
            if now - last < self.period_s:
                self._last[key] = (last, hidden + 1)
                return
            self._last[key] = (now, 0)
        suffix = f' ({hidden} similar messages suppressed)' if hidden else ''
        getattr(self.logger, level)(text + suffix)


@dataclass
class PendingFrame:
    image: np.ndarray
    stamp_ns: int
    frame_id: str
    received: float  # time.monotonic() when the message arrived


@dataclass
class CameraStream:
    """One camera: its FrontEnd, the newest unprocessed frame and counters for diagnostics."""
    name: str
    frontend: FrontEnd
    pending: PendingFrame | None = None
    last_stamp_ns: int = -1
    frame_id: str | None = None
    camera_info: CameraInfo | None = None
    K_cache: tuple = (None, None, None)           # (info msg, image size, K)
    processed: int = 0
    dropped: int = 0
    rejected: int = 0
    failed: int = 0
    keyframes: int = 0
    loop_closures: int = 0
    latencies_s: deque = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))  # receipt -> ODOMETRY out
    vo_times_s: deque = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))   # odometry worker per frame
    loop_times_s: deque = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))  # loop worker per job
    loop_waits_s: deque = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))  # keyframe -> job start
    loop_jobs_done: int = 0
    loop_jobs_dropped: int = 0
    last_diag: tuple = (0.0, 0, 0)                # (time, processed, dropped) at the last report
    debug_images: dict = field(default_factory=dict)  # keyframe id -> small BGR image for drawing
    publishers: dict = field(default_factory=dict)


def _topic(camera: str, name: str) -> str:
    return f'{camera.rstrip("/")}/{name}' if camera else name


# ------------------------------------------------------------------------------------------
# the node
# ------------------------------------------------------------------------------------------

class SuperGlueNode(Node):
    """See the module docstring. Raises StartupError when models or parameters are unusable."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs):
        super().__init__(node_name, **kwargs)
        self._wake = threading.Condition()
        self._stop = False
        self._worker = None
        self._loop_worker = None
        self._loop_wake = threading.Condition()
        self._loop_jobs: deque[tuple[CameraStream, LoopJob]] = deque()  # oldest left, newest right
        self._loop_busy = False
        self.cameras: list[CameraStream] = []
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
        self.warn = ThrottledLog(self.get_logger(), p['warn_throttle_s'])
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self.device = resolve_device(p['device'])
        self.extractor, self.matcher = self._build_models(p)
        frontend_conf = {key: p[key] for key in FrontEnd.default_conf}
        cameras = list(p['cameras']) or ['']
        if len(set(cameras)) != len(cameras):
            raise StartupError(f"parameter 'cameras' has duplicate namespaces: {cameras}")

        qos = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST,
                         durability=DurabilityPolicy.VOLATILE,
                         reliability=(ReliabilityPolicy.BEST_EFFORT if p['reliability'] == 'best_effort'
                                      else ReliabilityPolicy.RELIABLE))
        sensor_group = MutuallyExclusiveCallbackGroup()
        self.request_group = ReentrantCallbackGroup()
        self._request_slots = threading.BoundedSemaphore(p['max_pending_requests'])
        for name in cameras:
            try:
                frontend = FrontEnd(self.extractor, self.matcher, frontend_conf)
            except (ValueError, TypeError) as error:
                raise StartupError(f'invalid front-end parameters: {error}') from error
            cam = CameraStream(name, frontend, last_diag=(time.monotonic(), 0, 0))
            try:
                self._wire(cam, qos, sensor_group)
            except NameValidationException as error:
                raise StartupError(f"invalid camera namespace {name!r} in 'cameras': {error}") from error
            self.cameras.append(cam)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.create_timer(p['diagnostics_period'], self._publish_diagnostics,
                          callback_group=MutuallyExclusiveCallbackGroup())

        self._next_camera = 0
        self._worker = threading.Thread(target=self._work, name='superglue_worker', daemon=True)
        self._worker.start()
        self._loop_worker = threading.Thread(target=self._loop_work, name='superglue_loop', daemon=True)
        self._loop_worker.start()
        self.get_logger().info(
            f"ready: {self.extractor.name}+{self.matcher.name} on {self.device}, cameras "
            f"{[c.name or '.' for c in self.cameras]}, input "
            f"{'image/compressed' if p['use_compressed'] else 'image'} ({p['reliability']}), "
            f"working size {p['working_width']}x{p['working_height']}")

    # -- set-up ------------------------------------------------------------------------------

    def _declare(self, spec: ParameterSpec) -> None:
        descriptor = ParameterDescriptor(description=spec.description, read_only=spec.read_only)
        if spec.choices:
            descriptor.additional_constraints = f'one of {list(spec.choices)}'
        if spec.range is not None:
            lo, hi, *step = spec.range
            if isinstance(spec.default, bool):
                pass
            elif isinstance(spec.default, int):
                descriptor.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi),
                                                         step=int(step[0]) if step else 1)]
            else:
                descriptor.floating_point_range = [FloatingPointRange(
                    from_value=float(lo), to_value=float(hi), step=float(step[0]) if step else 0.0)]
        default = spec.default
        if isinstance(default, list):
            default = Parameter(spec.name, Parameter.Type.STRING_ARRAY, list(default)).value
        self.declare_parameter(spec.name, default, descriptor)

    def _on_set_parameters(self, params) -> SetParametersResult:
        for param in params:
            spec = self._specs.get(param.name)
            problem = check_value(spec, param.value) if spec else None
            if problem:
                return SetParametersResult(successful=False, reason=problem)
        for param in params:
            if param.name in self.p:
                self.p[param.name] = param.value
            if param.name == 'warn_throttle_s':
                self.warn.period_s = param.value
        return SetParametersResult(successful=True)

    def _build_models(self, p: dict):
        """Extractor and matcher by name; weights problems become one clear StartupError."""
        extractor_name, matcher_name = PRESETS[p['preset']]
        extractor_name = p['extractor'] or extractor_name
        matcher_name = p['matcher'] or matcher_name
        extractor_conf, matcher_conf = learned_options(
            extractor_name, matcher_name, p['runtime'], p['inference_precision'],
            p['superpoint_weights'], p['superglue_weights'])
        extractor_conf['max_keypoints'] = p['max_keypoints']
        try:
            extractor = build_extractor(extractor_name, self.device, **extractor_conf)
            matcher = build_matcher(matcher_name, self.device, **matcher_conf)
        except (OSError, RuntimeError, ValueError, KeyError) as error:
            raise StartupError(f'cannot build {extractor_name}+{matcher_name}: '
                               f'{type(error).__name__}: {error}') from error
        return extractor, matcher

    def _wire(self, cam: CameraStream, qos: QoSProfile, sensor_group) -> None:
        if self.p['use_compressed']:
            self.create_subscription(CompressedImage, _topic(cam.name, 'image/compressed'),
                                     lambda msg, c=cam: self._on_image(c, msg, True), qos,
                                     callback_group=sensor_group)
        else:
            self.create_subscription(Image, _topic(cam.name, 'image'),
                                     lambda msg, c=cam: self._on_image(c, msg, False), qos,
                                     callback_group=sensor_group)
        self.create_subscription(CameraInfo, _topic(cam.name, 'camera_info'),
                                 lambda msg, c=cam: setattr(c, 'camera_info', msg), qos,
                                 callback_group=sensor_group)
        self.create_subscription(LoopCandidates, _topic(cam.name, 'loop_candidates'),
                                 lambda msg, c=cam: self._on_loop_candidates(c, msg), 10,
                                 callback_group=self.request_group)
        self.create_service(VerifyLoop, _topic(cam.name, 'verify_loop'),
                            lambda req, res, c=cam: self._on_verify_loop(c, req, res),
                            qos_profile=QoSProfile(depth=REQUEST_QUEUE_DEPTH),
                            callback_group=self.request_group)
        cam.publishers = dict(
            correspondences=self.create_publisher(Correspondences, _topic(cam.name, 'correspondences'), 10),
            keyframes=self.create_publisher(KeyframeFeatures, _topic(cam.name, 'keyframes'), 10),
            debug_image=self.create_publisher(Image, _topic(cam.name, 'debug_image'), 1))

    # -- image callbacks: convert, check, keep the newest ------------------------------------

    def _on_image(self, cam: CameraStream, msg, compressed: bool) -> None:
        received = time.monotonic()
        where = f"camera '{cam.name or '.'}'"
        stamp_ns = stamp_to_ns(msg.header.stamp)
        frame_id = msg.header.frame_id
        if self.p['frame_id_check'] and cam.frame_id is not None and frame_id != cam.frame_id:
            cam.rejected += 1
            self.warn(f"{where}: frame from unknown camera frame_id '{frame_id}' (this stream is "
                      f"'{cam.frame_id}'): skipped")
            return
        if stamp_ns <= cam.last_stamp_ns:
            cam.rejected += 1
            kind = 'duplicate' if stamp_ns == cam.last_stamp_ns else 'out-of-order'
            self.warn(f'{where}: {kind} stamp {stamp_ns} ns (last accepted {cam.last_stamp_ns} ns): '
                      'frame skipped')
            return
        try:
            if compressed:
                image = compressed_msg_to_array(msg, max_pixels=self.p['max_image_pixels'],
                                                mono16_scaling=self.p['mono16_scaling'])
            else:
                image = image_msg_to_array(msg, max_pixels=self.p['max_image_pixels'],
                                           mono16_scaling=self.p['mono16_scaling'],
                                           warn=lambda text: self.warn(f'{where}: {text}'))
        except ImageConversionError as error:
            cam.rejected += 1
            self.warn(f'{where}: image rejected: {error}')
            return
        cam.last_stamp_ns = stamp_ns
        if cam.frame_id is None:
            cam.frame_id = frame_id
        with self._wake:
            if cam.pending is not None:
                cam.dropped += 1
            cam.pending = PendingFrame(image, stamp_ns, frame_id, received)
            self._wake.notify()

    def _intrinsics(self, cam: CameraStream, image_size: tuple[int, int]):
        info = cam.camera_info
        if info is None:
            return None
        cached_info, cached_size, K = cam.K_cache
        if cached_info is not info or cached_size != image_size:
            where = f"camera '{cam.name or '.'}'"
            K = camera_info_to_K(info, image_size, warn=lambda text: self.warn(f'{where}: {text}'))
            cam.K_cache = (info, image_size, K)
        return K

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

    def _work(self) -> None:
        while True:
            job = self._take_next()
            if job is None:
                return
            cam, item = job
            try:
                self._process(cam, item)
            except Exception as error:  # noqa: BLE001 - the worker must outlive any bad frame
                cam.failed += 1
                self.warn(f"camera '{cam.name or '.'}': processing failed: "
                          f'{type(error).__name__}: {error}', level='error')

    def _process(self, cam: CameraStream, item: PendingFrame) -> None:
        started = time.monotonic()
        height, width = item.image.shape[:2]
        K = self._intrinsics(cam, (width, height))
        try:
            result = cam.frontend.process(Frame(item.image, item.stamp_ns, item.frame_id, K),
                                          defer_loop=True)
        except FrameRejectedError as error:
            cam.rejected += 1
            self.warn(f"camera '{cam.name or '.'}': frame rejected: {error}")
            return
        for text in result.warnings:
            self.warn(f"camera '{cam.name or '.'}': {text}")
        pubs = cam.publishers
        names = dict(extractor=self.extractor.name, matcher=self.matcher.name)
        if result.is_keyframe and result.keyframe is not None:
            pubs['keyframes'].publish(keyframe_to_msg(result.keyframe, self.extractor.name))
            cam.keyframes += 1
        if result.odometry is not None:
            pubs['correspondences'].publish(self._corr_msg(cam, result.odometry, names))
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
            cam.vo_times_s.append(time.monotonic() - started)

    # -- loop worker -------------------------------------------------------------------------

    def _queue_loop_job(self, cam: CameraStream, job: LoopJob) -> None:
        with self._loop_wake:
            if self._stop:
                cam.frontend.cancel_loop_job(job)
                return
            self._loop_jobs.append((cam, job))
            while len(self._loop_jobs) > self.p['loop_queue_size']:
                old_cam, old_job = self._loop_jobs.popleft()
                old_cam.frontend.cancel_loop_job(old_job)
                old_cam.loop_jobs_dropped += 1
                self.warn(f"camera '{old_cam.name or '.'}': loop closure of keyframe "
                          f'{old_job.keyframe.id} dropped: the loop queue is full '
                          f"(loop_queue_size {self.p['loop_queue_size']})")
            self._loop_wake.notify()

    def _loop_work(self) -> None:
        try:   # below the odometry worker; threads this one starts (torch's pool) inherit it
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(),
                           os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) + LOOP_WORKER_NICE)
        except (AttributeError, OSError, ValueError) as error:
            self.get_logger().info(f'loop worker keeps the default priority: {error}')
        while True:
            with self._loop_wake:
                self._loop_busy = False
                while not self._loop_jobs and not self._stop:
                    self._loop_wake.wait(0.5)
                if self._stop:
                    return
                cam, job = self._loop_jobs.pop()   # newest first
                self._loop_busy = True
            try:
                self._run_loop_job(cam, job)
            except Exception as error:  # noqa: BLE001 - the worker must outlive any bad job
                cam.frontend.cancel_loop_job(job)
                if self._stop:
                    return   # shutting down: the publishers may be gone already
                self.warn(f"camera '{cam.name or '.'}': loop closure failed: "
                          f'{type(error).__name__}: {error}', level='error')

    def _run_loop_job(self, cam: CameraStream, job: LoopJob) -> None:
        started = time.monotonic()
        cam.loop_waits_s.append(started - job.created_s)
        outcome = cam.frontend.run_loop_job(job, background=True)
        for text in outcome.warnings:
            self.warn(f"camera '{cam.name or '.'}': {text}")
        names = dict(extractor=self.extractor.name, matcher=self.matcher.name)
        for loop in outcome.loop_closures:
            cam.publishers['correspondences'].publish(self._corr_msg(cam, loop, names))
            cam.loop_closures += 1
        cam.loop_jobs_done += 1
        cam.loop_times_s.append(time.monotonic() - started)
        if outcome.loop_closures and self._debug_wanted(cam):
            strongest = max(outcome.loop_closures, key=lambda c: int(np.count_nonzero(c.inliers)))
            query_image, query_scale = cam.debug_images.get(job.keyframe.id, (None, 1.0))
            if query_image is not None:
                self._draw_debug(cam, strongest, query_image, query_scale, job.keyframe.stamp_ns,
                                 job.keyframe.frame_id)

    def loop_idle(self) -> bool:
        """No loop job queued or running (tests and the demo wait for this before they stop)."""
        with self._loop_wake:
            return not self._loop_jobs and not self._loop_busy

    def _corr_msg(self, cam: CameraStream, corr, names: dict):
        ref = cam.frontend.cache.get(corr.reference_id)
        reference_size = corr.reference_image_size if any(corr.reference_image_size) else \
            (ref.image_size if ref is not None else (0, 0))
        return correspondence_to_msg(corr, query_size=corr.query_image_size,
                                     reference_size=reference_size,
                                     reference_frame_id=ref.frame_id if ref is not None else '',
                                     **names)

    # -- debug image -------------------------------------------------------------------------

    def _debug_wanted(self, cam: CameraStream) -> bool:
        mode = self.p['debug_image']
        return mode == 'always' or (mode == 'on_subscribe' and
                                    cam.publishers['debug_image'].get_subscription_count() > 0)

    def _publish_debug(self, cam: CameraStream, item: PendingFrame, result) -> None:
        if not self._debug_wanted(cam):
            cam.debug_images.clear()
            return
        width = self.p['debug_image_width']
        h0, w0 = item.image.shape[:2]
        scale = min(1.0, width / w0)
        small = cv2_resize(item.image, scale)
        if result.is_keyframe and result.keyframe is not None:
            cam.debug_images[result.keyframe.id] = (small, scale)
        live = set(cam.frontend.cache.ids())
        for kid in [k for k in list(cam.debug_images) if k not in live]:
            cam.debug_images.pop(kid, None)
        if result.odometry is not None:
            self._draw_debug(cam, result.odometry, small, scale, item.stamp_ns, item.frame_id)

    def _draw_debug(self, cam: CameraStream, corr, query_image, query_scale: float, stamp_ns: int,
                    frame_id: str) -> None:
        """Publish `corr` drawn on the query's small image next to its reference keyframe's."""
        from ..visualization import draw_matches

        ref_image, ref_scale = cam.debug_images.get(corr.reference_id, (None, 1.0))
        if ref_image is None:
            ref = cam.frontend.cache.get(corr.reference_id)
            if ref is None or ref.thumbnail is None:
                return
            ref_image, ref_scale = ref.thumbnail, ref.thumbnail.shape[1] / ref.image_size[0]
        query = 'keyframe' if corr.query_is_keyframe else 'frame'
        text = [f'{corr.kind} {query} {corr.query_id} vs keyframe {corr.reference_id}',
                f'{len(corr.scores)} matches, {int(np.count_nonzero(corr.inliers))} inliers']
        canvas = draw_matches(query_image, ref_image, np.asarray(corr.query_points) * query_scale,
                              np.asarray(corr.reference_points) * ref_scale,
                              corr.inliers if len(corr.inliers) else None, text=text)
        cam.publishers['debug_image'].publish(array_to_image_msg(canvas, stamp_ns, frame_id))

    # -- loop requests -----------------------------------------------------------------------

    def _verify(self, cam: CameraStream, query_id: int, candidate_ids: list[int]):
        """(success, summary, [LoopResult]) for one request; never raises."""
        if not self._request_slots.acquire(blocking=False):
            text = (f"busy: {self.p['max_pending_requests']} loop requests already in progress "
                    '(max_pending_requests); retry later')
            self.warn(f"camera '{cam.name or '.'}': loop request for keyframe {query_id} refused, {text}")
            return False, text, [LoopResult(candidate_id=int(c), status=LoopResult.FAILED, message=text)
                                 for c in candidate_ids]
        try:
            results = cam.frontend.verify_loop(int(query_id), [int(c) for c in candidate_ids])
        except Exception as error:  # noqa: BLE001 - a request must never take the node down
            text = f'verification failed: {type(error).__name__}: {error}'
            self.warn(f"camera '{cam.name or '.'}': {text}", level='error')
            return False, text, [LoopResult(candidate_id=int(c), status=LoopResult.FAILED, message=text)
                                 for c in candidate_ids]
        finally:
            self._request_slots.release()
        names = dict(extractor=self.extractor.name, matcher=self.matcher.name)
        msgs = [loop_result_to_msg(r, self._corr_msg(cam, r.correspondence, names)
                                   if r.correspondence is not None else None) for r in results]
        statuses = [r.status for r in results]
        for status in ('unknown_query', 'unknown_candidate', 'evicted'):
            if status in statuses:
                self.warn(f"camera '{cam.name or '.'}': loop request query {query_id}: "
                          f'{statuses.count(status)} candidate(s) {status}')
        success = 'unknown_query' not in statuses
        summary = f"{statuses.count('verified')} of {len(statuses)} candidates verified"
        if not success:
            summary = f'query keyframe {query_id} is unknown; ' + summary
        return success, summary, msgs

    def _on_verify_loop(self, cam: CameraStream, request, response):
        response.success, response.message, response.results = self._verify(
            cam, request.query_id, list(request.candidate_ids))
        return response

    def _on_loop_candidates(self, cam: CameraStream, msg) -> None:
        _, _, results = self._verify(cam, msg.query_id, list(msg.candidate_ids))
        for result in results:
            if result.status == LoopResult.VERIFIED:
                cam.publishers['correspondences'].publish(result.correspondences)
                cam.loop_closures += 1

    # -- diagnostics -------------------------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        now = time.monotonic()
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        for cam in self.cameras:
            t0, processed0, dropped0 = cam.last_diag
            dt = max(now - t0, 1e-6)
            cam.last_diag = (now, cam.processed, cam.dropped)
            lat = np.array(cam.latencies_s, float)
            p50, p90 = (np.percentile(lat, [50, 90]) * 1000) if lat.size else (float('nan'),) * 2
            with self._loop_wake:
                queued = sum(1 for c, _ in self._loop_jobs if c is cam)
            values = dict(
                processed_fps=f'{(cam.processed - processed0) / dt:.2f}',
                dropped_fps=f'{(cam.dropped - dropped0) / dt:.2f}',
                frames_processed=cam.processed, frames_dropped=cam.dropped,
                frames_rejected=cam.rejected, frames_failed=cam.failed,
                keyframes=cam.keyframes, loop_closures=cam.loop_closures,
                latency_p50_ms=f'{p50:.1f}', latency_p90_ms=f'{p90:.1f}',
                odometry_worker_p50_ms=f'{_percentile_ms(cam.vo_times_s, 50):.1f}',
                loop_worker_p50_ms=f'{_percentile_ms(cam.loop_times_s, 50):.1f}',
                loop_wait_p50_ms=f'{_percentile_ms(cam.loop_waits_s, 50):.1f}',
                loop_jobs_done=cam.loop_jobs_done, loop_jobs_dropped=cam.loop_jobs_dropped,
                loop_jobs_queued=queued,
                cache_keyframes=len(cam.frontend.cache), cache_bytes=cam.frontend.cache.nbytes(),
                device=str(self.device), extractor=self.extractor.name, matcher=self.matcher.name)
            status = DiagnosticStatus(
                name=f'{self.get_fully_qualified_name()}: {cam.name or "camera"}',
                hardware_id=cam.frame_id or '',
                level=DiagnosticStatus.OK if cam.failed == 0 else DiagnosticStatus.WARN,
                message=f'{cam.processed} frames processed, {cam.dropped} dropped',
                values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
            array.status.append(status)
        self.diagnostics_pub.publish(array)

    # -- life cycle --------------------------------------------------------------------------

    def stats(self) -> dict:
        """Counters per camera (used by the demo and tests in the same process)."""
        out = {}
        for cam in self.cameras:
            lat = np.array(cam.latencies_s, float)
            out[cam.name] = dict(processed=cam.processed, dropped=cam.dropped, rejected=cam.rejected,
                                 failed=cam.failed, keyframes=cam.keyframes,
                                 loop_closures=cam.loop_closures,
                                 latency_p50_s=float(np.percentile(lat, 50)) if lat.size else None,
                                 latency_p90_s=float(np.percentile(lat, 90)) if lat.size else None,
                                 latencies_s=lat.tolist(),
                                 odometry_worker_s=list(cam.vo_times_s),
                                 loop_worker_s=list(cam.loop_times_s),
                                 loop_wait_s=list(cam.loop_waits_s),
                                 loop_jobs_done=cam.loop_jobs_done,
                                 loop_jobs_dropped=cam.loop_jobs_dropped)
        return out

    def destroy_node(self):
        with self._wake:
            self._stop = True
            self._wake.notify_all()
        with self._loop_wake:
            self._stop = True
            for cam, job in self._loop_jobs:
                cam.frontend.cancel_loop_job(job)
            self._loop_jobs.clear()
            self._loop_wake.notify_all()
        for worker in (self._worker, self._loop_worker):
            if worker is not None and worker is not threading.current_thread():
                worker.join(timeout=10.0)
        return super().destroy_node()


def _percentile_ms(values, q: float) -> float:
    values = np.asarray(values, float)
    return float(np.percentile(values, q) * 1000) if values.size else float('nan')


def cv2_resize(image: np.ndarray, scale: float) -> np.ndarray:
    import cv2

    if scale >= 1.0:
        return image
    h, w = image.shape[:2]
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                      interpolation=cv2.INTER_AREA)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `superglue-node` / `ros2 run superglue_ros superglue_node`.

    Takes standard ROS arguments (`--ros-args --params-file F -r image:=/cam/image -p k:=v`).
    Exit code 2 when the node cannot start (weights, parameters), with one clear log line.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    own = rclpy.utilities.remove_ros_args(['superglue-node'] + args)[1:]
    parser = argparse.ArgumentParser(
        prog='superglue-node', description='SuperPoint/SuperGlue correspondences for a SLAM '
        'front-end. Configure with ROS parameters: --ros-args --params-file config/superglue.yaml')
    parser.add_argument('--threads', type=int, default=0,
                        help='executor threads (default: max_pending_requests + 2)')
    options = parser.parse_args(own)
    import torch
    torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))

    rclpy.init(args=['superglue-node'] + args)
    node = None
    try:
        try:
            node = SuperGlueNode()
        except StartupError as error:
            rclpy.logging.get_logger(NODE_NAME).fatal(f'cannot start: {error}')
            return 2
        threads = options.threads or node.p['max_pending_requests'] + 2
        executor = MultiThreadedExecutor(num_threads=threads)
        executor.add_node(node)
        try:
            executor.spin()
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        finally:
            executor.shutdown()
        return 0
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == '__main__':
    sys.exit(main())
