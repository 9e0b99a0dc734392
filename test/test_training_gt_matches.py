"""Ground-truth assignment for SuperGlue training and its negative log-likelihood."""

import math

import numpy as np
import torch

from superglue_ros.training.gt_matches import assignment_nll, ground_truth_assignment

H_SHIFT = np.array([[1.0, 0, 10], [0, 1.0, 5], [0, 0, 1]])  # image1 = image0 moved by (10, 5)


def test_known_translation_matches_dustbins_and_ignored():
    kpts0 = np.array([[10, 10], [50, 50], [100, 100], [30, 80]], float)
    # warped kpts0: (20,15) (60,55) (110,105) (40,85)
    kpts1 = np.array(
        [
            [20, 15],  # exact partner of 0 -> match
            [61, 55],  # 1 px from warped 1 -> match
            [114, 105],  # 4 px from warped 2 -> ambiguous (3 < d <= 5): ignored
            [200, 200],
        ],  # far from everything -> dustbin
        float,
    )
    gt = ground_truth_assignment(kpts0, kpts1, H_SHIFT)
    np.testing.assert_array_equal(gt["matches0"], [0, 1, -1, -1])
    np.testing.assert_array_equal(gt["matches1"], [0, 1, -1, -1])
    np.testing.assert_array_equal(gt["unmatched0"], [False, False, False, True])
    np.testing.assert_array_equal(gt["unmatched1"], [False, False, False, True])


def test_only_mutual_nearest_neighbours_match():
    kpts0 = np.array([[10, 10], [12, 10]], float)  # both warp near kpts1[0] = (21, 15)
    kpts1 = np.array([[21, 15]], float)
    gt = ground_truth_assignment(kpts0, kpts1, H_SHIFT)
    # warped: (20,15) at 1 px and (22,15) at 1 px: tie -> argmin keeps the first; the other is
    # within 5 px so it is ignored, not a dustbin
    np.testing.assert_array_equal(gt["matches0"], [0, -1])
    np.testing.assert_array_equal(gt["unmatched0"], [False, False])
    np.testing.assert_array_equal(gt["matches1"], [0])
    kpts0 = np.array([[10, 10], [13.5, 10]], float)  # 0 is nearer: matches; 1 at 2.5 px ignored
    gt = ground_truth_assignment(kpts0, np.array([[20.5, 15]]), H_SHIFT)
    np.testing.assert_array_equal(gt["matches0"], [0, -1])


def test_outside_image_and_empty_sets():
    H = np.array([[1.0, 0, 1000], [0, 1, 0], [0, 0, 1]])  # everything leaves the image
    gt = ground_truth_assignment(np.array([[5.0, 5.0]]), np.array([[5.0, 5.0]]), H)
    assert gt["matches0"].tolist() == [-1] and gt["unmatched0"].tolist() == [True]
    gt = ground_truth_assignment(np.zeros((0, 2)), np.array([[5.0, 5.0]]), H)
    assert gt["matches0"].shape == (0,) and gt["unmatched1"].tolist() == [True]


def test_assignment_nll_value():
    # 2x2 keypoints + dustbins; GT: 0<->1 match, keypoint0 #1 -> dustbin, keypoint1 #0 ignored
    la = torch.log(torch.tensor([[[0.1, 0.6, 0.3], [0.2, 0.1, 0.7], [0.5, 0.4, 0.0001]]]))
    loss = assignment_nll(
        la, torch.tensor([[1, -1]]), torch.tensor([[False, True]]), torch.tensor([[False, False]])
    )
    expected = -(math.log(0.6) + math.log(0.7)) / 2
    assert abs(float(loss) - expected) < 1e-6
    # pairs without any supervision don't count (no nan)
    la2 = torch.cat([la, la])
    loss2 = assignment_nll(
        la2,
        torch.tensor([[1, -1], [-1, -1]]),
        torch.tensor([[False, True], [False, False]]),
        torch.tensor([[False, False], [False, False]]),
    )
    assert abs(float(loss2) - expected) < 1e-6
