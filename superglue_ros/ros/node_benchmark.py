"""superglue-benchmark --node: the running node fed a 30 Hz camera over DDS, measured from outside.

Why: the front-end benchmark times ``FrontEnd`` calls in one thread; a robot gets what the node
delivers, after transport, conversion, publishing, the loop worker and the latest-frame policy
(issue 14). This runs ``superglue_ros.ros.node`` as its own process (default parameters unless
overridden) and, in this process, a camera player that publishes VGA frames at a fixed rate with
SensorDataQoS (as camera drivers do; ``--reliable`` for reliable QoS) plus camera_info, and
listens to the node's correspondences and /diagnostics. After a warm-up it measures for a
window and reports, as JSON:

  processed_hz          ODOMETRY messages for frames stamped in the window / window seconds
  latency_ms            stamp (wall clock at publish) -> ODOMETRY received here, p50/p90
                        (``keyframe_latency_ms``: the same for new keyframes only, whose
                        odometry waited for their loop closure before issue 14)
                        (both transports included; the node's own receipt -> ODOMETRY published
                        is ``node.latency_p50_ms`` / ``p90``, from its diagnostics)
  loop_latency_ms       keyframe stamp -> LOOP_CLOSURE received, p50/p90/max
  node                  the node's last diagnostics (per-worker timings, loop jobs done/dropped)
  delivered             frames the node received (processed + dropped + rejected, its
                        diagnostics) / frames published, over the whole run: transport loss
  rss_mib               the node's resident memory at the window's start and end, and its max
  pose                  with ``--poses`` (ground truth of the ``--images`` folder, KITTI format):
                        the ODOMETRY messages' own rotation/translation against the ground-truth
                        motion reference keyframe -> query, in degrees (median/p90), and how many
                        answered frames carried a valid pose

Frames: the demo's loop sequence (``frontend.synthetic``, photos shipped with scikit-image) by
default, or a folder of images (``--images``, centre-cropped or resized to the size) with
``--intrinsics``. ``--node-pythonpath`` runs the node from another checkout (before/after).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import threading
import time

import numpy as np

from .node_process import read_rss_bytes, stop_node


PLAYER_NODE = "superglue_benchmark_camera"
NAMESPACE = "/superglue_benchmark"


# ------------------------------------------------------------------------------------------
# frames
# ------------------------------------------------------------------------------------------


def image_paths(folder: str) -> list[pathlib.Path]:
    return sorted(
        p
        for p in pathlib.Path(folder).iterdir()
        if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".pgm", ".bmp", ".tif", ".tiff")
    )


def folder_frames(
    folder: str,
    width: int,
    height: int,
    limit: int,
    intrinsics: tuple[float, float, float, float] | None,
):
    """Sorted images of ``folder`` as gray uint8 [height, width] (centre crop when larger, else
    resized) and K [3,3] of the output frames (None without ``intrinsics`` of the originals)."""
    import cv2

    paths = image_paths(folder)
    if not paths:
        raise SystemExit(f"superglue-benchmark --node: no images in {folder}")
    frames, K = [], None
    for path in paths[:limit]:
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise SystemExit(f"superglue-benchmark --node: cannot read {path}")
        h, w = image.shape
        if w >= width and h >= height:
            x0, y0 = (w - width) // 2, (h - height) // 2
            image, sx, sy = image[y0 : y0 + height, x0 : x0 + width], 1.0, 1.0
        else:
            x0 = y0 = 0
            sx, sy = width / w, height / h
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        frames.append(np.ascontiguousarray(image))
        if intrinsics is not None:
            fx, fy, cx, cy = intrinsics
            K = np.array(
                [
                    [fx * sx, 0, (cx - x0 + 0.5) * sx - 0.5],
                    [0, fy * sy, (cy - y0 + 0.5) * sy - 0.5],
                    [0, 0, 1],
                ]
            )
    return frames, K


def synthetic_frames(num: int, encoding: str):
    """The demo's loop sequence (VGA) as ``encoding`` arrays, and its K."""
    import cv2

    from ..frontend.synthetic import make_sequence

    sequence = make_sequence(num_frames=num)
    frames = [sequence.frame(i) for i in range(len(sequence))]
    if encoding == "mono8":
        frames = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames]
    return frames, sequence.K


# ------------------------------------------------------------------------------------------
# measurement
# ------------------------------------------------------------------------------------------


def percentiles_ms(values_s, qs=(50, 90)) -> dict:
    values = np.asarray(values_s, float) * 1000
    if values.size == 0:
        return {f"p{q}": None for q in qs}
    return {f"p{q}": round(float(np.percentile(values, q)), 1) for q in qs}


def rss_mib(pid: int) -> float | None:
    rss = read_rss_bytes(pid)
    return None if rss is None else rss / 2**20


class Camera:
    """Publishes pre-built Image messages at a steady rate and records what the node answers."""

    def __init__(self, context, frames, K, encoding: str, reliable: bool):
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.node import Node
        from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image
        from superglue_ros_msgs.msg import Correspondences

        from .player import camera_info_msg

        self.node = Node(PLAYER_NODE, namespace=NAMESPACE, context=context)
        qos = (
            QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
            if reliable
            else qos_profile_sensor_data
        )
        self.image_pub = self.node.create_publisher(Image, "image", qos)
        self.info_pub = (
            self.node.create_publisher(CameraInfo, "camera_info", qos) if K is not None else None
        )
        self.lock = threading.Lock()
        self.odometry: list[tuple[int, float]] = []  # (stamp ns, received wall ns)
        # (stamp ns, reference stamp ns, R [3,3] and t [3] reference -> query, or None)
        self.odometry_poses: list[tuple[int, int, np.ndarray | None, np.ndarray | None]] = []
        self.frame_of_stamp: dict[int, int] = {}  # published stamp ns -> index into frames
        self.keyframe_odometry: list[tuple[int, float]] = []
        self.loops: list[tuple[int, float]] = []
        self.diagnostics: dict[str, str] = {}
        self.published: list[int] = []
        self.node.create_subscription(
            Correspondences,
            "correspondences",
            self._on_corr,
            QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE),
        )
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        h, w = frames[0].shape[:2]
        self.messages = []
        for frame in frames:
            msg = Image(
                height=h,
                width=w,
                encoding=encoding,
                is_bigendian=0,
                step=w * (1 if frame.ndim == 2 else 3),
            )
            msg.header.frame_id = "camera"
            msg.data = frame.tobytes()
            self.messages.append(msg)
        self.info = camera_info_msg(K, w, h, 0, "camera") if K is not None else None
        self._odometry_kind = Correspondences.ODOMETRY

    def _on_corr(self, msg) -> None:
        now = time.time_ns()
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        with self.lock:
            if msg.kind == self._odometry_kind:
                self.odometry.append((stamp, now))
                ref = msg.reference_stamp.sec * 10**9 + msg.reference_stamp.nanosec
                R = np.array(msg.rotation, float).reshape(3, 3) if msg.pose_valid else None
                t = np.array(msg.translation, float) if msg.pose_valid else None
                self.odometry_poses.append((stamp, ref, R, t))
                if msg.query_is_keyframe:
                    self.keyframe_odometry.append((stamp, now))
            else:
                self.loops.append((stamp, now))

    def _on_diag(self, msg) -> None:
        for status in msg.status:
            if status.name.startswith(f"{NAMESPACE}/superglue_node"):
                with self.lock:
                    self.diagnostics = {kv.key: kv.value for kv in status.values}

    def play(self, rate: float, until: float, stop: threading.Event) -> None:
        """Publish frames in order (looping) every 1/rate s until time.monotonic() >= until."""
        period, k = 1.0 / rate, 0
        next_t = time.monotonic()
        while not stop.is_set() and next_t < until:
            delay = next_t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            msg = self.messages[k % len(self.messages)]
            stamp = time.time_ns()
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 10**9)
            if self.info_pub is not None:
                self.info.header.stamp = msg.header.stamp
                self.info_pub.publish(self.info)
            self.image_pub.publish(msg)
            with self.lock:
                self.published.append(stamp)
                self.frame_of_stamp[stamp] = k % len(self.messages)
            k += 1
            next_t += period


def node_command(args) -> list[str]:
    params = dict(args.param or [])
    params.setdefault("preset", args.preset)
    if args.reliable:
        params.setdefault("reliability", "reliable")
    cmd = [sys.executable, "-m", "superglue_ros.ros.node", "--ros-args", "-r", f"__ns:={NAMESPACE}"]
    for key, value in params.items():
        cmd += ["-p", f"{key}:={value}"]
    return cmd


def node_environment(pythonpath: str | None) -> dict:
    """The node process's environment. With ``pythonpath`` (another checkout) it imports
    superglue_ros from there: PYTHONSAFEPATH keeps Python from putting the current directory
    first on sys.path, where a benchmark started inside this checkout would find its own code
    instead (as it did until session 6, so earlier before/after runs compared one version)."""
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
        env["PYTHONSAFEPATH"] = "1"
    return env


def run(args) -> dict:
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor

    if args.poses and not args.images:
        raise SystemExit(
            "superglue-benchmark --node: --poses needs --images (the frames they belong to)"
        )
    if args.images:
        intrinsics = parse_intrinsics(args.intrinsics) if args.intrinsics else None
        frames, K = folder_frames(args.images, args.width, args.height, args.max_images, intrinsics)
        if args.encoding == "bgr8":
            frames = [np.repeat(f[:, :, None], 3, axis=2) for f in frames]
    else:
        frames, K = synthetic_frames(args.sequence_frames, args.encoding)

    env = node_environment(args.node_pythonpath)
    node_log = open(args.node_log, "w") if args.node_log else subprocess.DEVNULL
    node = subprocess.Popen(node_command(args), env=env, stdout=node_log, stderr=subprocess.STDOUT)
    context = Context()
    rclpy.init(context=context, args=["superglue-benchmark"])  # our argv is not ROS arguments
    camera = Camera(context, frames, K, args.encoding, args.reliable)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(camera.node)
    spinning = threading.Event()  # set = stop spinning

    def spin():
        while not spinning.is_set():
            executor.spin_once(timeout_sec=0.05)

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    stop = threading.Event()
    rss_samples: list[tuple[float, float]] = []
    try:
        deadline = time.monotonic() + args.startup_timeout
        while (
            camera.image_pub.get_subscription_count() == 0 or not camera.diagnostics
        ) and time.monotonic() < deadline:
            if node.poll() is not None:
                raise SystemExit(
                    f"superglue-benchmark --node: the node exited with {node.returncode}"
                    + (f" (log: {args.node_log})" if args.node_log else "")
                )
            time.sleep(0.1)
        if camera.image_pub.get_subscription_count() == 0:
            raise SystemExit("superglue-benchmark --node: the node did not subscribe in time")
        load_before = os.getloadavg()
        t0 = time.monotonic()
        window = (t0 + args.warmup, t0 + args.warmup + args.duration)
        player = threading.Thread(
            target=camera.play, args=(args.rate, window[1], stop), daemon=True
        )
        player.start()
        wall_start = None
        while player.is_alive():
            if wall_start is None and time.monotonic() >= window[0]:
                wall_start = time.time_ns()
                rss_samples.append((time.monotonic(), rss_mib(node.pid)))
            elif wall_start is not None:
                rss_samples.append((time.monotonic(), rss_mib(node.pid)))
            time.sleep(min(1.0, max(0.05, window[0] - time.monotonic())))
        wall_end = time.time_ns()
        rss_samples.append((time.monotonic(), rss_mib(node.pid)))
        time.sleep(args.drain)  # the frame in flight and the queued loop jobs
        load_after = os.getloadavg()
        with camera.lock:
            odometry, loops = list(camera.odometry), list(camera.loops)
            keyframe_odometry = list(camera.keyframe_odometry)
            published, diagnostics = list(camera.published), dict(camera.diagnostics)
            odometry_poses, frame_of_stamp = (
                list(camera.odometry_poses),
                dict(camera.frame_of_stamp),
            )
    finally:
        stop.set()
        stop_node(node, 20)
        spinning.set()
        spinner.join(timeout=5)
        executor.shutdown()
        camera.node.destroy_node()
        if context.ok():
            rclpy.shutdown(context=context)
        if node_log is not subprocess.DEVNULL:
            node_log.close()

    seconds = (wall_end - wall_start) * 1e-9
    in_window = lambda stamp: wall_start <= stamp < wall_end  # noqa: E731
    odo = [(s, r) for s, r in odometry if in_window(s)]
    loop = [(s, r) for s, r in loops if in_window(s)]
    kf_odo = [(s, r) for s, r in keyframe_odometry if in_window(s)]
    rss = [v for _, v in rss_samples if v is not None]
    node_stats = {k: _number(v) for k, v in diagnostics.items()}
    return dict(
        input=dict(
            source=args.images or "synthetic loop sequence (demo)",
            frames=len(frames),
            width=frames[0].shape[1],
            height=frames[0].shape[0],
            encoding=args.encoding,
            rate_hz=args.rate,
            qos="reliable" if args.reliable else "sensor_data",
            camera_info=K is not None,
        ),
        node_command=node_command(args),
        node_pythonpath=args.node_pythonpath or None,
        window_s=round(seconds, 2),
        warmup_s=args.warmup,
        published=sum(1 for s in published if in_window(s)),
        published_hz=round(sum(1 for s in published if in_window(s)) / seconds, 2),
        processed=len(odo),
        processed_hz=round(len(odo) / seconds, 2),
        delivered=_delivered(node_stats, len(published)),
        latency_ms=percentiles_ms([(r - s) * 1e-9 for s, r in odo]),
        keyframes=len(kf_odo),
        keyframe_latency_ms=percentiles_ms([(r - s) * 1e-9 for s, r in kf_odo]),
        loop_closures=len(loop),
        loop_latency_ms=dict(
            percentiles_ms([(r - s) * 1e-9 for s, r in loop]),
            max=round(max(((r - s) * 1e-6 for s, r in loop)), 1) if loop else None,
        ),
        node=node_stats,
        rss_mib=dict(
            start=round(rss[0], 1) if rss else None,
            end=round(rss[-1], 1) if rss else None,
            max=round(max(rss), 1) if rss else None,
        ),
        pose=pose_accuracy(args, odometry_poses, frame_of_stamp, in_window) if args.poses else None,
        load_average=dict(
            before=[round(v, 2) for v in load_before], after=[round(v, 2) for v in load_after]
        ),
        cpus=os.cpu_count(),
    )


def parse_intrinsics(text: str) -> tuple[float, float, float, float]:
    """'fx,fy,cx,cy', or a file holding the 3x3 K (as KITTI's K.txt) -> (fx, fy, cx, cy)."""
    if pathlib.Path(text).is_file():
        K = np.loadtxt(text).reshape(3, 3)
        return float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])
    values = tuple(float(v) for v in text.split(","))
    if len(values) != 4:
        raise SystemExit(
            f"superglue-benchmark --node: --intrinsics wants fx,fy,cx,cy or a K file, got {text!r}"
        )
    return values


def pose_accuracy(args, odometry_poses, frame_of_stamp: dict, in_window) -> dict:
    """The node's own ODOMETRY poses against the ground truth of the played frames.

    Frames are the sorted ``--images`` (file name = frame index of ``--poses``, KITTI format:
    camera-to-world); the ground-truth motion reference -> query is T_q^-1 T_r. Errors in
    degrees: rotation angle, and the angle between translation directions (the node resolves the
    sign by cheirality, so no sign folding); ``error`` is the larger of the two per frame."""
    from ..evaluation.metrics import angle_error_mat, angle_error_vec
    from ..evaluation.real_pairs import read_kitti_poses

    poses = read_kitti_poses(args.poses)
    keys = [int(p.stem) for p in image_paths(args.images)[: args.max_images]]
    rot, trans, worst, invalid, unknown = [], [], [], 0, 0
    for stamp, ref_stamp, R, t in odometry_poses:
        if not in_window(stamp):
            continue
        q, r = frame_of_stamp.get(stamp), frame_of_stamp.get(ref_stamp)
        if q is None or r is None or keys[q] not in poses or keys[r] not in poses:
            unknown += 1
            continue
        if R is None:
            invalid += 1
            continue
        T = np.linalg.inv(poses[keys[q]]) @ poses[keys[r]]
        rot.append(angle_error_mat(R, T[:3, :3]))
        trans.append(angle_error_vec(t, T[:3, 3]) if np.linalg.norm(T[:3, 3]) > 1e-6 else 0.0)
        worst.append(max(rot[-1], trans[-1]))

    def stats(values):
        return (
            {f"p{q}": round(float(np.percentile(values, q)), 2) for q in (50, 90)}
            if values
            else {"p50": None, "p90": None}
        )

    return dict(
        valid=len(rot),
        invalid=invalid,
        without_ground_truth=unknown,
        rotation_deg=stats(rot),
        translation_deg=stats(trans),
        error_deg=stats(worst),
    )


def _delivered(node_stats: dict, published: int) -> float | None:
    try:
        received = sum(
            int(node_stats[k]) for k in ("frames_processed", "frames_dropped", "frames_rejected")
        )
    except (KeyError, TypeError, ValueError):
        return None
    return round(received / max(1, published), 3)


def _number(text: str):
    try:
        value = float(text)
    except (TypeError, ValueError):
        return text
    return int(value) if value.is_integer() and "e" not in text and "." not in text else value


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="superglue-benchmark --node", description=__doc__.split("\n")[0]
    )
    p.add_argument("--rate", type=float, default=30.0, help="camera rate in Hz (default 30)")
    p.add_argument("--warmup", type=float, default=8.0, help="seconds played before the window")
    p.add_argument("--duration", type=float, default=30.0, help="measurement window in seconds")
    p.add_argument("--drain", type=float, default=3.0, help="seconds to wait after the window")
    p.add_argument("--preset", default="superglue")
    p.add_argument(
        "--param",
        action="append",
        type=lambda kv: tuple(kv.split(":=", 1)),
        metavar="NAME:=VALUE",
        help="node parameter (repeatable), e.g. loop_closure:=false",
    )
    p.add_argument(
        "--reliable",
        action="store_true",
        help="reliable QoS on both ends (default: SensorDataQoS, the node best effort)",
    )
    p.add_argument("--encoding", choices=("mono8", "bgr8"), default="mono8")
    p.add_argument(
        "--images", default=None, help="folder of images instead of the synthetic sequence"
    )
    p.add_argument(
        "--intrinsics",
        default=None,
        help="fx,fy,cx,cy of the --images originals, or a file with their 3x3 K",
    )
    p.add_argument(
        "--poses",
        default=None,
        help="ground-truth poses of the --images (KITTI poses.txt format): check the "
        "node's own ODOMETRY poses against them",
    )
    p.add_argument("--max-images", type=int, default=300)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument(
        "--sequence-frames", type=int, default=96, help="frames of the synthetic sequence"
    )
    p.add_argument(
        "--node-pythonpath",
        default=None,
        help="PYTHONPATH of the node process (measure another checkout's node)",
    )
    p.add_argument("--node-log", default=None, help="file for the node's output")
    p.add_argument("--startup-timeout", type=float, default=180.0)
    p.add_argument("--output", default="benchmark_node.json", help="JSON output path")
    return p.parse_args(argv)


def print_summary(result: dict) -> None:
    n = result["node"]
    print(
        f"node over DDS: {result['input']['width']}x{result['input']['height']} "
        f"{result['input']['encoding']} at {result['input']['rate_hz']:g} Hz "
        f"({result['input']['qos']}), window {result['window_s']} s, load {result['load_average']['before']}"
    )
    print(
        f"  processed {result['processed_hz']} Hz ({result['processed']} of {result['published']} frames), "
        f"delivered to the node {result['delivered']}"
    )
    print(
        f"  stamp -> ODOMETRY received: p50 {result['latency_ms']['p50']} ms, p90 {result['latency_ms']['p90']} ms"
    )
    print(
        f"  new keyframes' stamp -> ODOMETRY received: p50 {result['keyframe_latency_ms']['p50']} ms, "
        f"p90 {result['keyframe_latency_ms']['p90']} ms ({result['keyframes']} keyframes)"
    )
    print(
        f"  node receipt -> ODOMETRY published: p50 {n.get('latency_p50_ms')} ms, "
        f"p90 {n.get('latency_p90_ms')} ms"
    )
    print(
        f"  workers: extraction p50 {n.get('extraction_worker_p50_ms')} ms/frame, odometry p50 "
        f"{n.get('odometry_worker_p50_ms')} ms/frame, loop p50 "
        f"{n.get('loop_worker_p50_ms')} ms/job (waited {n.get('loop_wait_p50_ms')} ms), jobs "
        f"{n.get('loop_jobs_done')} done / {n.get('loop_jobs_dropped')} dropped"
    )
    print(
        f"  loop closures {result['loop_closures']}, stamp -> LOOP_CLOSURE received: "
        f"{result['loop_latency_ms']}"
    )
    print(f"  node RSS {result['rss_mib']} MiB")
    if result.get("pose"):
        pose = result["pose"]
        print(
            f"  ODOMETRY pose vs ground truth: {pose['valid']} valid, {pose['invalid']} invalid; "
            f"rotation {pose['rotation_deg']} deg, translation direction {pose['translation_deg']} deg"
        )


def main(argv=None) -> int:
    args = parse_args(argv)
    result = run(args)
    print_summary(result)
    out = pathlib.Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


def cli(argv: list[str] | None = None) -> int:
    """``superglue-benchmark``: the front-end stages (``superglue_ros.benchmark``, ROS-free;
    the Correspondences conversion is timed too when rclpy is importable);
    ``superglue-benchmark --node``: the running node over DDS (``main`` here)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--node" in argv:
        argv.remove("--node")
        return main(argv)
    from .. import benchmark

    try:
        from .messages import correspondence_to_msg
    except ImportError:  # no ROS here: the front-end benchmark runs without the message stage
        correspondence_to_msg = None
    return benchmark.main(argv, to_message=correspondence_to_msg)


if __name__ == "__main__":
    sys.exit(main())
