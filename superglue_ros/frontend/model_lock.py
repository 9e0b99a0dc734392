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
    """Odometry frames in progress in this process (all FrontEnds, all models), and background
    units (loop-candidate matches) that never overlap them.

    Why: the per-model locks let a loop job's SuperGlue run while odometry extracts the next
    frame, and on 2 cores the two halve each other's speed or worse (each library spreads over
    both cores): on KITTI 1241x376 at 5 Hz a 3-candidate loop job took ~680 ms in the node
    against ~145 ms alone, odometry ~140 ms against ~82 ms, and 19% of the frames were dropped.
    So the CPU is handed out in turns: a background unit starts only when no odometry frame is
    in progress or waiting, and a frame that arrives during one waits for it to end (in an
    idle moment the caller runs one SuperGlue pair, ~45 ms on 2 cores). A background caller
    that found no idle moment within ``max_wait_s`` (a camera that keeps odometry busy, 30 Hz)
    claims the next turn: frames not yet started wait until its unit ends (a loop worker that
    is behind then matches all its job's remaining candidates), so loop closure is never
    starved.
    """

    def __init__(self):
        self._cond = threading.Condition(threading.Lock())
        self._active = 0  # odometry frames in progress
        self._waiting = 0  # odometry frames waiting for a background unit to end
        self._background = 0  # background units running (or claiming the next turn)
        self._local = threading.local()  # per thread: depth of busy() (nesting never waits)

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """One odometry frame: waits for a running (or claimed) background unit to end."""
        depth = getattr(self._local, "depth", 0)
        with self._cond:
            if depth == 0:
                self._waiting += 1
                try:
                    self._cond.wait_for(lambda: self._background == 0)
                finally:
                    self._waiting -= 1
            self._active += 1
        self._local.depth = depth + 1
        try:
            yield
        finally:
            self._local.depth = depth
            with self._cond:
                self._active -= 1
                self._cond.notify_all()

    @contextlib.contextmanager
    def background(self, max_wait_s: float) -> Iterator[bool]:
        """One background unit, run when odometry is idle; yields whether an idle moment came
        within ``max_wait_s`` (False: the turn was claimed after waiting for the running frames).
        Inside an odometry frame of the same thread it runs at once (it is that frame's work)."""
        if getattr(self._local, "depth", 0):
            yield True
            return
        with self._cond:
            idle = self._cond.wait_for(
                lambda: self._active == 0 and self._waiting == 0 and self._background == 0,
                timeout=max_wait_s,
            )
            if not idle:  # claim the next turn: frames not yet started wait for this unit
                self._cond.wait_for(lambda: self._background == 0)
                self._background += 1
                self._cond.wait_for(lambda: self._active == 0)
            else:
                self._background += 1
        try:
            yield idle
        finally:
            with self._cond:
                self._background -= 1
                self._cond.notify_all()

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
