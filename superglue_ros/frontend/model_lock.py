"""One lock per model object, with foreground (odometry) callers served before background (loop).

Why: the node runs visual odometry and loop closure on two threads that share one extractor and
one matcher (and several cameras' FrontEnds share them too). The fast runtime's compiled models
keep one inference request each and are not re-entrant, so every call on a model is serialised
by that model's lock; two different models may run at the same time (SuperPoint for a new frame
while SuperGlue matches a loop candidate). A background caller waits while a foreground caller
holds or waits for the same model, so a loop job never takes a model that odometry is queued for.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from typing import Iterator


class ModelLock:
    """Re-entrant lock with two priorities: ``with lock.hold(background=True):``."""

    def __init__(self):
        self._cond = threading.Condition(threading.Lock())
        self._owner: int | None = None  # thread ident holding the lock
        self._depth = 0
        self._foreground_waiting = 0

    @contextlib.contextmanager
    def hold(self, background: bool = False) -> Iterator[None]:
        me = threading.get_ident()
        with self._cond:
            if self._owner != me:
                if not background:
                    self._foreground_waiting += 1
                try:
                    while self._owner is not None or (background and self._foreground_waiting):
                        self._cond.wait()
                finally:
                    if not background:
                        self._foreground_waiting -= 1
                self._owner = me
            self._depth += 1
        try:
            yield
        finally:
            with self._cond:
                self._depth -= 1
                if self._depth == 0:
                    self._owner = None
                    self._cond.notify_all()


class ForegroundActivity:
    """Odometry frames in progress in this process (all FrontEnds, all models).

    Why: the per-model locks let a loop job's SuperGlue run while odometry extracts the next
    frame, and on 2 cores the two halve each other's speed (measured on KITTI 1241x376 at 5 Hz:
    the odometry p90 rose from ~150 to ~400 ms while loop jobs ran). A background caller first
    waits for a moment with no odometry frame in progress, at most ``max_wait_s`` so that a
    camera that keeps odometry busy (30 Hz) cannot starve loop closure.
    """

    def __init__(self):
        self._cond = threading.Condition(threading.Lock())
        self._active = 0

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        with self._cond:
            self._active += 1
        try:
            yield
        finally:
            with self._cond:
                self._active -= 1
                if self._active == 0:
                    self._cond.notify_all()

    def wait_idle(self, max_wait_s: float) -> bool:
        """Block until no foreground frame is in progress (True) or ``max_wait_s`` passed (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._active == 0, timeout=max_wait_s)

    @property
    def active(self) -> int:
        return self._active


FOREGROUND = ForegroundActivity()  # one per process: the CPU cores are shared by all cameras


_LOCKS: "weakref.WeakKeyDictionary[object, ModelLock]" = weakref.WeakKeyDictionary()
_LOCKS_BY_ID: dict[int, tuple[object, ModelLock]] = {}  # objects that cannot be weakly referenced
_REGISTRY_LOCK = threading.Lock()


def lock_for(model: object) -> ModelLock:
    """The one ModelLock of ``model`` (the same object for every caller, for its lifetime)."""
    with _REGISTRY_LOCK:
        try:
            lock = _LOCKS.get(model)
            if lock is None:
                lock = _LOCKS[model] = ModelLock()
            return lock
        except TypeError:  # not hashable or no weak references: keep it alive with its lock
            entry = _LOCKS_BY_ID.get(id(model))
            if entry is None or entry[0] is not model:
                entry = _LOCKS_BY_ID[id(model)] = (model, ModelLock())
            return entry[1]
