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
