"""Which frames a camera stream lets through, so that one stray message cannot take it over.

ROS-free: the node asks ``check`` in its image callback (stamp, frame_id and the node clock),
before any decoding, and calls ``accepted`` once the front-end has processed a frame. Only an
accepted frame fixes the stream's frame_id and time, so a frame rejected later (too small,
undecodable, featureless) changes nothing. Rules:

- a stamp more than ``max_future_stamp_s`` ahead of the node clock is skipped (a stamp from
  the far future would otherwise make every later, correct stamp look out of order);
- a duplicate or older stamp is skipped, unless ``stream_change_frames`` consecutive frames
  agree on the older time (each newer than the one before): that is a backward jump (a looped
  bag, a sim-time reset), and the camera's state is reset to follow it;
- a frame_id other than the stream's is skipped (``frame_id_check``), unless
  ``stream_change_frames`` consecutive frames come from the same new id: the camera was
  replaced or renamed, and the state is reset to follow the new id.

A reset forgets the stream's frame_id and time here; the caller resets the front-end before it
processes the frame that triggered it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass
class GateDecision:
    action: str  # 'accept' | 'skip' | 'reset' (process after resetting the camera's state)
    message: str = ""  # why, for the log line of 'skip' and 'reset'
    generation: int = 0  # pass to ``accepted``: frames let through before a reset count no more


@dataclass
class _Run:
    """Consecutive frames that disagree with the stream in the same way."""

    key: str  # the new frame_id, or '' for a run of older stamps
    count: int
    last_stamp_ns: int


class StreamGate:
    """Time and identity of one camera stream; thread-safe (callback checks, worker accepts)."""

    default_conf = dict(frame_id_check=True, max_future_stamp_s=10.0, stream_change_frames=3)

    def __init__(self, conf: dict | None = None):
        unknown = set(conf or {}) - set(self.default_conf)
        if unknown:
            raise ValueError(f"unknown StreamGate option(s): {sorted(unknown)}")
        self.conf = {**self.default_conf, **(conf or {})}
        if self.conf["stream_change_frames"] < 1 or self.conf["max_future_stamp_s"] < 0:
            raise ValueError("need stream_change_frames >= 1 and max_future_stamp_s >= 0")
        self._lock = threading.Lock()
        self.frame_id: str | None = None  # fixed by the first accepted frame
        self.last_stamp_ns: int | None = None  # of the last accepted frame
        self._id_run: _Run | None = None
        self._time_run: _Run | None = None
        self._generation = 0  # incremented by every reset

    @property
    def generation(self) -> int:
        """Incremented by every reset; a frame let through in an older one is stale."""
        with self._lock:
            return self._generation

    def check(self, stamp_ns: int, frame_id: str, now_ns: int | None = None) -> GateDecision:
        """Decide for one incoming frame. now_ns: the node clock; None or <= 0 (sim time not
        received yet) skips the future check."""
        limit_s = float(self.conf["max_future_stamp_s"])
        if limit_s > 0 and now_ns is not None and now_ns > 0 and stamp_ns > now_ns + limit_s * 1e9:
            return GateDecision(
                "skip",
                f"stamp {stamp_ns} ns is {(stamp_ns - now_ns) * 1e-9:.1f} s "
                f"ahead of the node clock (max_future_stamp_s {limit_s:g}): frame skipped",
            )
        needed = int(self.conf["stream_change_frames"])
        with self._lock:
            if (
                self.conf["frame_id_check"]
                and self.frame_id is not None
                and frame_id != self.frame_id
            ):
                run = self._extend(self._id_run, frame_id, stamp_ns)
                self._id_run = run
                if run.count >= needed:
                    old = self.frame_id
                    self._forget()
                    return GateDecision(
                        "reset",
                        f"frame_id changed from '{old}' to '{frame_id}' "
                        f"({needed} consecutive frames): camera state reset to "
                        "follow the new id",
                        self._generation,
                    )
                return GateDecision(
                    "skip",
                    f"frame from unknown camera frame_id '{frame_id}' (this "
                    f"stream is '{self.frame_id}'; {run.count} of {needed} "
                    "consecutive frames switch to it): skipped",
                )
            self._id_run = None
            last = self.last_stamp_ns
            if last is not None and stamp_ns <= last:
                if stamp_ns == last:
                    return GateDecision(
                        "skip",
                        f"duplicate stamp {stamp_ns} ns (last accepted {last} ns): frame skipped",
                    )
                run = self._extend(self._time_run, "", stamp_ns)
                self._time_run = run
                if run.count >= needed:
                    self._forget()
                    return GateDecision(
                        "reset",
                        f"time jumped back from {last} ns to {stamp_ns} ns "
                        f"({needed} consecutive frames agree: looped bag or sim-time "
                        "reset): camera state reset",
                        self._generation,
                    )
                return GateDecision(
                    "skip",
                    f"out-of-order stamp {stamp_ns} ns (last accepted {last} "
                    f"ns; {run.count} of {needed} consecutive older frames reset the "
                    "camera): frame skipped",
                )
            self._time_run = None
            return GateDecision("accept", generation=self._generation)

    def accepted(self, stamp_ns: int, frame_id: str, generation: int) -> None:
        """The front-end processed this frame (``generation`` from its decision): it fixes the
        stream's frame_id and time, unless a reset came in between."""
        with self._lock:
            if generation != self._generation:
                return
            if self.frame_id is None:
                self.frame_id = frame_id
            same_stream = frame_id == self.frame_id or not self.conf["frame_id_check"]
            if same_stream and (self.last_stamp_ns is None or stamp_ns > self.last_stamp_ns):
                self.last_stamp_ns = int(stamp_ns)

    def reset(self) -> None:
        """Forget frame_id, time and runs (the reset service)."""
        with self._lock:
            self._forget()

    def _forget(self) -> None:
        self._generation += 1
        self.frame_id = self.last_stamp_ns = None
        self._id_run = self._time_run = None

    @staticmethod
    def _extend(run: _Run | None, key: str, stamp_ns: int) -> _Run:
        """The run this frame continues (same key, newer stamp), or a new one it starts."""
        if run is not None and run.key == key and stamp_ns > run.last_stamp_ns:
            return _Run(key, run.count + 1, stamp_ns)
        return _Run(key, 1, stamp_ns)
