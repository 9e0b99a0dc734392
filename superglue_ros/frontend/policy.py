"""Keyframe policy: when does the current frame become the new VO reference?

ORB-SLAM style: a new keyframe is needed when tracking against the last keyframe weakens
(verified inliers below an absolute minimum, or below a fraction of that keyframe's keypoints),
or when the last keyframe is simply old (frames or seconds). A minimum frame gap keeps the
cache from filling with near-duplicates while tracking is lost. The first frame is a keyframe.
Pure logic, no state beyond its configuration, so it is trivially testable.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..options import Option, defaults, validate


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

    options = (
        Option(
            "min_inliers",
            50,
            "keyframe policy: new keyframe when verified inliers vs the last "
            "keyframe fall below this",
            range=(0, 100000, 1),
        ),
        Option(
            "min_inlier_ratio",
            0.25,
            "keyframe policy: new keyframe when inliers fall below "
            "this fraction of the last keyframe's keypoints",
            range=(0.0, 1.0),
        ),
        Option(
            "max_frames",
            30,
            "keyframe policy: new keyframe after this many processed frames (0 disables)",
            range=(0, 100000, 1),
        ),
        Option(
            "max_interval_s",
            2.0,
            "keyframe policy: new keyframe this many seconds (by stamp) "
            "after the last (0 disables)",
            range=(0.0, 3600.0),
        ),
        Option(
            "min_gap_frames",
            2,
            "keyframe policy: never a new keyframe fewer than this many "
            "processed frames after the last one",
            range=(1, 100000, 1),
        ),
    )
    default_conf = defaults(options)

    def __init__(self, conf: dict | None = None):
        self.conf = validate("keyframe policy", self.options, conf)

    def decide(
        self,
        frames_since_keyframe: int | None,
        seconds_since_keyframe: float,
        num_inliers: int,
        num_keyframe_keypoints: int,
    ) -> KeyframeDecision:
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
