"""Sub-pixel refinement of matched points (refinement.py) on a real photo shifted by an exact,
known sub-pixel translation: the refined points land on the truth, far moves are refused, and
points in original pixels are refined on working-size images and mapped back."""

import cv2
import numpy as np
import pytest
from skimage import data

from superglue_ros.refinement import refine_matches, refine_original_points

SHIFT = np.array([2.3, -1.7])  # image1 = image0 moved by this [px]


def shifted_pair(image, shift=SHIFT):
    """(image0, image1 = image0 translated by shift with bilinear resampling)."""
    M = np.array([[1, 0, shift[0]], [0, 1, shift[1]]], np.float64)
    moved = cv2.warpAffine(image, M, image.shape[::-1], flags=cv2.INTER_LINEAR)
    return image, moved


def corners(image, count=200):
    """Well-textured points away from the border (where the shifted image has no data)."""
    pts = cv2.goodFeaturesToTrack(image, count, 0.01, 10).reshape(-1, 2).astype(np.float64)
    h, w = image.shape
    keep = (pts[:, 0] > 20) & (pts[:, 0] < w - 20) & (pts[:, 1] > 20) & (pts[:, 1] < h - 20)
    return pts[keep]


@pytest.fixture(scope="module")
def photo():
    return data.camera()  # 512x512 uint8 gray


def test_refined_points_land_on_the_exact_shift(photo):
    image0, image1 = shifted_pair(photo)
    pts0 = corners(image0)
    truth = pts0 + SHIFT
    detected = np.round(truth)  # integer detections: up to 0.7 px off, as a keypoint grid
    refined, moved = refine_matches(image0, image1, pts0, detected)
    before = np.linalg.norm(detected - truth, axis=1)
    after = np.linalg.norm(refined - truth, axis=1)
    assert len(pts0) > 100
    assert moved.mean() > 0.95
    assert np.median(before) > 0.3
    assert np.median(after) < 0.05
    assert np.percentile(after, 90) < 0.15


def test_a_point_that_would_move_farther_than_max_shift_keeps_its_keypoint(photo):
    image0, image1 = shifted_pair(photo)
    pts0 = corners(image0)
    far = pts0 + SHIFT + [5.0, 0.0]  # 5 px off: reaching the truth needs a 5 px move
    refined, moved = refine_matches(image0, image1, pts0, far, window_px=21, max_shift_px=3.0)
    shift = np.linalg.norm(refined - far, axis=1)
    assert np.all(shift[moved] <= 3.0)
    np.testing.assert_array_equal(refined[~moved], far[~moved])
    assert moved.mean() < 0.5  # most found the truth 5 px away and were refused
    # with a larger bound the same alignment is accepted and lands on the truth
    refined, moved = refine_matches(image0, image1, pts0, far, window_px=21, max_shift_px=6.0)
    on_truth = np.linalg.norm(refined - (pts0 + SHIFT), axis=1) < 0.1
    assert on_truth.mean() > 0.5  # 67% measured: from 5 px off, no pyramid, some fail


def test_original_pixels_are_refined_on_working_images_and_mapped_back(photo):
    image0, image1 = shifted_pair(photo)
    size = (photo.shape[1], photo.shape[0])
    work0, work1 = (
        cv2.resize(i, (384, 384), interpolation=cv2.INTER_AREA) for i in (image0, image1)
    )
    pts0 = corners(image0)
    truth = pts0 + SHIFT
    detected = np.round(truth)
    refined = refine_original_points(work0, work1, pts0, detected, size, size)
    after = np.linalg.norm(refined - truth, axis=1)
    assert np.median(after) < 0.1  # original pixels, aligned at 3/4 scale
    # without refinement the mapping is the identity (round trip through working pixels)
    same = refine_original_points(work0, work1, pts0, detected, size, size, max_shift_px=0.0)
    np.testing.assert_allclose(same, detected, atol=1e-9)


def test_bad_input_is_refused_and_empty_input_is_fine(photo):
    with pytest.raises(ValueError, match="reference points"):
        refine_matches(photo, photo, np.zeros((3, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="window_px"):
        refine_matches(photo, photo, np.zeros((1, 2)), np.zeros((1, 2)), window_px=1)
    refined, moved = refine_matches(photo, photo, np.zeros((0, 2)), np.zeros((0, 2)))
    assert refined.shape == (0, 2) and moved.shape == (0,)
