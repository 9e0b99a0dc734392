"""Soak benchmark of superglue_node (issue 15): a long run at camera rate, not a test.

Starts the node as its own process (as deployed), plays the synthetic loop sequence at
``--rate`` Hz for ``--minutes``, each frame stamped with its wall time at publishing (as a
camera stamps captures; the achieved rate is reported, a loaded machine may fall short), and
records:
- the node's RSS every ``--sample-s`` seconds (/proc/<pid>/status), with the keyframe cache's
  size from /diagnostics, so memory growth can be read after the cache reached its bound (end
  sample - bound sample, and the median of the last minute - that of the first minute after
  the bound, which the node's periodic heap trim does not swing);
- latency (reply time - frame stamp) percentiles per minute, frames published / answered;
- the node's final frame counters (processed, dropped, rejected, failed) from /diagnostics;
- every WARN / ERROR line the node printed.
Writes JSON (``--output``) and prints a summary. Runs on the machine it is given: quote the
load with the numbers.

    python -m superglue_ros.ros.soak --minutes 10 --rate 30 --output soak.json
    python -m superglue_ros.ros.soak --minutes 1 --param preset:=orb     # a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from .executor import CallbackPoolExecutor
from rclpy.node import Node
from superglue_ros_msgs.msg import Correspondences

from ..frontend.synthetic import make_sequence
from .messages import stamp_to_ns
from .node_process import read_rss_bytes, stop_node
from .player import SequencePlayer


class Prerendered:
    """The sequence's frames rendered once, so the player keeps up with the camera rate
    (rendering a frame costs 15-60 ms here); what SequencePlayer reads of a sequence."""

    def __init__(self, sequence):
        self.K, self.width, self.height = sequence.K, sequence.width, sequence.height
        self.frames = [sequence.frame(i) for i in range(len(sequence))]

    def __len__(self) -> int:
        return len(self.frames)

    def frame(self, i: int):
        return self.frames[i]


class Recorder(Node):
    """Replies (stamp -> receive time) and the node's latest diagnostics values."""

    def __init__(self, context: Context, namespace: str):
        super().__init__("superglue_soak_recorder", namespace=namespace, context=context)
        self.lock = threading.Lock()
        self.replies: list[tuple[int, float]] = []  # (frame stamp ns, receive wall time s)
        self.diagnostics: dict[str, str] = {}
        self.create_subscription(Correspondences, "correspondences", self._on_reply, 100)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def _on_reply(self, msg: Correspondences) -> None:
        if msg.kind == Correspondences.ODOMETRY:
            with self.lock:
                self.replies.append((stamp_to_ns(msg.header.stamp), time.time()))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith(f"{self.get_namespace()}/superglue_node:"):
                with self.lock:
                    self.diagnostics = {kv.key: kv.value for kv in status.values}


def _percentiles(values_s: list[float]) -> dict:
    if not values_s:
        return dict(p50_ms=None, p90_ms=None, p99_ms=None, max_ms=None)
    p50, p90, p99 = np.percentile(np.asarray(values_s) * 1e3, [50, 90, 99])
    return dict(
        p50_ms=round(float(p50), 1),
        p90_ms=round(float(p90), 1),
        p99_ms=round(float(p99), 1),
        max_ms=round(max(values_s) * 1e3, 1),
    )


def summarize(
    samples: list[dict],
    published: list[tuple[int, int]],
    replies: list[tuple[int, float]],
    start_s: float,
    node_params: dict,
) -> dict:
    """Per-minute latency, memory after the cache bound, drift of p50 (first vs last minute)."""
    minutes = []
    stamps_per_minute: dict[int, list[int]] = {}
    for _, stamp in published:
        stamps_per_minute.setdefault(int((stamp * 1e-9 - start_s) // 60), []).append(stamp)
    latency_of = {stamp: received - stamp * 1e-9 for stamp, received in replies}
    for minute in sorted(stamps_per_minute):
        stamps = stamps_per_minute[minute]
        lat = [latency_of[s] for s in stamps if s in latency_of]
        minutes.append(
            dict(
                minute=minute,
                frames_published=len(stamps),
                frames_answered=len(lat),
                **_percentiles(lat),
            )
        )
    full = next((s for s in samples if s["cache_full"]), None)
    rss_end = samples[-1]["rss_bytes"] if samples else None
    first, last = (minutes[0], minutes[-1]) if minutes else (None, None)
    drift = (
        last["p50_ms"] / first["p50_ms"]
        if first and last and first["p50_ms"] and last["p50_ms"]
        else None
    )
    return dict(
        per_minute=minutes,
        rss_growth_median_bytes=_median_growth(samples, full),
        cache_full_at_s=full["t_s"] if full else None,
        rss_at_cache_full_bytes=full["rss_bytes"] if full else None,
        rss_end_bytes=rss_end,
        rss_growth_after_cache_full_bytes=(rss_end - full["rss_bytes"])
        if full and rss_end
        else None,
        p50_last_over_first_minute=round(drift, 3) if drift else None,
        node_params=node_params,
    )


def _median_growth(samples: list[dict], full: dict | None, window_s: float = 60.0) -> int | None:
    """Median RSS of the last window_s minus that of the first window_s after the cache bound
    (None if the run is shorter than two windows after it). Why medians: single samples swing
    by tens of MiB between two heap trims (superglue_ros.heap), which says nothing of growth."""
    if not full or not samples or samples[-1]["t_s"] < full["t_s"] + 2 * window_s:
        return None
    t0, t1 = full["t_s"], samples[-1]["t_s"]
    first = [s["rss_bytes"] for s in samples if t0 <= s["t_s"] < t0 + window_s]
    last = [s["rss_bytes"] for s in samples if s["t_s"] > t1 - window_s]
    return int(np.median(last) - np.median(first))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m superglue_ros.ros.soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--minutes", type=float, default=10.0, help="length of the run (default 10)"
    )
    parser.add_argument("--rate", type=float, default=30.0, help="camera rate in Hz (default 30)")
    parser.add_argument("--sample-s", type=float, default=5.0, help="seconds between RSS samples")
    parser.add_argument(
        "--frames",
        type=int,
        default=100,
        help="frames in one lap of the sequence, rendered up front (default 100, 92 MB)",
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME:=VALUE",
        help="node parameter (repeatable), e.g. --param preset:=orb",
    )
    parser.add_argument("--output", default="soak.json", help="JSON output path")
    options = parser.parse_args(argv)
    params = dict(reliability="reliable", debug_image="never")
    for item in options.param:
        name, sep, value = item.partition(":=")
        if not sep:
            parser.error(f"--param {item!r}: expected NAME:=VALUE")
        params[name] = value
    namespace = f"/superglue_soak_{os.getpid()}"
    command = [
        sys.executable,
        "-m",
        "superglue_ros.ros.node",
        "--ros-args",
        "-r",
        f"__ns:={namespace}",
    ]
    for name, value in params.items():
        command += ["-p", f"{name}:={value}"]
    node = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    log_lines: list[str] = []
    reader = threading.Thread(
        target=lambda: log_lines.extend(iter(node.stdout.readline, "")), daemon=True
    )
    reader.start()

    sequence = Prerendered(make_sequence(num_frames=options.frames))
    context = Context()
    rclpy.init(context=context, args=["superglue-soak"])  # our --param NAME:=VALUE are not ours
    executor = CallbackPoolExecutor(num_threads=3, context=context)
    recorder = Recorder(context, namespace)
    player = SequencePlayer(
        sequence,
        options.rate,
        "bgr8",
        "soak_camera",
        loops=10**6,
        reliable=True,
        node_name="superglue_soak_player",
        wall_stamps=True,
        namespace=namespace,
        context=context,
    )
    player.timer.cancel()
    for n in (recorder, player):
        executor.add_node(n)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    samples: list[dict] = []
    try:
        deadline = time.monotonic() + 120
        while player.image_pub.get_subscription_count() == 0 or not any(
            "ready:" in line for line in log_lines
        ):
            if node.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the node did not start:\n" + "".join(log_lines[-20:]))
            time.sleep(0.1)
        start_s = time.time()
        end = time.monotonic() + options.minutes * 60
        player.timer.reset()
        max_kf = int(params.get("max_keyframes", 200))
        max_bytes = int(params.get("max_cache_bytes", 256 * 2**20))
        while time.monotonic() < end and node.poll() is None:
            time.sleep(min(options.sample_s, max(0.0, end - time.monotonic())))
            with recorder.lock:
                diag = dict(recorder.diagnostics)
            kf, nbytes = int(diag.get("cache_keyframes", 0)), int(diag.get("cache_bytes", 0))
            samples.append(
                dict(
                    t_s=round(time.time() - start_s, 1),
                    rss_bytes=read_rss_bytes(node.pid),
                    cache_keyframes=kf,
                    cache_bytes=nbytes,
                    cache_full=kf >= max_kf or nbytes >= 0.95 * max_bytes,
                    frames_published=len(player.published),
                )
            )
            print(
                f"[soak] {samples[-1]['t_s']:7.1f} s  RSS {samples[-1]['rss_bytes'] / 2**20:7.1f} MiB  "
                f"cache {kf} keyframes / {nbytes / 2**20:.1f} MiB  published {len(player.published)}",
                flush=True,
            )
        player.timer.cancel()
        duration_s = time.time() - start_s
        time.sleep(3.0)  # the last frames' replies and diagnostics
        with recorder.lock:
            replies, diag = list(recorder.replies), dict(recorder.diagnostics)
    finally:
        stop_node(node, 30)
        reader.join(timeout=5)
        executor.shutdown(timeout_sec=5.0)
        for n in (player, recorder):
            n.destroy_node()
        rclpy.shutdown(context=context)

    problems = [line.rstrip() for line in log_lines if re.search(r"\[(WARN|ERROR|FATAL)\]", line)]
    result = dict(
        minutes=options.minutes,
        rate_hz=options.rate,
        load_average=os.getloadavg(),
        cpu_count=os.cpu_count(),
        exit_code=node.returncode,
        frames_published=len(player.published),
        frames_answered=len(replies),
        rate_achieved_hz=round(len(player.published) / duration_s, 2),
        # reliable KEEP_LAST(1): a frame overwritten in the node's reader before its callback
        # took it is counted nowhere by the node
        frames_not_taken_by_node=len(player.published)
        - sum(
            int(diag.get(k, 0)) for k in ("frames_processed", "frames_dropped", "frames_rejected")
        ),
        counters={
            k: diag.get(k)
            for k in (
                "frames_processed",
                "frames_dropped",
                "frames_rejected",
                "camera_info_from_neighbours",
                "frames_failed",
                "keyframes",
                "loop_closures",
                "cache_keyframes",
                "cache_bytes",
            )
        },
        warn_error_lines=len(problems),
        warn_error_first=problems[:50],
        samples=samples,
        **summarize(samples, player.published, replies, start_s, params),
    )
    with open(options.output, "w") as f:
        json.dump(result, f, indent=2)
    growth = result["rss_growth_after_cache_full_bytes"]
    median_growth = result["rss_growth_median_bytes"]
    print(
        f"[soak] {result['frames_published']} frames published ({result['rate_achieved_hz']} Hz of "
        f"{options.rate:g} asked), {result['frames_answered']} answered, counters {result['counters']}"
    )
    for m in result["per_minute"]:
        print(
            f"[soak] minute {m['minute']}: {m['frames_answered']}/{m['frames_published']} answered, "
            f"latency p50 {m['p50_ms']} ms, p90 {m['p90_ms']} ms, p99 {m['p99_ms']} ms"
        )
    print(
        f"[soak] RSS growth after the cache bound: "
        f"{'cache never full' if growth is None else f'{growth / 2**20:.1f} MiB'} (end sample - "
        f"bound sample), "
        f"{'run too short' if median_growth is None else f'{median_growth / 2**20:.1f} MiB'} "
        f"(median of the last minute - of the first minute after the bound); p50 last/first "
        f"minute {result['p50_last_over_first_minute']}; {len(problems)} WARN/ERROR lines; "
        f"node exit code {node.returncode}; load {result['load_average']}; -> {options.output}"
    )
    return 0 if node.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
