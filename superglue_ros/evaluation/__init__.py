"""Evaluation toolkit: synthetic homography pairs, calibrated pose pairs and real camera motion
(KITTI, EuRoC stereo, photo SfM; real_pairs also serves training), exact metrics.

Library use (e.g. periodic validation during training):
    pairs = make_homography_pairs(image_dir, num_pairs=100, seed=0)
    summary = evaluate_homography(extractor, matcher, pairs)
"""

from .homography_eval import evaluate_homography  # noqa: F401
from .pose_eval import evaluate_pose, make_middlebury_pairs, read_pose_pairs  # noqa: F401
from .real_eval import evaluate_real, load_real_set  # noqa: F401
from .real_pairs import RealPair, euroc_stereo_pairs, kitti_pairs, photo_pairs  # noqa: F401
from .synthetic import HomographyPair, make_homography_pairs  # noqa: F401
