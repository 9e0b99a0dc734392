"""glibc heap settings that keep a long-running node's memory flat.

Why: the node allocates image-sized buffers (frames, score maps, descriptor arrays of 128 KiB to
2 MiB) from many threads (executor pool, extraction, odometry, loop worker, OpenMP/TBB). With
glibc's defaults each thread can get its own arena (up to 8 per core), and freed blocks inside
an arena stay resident as fragmentation: the node's RSS kept growing after the keyframe cache
reached its bound (10-minute soak, README "The running node"). Two arenas bound the per-thread
heaps, and a periodic ``malloc_trim`` hands the free pages inside them back to the system.
A fixed mmap threshold (every large block mapped and unmapped) flattened RSS as well but cost
about 20% of the node's frames at 30 Hz (page faults on every frame's buffers), so it is not
used. Settings the user gave in the environment (``MALLOC_ARENA_MAX``) are left as they are.
Off glibc all of this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)
ARENAS = 2
TRIM_PERIOD_S = 10.0  # how often the node trims (one trim of its heap: 1.8-7.7 ms measured)


def _libc():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):  # not glibc (musl has no mallopt, macOS neither)
        return None


_LIBC = _libc()


def bound_heap(arenas: int = ARENAS) -> dict:
    """Cap glibc's arenas for this process (call before its worker threads start) -> {setting:
    value applied, or the reason it was not}."""
    if _LIBC is None:
        return dict(arena_max="no glibc mallopt")
    if "MALLOC_ARENA_MAX" in os.environ:
        return dict(arena_max=f"MALLOC_ARENA_MAX={os.environ['MALLOC_ARENA_MAX']} (environment)")
    ok = _LIBC.mallopt(M_ARENA_MAX, int(arenas)) == 1
    return dict(arena_max=int(arenas) if ok else "refused by mallopt")


def trim_heap() -> bool:
    """Return the free pages of every arena to the system -> whether any memory was released
    (False off glibc)."""
    return bool(_LIBC.malloc_trim(0)) if _LIBC is not None else False
