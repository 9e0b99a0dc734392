"""Health level of one camera stream from its recent counts: OK, WARN, ERROR or STALE.

Why a module of its own: the node used to report WARN forever after a single failure and never
STALE. The level is a pure function of a window of recent counts (``CountWindow`` keeps the
counter snapshots of the last ``window_s`` seconds) and of the time since the last image, so
it can be tested exactly without ROS. The level values equal diagnostic_msgs/DiagnosticStatus's.

Rules, first match wins (``camera_level``):
  STALE  no image arrived for ``stale_timeout_s`` (counted from the start until the first one);
  ERROR  frames were finished in the window and every one of them failed or was rejected;
  WARN   failed + rejected > ``warn_failure_share`` of the frames finished in the window, or
         dropped > ``warn_drop_share`` of the frames received in it;
  OK     otherwise (also while images arrive but no frame has finished yet).
Failures leave the window after ``window_s`` seconds, so the level returns to OK on recovery.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

OK, WARN, ERROR, STALE = 0, 1, 2, 3  # as diagnostic_msgs/DiagnosticStatus (bytes there)
LEVEL_NAMES = {OK: "OK", WARN: "WARN", ERROR: "ERROR", STALE: "STALE"}
COUNTERS = ("processed", "dropped", "rejected", "failed")


@dataclass(frozen=True)
class Counts:
    """Frames of one camera, by outcome: processed (published), dropped (replaced by a newer
    frame before the worker took it), rejected (bad input, skipped), failed (processing raised)."""

    processed: int = 0
    dropped: int = 0
    rejected: int = 0
    failed: int = 0

    def __sub__(self, other: "Counts") -> "Counts":
        return Counts(*(getattr(self, k) - getattr(other, k) for k in COUNTERS))

    @property
    def finished(self) -> int:
        """Frames the worker finished with an outcome of their own (not dropped)."""
        return self.processed + self.rejected + self.failed

    @property
    def received(self) -> int:
        return self.finished + self.dropped


@dataclass(frozen=True)
class DiagnosticsConf:
    window_s: float = 5.0
    warn_failure_share: float = 0.1
    warn_drop_share: float = 0.5
    stale_timeout_s: float = 3.0


class CountWindow:
    """Snapshots of running totals; ``push`` returns the counts of the last ``window_s`` s.

    The oldest snapshot kept is the newest one at least ``window_s`` old, so the difference
    spans at least the window once the node has run that long (since the start before)."""

    def __init__(self, start_s: float, start: Counts = Counts()):
        self._snapshots: deque[tuple[float, Counts]] = deque([(start_s, start)])

    def push(self, now_s: float, totals: Counts, window_s: float) -> Counts:
        self._snapshots.append((now_s, totals))
        while len(self._snapshots) > 1 and now_s - self._snapshots[1][0] >= window_s:
            self._snapshots.popleft()
        return totals - self._snapshots[0][1]


def camera_level(
    recent: Counts, seconds_since_image: float, conf: DiagnosticsConf = DiagnosticsConf()
) -> tuple[int, str]:
    """(level, message) of one camera; see the module docstring for the rules."""
    window = f"{conf.window_s:g} s"
    if seconds_since_image >= conf.stale_timeout_s:
        return STALE, (
            f"no image for {seconds_since_image:.1f} s (stale_timeout_s {conf.stale_timeout_s:g})"
        )
    bad = recent.failed + recent.rejected
    summary = (
        f"last {window}: {recent.processed} processed, {recent.failed} failed, "
        f"{recent.rejected} rejected, {recent.dropped} dropped"
    )
    if recent.finished and bad == recent.finished:
        return ERROR, f"every frame failed or was rejected; {summary}"
    if recent.finished and bad > conf.warn_failure_share * recent.finished:
        return WARN, (
            f"{bad / recent.finished:.0%} of the frames failed or were rejected "
            f"(> {conf.warn_failure_share:.0%}); {summary}"
        )
    if recent.received and recent.dropped > conf.warn_drop_share * recent.received:
        return WARN, (
            f"{recent.dropped / recent.received:.0%} of the frames dropped, the node "
            f"is slower than the camera (> {conf.warn_drop_share:.0%}); {summary}"
        )
    return OK, summary
