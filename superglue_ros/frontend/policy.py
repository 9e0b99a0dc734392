"""Keyframe policy: when does the current frame become the new VO reference?

ORB-SLAM style: a new keyframe is needed when tracking against the last keyframe weakens
(verified inliers below an absolute minimum, or below a fraction of that keyframe's keypoints),
or when the last keyframe is simply old (frames or seconds). A minimum frame gap keeps the
cache from filling with near-duplicates while tracking is lost. The first frame is a keyframe.
Pure logic, no state beyond its configuration, so it is trivially testable.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..options import check_options


@dataclass
class KeyframeDecision:
    is_keyframe: bool
    reason: str  # 'first', 'min_inliers', 'inlier_ratio', 'max_frames', 'max_interval', 'min_gap', 'tracking'


class KeyframePolicy:
    """Decides keyframes from tracking quality and age.

    Parameters (``default_conf``):
      min_inliers (int, >= 0, default 50): new keyframe when verified inliers vs the last
          keyframe drop below this.
      min_inlier_ratio (float, [0, 1], default 0.25): new keyframe when inliers drop below this
          fraction of the last keyframe's keypoints.
      max_frames (int, >= 0, default 30; 0 disables): new keyframe after this many accepted
          frames since the last keyframe.
      max_interval_s (float, >= 0, default 2.0; 0 disables): new keyframe when the frame is this
          many seconds (by stamp) after the last keyframe.
      min_gap_frames (int, >= 1, default 2): never a new keyframe fewer than this many accepted
          frames after the last one (1 = consecutive frames allowed).
    """

    default_conf = dict(
        min_inliers=50,
        min_inlier_ratio=0.25,
        max_frames=30,
        max_interval_s=2.0,
        min_gap_frames=2,
    )

    def __init__(self, conf: dict | None = None):
        check_options("keyframe policy", conf or {}, self.default_conf)
        self.conf = {**self.default_conf, **(conf or {})}
        c = self.conf
        if c["min_inliers"] < 0:
            raise ValueError(f"min_inliers must be >= 0, got {c['min_inliers']}")
        if not 0.0 <= c["min_inlier_ratio"] <= 1.0:
            raise ValueError(f"min_inlier_ratio must be in [0, 1], got {c['min_inlier_ratio']}")
        if c["max_frames"] < 0 or c["max_interval_s"] < 0:
            raise ValueError("max_frames and max_interval_s must be >= 0 (0 disables)")
        if c["min_gap_frames"] < 1:
            raise ValueError(f"min_gap_frames must be >= 1, got {c['min_gap_frames']}")

    def decide(self, frames_since_keyframe: int | None, seconds_since_keyframe: float,
               num_inliers: int, num_keyframe_keypoints: int) -> KeyframeDecision:
        """Decide for one accepted frame.

        frames_since_keyframe: accepted frames between the last keyframe and this frame
            (1 = the next frame), or None when there is no keyframe yet.
        seconds_since_keyframe: stamp difference to the last keyframe [s].
        num_inliers: geometrically verified matches vs the last keyframe.
        num_keyframe_keypoints: keypoints of the last keyframe.
        """
        c = self.conf
        if frames_since_keyframe is None:
            return KeyframeDecision(True, "first")
        if frames_since_keyframe < c["min_gap_frames"]:
            return KeyframeDecision(False, "min_gap")
        if num_inliers < c["min_inliers"]:
            return KeyframeDecision(True, "min_inliers")
        if num_inliers < c["min_inlier_ratio"] * num_keyframe_keypoints:
            return KeyframeDecision(True, "inlier_ratio")
        if c["max_frames"] and frames_since_keyframe >= c["max_frames"]:
            return KeyframeDecision(True, "max_frames")
        if c["max_interval_s"] and seconds_since_keyframe >= c["max_interval_s"]:
            return KeyframeDecision(True, "max_interval")
        return KeyframeDecision(False, "tracking")
