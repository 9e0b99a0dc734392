"""Random homographies, point/image warping and photometric augmentation (superglue_ros.homography)."""

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from superglue_ros.homography import (
    corner_bounds,
    local_rotation_scale,
    photometric_augment,
    sample_homography,
    valid_mask,
    warp_image,
    warp_points,
)


def test_warp_points_matches_opencv():
    rng = np.random.default_rng(0)
    H = sample_homography(rng, 640, 480)
    pts = rng.uniform(0, 640, size=(50, 2))
    ref = cv2.perspectiveTransform(pts[None].astype(np.float64), H)[0]
    np.testing.assert_allclose(warp_points(H, pts), ref, rtol=0, atol=1e-9)
    assert warp_points(H, pts.astype(np.float32)).dtype == np.float32
    assert warp_points(H, np.zeros((0, 2))).shape == (0, 2)


def test_warp_points_known_homography_and_inverse():
    H = np.array([[2.0, 0, 10], [0, 3.0, -5], [0, 0, 1]])
    np.testing.assert_allclose(warp_points(H, np.array([[1.0, 2.0], [0, 0]])), [[12, 1], [10, -5]])
    rng = np.random.default_rng(1)
    H = sample_homography(rng, 320, 240)
    pts = rng.uniform(0, 320, size=(20, 2))
    np.testing.assert_allclose(warp_points(np.linalg.inv(H), warp_points(H, pts)), pts, atol=1e-8)


def test_warp_points_rejects_bad_shape():
    with pytest.raises(ValueError, match="shape"):
        warp_points(np.eye(3), np.zeros((4, 3)))


def test_local_rotation_scale_of_a_similarity_and_of_a_perspective_warp():
    """A similarity has its own rotation and scale at every point; for a perspective warp the
    values are those of the Jacobian measured by central differences of warp_points."""
    angle, scale = np.radians(-20.0), 0.8
    c, s = np.cos(angle), np.sin(angle)
    H = np.array([[scale * c, -scale * s, 30.0], [scale * s, scale * c, -12.0], [0, 0, 1]])
    for point in [(0, 0), (319.5, 239.5), (640, 10)]:
        rotation, found_scale = local_rotation_scale(H * 2.5, point)  # H up to scale
        assert rotation == pytest.approx(-20.0, abs=1e-9)
        assert found_scale == pytest.approx(0.8, abs=1e-12)
    H = sample_homography(np.random.default_rng(3), 640, 480)
    point, h = np.array([200.0, 150.0]), 1e-4
    J = np.stack(
        [
            (warp_points(H, (point + d)[None]) - warp_points(H, (point - d)[None]))[0] / (2 * h)
            for d in (np.array([h, 0.0]), np.array([0.0, h]))
        ],
        axis=1,
    )
    rotation, found_scale = local_rotation_scale(H, point)
    assert rotation == pytest.approx(np.degrees(np.arctan2(J[1, 0] - J[0, 1], J[0, 0] + J[1, 1])))
    assert found_scale == pytest.approx(np.sqrt(abs(np.linalg.det(J))), rel=1e-6)
    assert found_scale != pytest.approx(1.0, abs=0.01)  # the draw is a real zoom
    with pytest.raises(ValueError, match="infinity"):
        local_rotation_scale(np.array([[1.0, 0, 0], [0, 1, 0], [1, 0, 0]]), (0, 5))


@pytest.mark.parametrize("size", [(640, 480), (320, 240), (481, 321), (240, 320)])
def test_sampled_corners_stay_in_documented_bounds(size):
    w, h = size
    xmin, ymin, xmax, ymax = corner_bounds(w, h)
    corners = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], float)
    rng = np.random.default_rng(42)
    for _ in range(200):
        H = sample_homography(rng, w, h, difficulty=1.0)
        c = warp_points(H, corners)
        assert np.all(c[:, 0] >= xmin - 1e-6) and np.all(c[:, 0] <= xmax + 1e-6)
        assert np.all(c[:, 1] >= ymin - 1e-6) and np.all(c[:, 1] <= ymax + 1e-6)
        assert abs(np.linalg.det(H)) > 1e-3  # non-degenerate
        # the warped quad stays convex (no fold-over)
        e = [c[(i + 1) % 4] - c[i] for i in range(4)]
        cross = [e[i][0] * e[(i + 1) % 4][1] - e[i][1] * e[(i + 1) % 4][0] for i in range(4)]
        assert np.all(np.sign(cross) == np.sign(cross[0]))


def test_sample_homography_seeded_difficulty_zero_is_identity():
    a = sample_homography(np.random.default_rng(7), 640, 480)
    b = sample_homography(np.random.default_rng(7), 640, 480)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, np.eye(3))
    np.testing.assert_allclose(
        sample_homography(np.random.default_rng(7), 640, 480, 0.0), np.eye(3), atol=1e-9
    )
    # harder homographies move corners further on average
    corners = np.array([[0, 0], [639, 0], [639, 479], [0, 479]], float)

    def mean_shift(d):
        rng = np.random.default_rng(3)
        return np.mean(
            [
                np.abs(warp_points(sample_homography(rng, 640, 480, d), corners) - corners).mean()
                for _ in range(100)
            ]
        )

    assert mean_shift(0.3) < mean_shift(1.0)


def test_warp_image_agrees_with_warp_points():
    img = skdata.camera()  # 512x512 uint8
    h, w = img.shape
    H = sample_homography(np.random.default_rng(5), w, h, difficulty=0.5)
    warped = warp_image(img, H, (w, h))
    assert warped.shape == img.shape and warped.dtype == np.uint8
    # a single bright pixel lands where warp_points says
    dot = np.zeros_like(img)
    dot[200, 300] = 255
    wd = warp_image(dot.astype(np.float32), H, (w, h))
    y, x = np.unravel_index(np.argmax(wd), wd.shape)
    p = warp_points(H, np.array([[300.0, 200.0]]))[0]
    assert abs(x - p[0]) <= 1 and abs(y - p[1]) <= 1
    mask = valid_mask(H, (w, h), (w, h))
    assert mask.shape == (h, w) and 0.3 < mask.mean() <= 1.0
    assert mask[int(round(p[1])), int(round(p[0]))]


def test_photometric_augment_seeded_and_bounded():
    img = skdata.astronaut()[..., 0]
    a = photometric_augment(np.random.default_rng(0), img)
    b = photometric_augment(np.random.default_rng(0), img)
    c = photometric_augment(np.random.default_rng(1), img)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.uint8 and a.shape == img.shape
    assert not np.array_equal(a, c) and not np.array_equal(a, img)
    f = photometric_augment(np.random.default_rng(0), img.astype(np.float32) / 255)
    assert f.dtype == np.float32 and f.min() >= 0 and f.max() <= 1
    np.testing.assert_array_equal(photometric_augment(np.random.default_rng(0), img, 0.0), img)
    color = photometric_augment(np.random.default_rng(0), skdata.astronaut())
    assert color.shape == skdata.astronaut().shape
    with pytest.raises(ValueError, match="uint8 or float"):
        photometric_augment(np.random.default_rng(0), img.astype(np.int32))
