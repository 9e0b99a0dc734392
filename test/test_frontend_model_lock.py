"""model_lock: one lock per model object, re-entrant, odometry (foreground) served before loop
jobs (background)."""

import threading
import time

from superglue_ros.frontend.model_lock import ModelLock, lock_for


def _wait_until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.001)


def test_foreground_waiter_goes_before_a_background_waiter():
    lock, order = ModelLock(), []
    held, release = threading.Event(), threading.Event()

    def holder():
        with lock.hold():
            held.set()
            release.wait()

    def take(name, background):
        with lock.hold(background=background):
            order.append(name)

    threads = [threading.Thread(target=holder)]
    threads[0].start()
    held.wait()
    threads.append(threading.Thread(target=take, args=("loop", True)))
    threads[-1].start()
    threads.append(threading.Thread(target=take, args=("odometry", False)))
    threads[-1].start()
    _wait_until(lambda: lock._foreground_waiting == 1)  # odometry queued behind the holder
    release.set()
    for t in threads:
        t.join(10)
    assert order == ["odometry", "loop"]


def test_reentrant_and_exclusive():
    lock, inside, peak = ModelLock(), [0], [0]

    def work():
        for _ in range(200):
            with lock.hold(background=True):
                with lock.hold():  # re-entrant in the same thread
                    inside[0] += 1
                    peak[0] = max(peak[0], inside[0])
                    inside[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert peak[0] == 1


def test_one_lock_per_model_object():
    class Model:
        pass

    class Unhashable:
        __hash__ = None

    a, b, c = Model(), Model(), Unhashable()
    assert lock_for(a) is lock_for(a) and lock_for(a) is not lock_for(b)
    assert lock_for(c) is lock_for(c)


def test_background_waits_for_idle_foreground_within_its_bound():
    """ForegroundActivity: wait_idle returns True as soon as the last odometry frame ends, and
    False after max_wait_s while one is still in progress (loop closure is never starved)."""
    from superglue_ros.frontend.model_lock import ForegroundActivity

    activity = ForegroundActivity()
    assert activity.wait_idle(0.0) is True
    entered, release = threading.Event(), threading.Event()

    def odometry():
        with activity.busy():
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=odometry)
    thread.start()
    entered.wait(10)
    t0 = time.monotonic()
    assert activity.wait_idle(0.2) is False
    assert 0.15 <= time.monotonic() - t0 < 5.0
    assert activity.active == 1
    timer = threading.Timer(0.1, release.set)
    timer.start()
    t0 = time.monotonic()
    assert activity.wait_idle(10.0) is True
    assert time.monotonic() - t0 < 5.0
    thread.join(10)
    assert activity.active == 0
