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


def test_background_units_and_odometry_frames_never_overlap():
    """ForegroundActivity: a background unit runs at once when odometry is idle; while a frame
    is in progress it waits max_wait_s, then claims the next turn and starts only after that
    frame ended; a frame that arrives during a unit waits for it to end."""
    from superglue_ros.frontend.model_lock import ForegroundActivity

    activity = ForegroundActivity()
    log: list[str] = []
    with activity.background(0.0) as idle:
        assert idle is True
    entered, release = threading.Event(), threading.Event()

    def odometry(name, hold: threading.Event | None):
        with activity.busy():
            log.append(f"{name} start")
            entered.set()
            if hold is not None:
                hold.wait(10)
            log.append(f"{name} end")

    frame = threading.Thread(target=odometry, args=("frame1", release))
    frame.start()
    assert entered.wait(10)
    timer = threading.Timer(0.3, release.set)
    timer.start()
    t0 = time.monotonic()
    with activity.background(0.1) as idle:
        assert idle is False and time.monotonic() - t0 >= 0.08
        log.append("unit start")  # only after frame1 ended
        entered.clear()
        late = threading.Thread(target=odometry, args=("frame2", None))
        late.start()
        assert not entered.wait(0.2)  # frame2 waits for the unit
        log.append("unit end")
    late.join(10)
    frame.join(10)
    assert log == [
        "frame1 start",
        "frame1 end",
        "unit start",
        "unit end",
        "frame2 start",
        "frame2 end",
    ]
    assert activity.active == 0
    with activity.busy():  # a unit inside a frame of the same thread is that frame's work
        with activity.background(10.0) as idle:
            assert idle is True
