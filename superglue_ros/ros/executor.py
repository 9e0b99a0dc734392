"""The node's executor: callbacks on a thread pool, like rclpy's MultiThreadedExecutor, without
its busy loop.

Why: MultiThreadedExecutor yields a callback's task again on every pass until a pool thread has
started it, and every pass rebuilds the wait set in Python with the GIL held (~0.25 ms for this
node's ~40 entities). While the odometry worker competes for the GIL, a pool thread needs
10-30 ms to start, so the spin thread made ~115 passes per callback: 30 000 passes and about a
third of a core in 25 s of 1241x376 frames at 5 Hz, taken from the 2 cores the models have.
Here a pass hands its callback to the pool and waits (GIL released) until a pool thread has
picked it up, so each callback costs one pass. Written against the public custom-executor API
(``Executor.wait_for_ready_callbacks``).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import rclpy.logging
from rclpy.executors import (
    ConditionReachedException,
    Executor,
    ExternalShutdownException,
    ShutdownException,
    TimeoutException,
)

# A pass waits at most this long for a pool thread to pick its callback up (all threads busy:
# the callback stays queued in the pool and the next pass may yield it once more)
HANDOFF_TIMEOUT_S = 0.5


class CallbackPoolExecutor(Executor):
    """Runs ready callbacks on ``num_threads`` pool threads; callback groups decide what may run
    at once, as with MultiThreadedExecutor. A callback that raises is logged, not re-raised
    into the spinning thread (the node keeps running)."""

    def __init__(self, num_threads: int, context=None):
        super().__init__(context=context)
        self._pool = ThreadPoolExecutor(max(1, int(num_threads)), "superglue_callback")
        self._logger = rclpy.logging.get_logger("superglue_executor")
        self.passes = 0  # wait-set passes that yielded a callback (tests compare with callbacks)
        self._stopping = False
        self.failures = 0  # callbacks that raised (logged)

    def spin_once(self, timeout_sec: float | None = None) -> None:
        self._spin_once(timeout_sec)

    def spin_once_until_future_complete(self, future, timeout_sec=None) -> None:
        future.add_done_callback(lambda _: self.wake())
        self._spin_once(timeout_sec, future.done)

    def _spin_once_until_future_complete(self, future, timeout_sec=None) -> None:
        self._spin_once(timeout_sec, future.done)  # what Executor.spin_until_future_complete calls

    def _spin_once(self, timeout_sec, condition: Callable[[], bool] = lambda: False) -> None:
        try:
            handler, _, _ = self.wait_for_ready_callbacks(timeout_sec, None, condition)
        except (
            TimeoutException,
            ShutdownException,
            ExternalShutdownException,
            ConditionReachedException,
        ):
            return
        if self._stopping:
            return
        self.passes += 1
        started = threading.Event()

        def run() -> None:
            started.set()
            handler()
            error = handler.exception()
            if error is not None:
                self.failures += 1
                self._logger.error(f"callback raised {type(error).__name__}: {error}")

        try:
            self._pool.submit(run)
        except RuntimeError:  # the pool was shut down while this pass waited
            return
        started.wait(HANDOFF_TIMEOUT_S)

    def shutdown(self, timeout_sec: float | None = None, *, wait_for_threads: bool = True) -> bool:
        """Let running callbacks finish, then shut down. Executor.shutdown destroys its guard
        condition without waiting for them (rclpy Kilted: its wait is skipped), and a callback
        still running then fails on that guard with InvalidHandle."""
        self._stopping = True
        self._pool.shutdown(wait=wait_for_threads)
        return super().shutdown(timeout_sec)
