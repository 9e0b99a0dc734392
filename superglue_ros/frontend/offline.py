"""superglue-offline: the node's pipeline over an image folder or a rosbag2 recording.

Same ``FrontEnd`` as the ROS node, no ROS needed: images of a folder (sorted by name, stamps at
``--fps``) or the sensor_msgs/Image or CompressedImage messages of one topic of a rosbag2 (read
with the pure-Python ``rosbags`` package; decoding by ``superglue_ros.images``, the
decoder the node uses too). Writes every published correspondence (JSON or NPZ),
a per-frame summary and plots: matches/inliers per frame with keyframes and loop closures marked.
Bad frames are reported and skipped, never fatal. The models come from
``features.build_components`` with the node's model options read from ``--config`` (a ROS
params file gives this command the node's models), then the model flags, then ``--set``.
"""

from __future__ import annotations

import argparse
import json
import logging
import pathlib
import sys
from typing import Iterator

import numpy as np

from ..features import COMPONENT_DEFAULTS, PRECISIONS, describe_components
from .pipeline import Correspondence, Frame, FrameRejectedError, FrontEnd

LOG = logging.getLogger("superglue-offline")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm", ".webp")
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")


class InputError(RuntimeError):
    """The input folder/bag/topic cannot be read; the message names the path and reason."""


# ---------------------------------------------------------------------------------------- input
def folder_frames(
    folder: pathlib.Path, fps: float
) -> Iterator[tuple[str, int, np.ndarray | None, str]]:
    """Yield (name, stamp_ns, image or None, error) for the images of ``folder`` sorted by name."""
    import cv2

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {folder}")
    for i, path in enumerate(files):
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        stamp = int(round(i * 1e9 / fps))
        if image is None:
            yield path.name, stamp, None, f"cannot decode image file {path}"
        else:
            yield path.name, stamp, image, ""


def bag_topics(bag: pathlib.Path) -> dict[str, str]:
    """topic -> message type of a rosbag2."""
    from rosbags.highlevel import AnyReader

    try:
        with AnyReader([bag]) as reader:
            return {c.topic: c.msgtype for c in reader.connections}
    except Exception as err:
        raise InputError(f"cannot open rosbag2 {bag}: {err}") from err


def bag_frames(
    bag: pathlib.Path, topic: str | None, camera_info_topic: str | None, intrinsics: dict
) -> Iterator[tuple[str, int, np.ndarray | None, str]]:
    """Yield (name, stamp_ns, image or None, error) for the image messages of ``topic``.
    The stamp is the message header's; the calibration from ``camera_info_topic`` (K with its
    distortion) is stored in ``intrinsics['camera']``, its K in ``intrinsics['K']``."""
    from rosbags.highlevel import AnyReader

    from ..camera import camera_model
    from ..images import compressed_to_array, image_to_array

    topics = bag_topics(bag)
    if topic is None:
        images = sorted(t for t, m in topics.items() if m in IMAGE_TYPES)
        if not images:
            raise InputError(
                f"rosbag2 {bag} has no sensor_msgs Image/CompressedImage topic (topics: {topics})"
            )
        topic = images[0]
        LOG.info("using image topic %s", topic)
    if topic not in topics:
        raise InputError(f"topic {topic!r} not in rosbag2 {bag} (topics: {sorted(topics)})")
    if topics[topic] not in IMAGE_TYPES:
        raise InputError(f"topic {topic!r} has type {topics[topic]}, expected one of {IMAGE_TYPES}")
    if camera_info_topic and camera_info_topic not in topics:
        raise InputError(f"camera_info topic {camera_info_topic!r} not in rosbag2 {bag}")
    with AnyReader([bag]) as reader:
        wanted = [c for c in reader.connections if c.topic in (topic, camera_info_topic)]
        for i, (conn, _, raw) in enumerate(reader.messages(connections=wanted)):
            try:
                msg = reader.deserialize(raw, conn.msgtype)
            except Exception as err:
                yield (
                    f"{topic}#{i}",
                    -1,
                    None,
                    f"cannot deserialize message {i} on {conn.topic}: {err}",
                )
                continue
            if conn.topic == camera_info_topic:
                camera = camera_model(
                    msg.k,
                    msg.d,
                    msg.p,
                    msg.distortion_model,
                    msg.width,
                    msg.height,
                    warn=LOG.warning,
                )
                intrinsics["camera"], intrinsics["K"] = camera, None if camera is None else camera.K
                continue
            stamp = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
            try:
                if conn.msgtype.endswith("CompressedImage"):
                    image = compressed_to_array(msg.format, msg.data.tobytes())
                else:
                    image = image_to_array(
                        msg.encoding,
                        msg.height,
                        msg.width,
                        msg.step,
                        msg.data.tobytes(),
                        bool(msg.is_bigendian),
                        warn=LOG.warning,
                    )
            except ValueError as err:
                yield f"{topic}#{i}", stamp, None, str(err)
                continue
            yield f"{topic}#{i}", stamp, image, ""


# --------------------------------------------------------------------------------------- output
def correspondence_record(c: Correspondence) -> dict:
    """JSON-ready dict of one correspondence (points in original pixels)."""
    return dict(
        kind=c.kind,
        query_id=c.query_id,
        reference_id=c.reference_id,
        query_is_keyframe=c.query_is_keyframe,
        query_stamp_ns=c.query_stamp_ns,
        reference_stamp_ns=c.reference_stamp_ns,
        frame_id=c.frame_id,
        query_points=c.query_points.round(3).tolist(),
        reference_points=c.reference_points.round(3).tolist(),
        query_indices=c.query_indices.tolist(),
        reference_indices=c.reference_indices.tolist(),
        scores=c.scores.round(4).tolist(),
        inliers=c.inliers.astype(bool).tolist(),
        num_inliers=c.num_inliers,
        model_type=c.model.kind,
        model=np.asarray(c.model.matrix).tolist(),
        rotation=None if c.model.R is None else np.asarray(c.model.R).tolist(),
        translation=None if c.model.t is None else np.asarray(c.model.t).reshape(-1).tolist(),
        num_keypoints_query=c.num_keypoints_query,
        num_keypoints_reference=c.num_keypoints_reference,
        processing_time_s=c.processing_time_s,
        similarity=None if np.isnan(c.similarity) else c.similarity,
    )


def write_correspondences(
    path: pathlib.Path, corrs: list[Correspondence], fmt: str
) -> pathlib.Path:
    if fmt == "json":
        out = path / "correspondences.json"
        out.write_text(json.dumps([correspondence_record(c) for c in corrs]))
        return out
    out = path / "correspondences.npz"
    arrays = {}
    for i, c in enumerate(corrs):
        p = f"{i:06d}_"
        arrays[p + "meta"] = np.array(
            json.dumps(
                {
                    k: v
                    for k, v in correspondence_record(c).items()
                    if k
                    not in (
                        "query_points",
                        "reference_points",
                        "scores",
                        "inliers",
                        "query_indices",
                        "reference_indices",
                    )
                }
            )
        )
        arrays[p + "query_points"] = c.query_points
        arrays[p + "reference_points"] = c.reference_points
        arrays[p + "scores"] = c.scores
        arrays[p + "inliers"] = c.inliers.astype(bool)
        arrays[p + "query_indices"] = c.query_indices
        arrays[p + "reference_indices"] = c.reference_indices
    np.savez_compressed(out, **arrays)
    return out


def write_plots(path: pathlib.Path, rows: list[dict]) -> list[pathlib.Path]:
    """matches_per_frame.png and inliers_over_time.png (keyframes and loop closures marked)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idx = np.array([r["frame_index"] for r in rows])
    t = np.array([r["time_s"] for r in rows])
    kf = np.array([r["is_keyframe"] for r in rows], bool)
    loops = np.array([r["loop_closures"] > 0 for r in rows], bool)
    outs = []
    for name, x, xlabel in (
        ("matches_per_frame.png", idx, "frame"),
        ("inliers_over_time.png", t, "time [s]"),
    ):
        fig, ax = plt.subplots(figsize=(10, 4))
        ax.plot(x, [r["keypoints"] for r in rows], color="0.6", lw=1, label="keypoints")
        ax.plot(
            x, [r["matches"] for r in rows], color="tab:blue", lw=1.2, label="matches vs keyframe"
        )
        ax.plot(
            x, [r["inliers"] for r in rows], color="tab:green", lw=1.5, label="verified inliers"
        )
        for i, xv in enumerate(x[kf]):
            ax.axvline(
                xv, color="tab:orange", lw=0.8, ls="--", label="keyframe" if i == 0 else None
            )
        if loops.any():
            ax.plot(
                x[loops],
                [r["inliers"] for r, is_loop in zip(rows, loops) if is_loop],
                "r*",
                ms=12,
                label="loop closure",
            )
        ax.set_xlabel(xlabel), ax.set_ylabel("count"), ax.legend(loc="upper right", fontsize=8)
        ax.set_title(name[:-4].replace("_", " "))
        fig.tight_layout()
        fig.savefig(path / name, dpi=100)
        plt.close(fig)
        outs.append(path / name)
    return outs


# ------------------------------------------------------------------------------------------ main
def _parse_value(text: str):
    import yaml

    return yaml.safe_load(text)


def load_conf(path: str | None, overrides: list[str]) -> tuple[dict, dict]:
    """(FrontEnd options, component options) from a YAML file (flat, or a ROS params file
    '<node>: ros__parameters:') plus ``key=value`` overrides. Component keys are those of
    ``features.COMPONENT_DEFAULTS`` (preset, extractor, matcher, runtime, inference_precision,
    *_weights, max_keypoints, match_threshold, device), exactly what the node reads from the
    same file. Other keys are ignored with a log line when they come from a file (a ROS params
    file also holds topics, QoS etc.), errors on the command line."""
    import yaml

    frontend: dict = {}
    components: dict = {}
    known = (*FrontEnd.default_conf, *COMPONENT_DEFAULTS)

    def put(key, value):
        (frontend if key in FrontEnd.default_conf else components)[key] = value

    if path:
        try:
            data = yaml.safe_load(pathlib.Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise InputError(f"cannot read config {path}: {err}") from err
        for value in list(data.values()) if isinstance(data, dict) else []:
            if isinstance(value, dict) and "ros__parameters" in value:
                data = value["ros__parameters"]
                break
        if not isinstance(data, dict):
            raise InputError(f"config {path}: expected a mapping of options")
        ignored = sorted(k for k in data if k not in known)
        if ignored:
            LOG.info(
                "config %s: ignoring keys that are neither FrontEnd nor model options %s",
                path,
                ignored,
            )
        for key, value in data.items():
            if key in known:
                put(key, value)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or key not in known:
            raise InputError(f"--set {item!r}: expected key=value with key in {sorted(known)}")
        put(key, _parse_value(value))
    return frontend, components


# command-line flag -> component option (given flags win over the config file)
_COMPONENT_FLAGS = dict(
    preset="preset",
    extractor="extractor",
    matcher="matcher",
    device="device",
    max_keypoints="max_keypoints",
    runtime="runtime",
    precision="inference_precision",
    superpoint_weights="superpoint_weights",
    superglue_weights="superglue_weights",
)


def component_conf(args) -> dict:
    """Component options of the run: --config, then the model flags given, then --set."""
    _, components = load_conf(args.config, [])
    components.update(
        {
            option: getattr(args, flag)
            for flag, option in _COMPONENT_FLAGS.items()
            if getattr(args, flag) is not None
        }
    )
    components.update(load_conf(None, args.set)[1])
    return components


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="superglue-offline", description=__doc__.split("\n\n")[0])
    p.add_argument("input", help="image folder, or rosbag2 directory / .db3 / .mcap file")
    p.add_argument("-o", "--output", required=True, help="output directory (created)")
    p.add_argument(
        "--preset",
        default=None,
        help="superglue | superpoint-mnn | sift | orb (default: the config's, else superglue)",
    )
    p.add_argument("--extractor", default=None, help="extractor overriding the preset's")
    p.add_argument("--matcher", default=None, help="matcher overriding the preset's")
    p.add_argument("--device", default=None, help="auto | cpu | cuda[:N] (default auto)")
    p.add_argument("--max-keypoints", type=int, default=None, help="extractor keypoint budget")
    p.add_argument(
        "--runtime",
        default=None,
        choices=("fast", "reference"),
        help="learned models' runtime (default fast)",
    )
    p.add_argument(
        "--precision",
        default=None,
        choices=PRECISIONS,
        help="learned models' precision (node parameter inference_precision)",
    )
    p.add_argument("--superpoint-weights", default=None, help="SuperPoint weights file")
    p.add_argument("--superglue-weights", default=None, help="SuperGlue weights file")
    p.add_argument("--topic", default=None, help="bag image topic (default: the first image topic)")
    p.add_argument("--camera-info-topic", default=None, help="bag camera_info topic for K")
    p.add_argument(
        "--intrinsics", default=None, help="fx,fy,cx,cy in original pixels (folder input)"
    )
    p.add_argument("--fps", type=float, default=10.0, help="frame rate for folder stamps")
    p.add_argument(
        "--max-frames", type=int, default=0, help="stop after this many frames (0 = all)"
    )
    p.add_argument(
        "--format", choices=("json", "npz"), default="json", help="correspondence file format"
    )
    p.add_argument(
        "--config",
        default=None,
        help="YAML with FrontEnd and model options (flat or "
        "ROS params file: the same file gives the node and this command the same models)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="FrontEnd or model option override (wins over flags and --config)",
    )
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(levelname)s: %(message)s")
    try:
        return _run(args)
    except InputError as err:
        LOG.error("%s", err)
        return 2


def _run(args) -> int:
    from tqdm import tqdm

    src = pathlib.Path(args.input)
    if not src.exists():
        raise InputError(f"input {src} does not exist")
    if args.fps <= 0:
        raise InputError(f"--fps must be > 0, got {args.fps}")
    conf, _ = load_conf(args.config, args.set)
    components = component_conf(args)
    intrinsics: dict = {"K": None}
    if args.intrinsics:
        try:
            fx, fy, cx, cy = (float(v) for v in args.intrinsics.split(","))
        except ValueError as err:
            raise InputError(f"--intrinsics {args.intrinsics!r}: expected fx,fy,cx,cy") from err
        intrinsics["K"] = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
    is_bag = src.is_file() or (src / "metadata.yaml").is_file()
    frames = (
        bag_frames(src, args.topic, args.camera_info_topic, intrinsics)
        if is_bag
        else folder_frames(src, args.fps)
    )
    try:
        frontend = FrontEnd.from_config(components, conf)
    except (ValueError, RuntimeError, OSError) as err:
        raise InputError(f"cannot build the front-end ({components}): {err}") from err
    out = pathlib.Path(args.output)
    out.mkdir(parents=True, exist_ok=True)

    corrs: list[Correspondence] = []
    rows: list[dict] = []
    skipped: list[dict] = []
    stamp0 = None
    bar = tqdm(frames, disable=args.quiet, unit="frame", desc="superglue-offline")
    for name, stamp, image, error in bar:
        if args.max_frames and len(rows) >= args.max_frames:
            break
        if image is None:
            LOG.warning("skipping %s: %s", name, error)
            skipped.append(dict(name=name, reason=error))
            continue
        try:
            res = frontend.process(
                Frame(image, stamp, "camera", intrinsics["K"], camera=intrinsics.get("camera"))
            )
        except FrameRejectedError as err:
            LOG.warning("skipping %s: %s", name, err)
            skipped.append(dict(name=name, reason=str(err)))
            continue
        stamp0 = res.stamp_ns if stamp0 is None else stamp0
        for w in res.warnings:
            LOG.warning("%s: %s", name, w)
        if res.odometry is not None:
            corrs.append(res.odometry)
        corrs.extend(res.loop_closures)
        o = res.odometry
        rows.append(
            dict(
                name=name,
                frame_index=res.frame_index,
                stamp_ns=res.stamp_ns,
                time_s=(res.stamp_ns - stamp0) * 1e-9,
                keypoints=len(res.query_features),
                matches=0 if o is None else len(o),
                inliers=0 if o is None else o.num_inliers,
                reference_id=res.reference_id,
                is_keyframe=res.is_keyframe,
                keyframe_id=res.keyframe.id if res.is_keyframe else None,
                keyframe_reason=res.keyframe_reason,
                loop_closures=len(res.loop_closures),
                loop_references=[c.reference_id for c in res.loop_closures],
                timings_s={k: round(v, 6) for k, v in res.timings_s.items()},
            )
        )
        bar.set_postfix(kf=frontend.stats["keyframes"], inl=rows[-1]["inliers"])
    if not rows:
        raise InputError(f"no usable frame in {src} ({len(skipped)} skipped)")
    corr_path = write_correspondences(out, corrs, args.format)
    plots = [] if args.no_plots else write_plots(out, rows)
    totals = np.array([r["timings_s"]["total"] for r in rows])
    summary = dict(
        input=str(src),
        preset=components.get("preset", COMPONENT_DEFAULTS["preset"]),
        components=describe_components(frontend.extractor, frontend.matcher),
        conf=frontend.conf,
        frames=rows,
        skipped=skipped,
        stats=frontend.stats,
        keyframes=frontend.stats["keyframes"],
        loop_closures=frontend.stats["loop_closures"],
        frame_time_s=dict(median=float(np.median(totals)), p90=float(np.percentile(totals, 90))),
        correspondences=str(corr_path),
        plots=[str(p) for p in plots],
    )
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    LOG.info(
        "%d frames (%d skipped), %d keyframes, %d loop closures, median %.1f ms/frame -> %s",
        len(rows),
        len(skipped),
        frontend.stats["keyframes"],
        frontend.stats["loop_closures"],
        1000 * summary["frame_time_s"]["median"],
        out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
