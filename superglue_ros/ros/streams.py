"""Per-camera state of the node: the stream (newest unprocessed frame, counters, publishers) and
the throttled warning log they share.

Why a module of its own: the node (``node.py``) is the wiring of parameters, callbacks and
workers; what one camera holds between callbacks lives here.
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ..frontend.pipeline import FrontEnd
from ..visualization import DebugView
from .camera_info import CameraInfoBuffer
from .diagnostics import CountWindow
from .stream_gate import StreamGate

LATENCY_WINDOW = 200  # recent latencies / worker times kept per camera for diagnostics


class ThrottledLog:
    """Log each kind of warning at most once per `period_s`, then report how many were hidden.

    The kind is the text with numbers masked, so 'step 10 < ...' and 'step 12 < ...' are one
    kind but an unsupported encoding and a size mismatch are two.
    """

    def __init__(self, logger, period_s: float):
        self.logger, self.period_s = logger, period_s
        self._last: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def __call__(self, text: str, level: str = "warning") -> None:
        key = re.sub(r"\d+(\.\d+)?", "#", text)
        now = time.monotonic()
        with self._lock:
            if len(self._last) > 1000:  # bounded even if senders vary the text endlessly
                self._last.clear()
            last, hidden = self._last.get(key, (-1e18, 0))
            if now - last < self.period_s:
                self._last[key] = (last, hidden + 1)
                return
            self._last[key] = (now, 0)
        suffix = f" ({hidden} similar messages suppressed)" if hidden else ""
        getattr(self.logger, level)(text + suffix)


@dataclass
class PendingFrame:
    image: np.ndarray | None  # converted raw image, or None while `compressed` is undecoded
    stamp_ns: int
    frame_id: str
    received: float  # time.monotonic() when the message arrived
    generation: int = 0  # StreamGate generation the frame was let through in
    compressed: object = None  # CompressedImage whose header passed, decoded by the worker
    extract_s: float = 0.0  # time the extraction thread spent on it


@dataclass
class CameraStream:
    """One camera: its FrontEnd, the newest unprocessed frame and counters for diagnostics."""

    name: str
    frontend: FrontEnd
    gate: StreamGate = field(default_factory=StreamGate)
    pending: PendingFrame | None = None
    reset_pending: bool = False  # the gate saw a time jump / new frame_id
    camera_infos: CameraInfoBuffer = field(default_factory=CameraInfoBuffer)
    camera_cache: tuple = (None, None, None)  # (info msg, image size, CameraModel or None)
    info_subscriptions: list = field(default_factory=list)  # volatile, then transient-local
    first_info_waited: bool = False  # the first frame waited for a camera_info
    processed: int = 0
    dropped: int = 0
    rejected: int = 0
    info_from_neighbours: int = 0  # frames paired with their neighbours' camera_info
    failed: int = 0
    keyframes: int = 0
    loop_closures: int = 0
    latencies_s: deque = field(
        default_factory=lambda: deque(maxlen=LATENCY_WINDOW)
    )  # receipt -> ODOMETRY out
    extract_times_s: deque = field(
        default_factory=lambda: deque(maxlen=LATENCY_WINDOW)
    )  # extraction thread per frame
    vo_times_s: deque = field(
        default_factory=lambda: deque(maxlen=LATENCY_WINDOW)
    )  # odometry thread per frame
    loop_times_s: deque = field(
        default_factory=lambda: deque(maxlen=LATENCY_WINDOW)
    )  # loop worker per job
    loop_waits_s: deque = field(
        default_factory=lambda: deque(maxlen=LATENCY_WINDOW)
    )  # keyframe -> job start
    loop_jobs_done: int = 0
    loop_jobs_dropped: int = 0
    last_diag: tuple = (0.0, 0, 0)  # (time, processed, dropped) at the last report
    last_image_s: float = 0.0  # time.monotonic() of the last image message
    window: CountWindow | None = None  # counts of the recent diagnostics window
    debug: DebugView = field(default_factory=DebugView)  # small keyframe images, drawing
    publishers: dict = field(default_factory=dict)

    @property
    def frame_id(self) -> str | None:
        return self.gate.frame_id


def topic_name(camera: str, name: str) -> str:
    """``name`` under the camera namespace (relative to the node when the namespace is empty)."""
    return f"{camera.rstrip('/')}/{name}" if camera else name
