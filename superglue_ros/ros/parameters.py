"""The node's ROS parameters: one table of name, default, description and range.

Node-level options are listed here; every option FrontEnd declares (``FrontEnd.options``:
default, description, range, choices) becomes a parameter of the same name (flat), so a new
front-end option shows up in the node, with its descriptor, without editing it.
``config/superglue.yaml`` repeats these defaults (a test checks they agree). The model
parameters' defaults and choices come from the registry (``features``: the component
defaults, extractor/matcher names, precisions; ``models.backends.RUNTIMES``), the same
declarations ``build_components`` checks against. The table is ROS-free so tests and docs can
read it without a running node.

Writable at run time (``read_only=False``): the front-end options except
``FrontEnd.static_conf`` (applied to every camera's running FrontEnd between frames), the debug
image, log throttling and diagnostics options. The others are read once at start-up (or at
the lifecycle node's configure); their descriptors say so and why.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..features import COMPONENT_DEFAULTS as COMPONENTS
from ..features import EXTRACTORS, MATCHERS, PRECISIONS, PRESETS
from ..models.backends import RUNTIMES
from ..frontend.pipeline import FrontEnd
from .stream_gate import StreamGate

GATE = StreamGate.default_conf  # the stream checks' defaults live with their code


@dataclass(frozen=True)
class ParameterSpec:
    name: str
    default: object
    description: str
    range: tuple | None = None  # (min, max[, step]) for int / float
    choices: tuple | None = None  # allowed strings
    read_only: bool = True  # most options are read at start-up only
    read_only_reason: str = ""  # why a read-only option cannot change at run time


NODE_PARAMETERS = (
    ParameterSpec(
        "preset",
        COMPONENTS["preset"],
        "extractor + matcher preset (superglue_ros.features.PRESETS)",
        choices=tuple(PRESETS),
    ),
    ParameterSpec(
        "extractor",
        "",
        "extractor name overriding the preset ('superpoint', 'orb', 'sift'); empty = from preset",
        choices=("", *EXTRACTORS),
    ),
    ParameterSpec(
        "matcher",
        "",
        "matcher name overriding the preset ('superglue', 'mnn', 'ratio', "
        "'ratio-hamming'); empty = from preset",
        choices=("", *MATCHERS),
    ),
    ParameterSpec(
        "superpoint_weights",
        "",
        "SuperPoint weights file; empty = the shipped superglue_ros/weights/superpoint.pth",
    ),
    ParameterSpec(
        "superglue_weights",
        "",
        "SuperGlue weights file; empty = the shipped superglue_ros/weights/superglue.pth",
    ),
    ParameterSpec(
        "device",
        COMPONENTS["device"],
        "compute device: 'auto' (CUDA when present, else CPU), 'cpu', 'cuda', 'cuda:N'",
    ),
    ParameterSpec(
        "runtime",
        COMPONENTS["runtime"],
        "learned models' runtime: 'fast' (OpenVINO: SuperPoint's backbone in int8 with the "
        "shipped weights on CPUs with VNNI/AMX, bf16 where the CPU has it natively; cached "
        "keyframe encodings; fp16 on CUDA) or 'reference' (eager fp32 torch)",
        choices=tuple(RUNTIMES),
    ),
    ParameterSpec(
        "inference_precision",
        COMPONENTS["inference_precision"],
        "precision of the learned networks: 'auto' "
        "(the runtime's choice), 'fp32', 'bf16' (CPUs with native bf16), 'fp16' (CUDA), "
        "'int8' (SuperPoint's backbone, weights with an int8 entry; SuperGlue as 'auto')",
        choices=PRECISIONS,
    ),
    ParameterSpec(
        "max_keypoints",
        COMPONENTS["max_keypoints"],
        "keypoints kept per image by the extractor (-1 = all)",
        range=(-1, 16384, 1),
    ),
    ParameterSpec(
        "match_threshold",
        COMPONENTS["match_threshold"],
        "SuperGlue's match threshold: a match needs this assignment probability both ways; "
        "lower = more matches, lower precision (model card, 'Session 18': on the homographies "
        "0.05 gives 0.3 less AUC@3px and 4.2 points less precision than 0.2)",
        range=(0.0, 0.99),
    ),
    ParameterSpec(
        "cameras",
        [""],
        "camera namespaces, each with its own topics and front-end state; "
        "'' = topics relative to the node's namespace",
    ),
    ParameterSpec(
        "use_compressed",
        False,
        "subscribe to '<camera>/image/compressed' "
        "(sensor_msgs/CompressedImage, jpeg/png) instead of '<camera>/image'",
    ),
    ParameterSpec(
        "reliability",
        "best_effort",
        "image/camera_info subscription reliability "
        "('best_effort' = SensorDataQoS, or 'reliable'); depth is always 1",
        choices=("best_effort", "reliable"),
    ),
    ParameterSpec(
        "mono16_scaling",
        "range",
        "mono16 -> 8 bit: 'range' stretches each image's min..max, 'full' divides by 257",
        choices=("range", "full"),
    ),
    ParameterSpec(
        "camera_info_sync",
        "stamp",
        "how a frame finds its calibration: 'stamp' = "
        "the camera_info with the frame's stamp (within camera_info_tolerance_s), or, when "
        "that one was lost, its neighbours' if the camera_info just before and just after "
        "the stamp are the same calibration; 'latest' = the newest camera_info whatever its "
        "stamp (a calibration published once, latched)",
        choices=("stamp", "latest"),
    ),
    ParameterSpec(
        "camera_info_tolerance_s",
        0.0,
        "camera_info_sync 'stamp': largest stamp "
        "difference between a frame and its camera_info [s]; 0 = exact",
        range=(0.0, 10.0),
    ),
    ParameterSpec(
        "camera_info_wait_s",
        0.2,
        "how long a frame waits for its camera_info to "
        "arrive (the two topics are not ordered) before it is skipped (camera_info_sync "
        "'stamp'), and a camera's first frame for a first camera_info [s]",
        range=(0.0, 5.0),
    ),
    ParameterSpec(
        "rectified_input",
        False,
        "images are rectified (image_rect): the geometry "
        "uses camera_info P[:, :3] and no distortion; false = raw images, K with the "
        "distortion D (plumb_bob, rational_polynomial, equidistant) undistorting the "
        "keypoints",
    ),
    ParameterSpec(
        "frame_id_check",
        GATE["frame_id_check"],
        "skip frames whose header.frame_id "
        "differs from that of the camera's first processed frame (another camera "
        "publishing on the topic) and frames whose camera_info has another frame_id; "
        "stream_change_frames consecutive frames from one new id switch to it",
    ),
    ParameterSpec(
        "stream_change_frames",
        GATE["stream_change_frames"],
        "consecutive frames that "
        "must agree on a new frame_id, or on a backward time jump (looped bag, sim-time "
        "reset), before the camera's state is reset to follow them; fewer are skipped "
        "as strays",
        range=(1, 1000, 1),
    ),
    ParameterSpec(
        "max_future_stamp_s",
        GATE["max_future_stamp_s"],
        "frames stamped more than this "
        "many seconds ahead of the node's clock are skipped (0 = no check; no check "
        "either while use_sim_time has no clock yet)",
        range=(0.0, 1e6),
    ),
    ParameterSpec(
        "debug_image",
        "on_subscribe",
        "publish '<camera>/debug_image' (matches drawn, "
        "inliers green, outliers red): 'always', 'on_subscribe' or 'never'",
        choices=("always", "on_subscribe", "never"),
        read_only=False,
    ),
    ParameterSpec(
        "debug_image_width",
        640,
        "width of each half of the debug image [px]",
        range=(64, 4096, 1),
        read_only=False,
    ),
    ParameterSpec(
        "diagnostics_period", 1.0, "seconds between '/diagnostics' messages", range=(0.1, 60.0)
    ),
    ParameterSpec(
        "diagnostics_window_s",
        5.0,
        "the diagnostics level of a camera judges the frames of this many recent seconds [s]",
        range=(0.5, 600.0),
        read_only=False,
    ),
    ParameterSpec(
        "diagnostics_warn_failure_share",
        0.1,
        "diagnostics WARN when more than this "
        "share of the recent frames failed or were rejected (ERROR when all of them)",
        range=(0.0, 1.0),
        read_only=False,
    ),
    ParameterSpec(
        "diagnostics_warn_drop_share",
        0.5,
        "diagnostics WARN when more than this share "
        "of the recent frames were dropped (a newer frame arrived before the node was "
        "free)",
        range=(0.0, 1.0),
        read_only=False,
    ),
    ParameterSpec(
        "stale_timeout_s",
        3.0,
        "diagnostics STALE when no image arrived on a camera "
        "for this many seconds (counted from start-up until the first) [s]",
        range=(0.1, 3600.0),
        read_only=False,
    ),
    ParameterSpec(
        "keyframe_history",
        10,
        "keyframes the transient-local 'keyframes' topic keeps "
        "for subscribers that join late (older ones: get_keyframe service)",
        range=(1, 1000, 1),
    ),
    ParameterSpec(
        "max_pending_requests",
        2,
        "verify_loop / loop_candidates requests processed "
        "at once; more are answered at once with a busy status",
        range=(1, 64, 1),
    ),
    ParameterSpec(
        "loop_queue_size",
        4,
        "new keyframes waiting for internal loop closure (its own "
        "lower-priority worker, newest first); when full the oldest is dropped and "
        "counted in diagnostics",
        range=(1, 1000, 1),
    ),
    ParameterSpec(
        "overlap_stages",
        False,
        "extract the next frame while the current one is matched (two threads, each "
        "on half the cores): on 2 cores at 30 Hz about 25 % more frames processed and about "
        "35 ms more latency; false: each frame in one go, its models on all cores",
    ),
    ParameterSpec(
        "warn_throttle_s",
        5.0,
        "the same kind of warning is logged at most once per "
        "this many seconds (with a count of the suppressed ones)",
        range=(0.0, 3600.0),
        read_only=False,
    ),
)


def frontend_parameters() -> tuple[ParameterSpec, ...]:
    """One spec per declared FrontEnd option (``FrontEnd.options``: same name, default,
    description, range and choices); writable at run time unless FrontEnd.static_conf names it."""
    return tuple(
        ParameterSpec(
            o.name,
            o.default,
            o.description,
            range=o.range,
            choices=o.choices,
            read_only=o.name in FrontEnd.static_conf,
            read_only_reason=FrontEnd.static_conf.get(o.name, ""),
        )
        for o in FrontEnd.options
    )


def all_parameters() -> tuple[ParameterSpec, ...]:
    node, frontend = NODE_PARAMETERS, frontend_parameters()
    clash = {p.name for p in node} & {p.name for p in frontend}
    if clash:
        raise RuntimeError(f"node and FrontEnd parameters share names: {sorted(clash)}")
    return node + frontend


def descriptor_text(spec: ParameterSpec) -> str:
    """The description a ParameterDescriptor carries: what it does, and for read-only options
    when they are read (and why they cannot change while running, where there is a reason)."""
    if not spec.read_only:
        return f"{spec.description} (writable at run time)"
    why = f": {spec.read_only_reason}" if spec.read_only_reason else ""
    return f"{spec.description} (read-only: read at start-up{why})"


def check_value(spec: ParameterSpec, value) -> str | None:
    """Why `value` is not allowed for `spec` (None when it is)."""
    if spec.choices is not None and value not in spec.choices:
        return f"parameter '{spec.name}' = {value!r} is not one of {list(spec.choices)}"
    return None
