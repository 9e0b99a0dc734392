"""The node as a child process, for the benchmarks that measure it from outside (node_benchmark,
soak): its resident memory, and a stop that lets it shut down cleanly before it is killed."""

from __future__ import annotations

import signal
import subprocess


def read_rss_bytes(pid: int) -> int | None:
    """VmRSS of process `pid` in bytes (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def stop_node(process: subprocess.Popen, timeout_s: float) -> None:
    """SIGINT (the node stops its workers, then its context), then SIGKILL after timeout_s."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
