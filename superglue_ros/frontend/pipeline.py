"""ROS-free SLAM front-end: frame -> features -> VO vs last keyframe -> keyframe -> loop closure.

The ROS node (``superglue_ros.ros``) is a thin shell around ``FrontEnd``: it converts messages
to ``Frame``s, calls ``process`` on its worker thread, answers ``verify_loop`` from service
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

import cv2
import numpy as np

from ..features import Extractor, Features, Matcher, Matches
from ..geometry import GeometricModel, verify
from .global_descriptor import GlobalDescriptor, rank_by_similarity
from .keyframes import Keyframe, KeyframeCache
from .policy import KeyframePolicy


class FrameRejectedError(ValueError):
    """Base of the errors ``FrontEnd.process`` raises for a frame it refuses; the caller logs
    ``str(err)`` and skips the frame. Nothing already accepted changes."""


class BadFrameError(FrameRejectedError):
    """The image (or its metadata) is unusable: empty, too large, wrong dtype/shape, NaN/inf."""


class StaleFrameError(FrameRejectedError):
    """The frame's stamp is not newer than the last accepted frame's (duplicate or out of order)."""


@dataclass
class Frame:
    """One input image. image: uint8 HxW gray or HxWx3 BGR (HxWx4 BGRA, uint16 and float in
    [0, 1] are also accepted and converted), at its ORIGINAL resolution; K: [3,3] intrinsics in
    original pixels or None."""

    image: np.ndarray
    stamp_ns: int
    frame_id: str = ""
    K: np.ndarray | None = None


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
    query_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [K] into query keypoints
    reference_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # [K] into reference keypoints
    query_is_keyframe: bool = False
    reference_frame_id: str = ""
    query_image_size: tuple[int, int] = (0, 0)  # (w, h) original
    reference_image_size: tuple[int, int] = (0, 0)
    extractor: str = ""
    matcher: str = ""
    similarity: float = float("nan")  # global-descriptor cosine similarity (loop closures)

    @property
    def num_inliers(self) -> int:
        return int(np.count_nonzero(self.inliers))

    def __len__(self) -> int:
        return len(self.query_points)


@dataclass
class FrameResult:
    """What ``process`` produced for one accepted frame."""

    frame_index: int  # index among accepted frames, from 0
    is_keyframe: bool
    keyframe: Keyframe | None  # the new keyframe when is_keyframe
    odometry: Correspondence | None  # vs the previous keyframe; None for the first frame
    loop_closures: list[Correspondence]  # verified (>= min_loop_inliers) loop closures of a new keyframe
    timings_s: dict[str, float]  # per stage: preprocess, extract, match, verify, policy, keyframe, loop, total
    query_features: Features  # the frame's features, keypoints in ORIGINAL pixels
    # extensions
    stamp_ns: int = 0
    frame_id: str = ""
    image_size: tuple[int, int] = (0, 0)  # (w, h) original
    working_size: tuple[int, int] = (0, 0)  # (w, h) the extractor saw
    scale: tuple[float, float] = (1.0, 1.0)  # (sx, sy) = working / original
    keyframe_reason: str = ""  # see policy.KeyframeDecision.reason
    reference_id: int | None = None  # keyframe matched against (None for the first frame)
    evicted_ids: list[int] = field(default_factory=list)  # keyframes evicted by adding this one
    loop_candidates: list[tuple[int, float]] = field(default_factory=list)  # (id, similarity) matched
    warnings: list[str] = field(default_factory=list)  # non-fatal problems (bad K ignored, loop failure)


@dataclass
class LoopVerification:
    """Outcome for one candidate of ``verify_loop``.

    status: 'verified' (>= min_loop_inliers), 'rejected' (matched, too few inliers),
    'unknown_query' / 'unknown_candidate' (id never seen), 'evicted' (query or candidate existed
    but left the cache), 'failed' (not matched: matcher error, or over max_verify_candidates;
    see message). correspondence is set for 'verified' and 'rejected'.
    """

    candidate_id: int
    status: str
    correspondence: Correspondence | None
    message: str = ""


def validate_intrinsics(K) -> str | None:
    """Return why ``K`` is unusable (None when it is a valid 3x3 pinhole matrix)."""
    try:
        K = np.asarray(K, dtype=np.float64)
    except (TypeError, ValueError) as err:
        return f"K is not numeric: {err}"
    if K.shape != (3, 3):
        return f"K must be 3x3, got shape {K.shape}"
    if not np.all(np.isfinite(K)):
        return "K contains NaN or inf"
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        return f"K has non-positive focal length (fx={K[0, 0]}, fy={K[1, 1]})"
    if abs(K[2, 2] - 1.0) > 1e-6 or np.any(K[2, :2] != 0):
        return "K's last row must be [0, 0, 1]"
    return None


class FrontEnd:
    """Visual-odometry and loop-closure correspondences over a stream of frames of ONE camera.

    Thread safety: ``process`` calls are serialised (one worker); ``verify_loop`` may run
    concurrently from other threads. Extractor/matcher calls are serialised by one compute lock
    (the models are not assumed re-entrant), keyframes used by a request are pinned in the cache.

    Parameters (``default_conf``; flat so that each is one ROS parameter):
      working_width, working_height (int, 0..8192, default 640x480): resolution the extractor
          sees; 0 for either = no resize.
      resize_mode ('fit' | 'stretch', default 'fit'): 'fit' keeps the aspect ratio and fits the
          image inside working_width x working_height (never upscales); 'stretch' resizes to
          exactly that size (sx != sy allowed; geometry still runs in original pixels).
      max_image_pixels (int, default 4096*4096): larger images are rejected (BadFrameError).
      min_image_side (int, default 16): smaller images are rejected.
      geometric_model ('auto' | 'essential' | 'fundamental' | 'homography', default 'auto'):
          'auto' = essential when both frames have K, else fundamental.
      ransac_threshold_px (float > 0, default 2.0): inlier threshold in ORIGINAL pixels.
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
          candidates per request; the rest get status 'failed'.
      global_descriptor ('lsh-bow' | 'thumbnail' | 'both', default 'lsh-bow'): see
          ``global_descriptor.py``.
      thumbnail_width (int >= 0, default 160): width of the gray debug thumbnail kept per
          keyframe (0 = none).
    """

    default_conf = dict(
        working_width=640,
        working_height=480,
        resize_mode="fit",
        max_image_pixels=4096 * 4096,
        min_image_side=16,
        geometric_model="auto",
        ransac_threshold_px=2.0,
        **KeyframePolicy.default_conf,
        max_keyframes=200,
        max_cache_bytes=256 * 1024 * 1024,
        loop_closure=True,
        loop_min_id_gap=5,
        loop_top_k=3,
        loop_min_similarity=0.0,
        min_loop_inliers=40,
        loop_geometric_model="auto",
        max_verify_candidates=16,
        global_descriptor="lsh-bow",
        thumbnail_width=160,
    )

    def __init__(self, extractor: Extractor, matcher: Matcher, conf: dict | None = None):
        raise NotImplementedError  # filled in below the skeleton commit

    def process(self, frame: Frame) -> FrameResult:
        """Process one frame: extract, match vs the last keyframe, verify, maybe add a keyframe
        and run internal loop closure. Raises BadFrameError / StaleFrameError (both
        FrameRejectedError, a ValueError) for refused frames; state is then unchanged."""
        raise NotImplementedError

    def verify_loop(self, query_id: int, candidate_ids: list[int]) -> list[LoopVerification]:
        """Match keyframe ``query_id`` against ``candidate_ids`` (one batched matcher call) and
        verify geometrically. One result per candidate, in request order; never raises for
        unknown/evicted ids."""
        raise NotImplementedError
