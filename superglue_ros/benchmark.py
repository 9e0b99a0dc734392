"""superglue-benchmark: per-stage and end-to-end timings of the fast path vs the reference mode.

Why: issue 6 asks for >= 10 Hz visual odometry at VGA on two CPU cores; this command measures
it on the machine at hand, in one run, on the same frames, for both modes:
  reference: eager fp32 torch, standard configs (100 Sinkhorn iterations, log domain),
             torch max-pool NMS, no caching;
  fast:      backends.FAST_SUPERPOINT / FAST_SUPERGLUE (OpenVINO, bf16 where native, cv2 NMS,
             keyframe encoding cache, scaling-domain Sinkhorn).
VO frame = image conversion (bgr8 bytes -> gray tensor) -> SuperPoint -> SuperGlue against the
current keyframe -> geometric verification (superglue_ros.geometry.verify, essential matrix)
-> message-like output (packed arrays). Loop verification = one query against 5 candidates in
one batched SuperGlue call + verification of each. The papers' standard SuperGlue (9 self + 9
cross layers; the shipped one has 3 + 3) is timed beside it in both modes on the same features
(GNN, Sinkhorn, per VO frame, 5-candidate loop matching). Frames are a smooth synthetic camera path
over a photo shipped with scikit-image, so nothing outside the installed packages is needed.
Uses the shipped weights when present, else seeded random weights (speed does not depend on
weights; accuracy figures are then meaningless and flagged so).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import sys
import tempfile
import time

import cv2
import numpy as np
import torch

from .images import image_to_array
from .models import backends
from .models.superglue import SINKHORN, SuperGlue, extract_matches, pad_batch
from .models.superpoint import SuperPoint, sample_descriptors
from .models.weights import WeightsError, default_weights_path, load_model

LOG = logging.getLogger("superglue_ros.benchmark")
STAGES = ("conversion", "superpoint_backbone", "superpoint_decode", "superglue_encode",
          "superglue_gnn", "superglue_sinkhorn", "geometry", "message")


# ------------------------------------------------------------------------------------------
# inputs
# ------------------------------------------------------------------------------------------

def camera_path_frames(num: int, size=(640, 480), seed=0) -> list[np.ndarray]:
    """BGR frames of a smooth camera motion (pan, zoom, roll) over a shipped photo."""
    from skimage import data

    photo = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    big = cv2.resize(photo, (1100, 1100), interpolation=cv2.INTER_CUBIC)
    rng = np.random.default_rng(seed)
    w, h = size
    frames = []
    for i in range(num):
        t = i / max(num - 1, 1)
        angle = 4.0 * np.sin(2 * np.pi * t) + rng.normal(0, 0.2)
        scale = 1.0 + 0.08 * np.sin(np.pi * t)
        cx, cy = 330 + 420 * t, 400 + 120 * np.sin(2 * np.pi * t)
        M = cv2.getRotationMatrix2D((cx, cy), angle, scale)
        M[:, 2] += np.array([w / 2 - cx, h / 2 - cy])
        frames.append(cv2.warpAffine(big, M, (w, h), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REFLECT))
    return frames


def shipped_photo_dir() -> pathlib.Path:
    """A temporary folder of photos shipped with scikit-image (for synthetic pairs)."""
    from skimage import data

    folder = pathlib.Path(tempfile.mkdtemp(prefix="superglue_bench_photos_"))
    for name in ("astronaut", "coffee", "chelsea", "rocket", "camera"):
        img = getattr(data, name)()
        if img.ndim == 3:
            img = cv2.cvtColor(img[..., :3], cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(folder / f"{name}.png"), img)
    return folder


def to_message_bytes(frame_bgr: np.ndarray) -> dict:
    """What a sensor_msgs/Image carries."""
    h, w = frame_bgr.shape[:2]
    return dict(encoding="bgr8", height=h, width=w, step=w * 3, data=frame_bgr.tobytes())


def convert_image_array(msg: dict) -> np.ndarray:
    """bgr8 message fields -> uint8 array (images.image_to_array, the node's decoder)."""
    return image_to_array(msg["encoding"], msg["height"], msg["width"], msg["step"], msg["data"])


def convert_image(msg: dict, device) -> torch.Tensor:
    """bgr8 message bytes -> [1,1,H,W] float tensor in [0,1] (the node's conversion if present)."""
    image = convert_image_array(msg)
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    return torch.from_numpy(gray).to(device, torch.float32)[None, None] / 255.0


# ------------------------------------------------------------------------------------------
# staged pipeline (same calls, in the same order, as SuperPoint.forward / SuperGlue.forward)
# ------------------------------------------------------------------------------------------

class Timer:
    def __init__(self):
        self.times: dict[str, list[float]] = {}
        self.frame: dict[str, float] = {}

    def stage(self, name):
        timer = self

        class _Stage:
            def __enter__(self):
                self.start = time.perf_counter()

            def __exit__(self, *exc):
                ms = 1000 * (time.perf_counter() - self.start)
                timer.frame[name] = timer.frame.get(name, 0.0) + ms
        return _Stage()

    def commit(self, total_ms: float | None = None):
        for k, v in self.frame.items():
            self.times.setdefault(k, []).append(v)
        if total_ms is not None:
            self.times.setdefault("end_to_end", []).append(total_ms)
        self.frame = {}


def superpoint_staged(sp: SuperPoint, image: torch.Tensor, timer: Timer) -> dict:
    with torch.inference_mode():
        height, width = image.shape[-2:]
        with timer.stage("superpoint_backbone"):
            dense = sp.dense(sp.pad_to_cell(image))
        with timer.stage("superpoint_decode"), backends.limited_threads(sp.conf["small_op_threads"]):
            heatmap = sp.logits_to_heatmap(dense["logits"])
            kpts, scores = sp.extract_keypoints(heatmap, height, width)
            desc = sample_descriptors(kpts[0], dense["descriptors"][0], sp.cell,
                                      sp.conf["descriptor_sampling"])
    return dict(keypoints=kpts[0], scores=scores[0], descriptors=desc,
                image_size=torch.tensor([[width, height]], dtype=torch.float32), cache={})


def superglue_staged(sg: SuperGlue, query: dict, refs: list[dict], timer: Timer) -> dict:
    """Query [1] against len(refs) keyframes in one batch; refs' caches are reused when enabled."""
    with torch.inference_mode():
        small = backends.limited_threads
        with timer.stage("superglue_encode"), small(sg.conf["small_op_threads"]):
            if len(refs) == 1:
                r = refs[0]
                k1, s1, d1 = r["keypoints"][None], r["scores"][None], r["descriptors"][None]
                mask1 = None
            else:
                b1 = pad_batch([r["keypoints"] for r in refs], [r["scores"] for r in refs],
                               [r["descriptors"] for r in refs])
                k1, s1, d1, mask1 = b1["keypoints"], b1["scores"], b1["descriptors"], b1["mask"]
            size1 = torch.cat([r["image_size"] for r in refs])
            enc0 = sg.encode_cached(query["keypoints"][None], query["scores"][None],
                                    query["descriptors"][None], query["image_size"], query["cache"])
            enc1 = sg.encode_cached(k1, s1, d1, size1, [r["cache"] for r in refs], mask1)
            b = len(refs)
            if b > 1:
                enc0 = enc0.expand(b, -1, -1)
        with timer.stage("superglue_gnn"):
            scores = sg.match_scores(enc0, enc1, None, mask1)
        with timer.stage("superglue_sinkhorn"), small(sg.conf["small_op_threads"]):
            la = SINKHORN[sg.conf["sinkhorn"]](scores, sg.bin_score, sg.conf["sinkhorn_iterations"],
                                               None, mask1)
            out = extract_matches(la, sg.conf["match_threshold"], None, mask1)
    return dict(log_assignment=la, **out)


def mutual_nearest_neighbours(desc0: torch.Tensor, desc1: torch.Tensor) -> torch.Tensor:
    """matches0 [N0] of mutual nearest descriptors (stand-in correspondences, see below)."""
    sim = desc0 @ desc1.t()
    nn01, nn10 = sim.argmax(1), sim.argmax(0)
    mutual = nn10[nn01] == torch.arange(len(desc0))
    return torch.where(mutual, nn01, torch.full_like(nn01, -1))


def verify_and_pack(query: dict, ref: dict, matches0: torch.Tensor, K: np.ndarray, timer: Timer,
                    geometry, min_matches: int = 0) -> dict:
    """Geometric verification + packing. With random SuperGlue weights the assignment is
    uniform and yields ~no matches; when fewer than min_matches, the geometry stage is timed on
    SuperPoint mutual-nearest-neighbour correspondences instead so its cost stays realistic."""
    if min_matches and int((matches0 >= 0).sum()) < min_matches:
        matches0 = mutual_nearest_neighbours(query["descriptors"], ref["descriptors"])
    m0 = matches0.cpu().numpy()
    idx0 = np.nonzero(m0 >= 0)[0]
    idx1 = m0[idx0]
    pts0 = ref["keypoints_np"][idx1]
    pts1 = query["keypoints_np"][idx0]
    with timer.stage("geometry"):
        if geometry is not None:
            model = geometry.verify(pts0, pts1, K, K)
            inliers = model.inliers
        else:
            inliers = np.ones(len(idx0), bool)
    with timer.stage("message"):
        msg = dict(points_keyframe=pts0[inliers].astype(np.float32).tobytes(),
                   points_frame=pts1[inliers].astype(np.float32).tobytes(),
                   num_inliers=int(inliers.sum()), num_matches=len(idx0))
    return msg


def run_mode(name: str, sp: SuperPoint, sg: SuperGlue, frames: list[np.ndarray], K, keyframe_every: int,
             loop_repeats: int, warmup: int = 2, min_matches: int = 0,
             features_out: list | None = None) -> dict:
    """Time the VO path over `frames` and loop verification of 5 candidates. The features of
    every frame are appended to ``features_out`` when given."""
    try:
        from . import geometry
    except ImportError:
        geometry = None
    device = sp.conv1a.weight.device
    timer = Timer()
    keyframe = None
    feats_all = []
    num_inliers = []
    for i, frame in enumerate(frames):
        msg = to_message_bytes(frame)
        t0 = time.perf_counter()
        with timer.stage("conversion"):
            image = convert_image(msg, device)
        feats = superpoint_staged(sp, image, timer)
        feats["keypoints_np"] = feats["keypoints"].cpu().numpy().astype(np.float64)
        if keyframe is not None:
            out = superglue_staged(sg, feats, [keyframe], timer)
            result = verify_and_pack(feats, keyframe, out["matches0"][0], K, timer, geometry,
                                     min_matches)
            num_inliers.append(result["num_inliers"])
        total = 1000 * (time.perf_counter() - t0)
        if i >= warmup and keyframe is not None:
            timer.commit(total)
        else:
            timer.frame = {}
        if keyframe is None or i % keyframe_every == 0:
            keyframe = feats
        feats_all.append(feats)
    if features_out is not None:
        features_out.extend(feats_all)

    loop_times = []
    for rep in range(loop_repeats + 1):
        query = dict(feats_all[-1], cache={})
        cands = feats_all[rep: rep + 5]
        loop_timer = Timer()
        t0 = time.perf_counter()
        out = superglue_staged(sg, query, cands, loop_timer)
        for b, cand in enumerate(cands):
            verify_and_pack(query, cand, out["matches0"][b], K, loop_timer, geometry, min_matches)
        if rep > 0:  # first = warm-up (backend shape specialisation)
            loop_times.append(1000 * (time.perf_counter() - t0))

    def summary(values):
        v = np.asarray(values, np.float64)
        return dict(median_ms=round(float(np.median(v)), 2), p90_ms=round(float(np.percentile(v, 90)), 2),
                    min_ms=round(float(v.min()), 2), n=int(len(v)))

    stages = {k: summary(timer.times[k]) for k in STAGES if k in timer.times}
    return dict(mode=name, stages=stages, end_to_end=summary(timer.times["end_to_end"]),
                loop_verification_5=summary(loop_times) if loop_times else None,
                mean_keypoints=float(np.mean([len(f["keypoints"]) for f in feats_all])),
                mean_vo_inliers=float(np.mean(num_inliers)) if num_inliers else 0.0,
                dense_backend=getattr(sp.__dict__.get("_runner"), "name", "torch"),
                dense_precision=getattr(sp.__dict__.get("_runner"), "precision", "fp32"),
                gnn_backend=getattr(sg.__dict__.get("_runner"), "name", "torch"),
                gnn_precision=getattr(sg.__dict__.get("_runner"), "precision", "fp32"))


def run_superglue_only(sg: SuperGlue, features: list[dict], keyframe_every: int,
                       loop_repeats: int, warmup: int = 2) -> dict:
    """SuperGlue's stages alone on already extracted features: the same VO pairs (frame vs
    keyframe, keyframe encodings cached when the mode caches) and 5-candidate loops as
    run_mode, so another matcher configuration is timed without rerunning SuperPoint."""
    features = [dict(f, cache={}) for f in features]
    timer, keyframe = Timer(), None
    for i, feats in enumerate(features):
        if keyframe is not None:
            superglue_staged(sg, feats, [keyframe], timer)
            if i >= warmup:
                timer.commit(sum(timer.frame.values()))
            timer.frame = {}
        if keyframe is None or i % keyframe_every == 0:
            keyframe = feats
    loop_times = []
    for rep in range(loop_repeats + 1):
        t0 = time.perf_counter()
        superglue_staged(sg, dict(features[-1], cache={}), features[rep: rep + 5], Timer())
        if rep > 0:
            loop_times.append(1000 * (time.perf_counter() - t0))

    def summary(values):
        v = np.asarray(values, np.float64)
        return dict(median_ms=round(float(np.median(v)), 2), p90_ms=round(float(np.percentile(v, 90)), 2),
                    min_ms=round(float(v.min()), 2), n=int(len(v)))

    return dict(stages={k: summary(v) for k, v in timer.times.items() if k != "end_to_end"},
                superglue_per_frame=summary(timer.times["end_to_end"]),
                loop_matching_5=summary(loop_times) if loop_times else None,
                gnn_backend=getattr(sg.__dict__.get("_runner"), "name", "torch"),
                gnn_precision=getattr(sg.__dict__.get("_runner"), "precision", "fp32"))


def standard_superglue(conf: dict, path, device) -> SuperGlue:
    """The papers' standard SuperGlue (9 self + 9 cross layers, 256-d): a published file when
    given, else seeded random weights (speed does not depend on them)."""
    if path is not None:
        return load_model("superglue", path, conf=conf, device=device)
    torch.manual_seed(0)
    return SuperGlue(dict(conf, gnn_layers=["self", "cross"] * 9,
                          keypoint_encoder=[32, 64, 128, 256])).to(device).eval()


def run_frontend(sp: SuperPoint, sg: SuperGlue, frames: list[np.ndarray], K,
                 warmup: int = 2, to_message=None) -> dict:
    """The node's own VO path, end to end: sensor_msgs/Image fields -> array (the node's
    conversion) -> FrontEnd.process (working-size resize, the features.py wrappers around these
    models, verification, keyframe policy) -> ``to_message`` (the node's Correspondences
    conversion, given by the entry point in ros/ when rclpy is importable; None: no message
    stage). Loop closure is off here (timed separately)."""
    from .features import SuperGlueMatcher, SuperPointExtractor
    from .frontend.pipeline import Frame, FrontEnd

    correspondence_to_msg = to_message
    device = sp.conv1a.weight.device
    extractor = SuperPointExtractor(device, model=sp, max_keypoints=sp.conf["max_keypoints"])
    matcher = SuperGlueMatcher(device, model=sg)
    h, w = frames[0].shape[:2]
    frontend = FrontEnd(extractor, matcher, dict(loop_closure=False, working_width=w,
                                                 working_height=h))
    times, inliers = [], []
    for i, frame in enumerate(frames):
        msg = to_message_bytes(frame)
        t0 = time.perf_counter()
        image = convert_image_array(msg)
        result = frontend.process(Frame(image, stamp_ns=(i + 1) * 50_000_000, frame_id="cam", K=K))
        if result.odometry is not None and correspondence_to_msg is not None:
            correspondence_to_msg(result.odometry)
        ms = 1000 * (time.perf_counter() - t0)
        if i >= warmup:
            times.append(ms)
            if result.odometry is not None:
                inliers.append(result.odometry.num_inliers)
    v = np.asarray(times)
    return dict(median_ms=round(float(np.median(v)), 2), p90_ms=round(float(np.percentile(v, 90)), 2),
                min_ms=round(float(v.min()), 2), n=int(len(v)),
                mean_vo_inliers=float(np.mean(inliers)) if inliers else 0.0,
                message_stage=correspondence_to_msg is not None)


# ------------------------------------------------------------------------------------------
# models
# ------------------------------------------------------------------------------------------

def build_models(mode_conf_sp: dict, mode_conf_sg: dict, weights: dict, device) -> tuple:
    """SuperPoint + SuperGlue with the given mode settings; shipped weights or seeded random."""
    models = []
    for kind, cls, conf in (("superpoint", SuperPoint, mode_conf_sp), ("superglue", SuperGlue, mode_conf_sg)):
        path = weights.get(kind)
        if path is not None:
            models.append(load_model(kind, path, conf=conf, device=device))
        else:
            torch.manual_seed(0)
            models.append(cls(conf).to(device).eval())
    return tuple(models)


def find_weights(args) -> tuple[dict, dict]:
    weights, notes = {}, {}
    for kind in ("superpoint", "superglue"):
        explicit = getattr(args, f"{kind}_weights")
        path = pathlib.Path(explicit) if explicit else default_weights_path(kind)
        if path.is_file() and not args.random_weights:
            try:
                meta = load_model(kind, path).meta
            except WeightsError as exc:
                raise SystemExit(f"superglue-benchmark: {exc}")
            weights[kind] = path
            notes[kind] = dict(path=str(path), meta=meta)
        else:
            notes[kind] = "random-initialised (seed 0): speed only, accuracy figures meaningless"
    return weights, notes


def prepare(sp, sg, frame):
    """Build the backends (conversion/compile) outside the timed region."""
    with torch.inference_mode():
        sp.dense(sp.pad_to_cell(torch.zeros(1, 1, frame.shape[0], frame.shape[1])))
    if not sg.uses_reference_path():
        sg.score_runner()


def accuracy(sp, sg, pairs) -> dict:
    from .evaluation.homography_eval import evaluate_homography
    from .features import SuperGlueMatcher, SuperPointExtractor

    extractor = SuperPointExtractor(model=sp)
    matcher = SuperGlueMatcher(model=sg)
    summary = evaluate_homography(extractor, matcher, pairs)
    keys = ("precision", "recall", "num_matches", "num_keypoints0", "auc_robust@3px", "auc_dlt@3px",
            "auc_robust@1px", "auc_robust@5px")
    return {k: summary.get(k) for k in keys}


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="superglue-benchmark",
        description="Per-stage and end-to-end timings of the fast path vs the reference mode (VGA).")
    p.add_argument("--frames", type=int, default=40, help="VO frames timed in fast mode (+2 warm-up)")
    p.add_argument("--reference-frames", type=int, default=8, help="VO frames in reference mode")
    p.add_argument("--loop-repeats", type=int, default=10, help="timed 5-candidate loop verifications (fast)")
    p.add_argument("--reference-loop-repeats", type=int, default=3)
    p.add_argument("--max-keypoints", type=int, default=512)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--keyframe-every", type=int, default=5)
    p.add_argument("--threads", type=int, default=2, help="torch / backend threads")
    p.add_argument("--backend", default=None, help="override the fast backend (torch|openvino|onnxruntime)")
    p.add_argument("--precision", default=None, help="override the fast precision (auto|fp32|bf16)")
    p.add_argument("--accuracy-pairs", type=int, default=20,
                   help="synthetic homography pairs for the accuracy delta (0 = skip)")
    p.add_argument("--images", default=None,
                   help="folder of photos for the synthetic pairs (default: photos shipped with scikit-image)")
    p.add_argument("--superpoint-weights", default=None)
    p.add_argument("--superglue-weights", default=None)
    p.add_argument("--random-weights", action="store_true", help="ignore shipped weights")
    p.add_argument("--standard-superglue-weights", default=None,
                   help="published 9+9 SuperGlue file for the standard-configuration timing "
                        "(default: seeded random weights)")
    p.add_argument("--skip-standard", action="store_true",
                   help="do not time the standard 9+9 SuperGlue beside the shipped one")
    p.add_argument("--match-threshold", type=float, default=None,
                   help="override match_threshold of both modes (default: the models' own)")
    p.add_argument("--skip-reference", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--output", default="benchmark.json", help="JSON output path")
    return p.parse_args(argv)


def fmt(summary) -> str:
    return "-" if not summary else "%.1f / %.1f" % (summary["median_ms"], summary["p90_ms"])


def print_table(results: dict) -> None:
    modes = [m for m in ("reference", "fast") if m in results["modes"]]
    print(f"{'stage':24s}" + "".join(f"{m + ' median/p90 ms':>28s}" for m in modes))
    for stage in STAGES + ("end_to_end",):
        row = f"{stage:24s}"
        for m in modes:
            r = results["modes"][m]
            s = r["end_to_end"] if stage == "end_to_end" else r["stages"].get(stage)
            row += f"{fmt(s):>28s}"
        print(row)
    row = f"{'node VO path (FrontEnd)':24s}"
    for m in modes:
        row += f"{fmt(results['modes'][m].get('frontend_vo')):>28s}"
    print(row)
    row = f"{'loop verification x5':24s}"
    for m in modes:
        s = results["modes"][m]["loop_verification_5"]
        row += f"{fmt(s):>28s}"
    print(row)
    standard = results.get("standard_superglue")
    if standard:
        for key, label in (("superglue_gnn", "9+9 SuperGlue GNN"),
                           ("superglue_sinkhorn", "9+9 Sinkhorn"),
                           ("superglue_per_frame", "9+9 SuperGlue per frame"),
                           ("loop_matching_5", "9+9 loop matching x5")):
            row = f"{label:24s}"
            for m in modes:
                r = standard["modes"].get(m, {})
                row += f"{fmt(r.get(key) or r.get('stages', {}).get(key)):>28s}"
            print(row)
    if "speedup_end_to_end" in results:
        print(f"speed-up over reference (median end-to-end): {results['speedup_end_to_end']:.1f}x; "
              f"node VO path: {results['speedup_frontend_vo']:.1f}x; "
              f"loop: {results.get('speedup_loop', float('nan')):.1f}x")
    if "accuracy" in results:
        print("accuracy (synthetic homography pairs):", json.dumps(results["accuracy"]))


def main(argv=None, to_message=None) -> int:
    """The front-end stages (``superglue-benchmark [options]``; the command itself is
    ``ros.node_benchmark.cli``, which also serves ``--node`` and passes the node's message
    conversion as ``to_message`` when rclpy is importable, so this module imports no ROS)."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    weights, weight_notes = find_weights(args)
    size = (args.width, args.height)
    frames = camera_path_frames(max(args.frames, args.reference_frames) + 2, size)
    f = 0.9 * args.width
    K = np.array([[f, 0, args.width / 2 - 0.5], [0, f, args.height / 2 - 0.5], [0, 0, 1]])

    fast_sp = dict(backends.FAST_SUPERPOINT, max_keypoints=args.max_keypoints)
    fast_sg = dict(backends.FAST_SUPERGLUE)
    for conf in (fast_sp, fast_sg):
        if args.backend:
            conf["backend"] = args.backend
        if args.precision:
            conf["precision"] = args.precision
    ref_sp = dict(backends.REFERENCE_SUPERPOINT, max_keypoints=args.max_keypoints)
    ref_sg = dict(backends.REFERENCE_SUPERGLUE)
    threshold = args.match_threshold
    if threshold is not None:
        fast_sg["match_threshold"] = ref_sg["match_threshold"] = threshold
    min_matches = 0
    if "superglue" not in weights:
        min_matches = 8
        results_notes = ("random SuperGlue weights give a uniform assignment (no matches): the "
                         "geometry stage is timed on SuperPoint mutual-NN correspondences")
    else:
        results_notes = ""
    results = dict(
        machine=backends.machine_description(), load_average_start=os.getloadavg(),
        weights=weight_notes, image_size=list(size), max_keypoints=args.max_keypoints,
        configs=dict(fast=dict(superpoint=fast_sp, superglue=fast_sg),
                     reference=dict(superpoint=ref_sp, superglue=ref_sg)),
        modes={}, notes=results_notes)

    runs = [("fast", fast_sp, fast_sg, args.frames, args.loop_repeats)]
    if not args.skip_reference:
        runs.append(("reference", ref_sp, ref_sg, args.reference_frames, args.reference_loop_repeats))
    built, features = {}, {}
    for name, csp, csg, nframes, loops in runs:
        sp, sg = build_models(csp, csg, weights, device)
        t0 = time.perf_counter()
        prepare(sp, sg, frames[0])
        LOG.info("%s mode ready in %.1f s (backend build/compile)", name, time.perf_counter() - t0)
        features[name] = []
        results["modes"][name] = run_mode(name, sp, sg, frames[: nframes + 2], K, args.keyframe_every,
                                          loops, min_matches=min_matches,
                                          features_out=features[name])
        results["modes"][name]["setup_s"] = round(time.perf_counter() - t0, 1)
        built[name] = (sp, sg)
        results["modes"][name]["frontend_vo"] = run_frontend(sp, sg, frames[: nframes + 2], K,
                                                             to_message=to_message)
    if not args.skip_standard:
        standard = dict(layers=18, weights=args.standard_superglue_weights
                        or "random-initialised (seed 0): speed only", modes={})
        for name, _, csg, _, loops in runs:
            sg = standard_superglue(csg, args.standard_superglue_weights, device)
            t0 = time.perf_counter()
            if not sg.uses_reference_path():
                sg.score_runner()
            standard["modes"][name] = run_superglue_only(sg, features[name], args.keyframe_every,
                                                         loops)
            standard["modes"][name]["setup_s"] = round(time.perf_counter() - t0, 1)
        results["standard_superglue"] = standard
    if "reference" in results["modes"]:
        fast, ref = results["modes"]["fast"], results["modes"]["reference"]
        results["speedup_end_to_end"] = ref["end_to_end"]["median_ms"] / fast["end_to_end"]["median_ms"]
        results["speedup_frontend_vo"] = (ref["frontend_vo"]["median_ms"]
                                          / fast["frontend_vo"]["median_ms"])
        if fast["loop_verification_5"] and ref["loop_verification_5"]:
            results["speedup_loop"] = (ref["loop_verification_5"]["median_ms"]
                                       / fast["loop_verification_5"]["median_ms"])

    if args.accuracy_pairs > 0 and "reference" in built:
        from .evaluation.synthetic import make_homography_pairs

        image_dir = args.images or shipped_photo_dir()
        pairs = make_homography_pairs(image_dir, num_pairs=args.accuracy_pairs, seed=0, size=size)
        acc = {name: accuracy(*built[name], pairs) for name in ("reference", "fast")}
        acc["delta_fast_minus_reference"] = {
            k: (acc["fast"][k] - acc["reference"][k])
            if isinstance(acc["fast"][k], (int, float)) and isinstance(acc["reference"][k], (int, float))
            else None for k in acc["fast"]}
        acc["pairs"] = dict(num=args.accuracy_pairs, images=str(args.images or "scikit-image shipped photos"))
        if len(weights) < 2:
            acc["note"] = "random weights: accuracy values are meaningless, only the agreement counts"
        results["accuracy"] = acc

    results["load_average_end"] = os.getloadavg()
    e2e = results["modes"]["fast"]["frontend_vo"]
    loop = results["modes"]["fast"]["loop_verification_5"]
    results["targets"] = dict(
        vo_median_le_100ms=e2e["median_ms"] <= 100, vo_p90_le_150ms=e2e["p90_ms"] <= 150,
        loop5_le_300ms=bool(loop and loop["median_ms"] <= 300),
        speedup_ge_8x=bool(results.get("speedup_frontend_vo", 0) >= 8))
    print_table(results)
    out = pathlib.Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
