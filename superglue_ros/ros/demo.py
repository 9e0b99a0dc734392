"""superglue-demo: the node on the embedded synthetic camera, with a report of what it published.

Runs three nodes in one process over real DDS: the player (synthetic loop sequence from photos
shipped with scikit-image), superglue_node, and a recorder. When the sequence is over it writes
to the output directory: report.txt / report.json (VO messages, keyframes, loop closures with
the keyframe they reference, accuracy against the exact ground truth, latency, drops) and
debug_loop_closure.png / debug_last.png (matches drawn: inliers green, outliers red).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import threading
import time

import numpy as np

DEFAULT_OUTPUT = "demo_output"


def shipped_weights_present() -> bool:
    from ..models.weights import default_weights_path

    return all(default_weights_path(kind).is_file() for kind in ("superpoint", "superglue"))


def _gt_error(
    sequence, ref_index: int, query_index: int, ref_pts: np.ndarray, query_pts: np.ndarray
) -> np.ndarray:
    """[K] distance (px) of each query point from its reference point mapped by the exact H."""
    return np.linalg.norm(sequence.warp_points(ref_index, query_index, ref_pts) - query_pts, axis=1)


def run(options) -> dict:
    import rclpy
    from rclpy.context import Context
    from .executor import CallbackPoolExecutor
    from rclpy.node import Node
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image
    from superglue_ros_msgs.msg import Correspondences, KeyframeFeatures

    from ..frontend.synthetic import make_sequence
    from ..images import image_to_array
    from .messages import stamp_to_ns
    from .node import StartupError, SuperGlueNode
    from .player import SequencePlayer

    out_dir = pathlib.Path(options.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sequence = make_sequence(num_frames=options.frames)

    class Recorder(Node):
        def __init__(self, context):
            super().__init__("superglue_demo_recorder", context=context)
            self.lock = threading.Lock()
            self.correspondences, self.keyframes, self.debug = [], [], {}
            self.create_subscription(
                Correspondences, "correspondences", self._keep(self.correspondences), 100
            )
            self.create_subscription(KeyframeFeatures, "keyframes", self._keep(self.keyframes), 100)
            self.create_subscription(Image, "debug_image", self._on_debug, 10)

        def _keep(self, store):
            def callback(msg):
                with self.lock:
                    store.append(msg)

            return callback

        def _on_debug(self, msg):
            with self.lock:
                self.debug[stamp_to_ns(msg.header.stamp)] = msg
                loops = self.loop_stamps()
                while len(self.debug) > 8:  # keep the latest few, loop closures first
                    others = [k for k in self.debug if k not in loops]
                    del self.debug[min(others or self.debug)]

        def loop_stamps(self):
            return {
                stamp_to_ns(m.header.stamp)
                for m in self.correspondences
                if m.kind == Correspondences.LOOP_CLOSURE
            }

    context = Context()
    rclpy.init(context=context, args=["superglue-demo"])
    executor = CallbackPoolExecutor(num_threads=4, context=context)
    nodes = []
    try:
        params = [
            Parameter("preset", value=options.preset),
            Parameter("device", value=options.device),
            Parameter("debug_image", value="always"),
            Parameter("max_keypoints", value=options.max_keypoints),
            Parameter("superpoint_weights", value=options.superpoint_weights),
            Parameter("superglue_weights", value=options.superglue_weights),
            # the lap is short (8 s of camera time at 10 Hz): a keyframe at least every second
            # and a 4-keyframe gap let the revisit find the start among the keyframes
            Parameter("max_interval_s", value=1.0),
            Parameter("loop_min_id_gap", value=4),
        ]
        try:
            node = SuperGlueNode(context=context, parameter_overrides=params)
        except StartupError as error:
            raise SystemExit(f"superglue-demo: the node cannot start: {error}")
        recorder = Recorder(context)
        player = SequencePlayer(sequence, rate=options.rate, context=context)
        player.timer.cancel()
        nodes = [node, recorder, player]
        for n in nodes:
            executor.add_node(n)
        spinner = threading.Thread(target=executor.spin, daemon=True)
        spinner.start()
        deadline = time.monotonic() + 15
        while player.image_pub.get_subscription_count() < 1 and time.monotonic() < deadline:
            time.sleep(0.05)  # DDS discovery of the node's image subscription
        print(
            f"superglue-demo: playing {len(sequence)} frames at {options.rate:g} Hz into "
            f"superglue_node ({node.extractor.name}+{node.matcher.name} on {node.device})",
            flush=True,
        )
        started = time.monotonic()
        player.timer.reset()
        while not player.done:
            time.sleep(0.1)
        # let the node finish the frame it is on, then stop
        stats = node.stats()[""]
        last_change, last = time.monotonic(), stats["processed"] + stats["rejected"]
        while time.monotonic() - last_change < 3.0 or not node.loop_idle():  # loop jobs too
            time.sleep(0.2)
            stats = node.stats()[""]
            now_count = stats["processed"] + stats["rejected"]
            if now_count != last:
                last_change, last = time.monotonic(), now_count
        elapsed = last_change - started
        time.sleep(0.5)  # last messages through DDS
        with recorder.lock:
            corrs = list(recorder.correspondences)
            keyframes = list(recorder.keyframes)
            debug = dict(recorder.debug)
        published = dict((stamp, index) for index, stamp in player.published)
    finally:
        executor.shutdown(timeout_sec=5.0)
        for n in nodes:
            n.destroy_node()
        if context.ok():
            rclpy.shutdown(context=context)

    # ---- report ------------------------------------------------------------------------
    index_of = lambda stamp: published.get(stamp_to_ns(stamp))  # noqa: E731
    kf_index = {k.id: index_of(k.header.stamp) for k in keyframes}
    vo = [m for m in corrs if m.kind == Correspondences.ODOMETRY]
    loops = [m for m in corrs if m.kind == Correspondences.LOOP_CLOSURE]
    within, total = 0, 0
    for m in corrs:
        qi, ri = index_of(m.header.stamp), index_of(m.reference_stamp)
        inl = np.asarray(m.inliers, bool)
        if qi is None or ri is None or not inl.any():
            continue
        err = _gt_error(
            sequence,
            ri,
            qi,
            np.reshape(m.reference_points, (-1, 2))[inl],
            np.reshape(m.query_points, (-1, 2))[inl],
        )
        within += int((err < 3.0).sum())
        total += int(inl.sum())
    lat = np.array(stats["latencies_s"], float)
    report = dict(
        extractor=node.extractor.name,
        matcher=node.matcher.name,
        device=str(node.device),
        frames_published=len(published),
        rate_hz=options.rate,
        frames_processed=stats["processed"],
        frames_dropped=stats["dropped"],
        frames_rejected=stats["rejected"],
        processed_fps=stats["processed"] / elapsed if elapsed > 0 else 0.0,
        latency_p50_ms=float(np.percentile(lat, 50) * 1e3) if lat.size else None,
        latency_p90_ms=float(np.percentile(lat, 90) * 1e3) if lat.size else None,
        vo_messages=len(vo),
        vo_mean_inliers=float(np.mean([m.num_inliers for m in vo])) if vo else 0.0,
        keyframes=[dict(id=k.id, frame=kf_index[k.id], keypoints=len(k.scores)) for k in keyframes],
        loop_closures=[
            dict(
                query_keyframe=m.query_id,
                query_frame=index_of(m.header.stamp),
                reference_keyframe=m.reference_id,
                reference_frame=index_of(m.reference_stamp),
                inliers=m.num_inliers,
                matches=len(m.scores),
                gt_overlap=round(
                    sequence.overlap(index_of(m.header.stamp), index_of(m.reference_stamp)), 3
                ),
            )
            for m in loops
            if index_of(m.header.stamp) is not None and index_of(m.reference_stamp) is not None
        ],
        inliers_within_3px_of_ground_truth=(within / total) if total else None,
    )
    files = []
    chosen = None
    loop_stamps = [stamp_to_ns(m.header.stamp) for m in sorted(loops, key=lambda m: -m.num_inliers)]
    for stamp in loop_stamps:
        if stamp in debug:
            chosen = ("debug_loop_closure.png", debug[stamp])
            break
    import cv2

    for name, msg in ([chosen] if chosen else []) + (
        [("debug_last.png", debug[max(debug)])] if debug else []
    ):
        image = image_to_array(msg.encoding, msg.height, msg.width, msg.step, msg.data)
        cv2.imwrite(str(out_dir / name), image)
        files.append(name)
    report["files"] = files
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    text = format_report(report)
    (out_dir / "report.txt").write_text(text)
    return report, text


def format_report(r: dict) -> str:
    fmt = lambda v, unit="": "n/a" if v is None else f"{v:.1f}{unit}"  # noqa: E731
    lines = [
        f"superglue-demo report ({r['extractor']} + {r['matcher']} on {r['device']})",
        f"  frames: {r['frames_published']} published at {r['rate_hz']:g} Hz, "
        f"{r['frames_processed']} processed, {r['frames_dropped']} dropped (latest-frame policy), "
        f"{r['frames_rejected']} rejected",
        f"  processed rate: {r['processed_fps']:.2f} fps; latency (receipt -> published) "
        f"p50 {fmt(r['latency_p50_ms'], ' ms')}, p90 {fmt(r['latency_p90_ms'], ' ms')}",
        f"  VO messages (ODOMETRY): {r['vo_messages']}, mean inliers {r['vo_mean_inliers']:.1f}",
        f"  keyframes: {len(r['keyframes'])} (ids {[k['id'] for k in r['keyframes']]}, "
        f"sequence frames {[k['frame'] for k in r['keyframes']]})",
        f"  loop closures (LOOP_CLOSURE): {len(r['loop_closures'])}",
    ]
    for lc in r["loop_closures"]:
        lines.append(
            f"    keyframe {lc['query_keyframe']} (frame {lc['query_frame']}) -> keyframe "
            f"{lc['reference_keyframe']} (frame {lc['reference_frame']}): {lc['inliers']} "
            f"inliers of {lc['matches']} matches, ground-truth overlap {lc['gt_overlap']:.2f}"
        )
    acc = r["inliers_within_3px_of_ground_truth"]
    lines.append(
        f"  published inliers within 3 px of the exact ground truth: "
        f"{'n/a' if acc is None else f'{100 * acc:.1f}%'}"
    )
    lines.append(f"  files: {', '.join(r['files']) or 'none'}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="superglue-demo", description=__doc__.split("\n")[0])
    parser.add_argument("--output-dir", default=DEFAULT_OUTPUT, help="default ./demo_output")
    parser.add_argument(
        "--preset",
        default=None,
        help="extractor+matcher preset (default 'superglue' with the shipped weights)",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="player frame rate [Hz] (default 10; 1 for SuperPoint on a CPU)",
    )
    parser.add_argument(
        "--frames",
        type=int,
        default=None,
        help="frames in the sequence (default 80; 48 for SuperPoint on a CPU)",
    )
    parser.add_argument("--max-keypoints", type=int, default=512)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--superpoint-weights", default="", help="default: the shipped file")
    parser.add_argument("--superglue-weights", default="", help="default: the shipped file")
    options = parser.parse_args(argv)
    if options.preset is None:
        if shipped_weights_present() or (options.superpoint_weights and options.superglue_weights):
            options.preset = "superglue"
        else:
            print(
                "superglue-demo: NOTE: the shipped weights superglue_ros/weights/{superpoint,superglue}.pth "
                "are not there yet; falling back to preset 'sift' (pass --preset to choose)."
            )
            options.preset = "sift"
    import torch

    slow = options.preset in ("superglue", "superpoint-mnn") and not torch.cuda.is_available()
    if options.rate is None:  # SuperPoint on a CPU takes seconds per frame: a slower camera
        options.rate = 1.0 if slow else 10.0
    if options.frames is None:
        options.frames = 48 if slow else 80
    report, text = run(options)
    print(text, end="")
    print(f"superglue-demo: wrote {pathlib.Path(options.output_dir).resolve()}/report.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
