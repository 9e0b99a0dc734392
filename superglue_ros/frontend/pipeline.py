"""ROS-free SLAM front-end: frame -> features -> VO vs last keyframe -> keyframe -> loop closure.

The ROS node (``superglue_ros.ros``) is a thin shell around ``FrontEnd``: it converts messages
to ``Frame``s, calls ``extract(frame)`` on its extraction thread and ``process(extracted,
defer_loop=True)`` on its odometry thread (so frame t+1 is extracted while frame t is matched;
``process`` returns the odometry at once and, for a new keyframe, a ``LoopJob``), runs
``run_loop_job`` on a third, lower priority worker, answers ``verify_loop`` from service
callbacks (concurrently), and turns ``Correspondence`` objects into messages. Everything here is
testable without ROS, and ``superglue-offline`` runs the very same code over folders and bags.

Coordinate conventions (as in superglue_ros_msgs/Correspondences):
- every published point is in the ORIGINAL image's pixels (x right, y down, origin at the centre
  of the top-left pixel), even though features are extracted on a copy resized to the working
  resolution; geometry therefore runs in original pixels and K from camera_info applies as is.
- geometry maps the REFERENCE view (view 0) to the QUERY view (view 1): ``verify(pts_ref,
  pts_query, K_ref, K_query)``; the query is the current frame (odometry) or the new keyframe
  (loop closure).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np

from ..camera import CameraModel, validate_intrinsics  # noqa: F401 - validate_intrinsics re-exported
from ..feature_types import Extractor, Features, Matcher, Matches
from ..geometry import ESSENTIAL_MAX_ITERATIONS, GeometricModel, normalize_points, verify
from ..images import RESIZE_MODES, ImageConversionError, as_uint8_gray, working_size
from ..options import Option, defaults, validate
from ..refinement import (
    DEFAULT_MAX_SHIFT_PX,
    DEFAULT_WINDOW_PX,
    REFINEMENTS,
    refine_original_points,
)
from ..relative_pose import RelativePose, relative_pose
from .global_descriptor import GlobalDescriptor, rank_by_similarity
from .keyframes import Keyframe, KeyframeCache
from .model_lock import FOREGROUND, lock_for
from .policy import KeyframeDecision, KeyframePolicy

# A background loop-candidate match waits at most this long for odometry to be idle, then
# claims the next turn (model_lock.ForegroundActivity): at 5 Hz the gaps between frames absorb
# the loop pairs one by one; at 30 Hz, where odometry is never idle, each pair waits this long
# plus one frame, and a loop worker that is behind takes the rest of its job in that turn.
LOOP_MAX_DEFER_S = 0.1


class FrameRejectedError(ValueError):
    """Base of the errors ``FrontEnd.process`` raises for a frame it refuses; the caller logs
    ``str(err)`` and skips the frame. Nothing already accepted changes."""


class BadFrameError(FrameRejectedError):
    """The image (or its metadata) is unusable: empty, too large, wrong dtype/shape, NaN/inf."""


class StaleFrameError(FrameRejectedError):
    """The frame's stamp is not newer than the last accepted frame's (duplicate or out of order)."""


class FeaturelessFrameError(FrameRejectedError):
    """No keyframe exists yet and the frame has fewer than min_keyframe_keypoints keypoints
    (black, blank or blurred), so it can be neither matched nor made the first keyframe."""


@dataclass
class Frame:
    """One input image. image: uint8 HxW gray or HxWx3 BGR (HxWx4 BGRA, uint16 and float in
    [0, 1] are also accepted and converted), at its ORIGINAL resolution; K: [3,3] intrinsics in
    original pixels or None; camera: K with lens distortion (takes the place of K when given):
    the geometry undistorts keypoints with it, the published points stay observed pixels."""

    image: np.ndarray
    stamp_ns: int
    frame_id: str = ""
    K: np.ndarray | None = None
    camera: CameraModel | None = None


@dataclass
class Correspondence:
    """One Correspondences message, ROS-free. Points are ORIGINAL pixels; entry i of every
    per-match array describes match i. Geometry maps reference (view 0) -> query (view 1)."""

    kind: str  # 'odometry' | 'loop_closure'
    query_id: int  # keyframe id when query_is_keyframe, else the frame index
    reference_id: int  # keyframe id
    query_stamp_ns: int
    reference_stamp_ns: int
    frame_id: str  # frame_id of the query image
    query_points: np.ndarray  # float32 [K,2]
    reference_points: np.ndarray  # float32 [K,2]
    scores: np.ndarray  # float32 [K] matching confidence
    inliers: np.ndarray  # bool [K], empty if verification did not run
    model: GeometricModel
    num_keypoints_query: int
    num_keypoints_reference: int
    processing_time_s: float
    # extensions of the contract (all fields the message needs)
    query_indices: np.ndarray = field(
        default_factory=lambda: np.zeros(0, np.int64)
    )  # [K] into query keypoints
    reference_indices: np.ndarray = field(
        default_factory=lambda: np.zeros(0, np.int64)
    )  # [K] into reference keypoints
    query_is_keyframe: bool = False
    reference_frame_id: str = ""
    query_image_size: tuple[int, int] = (0, 0)  # (w, h) original
    reference_image_size: tuple[int, int] = (0, 0)
    extractor: str = ""
    matcher: str = ""
    similarity: float = float("nan")  # global-descriptor cosine similarity (loop closures)
    pose: RelativePose | None = (
        None  # query camera in the reference frame, with covariance (essential only)
    )

    @property
    def num_inliers(self) -> int:
        return int(np.count_nonzero(self.inliers))

    def __len__(self) -> int:
        return len(self.query_points)


@dataclass
class ExtractedFrame:
    """A frame after the half of ``process`` that touches no stream state (checks, resize,
    feature extraction): ``FrontEnd.extract`` makes it, ``FrontEnd.process`` finishes it. The
    node extracts the next frame on one thread while another matches this one."""

    frame: Frame
    stamp_ns: int
    gray: np.ndarray  # original resolution, uint8
    work: np.ndarray  # what the extractor saw (working resolution)
    camera: CameraModel | None  # None: no usable calibration
    working_size: tuple[int, int]  # (w, h)
    scale: tuple[float, float]  # (sx, sy) = working / original
    features: Features  # keypoints in ORIGINAL pixels
    timings_s: dict[str, float]  # preprocess, extract
    warnings: list[str]


@dataclass
class FrameResult:
    """What ``process`` produced for one accepted frame."""

    frame_index: int  # index among accepted frames, from 0
    is_keyframe: bool
    keyframe: Keyframe | None  # the new keyframe when is_keyframe
    odometry: Correspondence | None  # vs the previous keyframe; None for the first frame
    loop_closures: list[
        Correspondence
    ]  # verified (>= min_loop_inliers) loop closures of a new keyframe
    timings_s: dict[str, float]  # per stage: preprocess, extract, match, verify, policy, keyframe,
    #                              loop_rank, loop (inline only: rank + match + verify), total
    query_features: Features  # the frame's features, keypoints in ORIGINAL pixels
    # extensions
    stamp_ns: int = 0
    frame_id: str = ""
    image_size: tuple[int, int] = (0, 0)  # (w, h) original
    working_size: tuple[int, int] = (0, 0)  # (w, h) the extractor saw
    scale: tuple[float, float] = (1.0, 1.0)  # (sx, sy) = working / original
    keyframe_reason: str = ""  # see policy.KeyframeDecision.reason; "too_few_keypoints" = refused
    reference_id: int | None = None  # keyframe matched against (None for the first frame)
    evicted_ids: list[int] = field(default_factory=list)  # keyframes evicted by adding this one
    loop_candidates: list[tuple[int, float]] = field(
        default_factory=list
    )  # (id, similarity) matched
    warnings: list[str] = field(
        default_factory=list
    )  # non-fatal problems (bad K ignored, loop failure)
    loop_job: "LoopJob | None" = None  # defer_loop and candidates to match: run or cancel it


@dataclass
class LoopJob:
    """A new keyframe's internal loop closure, ranked but not matched yet (``process`` with
    ``defer_loop=True``). The keyframe and its candidates are pinned in the cache until
    ``FrontEnd.run_loop_job`` or ``FrontEnd.cancel_loop_job`` releases them, so a queued job
    always finds what it was ranked against."""

    keyframe: Keyframe
    candidates: list[tuple[Keyframe, float]]  # (candidate, similarity), best first
    cache: KeyframeCache | None = None  # where the pins are (reset() replaces the cache)
    pinned_ids: list[int] = field(default_factory=list)
    created_s: float = 0.0  # time.monotonic() when ranked
    done: bool = False


@dataclass
class LoopOutcome:
    """What ``run_loop_job`` produced for one keyframe."""

    keyframe_id: int
    loop_closures: list[Correspondence]  # verified (>= min_loop_inliers), in candidate order
    candidates: list[tuple[int, float]]  # (id, similarity) matched
    timings_s: dict[str, float]  # queued (ranked -> started), match, verify, total
    warnings: list[str] = field(default_factory=list)


@dataclass
class LoopVerification:
    """Outcome for one candidate of ``verify_loop``.

    status: 'verified' (>= min_loop_inliers), 'rejected' (matched, too few inliers),
    'unknown_query' / 'unknown_candidate' (id never seen), 'evicted' (query or candidate existed
    but left the cache), 'self_loop' (candidate == query), 'too_close' (fewer than
    loop_min_id_gap ids from the query: a neighbour, not a loop), 'too_many_candidates' (not
    among the max_verify_candidates kept), 'failed' (matcher error; see message).
    correspondence is set for 'verified' and 'rejected' only, so nothing else can be published
    as a loop closure.
    """

    candidate_id: int
    status: str
    correspondence: Correspondence | None
    message: str = ""
    query_missing: bool = (
        False  # the status is about the query (unknown or evicted), not the candidate
    )


def _keyframe_camera(kf: Keyframe) -> CameraModel | None:
    """The keyframe's camera model; a bare K (keyframes built outside ``process``) is pinhole."""
    if kf.camera is not None:
        return kf.camera
    return None if kf.K is None else CameraModel.pinhole(kf.K)


MODELS = ("auto", "essential", "fundamental", "homography")  # geometric_model choices


class FrontEnd:
    """Visual-odometry and loop-closure correspondences over a stream of frames of ONE camera.

    Thread safety: ``process`` calls are serialised (one worker); ``run_loop_job`` and
    ``verify_loop`` may run concurrently from other threads. Every extractor/matcher call holds
    that model's lock (``model_lock.lock_for``: shared by all FrontEnds using the model, the
    models are not assumed re-entrant); ``process`` takes it in the foreground, loop jobs in the
    background (they wait while odometry waits). Keyframes used by a request or a queued loop
    job are pinned in the cache. ``update_conf`` changes options between frames (the node's
    parameters); every option but those in ``static_conf`` can change so.

    Parameters: ``options`` declares each once (default, type, range or choices, description),
    ``default_conf`` and the checks in ``__init__`` derive from it, and so do the node's ROS
    parameters and the YAML check (ros/parameters.py). Flat so that each is one ROS parameter;
    more on some of them:
      working_width, working_height (int, 0..8192, default 640x480): resolution the extractor
          sees; 0 for either = no resize.
      resize_mode ('pixels' | 'fit' | 'stretch', default 'pixels'): 'pixels' keeps the aspect
          ratio with working_width * working_height pixels (every camera costs what VGA costs;
          wide frames keep their height); 'fit' fits the image inside working_width x
          working_height; neither upscales; 'stretch' resizes to exactly that size (sx != sy
          allowed); geometry always runs in original pixels (``images.working_size``).
      max_image_pixels (int, default 4096*4096): larger images are rejected (BadFrameError).
      min_image_side (int, default 16): smaller images are rejected.
      geometric_model ('auto' | 'essential' | 'fundamental' | 'homography', default 'auto'):
          'auto' = essential when both frames have K, else fundamental, and homography where
          the fundamental fit fails (a planar scene or a pure rotation).
      ransac_threshold_px (float > 0, default 2.0): inlier threshold in ORIGINAL pixels.
      essential_max_iterations (int >= 100, default 500): RANSAC iteration cap of the essential
          matrix (PoseLib, matches tried best score first); bounds its cost on real video, where
          low inlier ratios drive the adaptive count to the cap (geometry.ESSENTIAL_MAX_ITERATIONS).
      refine_matches ('lk' | 'none', default 'lk'): 'lk' moves each match's query point onto
          the reference keypoint's scene point by patch alignment in the working images
          (``refinement.py``; keyframes then keep their working image); published query
          points are the refined ones, the keypoint indices still name the detections.
      refine_window_px, refine_max_shift_px: the aligned patch's side and the largest move
          accepted, in working pixels.
      min_inliers, min_inlier_ratio, max_frames, max_interval_s, min_gap_frames: keyframe
          policy, see ``policy.KeyframePolicy``.
      max_keyframes (int >= 1, default 200), max_cache_bytes (int >= 1, default 256 MiB):
          keyframe cache bounds.
      loop_closure (bool, default True): run internal loop closure on each new keyframe.
      loop_min_id_gap (int >= 1, default 5): candidates have id <= new_id - gap.
      loop_top_k (int >= 0, default 3): candidates matched per new keyframe (one batched call).
      loop_min_similarity (float in [-1, 1], default 0.0): candidates below this global
          descriptor cosine similarity are not matched.
      min_loop_inliers (int >= 1, default 40): inliers needed to publish/verify a loop closure.
      loop_geometric_model (as geometric_model, default 'auto').
      max_verify_candidates (int >= 1, default 16): verify_loop matches at most this many
          candidates per request; the rest get status 'too_many_candidates'.
      min_keyframe_keypoints (int >= 0, default 20): a frame with fewer keypoints never becomes
          a keyframe (a black or featureless frame would cost the next frames their odometry);
          the previous keyframe stays the reference, and without one the frame is rejected.
      global_descriptor ('lsh-bow' | 'thumbnail' | 'both', default 'lsh-bow'): see
          ``global_descriptor.py``.
      thumbnail_width (int >= 0, default 160): width of the gray debug thumbnail kept per
          keyframe (0 = none).
    """

    options = (
        Option(
            "working_width",
            640,
            "width of the resolution the extractor sees [px]; 0 = no resize",
            range=(0, 8192, 1),
        ),
        Option(
            "working_height",
            480,
            "height of the resolution the extractor sees [px]; 0 = no resize",
            range=(0, 8192, 1),
        ),
        Option(
            "resize_mode",
            "pixels",
            "'pixels' keeps the aspect ratio with working_width*working_height pixels, "
            "'fit' keeps it inside working size (neither upscales), 'stretch' resizes to "
            "exactly that size",
            choices=RESIZE_MODES,
        ),
        Option(
            "max_image_pixels",
            4096 * 4096,
            "larger images are rejected with a log line (width*height)",
            range=(1, 1 << 30, 1),
        ),
        Option(
            "min_image_side", 16, "images with a smaller side are rejected [px]", range=(1, 4096, 1)
        ),
        Option(
            "geometric_model",
            "auto",
            "VO verification: 'auto' (essential with camera_info K, "
            "else fundamental, homography where that fit fails), 'essential', 'fundamental', "
            "'homography'",
            choices=MODELS,
        ),
        Option(
            "ransac_threshold_px",
            2.0,
            "RANSAC inlier threshold in original pixels",
            range=(0.01, 100.0),
        ),
        Option(
            "essential_max_iterations",
            ESSENTIAL_MAX_ITERATIONS,
            "RANSAC iteration cap of the "
            "essential matrix (PoseLib, matches tried best score first): bounds its cost on "
            "real video",
            range=(100, 100000, 1),
        ),
        Option(
            "refine_matches",
            "lk",
            "sub-pixel refinement of each match's query point: 'lk' aligns the reference "
            "keyframe's patch in the query image (Lucas-Kanade), 'none' keeps the keypoints",
            choices=REFINEMENTS,
        ),
        Option(
            "refine_window_px",
            DEFAULT_WINDOW_PX,
            "side of the patch refine_matches aligns [working px]",
            range=(3, 63, 1),
        ),
        Option(
            "refine_max_shift_px",
            DEFAULT_MAX_SHIFT_PX,
            "a refined point that would move farther keeps its keypoint [working px]",
            range=(0.0, 32.0),
        ),
        *KeyframePolicy.options,
        Option(
            "max_keyframes",
            200,
            "keyframe cache bound: number of keyframes (oldest evicted first)",
            range=(1, 1000000, 1),
        ),
        Option(
            "max_cache_bytes",
            256 * 1024 * 1024,
            "keyframe cache bound: bytes of features, descriptors and thumbnails",
            range=(1, 1 << 40, 1),
        ),
        Option(
            "loop_closure",
            True,
            "compare each new keyframe with older keyframes and publish loop closures",
        ),
        Option(
            "loop_min_id_gap",
            5,
            "loop candidates must be at least this many keyframe ids older",
            range=(1, 100000, 1),
        ),
        Option(
            "loop_top_k",
            3,
            "loop candidates (by global descriptor) matched per new keyframe",
            range=(0, 64, 1),
        ),
        Option(
            "loop_min_similarity",
            0.0,
            "loop candidates below this global-descriptor cosine similarity are not matched",
            range=(-1.0, 1.0),
        ),
        Option(
            "min_loop_inliers",
            40,
            "inliers needed for a loop closure (internal and verify_loop)",
            range=(1, 100000, 1),
        ),
        Option(
            "loop_geometric_model",
            "auto",
            "loop verification model: 'auto', 'essential', 'fundamental', 'homography'",
            choices=MODELS,
        ),
        Option(
            "max_verify_candidates",
            16,
            "candidates matched per verify_loop request; the rest get status TOO_MANY_CANDIDATES",
            range=(1, 1024, 1),
        ),
        Option(
            "min_keyframe_keypoints",
            20,
            "a frame with fewer keypoints never becomes a "
            "keyframe (the last keyframe stays the reference; without one the frame is "
            "skipped)",
            range=(0, 100000, 1),
        ),
        Option(
            "global_descriptor",
            "lsh-bow",
            "place-recognition descriptor: 'lsh-bow', 'thumbnail' or 'both'",
            choices=("lsh-bow", "thumbnail", "both"),
        ),
        Option(
            "thumbnail_width",
            160,
            "width of the gray thumbnail kept per keyframe for debug drawing (0 = none)",
            range=(0, 4096, 1),
        ),
    )
    default_conf = defaults(options)

    # Options that shape what the cache already holds, so a running FrontEnd keeps them: the
    # working size and resize mode set the scale every cached keyframe was extracted at (and the
    # fast runtime compiles per input shape); the global descriptor method, what the cached
    # descriptors can be compared with. ``update_conf`` refuses them with this reason.
    static_conf = dict(
        working_width="cached keyframes were extracted at the working size",
        working_height="cached keyframes were extracted at the working size",
        resize_mode="cached keyframes were extracted at the working size",
        global_descriptor="cached keyframes' global descriptors were computed with this method",
    )

    def __init__(self, extractor: Extractor, matcher: Matcher, conf: dict | None = None):
        self.conf = c = self.checked_conf(conf or {})
        self.extractor = extractor
        self.matcher = matcher
        self.policy = KeyframePolicy({k: c[k] for k in KeyframePolicy.default_conf})
        self.global_descriptor = GlobalDescriptor(dict(method=c["global_descriptor"]))
        self.cache = KeyframeCache(int(c["max_keyframes"]), int(c["max_cache_bytes"]))
        self._process_lock = threading.Lock()  # one process() at a time
        self._extractor_lock = lock_for(extractor)  # shared with every FrontEnd of this model
        self._matcher_lock = lock_for(matcher)
        self._state_lock = threading.Lock()  # the small accepted-state below
        self._last_stamp_ns: int | None = None
        self._frame_index = 0  # index the next accepted frame gets
        self._next_keyframe_id = 0
        self._last_keyframe_frame_index: int | None = None
        self.stats = dict(
            frames_accepted=0,
            frames_bad=0,
            frames_stale=0,
            keyframes=0,
            loop_closures=0,
            loop_failures=0,
        )

    @classmethod
    def checked_conf(cls, conf: dict, base: dict | None = None) -> dict:
        """``base`` (default: default_conf) updated with ``conf``, validated against
        ``options`` (unknown option, type, range, choice); raises ValueError with the reason.
        The keyframe policy and the global descriptor are built once as a check too."""
        c = validate("FrontEnd", cls.options, {**(base or {}), **conf})
        KeyframePolicy({k: c[k] for k in KeyframePolicy.default_conf})  # raises for bad values
        GlobalDescriptor(dict(method=c["global_descriptor"]))
        return c

    def update_conf(self, changes: dict) -> dict:
        """Apply new values of the options not in ``static_conf`` to this running FrontEnd
        (the node's parameter callback). Validated first: a ValueError leaves everything as it
        was. Applied between frames (waits for a ``process`` in progress); the conf dict is
        replaced, never mutated, so a loop job or verify_loop request that already read it
        finishes with the old values. The cache bounds evict at once. Returns the new conf."""
        fixed = sorted(set(changes) & set(self.static_conf))
        if fixed:
            raise ValueError(f"{fixed[0]} cannot change at run time: {self.static_conf[fixed[0]]}")
        new = self.checked_conf(changes, base=self.conf)
        policy = KeyframePolicy({k: new[k] for k in KeyframePolicy.default_conf})
        with self._process_lock:
            self.policy = policy
            self.cache.set_bounds(int(new["max_keyframes"]), int(new["max_cache_bytes"]))
            self.conf = new
        return new

    @classmethod
    def from_config(cls, components: dict, conf: dict | None = None) -> "FrontEnd":
        """Extractor + matcher from a flat component config (``features.build_components``:
        preset, extractor, matcher, runtime, weights, max_keypoints, device, ...) and the
        FrontEnd options ``conf``."""
        from ..features import build_components

        return cls(*build_components(components), conf)

    @classmethod
    def from_preset(
        cls, preset: str, device: str = "cpu", conf: dict | None = None, **model_conf
    ) -> "FrontEnd":
        """Short form of from_config: a preset ('superglue', 'superpoint-mnn', 'sift', 'orb');
        ``model_conf`` as in ``features.build_preset`` (e.g. max_keypoints=512)."""
        from ..features import build_preset

        return cls(*build_preset(preset, device, **model_conf), conf)

    # ------------------------------------------------------------------ input checks
    def _check_image(self, image) -> np.ndarray:
        """-> uint8 HxW gray (original resolution, ``images.as_uint8_gray``); raises
        BadFrameError with the reason."""
        try:
            return as_uint8_gray(image, self.conf["min_image_side"], self.conf["max_image_pixels"])
        except ImageConversionError as error:
            raise BadFrameError(str(error)) from None

    def working_size(self, width: int, height: int) -> tuple[int, int]:
        """(w, h) the extractor sees for an original image of width x height."""
        target = (self.conf["working_width"], self.conf["working_height"])
        return working_size(width, height, target, self.conf["resize_mode"])

    # ------------------------------------------------------------------ helpers
    def _to_original(
        self, feats: Features, sx: float, sy: float, size: tuple[int, int]
    ) -> Features:
        """Working-resolution features -> ORIGINAL pixels (``Features.scaled``, pixel-centre
        aligned: x_orig = (x_work + 0.5) / sx - 0.5; the matcher's device copy of scores and
        descriptors is kept). At scale 1 the features are used as they are."""
        if (sx, sy) == (1.0, 1.0) and tuple(feats.image_size) == tuple(size):
            return feats
        return feats.scaled(1.0 / sx, 1.0 / sy, size)

    def _correspond(
        self,
        kind: str,
        query: Features,
        ref: Keyframe,
        matches: Matches,
        query_camera: CameraModel | None,
        model: str,
        query_meta: dict,
        conf: dict,
        query_image: np.ndarray | None = None,
    ) -> tuple[Correspondence, float]:
        """Matches (query -> reference) -> verified Correspondence. Returns (corr, seconds of
        refinement + verification). With refine_matches on and both working images at hand
        (query_image, ``ref.image``) the query points are refined first. The geometry sees
        undistorted pixels when a camera has distortion; the Correspondence keeps the observed
        ones. ``conf``: the caller's snapshot of ``self.conf``."""
        idx_q, idx_r = matches.indices()
        pts_q = query.keypoints[idx_q]
        pts_r = ref.features.keypoints[idx_r]
        t0 = time.perf_counter()
        if conf["refine_matches"] != "none" and query_image is not None and ref.image is not None:
            pts_q = refine_original_points(
                ref.image,
                query_image,
                pts_r,
                pts_q,
                ref.image_size,
                query.image_size,
                int(conf["refine_window_px"]),
                float(conf["refine_max_shift_px"]),
            ).astype(np.float32)
        ref_camera = _keyframe_camera(ref)
        use_model = model
        if model == "auto":
            use_model = (
                "essential"
                if query_camera is not None and ref_camera is not None
                else "fundamental"
            )
        if use_model == "essential" and (query_camera is None or ref_camera is None):
            use_model = "fundamental"  # asked for essential but intrinsics are missing
        geo_r = pts_r if ref_camera is None else ref_camera.undistort(pts_r)
        geo_q = pts_q if query_camera is None else query_camera.undistort(pts_q)
        scores = matches.scores0[idx_q]
        budget = (
            {}
            if use_model != "essential"
            else dict(max_iters=int(conf["essential_max_iterations"]))
        )
        geo = verify(
            geo_r,
            geo_q,
            None if ref_camera is None else ref_camera.K,
            None if query_camera is None else query_camera.K,
            model=use_model,
            threshold_px=float(conf["ransac_threshold_px"]),
            scores=scores,
            **budget,
        )
        if model == "auto" and use_model == "fundamental" and geo.kind == "none":
            # a planar scene or a pure rotation has no unique F (with sub-pixel matches OpenCV's
            # fit then fails outright); without intrinsics the homography is the model there
            geo = verify(
                geo_r,
                geo_q,
                model="homography",
                threshold_px=float(conf["ransac_threshold_px"]),
                scores=scores,
            )
        pose = None
        if geo.R is not None and geo.num_inliers >= 6:
            inl = geo.inliers
            pose = relative_pose(
                geo.R,
                geo.t,
                normalize_points(geo_r[inl], ref_camera.K),
                normalize_points(geo_q[inl], query_camera.K),
            )
        dt = time.perf_counter() - t0
        corr = Correspondence(
            kind=kind,
            query_id=query_meta["id"],
            reference_id=ref.id,
            query_stamp_ns=query_meta["stamp_ns"],
            reference_stamp_ns=ref.stamp_ns,
            frame_id=query_meta["frame_id"],
            query_points=pts_q.astype(np.float32),
            reference_points=pts_r.astype(np.float32),
            scores=scores.astype(np.float32),
            inliers=np.asarray(geo.inliers, bool),
            model=geo,
            num_keypoints_query=len(query.keypoints),
            num_keypoints_reference=len(ref.features.keypoints),
            processing_time_s=0.0,
            query_indices=idx_q.astype(np.int64),
            reference_indices=idx_r.astype(np.int64),
            query_is_keyframe=query_meta["is_keyframe"],
            reference_frame_id=ref.frame_id,
            query_image_size=tuple(query.image_size),
            reference_image_size=tuple(ref.image_size),
            extractor=getattr(self.extractor, "name", ""),
            matcher=getattr(self.matcher, "name", ""),
            pose=pose,
        )
        return corr, dt

    def _thumbnail(self, gray: np.ndarray) -> np.ndarray | None:
        tw = int(self.conf["thumbnail_width"])
        if tw <= 0:
            return None
        h, w = gray.shape
        return cv2.resize(gray, (tw, max(1, round(h * tw / w))), interpolation=cv2.INTER_AREA)

    # ------------------------------------------------------------------ main entry points
    def process(self, frame: Frame | ExtractedFrame, defer_loop: bool = False) -> FrameResult:
        """Process one frame: extract, match vs the last keyframe, verify, maybe add a keyframe
        and run internal loop closure. Raises BadFrameError / StaleFrameError (both
        FrameRejectedError, a ValueError) for refused frames; state is then unchanged. A failing
        loop closure does not fail the frame (it is reported in ``warnings``).

        frame: a Frame, or what ``extract`` made of one (the extraction is then skipped).
        defer_loop: do not match loop candidates here; a new keyframe's ranked candidates come
        back as ``result.loop_job`` for ``run_loop_job`` (on another thread, after the odometry
        is published) or ``cancel_loop_job``. Inline and deferred give the same loop closures."""
        with self._process_lock, FOREGROUND.busy():
            if isinstance(frame, ExtractedFrame):
                return self._finish(frame, defer_loop)
            stamp = self._checked_stamp(frame)
            self._check_stale(stamp)  # before extracting: a stale frame costs nothing
            return self._finish(self._extract(frame, stamp), defer_loop)

    def extract(self, frame: Frame) -> ExtractedFrame:
        """The stateless half of ``process`` (checks, resize, features), safe to run while
        ``process`` finishes the previous frame. Raises BadFrameError; staleness is checked
        when ``process`` finishes it (a reset may come in between). It is no odometry turn of
        ``model_lock.FOREGROUND``: a loop candidate's SuperGlue may run beside it (another
        model, and in the node another core), as odometry's own SuperGlue does."""
        return self._extract(frame, self._checked_stamp(frame))

    def _checked_stamp(self, frame: Frame) -> int:
        try:
            return int(frame.stamp_ns)
        except (TypeError, ValueError):
            self._count_stat("frames_bad")
            raise BadFrameError(f"stamp_ns must be an integer, got {frame.stamp_ns!r}") from None

    def _count_stat(self, name: str) -> None:
        with self._state_lock:
            self.stats[name] += 1

    def _check_stale(self, stamp: int) -> None:
        with self._state_lock:
            last_stamp = self._last_stamp_ns
        if last_stamp is not None and stamp <= last_stamp:
            self._count_stat("frames_stale")
            what = "duplicate" if stamp == last_stamp else "out-of-order"
            raise StaleFrameError(
                f"{what} stamp {stamp} ns (last accepted {last_stamp} ns); frame skipped"
            )

    def _extract(self, frame: Frame, stamp: int) -> ExtractedFrame:
        t_start = time.perf_counter()
        timings: dict[str, float] = {}
        warnings: list[str] = []
        try:
            gray = self._check_image(frame.image)
        except BadFrameError:
            self._count_stat("frames_bad")
            raise
        camera = frame.camera
        if camera is None and frame.K is not None:
            reason = validate_intrinsics(frame.K)
            if reason is not None:
                warnings.append(f"intrinsics ignored: {reason}")
            else:
                camera = CameraModel.pinhole(frame.K)
        h, w = gray.shape
        if camera is not None and any(camera.image_size) and tuple(camera.image_size) != (w, h):
            warnings.append(
                f"camera model ignored: calibrated for {camera.image_size[0]}x"
                f"{camera.image_size[1]}, image is {w}x{h}"
            )
            camera = None
        ww, wh = self.working_size(w, h)
        sx, sy = ww / w, wh / h
        work = (
            gray if (ww, wh) == (w, h) else cv2.resize(gray, (ww, wh), interpolation=cv2.INTER_AREA)
        )
        timings["preprocess"] = time.perf_counter() - t_start
        t0 = time.perf_counter()
        with self._extractor_lock.hold():
            feats_work = self.extractor.extract(work)
        feats = self._to_original(feats_work, sx, sy, (w, h))
        timings["extract"] = time.perf_counter() - t0
        return ExtractedFrame(
            frame, stamp, gray, work, camera, (ww, wh), (sx, sy), feats, timings, warnings
        )

    def _finish(self, extracted: ExtractedFrame, defer_loop: bool) -> FrameResult:
        t_start = time.perf_counter()
        frame, stamp, gray, work = (
            extracted.frame,
            extracted.stamp_ns,
            extracted.gray,
            extracted.work,
        )
        camera, feats = extracted.camera, extracted.features
        (ww, wh), (sx, sy) = extracted.working_size, extracted.scale
        h, w = gray.shape
        K = None if camera is None else camera.K
        timings = dict(extracted.timings_s)
        warnings = list(extracted.warnings)
        self._check_stale(stamp)

        with self._state_lock:
            frame_index = self._frame_index
            last_kf_frame = self._last_keyframe_frame_index
            next_id = self._next_keyframe_id
        last_kf = self.cache.latest()
        min_kf_kpts = int(self.conf["min_keyframe_keypoints"])
        if last_kf is None and len(feats.keypoints) < min_kf_kpts:
            self._count_stat("frames_bad")
            raise FeaturelessFrameError(
                f"{len(feats.keypoints)} keypoints < min_keyframe_keypoints {min_kf_kpts} and no "
                "keyframe yet: frame skipped"
            )

        odometry = None
        num_inliers = 0
        if last_kf is not None:
            with self.cache.pinned([last_kf.id]):
                t0 = time.perf_counter()
                with self._matcher_lock.hold():
                    matches = self.matcher.match(feats, last_kf.features)
                timings["match"] = time.perf_counter() - t0
                meta = dict(
                    id=frame_index, stamp_ns=stamp, frame_id=frame.frame_id, is_keyframe=False
                )
                odometry, timings["verify"] = self._correspond(
                    "odometry",
                    feats,
                    last_kf,
                    matches,
                    camera,
                    self.conf["geometric_model"],
                    meta,
                    self.conf,
                    work,
                )
            num_inliers = odometry.num_inliers
            odometry.processing_time_s = (
                timings["preprocess"] + timings["extract"] + timings["match"] + timings["verify"]
            )

        t0 = time.perf_counter()
        decision = self.policy.decide(
            None if last_kf is None else frame_index - last_kf_frame,
            0.0 if last_kf is None else (stamp - last_kf.stamp_ns) * 1e-9,
            num_inliers,
            0 if last_kf is None else len(last_kf.features.keypoints),
        )
        timings["policy"] = time.perf_counter() - t0
        if decision.is_keyframe and len(feats.keypoints) < min_kf_kpts:
            decision = KeyframeDecision(False, "too_few_keypoints")
            warnings.append(
                f"frame {frame_index}: {len(feats.keypoints)} keypoints < "
                f"min_keyframe_keypoints {min_kf_kpts}: not made a keyframe, keyframe "
                f"{last_kf.id} stays the reference"
            )

        keyframe = None
        job: LoopJob | None = None
        loops: list[Correspondence] = []
        candidates: list[tuple[int, float]] = []
        if decision.is_keyframe:
            t0 = time.perf_counter()
            keyframe = Keyframe(
                id=next_id,
                stamp_ns=stamp,
                frame_id=frame.frame_id,
                image_size=(w, h),
                features=feats,
                global_descriptor=self.global_descriptor(feats, work),
                K=K,
                thumbnail=self._thumbnail(gray),
                image=work if self.conf["refine_matches"] != "none" else None,
                frame_index=frame_index,
                camera=camera,
            )
            if odometry is not None:
                odometry.query_id = keyframe.id
                odometry.query_is_keyframe = True
            timings["keyframe"] = time.perf_counter() - t0
            if self.conf["loop_closure"] and self.conf["loop_top_k"] > 0:
                t0 = time.perf_counter()
                job = self._rank_loop_candidates(keyframe)  # pins the candidates
                timings["loop_rank"] = time.perf_counter() - t0

        # Commit: everything above could raise without touching accepted state (but the pins).
        evicted: list[int] = []
        with self._state_lock:
            self._last_stamp_ns = stamp
            self._frame_index = frame_index + 1
            if keyframe is not None:
                try:
                    evicted = self.cache.add(keyframe)
                except Exception:
                    if job is not None:
                        self.cancel_loop_job(job)
                    raise
                if job is not None:
                    job.pinned_ids += self.cache.pin([keyframe.id])
                self._next_keyframe_id = next_id + 1
                self._last_keyframe_frame_index = frame_index
                self.stats["keyframes"] += 1
            self.stats["frames_accepted"] += 1
        if job is not None and not job.candidates:
            self.cancel_loop_job(job)  # nothing to match: no job to schedule
            job = None
        if job is not None and not defer_loop:
            outcome = self.run_loop_job(job)
            loops, candidates = outcome.loop_closures, outcome.candidates
            warnings += outcome.warnings
            timings["loop"] = timings["loop_rank"] + outcome.timings_s["total"]
            job = None
        # the frame's own work: its extraction and this half (not the wait between them)
        timings["total"] = (
            timings["preprocess"] + timings["extract"] + time.perf_counter() - t_start
        )
        return FrameResult(
            frame_index=frame_index,
            is_keyframe=keyframe is not None,
            keyframe=keyframe,
            odometry=odometry,
            loop_closures=loops,
            timings_s=timings,
            query_features=feats,
            stamp_ns=stamp,
            frame_id=frame.frame_id,
            image_size=(w, h),
            working_size=(ww, wh),
            scale=(sx, sy),
            keyframe_reason=decision.reason,
            reference_id=None if last_kf is None else last_kf.id,
            evicted_ids=evicted,
            loop_candidates=candidates,
            warnings=warnings,
            loop_job=job,
        )

    def _rank_loop_candidates(self, kf: Keyframe) -> LoopJob:
        """Rank keyframes with id <= kf.id - loop_min_id_gap by global descriptor, keep the top-k
        above loop_min_similarity and pin them (cheap: no model call)."""
        pool = self.cache.older_than(int(self.conf["loop_min_id_gap"]), ref_id=kf.id)
        ranked = (
            rank_by_similarity(
                kf.global_descriptor,
                [k.global_descriptor for k in pool],
                int(self.conf["loop_top_k"]),
            )
            if pool
            else []
        )
        ranked = [(pool[i], s) for i, s in ranked if s >= self.conf["loop_min_similarity"]]
        pinned = self.cache.pin([k.id for k, _ in ranked])
        return LoopJob(kf, ranked, self.cache, pinned, created_s=time.monotonic())

    def cancel_loop_job(self, job: LoopJob) -> None:
        """Release a job that will not run (dropped from a full queue); idempotent."""
        if not job.done:
            job.done = True
            job.cache.unpin(job.pinned_ids)

    def run_loop_job(
        self, job: LoopJob, background: bool = False, behind: Callable[[], bool] | None = None
    ) -> LoopOutcome:
        """Match the job's keyframe against its ranked candidates, verify, keep those with
        >= min_loop_inliers inliers; then release the job's pins.
        background (the node's loop worker): take the CPU in turns with odometry
        (``FOREGROUND.background``), one candidate per turn, so that a frame waits for one
        pair at most (three single SuperGlue calls measured as fast as one batch of three on 2
        CPU cores); otherwise one batched call.
        behind() (the node: more loop jobs are queued) makes a turn that was claimed (no idle
        moment within LOOP_MAX_DEFER_S) take all remaining candidates: at 30 Hz a deferral and
        a frame per candidate let the loop worker fall behind (jobs queued 0.3-0.5 s, closures
        1.3-1.7 s after their keyframe), while at 5 Hz one frame delayed by a whole job costs
        answered frames.
        Never raises for a matcher error: it is counted and returned in ``warnings``."""
        t_start = time.perf_counter()
        conf = self.conf  # one snapshot: update_conf replaces the dict, never mutates it
        kf = job.keyframe
        timings = dict(queued=time.monotonic() - job.created_s, match=0.0, verify=0.0)
        warnings: list[str] = []
        loops: list[Correspondence] = []
        if job.done:
            timings["total"] = time.perf_counter() - t_start
            return LoopOutcome(
                kf.id,
                [],
                [],
                timings,
                [f"loop job of keyframe {kf.id} already ran or was cancelled: skipped"],
            )
        try:
            if job.candidates:
                try:
                    corrs = self._match_and_verify(
                        kf, [k for k, _ in job.candidates], conf, background, timings, behind
                    )
                except Exception as err:  # a loop failure must not cost anything else
                    with self._state_lock:
                        self.stats["loop_failures"] += 1
                    warnings.append(f"loop closure failed: {type(err).__name__}: {err}")
                    corrs = []
                for (_, sim), corr in zip(job.candidates, corrs):
                    corr.similarity = sim
                    if corr.num_inliers >= conf["min_loop_inliers"]:
                        loops.append(corr)
        finally:
            self.cancel_loop_job(job)
        with self._state_lock:
            self.stats["loop_closures"] += len(loops)
        timings["total"] = time.perf_counter() - t_start
        return LoopOutcome(kf.id, loops, [(k.id, s) for k, s in job.candidates], timings, warnings)

    def _match_and_verify(
        self,
        query: Keyframe,
        refs: list[Keyframe],
        conf: dict,
        background: bool = False,
        timings: dict | None = None,
        behind: Callable[[], bool] | None = None,
    ) -> list[Correspondence]:
        """``match_many`` of a keyframe against keyframes (background: in turns with odometry,
        see ``run_loop_job``), then verification."""
        with self.cache.pinned([r.id for r in refs]):
            t0 = time.perf_counter()
            if background:
                all_matches = []
                while len(all_matches) < len(refs):
                    with FOREGROUND.background(LOOP_MAX_DEFER_S) as idle:
                        catch_up = not idle and behind is not None and behind()
                        todo = refs[len(all_matches) :][: None if catch_up else 1]
                        with self._matcher_lock.hold(background=True):
                            # one pair per call even when catching up: a batch of 2 or 3
                            # was at most 10 % faster, but each new batch size compiles
                            # another static shape (130-180 ms, 30-37 MiB each)
                            for ref in todo:
                                all_matches += self.matcher.match_many(
                                    query.features, [ref.features]
                                )
            else:
                with self._matcher_lock.hold():
                    all_matches = self.matcher.match_many(
                        query.features, [r.features for r in refs]
                    )
            t_match = time.perf_counter() - t0
            out = []
            meta = dict(
                id=query.id, stamp_ns=query.stamp_ns, frame_id=query.frame_id, is_keyframe=True
            )
            t_verify_all = 0.0
            for ref, matches in zip(refs, all_matches):
                corr, t_verify = self._correspond(
                    "loop_closure",
                    query.features,
                    ref,
                    matches,
                    _keyframe_camera(query),
                    conf["loop_geometric_model"],
                    meta,
                    conf,
                    query.image,
                )
                corr.processing_time_s = t_match / len(refs) + t_verify
                t_verify_all += t_verify
                out.append(corr)
        if timings is not None:
            timings["match"] += t_match
            timings["verify"] += t_verify_all
        return out

    def verify_loop(
        self, query_id: int, candidate_ids: list[int], candidate_scores: list[float] | None = None
    ) -> list[LoopVerification]:
        """Match keyframe ``query_id`` against ``candidate_ids`` (one batched matcher call) and
        verify geometrically. One result per candidate, in request order; never raises.

        Only eligible candidates are matched: known, still cached, not the query itself
        ('self_loop') and at least loop_min_id_gap ids away from it ('too_close'), as internal
        loop closure requires. At most max_verify_candidates distinct ones are matched: the
        first ones, or the highest ``candidate_scores`` (place-recognition similarity, one per
        candidate) when given; the others get 'too_many_candidates'."""
        query_id = int(query_id)
        candidate_ids = [int(c) for c in candidate_ids]
        if candidate_scores is not None and len(candidate_scores) != len(candidate_ids):
            raise ValueError(
                f"{len(candidate_scores)} candidate_scores for {len(candidate_ids)} candidate_ids"
            )
        conf = self.conf  # one snapshot: update_conf replaces the dict, never mutates it
        gap = int(conf["loop_min_id_gap"])
        limit = int(conf["max_verify_candidates"])
        with self.cache.pinned([query_id, *candidate_ids]):
            query = self.cache.get(query_id)
            if query is None:
                if self.cache.was_evicted(query_id):
                    status, msg = "evicted", f"query keyframe {query_id} was evicted from the cache"
                else:
                    status, msg = "unknown_query", f"query keyframe {query_id} is unknown"
                return [
                    LoopVerification(c, status, None, msg, query_missing=True)
                    for c in candidate_ids
                ]
            results: list[LoopVerification | None] = [None] * len(candidate_ids)
            eligible: dict[int, Keyframe] = {}
            for i, cid in enumerate(candidate_ids):
                cand = self.cache.get(cid)
                if cid == query_id:
                    results[i] = LoopVerification(
                        cid, "self_loop", None, "candidate is the query keyframe itself"
                    )
                elif abs(cid - query_id) < gap:
                    results[i] = LoopVerification(
                        cid,
                        "too_close",
                        None,
                        f"candidate is {abs(cid - query_id)} keyframe "
                        f"id(s) from the query, fewer than loop_min_id_gap {gap}",
                    )
                elif cand is None:
                    if self.cache.was_evicted(cid):
                        results[i] = LoopVerification(
                            cid,
                            "evicted",
                            None,
                            f"candidate keyframe {cid} was evicted from the cache",
                        )
                    else:
                        results[i] = LoopVerification(
                            cid, "unknown_candidate", None, f"candidate keyframe {cid} is unknown"
                        )
                else:
                    eligible[cid] = cand
            order = list(eligible)
            if candidate_scores is not None:
                best = {}
                for cid, score in zip(candidate_ids, candidate_scores):
                    best[cid] = max(float(score), best.get(cid, float("-inf")))
                order.sort(key=lambda c: -best[c])  # stable: ties keep request order
            todo = {cid: eligible[cid] for cid in order[:limit]}
            for i, cid in enumerate(candidate_ids):
                if results[i] is None and cid not in todo:
                    results[i] = LoopVerification(
                        cid,
                        "too_many_candidates",
                        None,
                        f"not matched: more than "
                        f"max_verify_candidates={limit} eligible candidates in the request",
                    )
            if todo:
                try:
                    corrs = dict(
                        zip(todo, self._match_and_verify(query, list(todo.values()), conf))
                    )
                except Exception as err:
                    corrs = {}
                    for i, cid in enumerate(candidate_ids):
                        if results[i] is None:
                            results[i] = LoopVerification(
                                cid, "failed", None, f"matching failed: {type(err).__name__}: {err}"
                            )
                min_inl = int(conf["min_loop_inliers"])
                for i, cid in enumerate(candidate_ids):
                    if results[i] is None:
                        corr = corrs[cid]
                        ok = corr.num_inliers >= min_inl
                        results[i] = LoopVerification(
                            cid,
                            "verified" if ok else "rejected",
                            corr,
                            f"{corr.num_inliers} inliers {'>=' if ok else '<'} min_loop_inliers {min_inl}",
                        )
            return results

    def reset(self) -> int:
        """Forget every keyframe and the last stamp (bag restart, sim-time reset, another
        camera). Keyframe ids keep increasing, so ids from before the reset stay unambiguous
        (they answer 'evicted'). Waits for a running ``process``. Returns the keyframes dropped."""
        with self._process_lock, self._state_lock:
            forgotten = self.cache.clear()
            self._last_stamp_ns = None
            self._frame_index = 0
            self._last_keyframe_frame_index = None
            return len(forgotten)
