"""Pairing each image with its camera_info: recent calibrations kept by stamp.

Image and camera_info arrive on two topics with no order between them, so the node keeps the
last few camera_info messages of each camera and looks up the one of a frame's stamp when the
frame is processed, waiting briefly for one that has not arrived yet. A calibration published
once (latched, transient-local) has a stamp no frame shares: mode 'latest' takes the newest
one whatever its stamp. Plain Python (no ROS types), so it is tested without DDS.

A frame whose own camera_info never arrived (a reader or writer history overwritten while the
node was busy: a 10-minute soak at 30 Hz skipped 158 of 529 frames for this on a slow CPU, with
a calibration that never changed) takes the calibration of its neighbours when the kept
camera_info just before and just after its stamp carry the same calibration (``calibration``
given to ``add``): the calibration at its stamp is then not in doubt.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

SYNC_MODES = ("stamp", "latest")
BUFFER_SIZE = 64  # camera_info messages kept per camera: a few seconds at camera rates


@dataclass
class InfoMatch:
    """Outcome of a lookup: the message (None when none fits) and, then, why."""

    info: object | None
    problem: str = ""
    from_neighbours: bool = False  # no camera_info of this stamp; both neighbours agree


class CameraInfoBuffer:
    """The last BUFFER_SIZE camera_info messages of one camera, keyed by stamp (ns)."""

    def __init__(self, size: int = BUFFER_SIZE):
        self._size = size
        # stamp -> (frame_id, info, calibration), in arrival order
        self._by_stamp: OrderedDict[int, tuple[str, object, object]] = OrderedDict()
        self._changed = threading.Condition()
        self.received = 0

    def add(self, stamp_ns: int, frame_id: str, info, calibration=None) -> None:
        """Keep `info`; the same stamp again (a latched publisher matched by both of the node's
        subscriptions, or a re-send) replaces the earlier one. calibration: a comparable value
        equal for equal calibrations (None: never paired by neighbours)."""
        with self._changed:
            self._by_stamp.pop(stamp_ns, None)
            self._by_stamp[stamp_ns] = (frame_id, info, calibration)
            while len(self._by_stamp) > self._size:
                self._by_stamp.popitem(last=False)
            self.received += 1
            self._changed.notify_all()

    def wait_for_first(self, timeout_s: float) -> bool:
        """Wait up to timeout_s until at least one camera_info has arrived; True if one has."""
        with self._changed:
            return self._changed.wait_for(lambda: self.received > 0, max(0.0, timeout_s))

    def __len__(self) -> int:
        with self._changed:
            return len(self._by_stamp)

    def find(
        self,
        stamp_ns: int,
        frame_id: str,
        mode: str = "stamp",
        tolerance_ns: int = 0,
        wait_s: float = 0.0,
        check_frame_id: bool = True,
    ) -> InfoMatch:
        """The camera_info for a frame (stamp_ns, frame_id).

        mode 'stamp': the one with the nearest stamp within tolerance_ns, else the neighbours'
        when the kept ones just before and after the stamp have the same calibration and
        frame_id; when neither is there yet and no newer one has arrived, wait up to wait_s.
        mode 'latest': the newest one to arrive. check_frame_id: a camera_info of another
        frame_id (both non-empty) is refused. Never called before the first camera_info (the
        node then matches without intrinsics).
        """
        if mode not in SYNC_MODES:
            raise ValueError(f"unknown camera_info sync mode {mode!r} (use one of {SYNC_MODES})")
        deadline = time.monotonic() + max(0.0, wait_s)
        with self._changed:
            while True:
                match = self._find(stamp_ns, mode, tolerance_ns)
                from_neighbours = match is None and mode == "stamp"
                if from_neighbours:
                    match = self._neighbours(stamp_ns)
                newest = max(self._by_stamp, default=None)
                late = newest is None or newest < stamp_ns - tolerance_ns
                remaining = deadline - time.monotonic()
                if match is not None or mode == "latest" or not late or remaining <= 0:
                    break
                self._changed.wait(remaining)
            if match is None:
                return InfoMatch(None, self._no_match(stamp_ns, tolerance_ns, newest, wait_s))
            _, (info_frame_id, info, _) = match
        if check_frame_id and info_frame_id and frame_id and info_frame_id != frame_id:
            return InfoMatch(
                None,
                f"camera_info frame_id '{info_frame_id}' differs from the image's '{frame_id}'",
            )
        return InfoMatch(info, from_neighbours=from_neighbours)

    def _neighbours(self, stamp_ns: int):
        """(stamp, entry) of the kept camera_info just before stamp_ns when the one just after
        it has the same frame_id and calibration, else None."""
        before = max((s for s in self._by_stamp if s < stamp_ns), default=None)
        after = min((s for s in self._by_stamp if s > stamp_ns), default=None)
        if before is None or after is None:
            return None
        (frame_a, _, calib_a), (frame_b, _, calib_b) = self._by_stamp[before], self._by_stamp[after]
        if calib_a is None or frame_a != frame_b or calib_a != calib_b:
            return None
        return before, self._by_stamp[before]

    def _find(self, stamp_ns: int, mode: str, tolerance_ns: int):
        if not self._by_stamp:
            return None
        if mode == "latest":
            return next(reversed(self._by_stamp.items()))
        best = min(self._by_stamp, key=lambda s: abs(s - stamp_ns))
        if abs(best - stamp_ns) > tolerance_ns:
            return None
        return best, self._by_stamp[best]

    def _no_match(self, stamp_ns: int, tolerance_ns: int, newest: int | None, wait_s: float) -> str:
        if not self._by_stamp:
            return "no camera_info received"
        nearest = min(self._by_stamp, key=lambda s: abs(s - stamp_ns))
        return (
            f"no camera_info with stamp {stamp_ns} ns (camera_info_tolerance_s="
            f"{tolerance_ns * 1e-9:g}, waited up to {wait_s:g} s); nearest of "
            f"{len(self._by_stamp)} kept is {nearest} ns ({(nearest - stamp_ns) * 1e-9:+.3f} s). "
            "A calibration published once (latched) needs camera_info_sync: 'latest'"
        )
