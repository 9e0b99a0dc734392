"""superglue_ros.heap: the glibc settings really act (observed through malloc_info and
/proc/self/statm, in a fresh interpreter so this test process keeps glibc's defaults), and
the environment wins."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")

PROBE = textwrap.dedent(
    """
    import ctypes, json, os, sys, tempfile, threading
    from superglue_ros.heap import bound_heap, trim_heap

    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.fopen.restype = ctypes.c_void_p
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]

    def rss_mib():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    applied = bound_heap() if sys.argv[1] == "bound" else None
    # 8 live threads allocating: glibc gives each new thread its own arena up to the cap
    barrier = threading.Barrier(8)
    def work():
        barrier.wait()
        blocks = [libc.malloc(1024) for _ in range(20000)]
        for b in blocks:
            libc.free(b)
    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads: t.start()
    for t in threads: t.join()
    path = tempfile.mktemp()
    f = libc.fopen(path.encode(), b"w")
    libc.malloc_info(0, f)
    libc.fclose(f)
    arenas = open(path).read().count("<heap nr=")
    os.unlink(path)
    # 64 MiB of 8 KiB blocks (below the mmap threshold: from the heap), all freed but one at the
    # top so the heap cannot shrink from its end: the pages stay resident until a trim
    blocks = [libc.malloc(8192) for _ in range(8192)]
    for b in blocks[:-1]:
        libc.free(b)
    before = rss_mib()
    released = trim_heap()
    print(json.dumps(dict(applied=applied, arenas=arenas, trim_mib=before - rss_mib(),
                          released=released)))
    """
)


def probe(mode, **env):
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        capture_output=True,
        text=True,
        check=True,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}, **env},
    )
    return json.loads(out.stdout)


def test_bound_heap_caps_the_arenas_and_trim_returns_free_pages():
    default, bound = probe("default"), probe("bound")
    assert bound["applied"] == dict(arena_max=2)
    assert bound["arenas"] <= 2 < default["arenas"]
    assert bound["released"] and bound["trim_mib"] > 16  # of the 64 MiB freed (33 seen)


def test_an_arena_cap_from_the_environment_is_kept():
    out = probe("bound", MALLOC_ARENA_MAX="3")
    assert out["applied"] == dict(arena_max="MALLOC_ARENA_MAX=3 (environment)")
    assert out["arenas"] <= 3
