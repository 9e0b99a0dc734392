"""Optional stage timing inside the shipped code (SuperPoint, SuperGlue, matchers, geometry).

The models mark their stages with ``with stage('superglue_gnn'):``. Nothing records unless a
caller asks for it in its own thread:

    with recording() as times:        # times.ms: {stage: milliseconds, summed per stage}
        extractor.extract(image)

so ``superglue-benchmark`` times the code the node runs instead of a copy of it. Off (the
default, and in every other thread), ``stage`` returns one shared no-op context: a thread-local
lookup and two empty calls per stage, about 0.9 us measured (2-core Xeon, load 6), against
milliseconds of work per stage.
On CUDA the recording synchronises the device at each stage boundary so kernels are counted in
the stage that launched them.
"""

from __future__ import annotations

import contextlib
import threading
import time

_LOCAL = threading.local()
_OFF = contextlib.nullcontext()


class StageTimes:
    """Milliseconds per stage name, summed over the stages run while recording."""

    def __init__(self, synchronize: bool = False):
        self.ms: dict[str, float] = {}
        self._synchronize = synchronize

    def _sync(self) -> None:
        if self._synchronize:
            import torch

            torch.cuda.synchronize()

    @contextlib.contextmanager
    def stage(self, name: str):
        self._sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self._sync()
            self.ms[name] = self.ms.get(name, 0.0) + 1000.0 * (time.perf_counter() - start)


def stage(name: str):
    """Context manager timing `name` when this thread is recording, else a shared no-op."""
    recorder = getattr(_LOCAL, "recorder", None)
    return _OFF if recorder is None else recorder.stage(name)


@contextlib.contextmanager
def recording(times: StageTimes | None = None):
    """Record this thread's stages into `times` (a new StageTimes when None) and yield it."""
    if times is None:
        import torch

        times = StageTimes(synchronize=torch.cuda.is_available() and torch.cuda.is_initialized())
    previous = getattr(_LOCAL, "recorder", None)
    _LOCAL.recorder = times
    try:
        yield times
    finally:
        _LOCAL.recorder = previous
