"""geometry.verify recovers known essential/fundamental/homography models despite outliers."""

import cv2
import numpy as np
import pytest

from superglue_ros import geometry
from superglue_ros.evaluation.metrics import angle_error_mat, angle_error_vec
from superglue_ros.evaluation.robust_estimators import K, synthetic_homography, synthetic_two_view


def sampson_distance(F, pts0, pts1):
    x0 = np.c_[pts0, np.ones(len(pts0))]
    x1 = np.c_[pts1, np.ones(len(pts1))]
    Fx0, Ftx1 = x0 @ F.T, x1 @ F
    num = np.sum(x1 * Fx0, 1) ** 2
    return np.sqrt(num / (Fx0[:, 0] ** 2 + Fx0[:, 1] ** 2 + Ftx1[:, 0] ** 2 + Ftx1[:, 1] ** 2))


@pytest.mark.parametrize("estimator", [None, "poselib", "magsac", "accurate"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_essential_recovers_pose_with_outliers(seed, estimator):
    rng = np.random.default_rng(seed)
    pts0, pts1, is_inlier, R, t = synthetic_two_view(rng, 400, outlier_ratio=0.4, noise_px=0.5)
    model = geometry.verify(pts0, pts1, K, K, estimator=estimator)
    assert model.kind == "essential"
    assert angle_error_mat(model.R, R) < 1.0
    assert angle_error_vec(model.t, t) < 3.0
    assert abs(np.linalg.norm(model.t) - 1) < 1e-6
    # inlier mask: nearly all true inliers kept, nearly all outliers rejected
    assert model.inliers[is_inlier].mean() > 0.9
    assert model.inliers[~is_inlier].mean() < 0.05
    # E is consistent with the recovered pose: E ~ [t]x R up to scale and sign
    tx = np.array(
        [[0, -model.t[2], model.t[1]], [model.t[2], 0, -model.t[0]], [-model.t[1], model.t[0], 0]]
    )
    E_pose = tx @ model.R
    E_pose /= np.linalg.norm(E_pose)
    E = model.matrix / np.linalg.norm(model.matrix)
    assert min(np.abs(E - E_pose).max(), np.abs(E + E_pose).max()) < 1e-6


def test_essential_with_different_intrinsics():
    rng = np.random.default_rng(5)
    pts0, pts1, is_inlier, R, t = synthetic_two_view(rng, 300, outlier_ratio=0.3, noise_px=0.3)
    K1 = np.array([[800.0, 0, 300], [0, 780.0, 200], [0, 0, 1]])
    # re-express image-1 points for camera K1 (same normalised coordinates)
    normalised = geometry.normalize_points(pts1, K)
    pts1_k1 = np.c_[normalised, np.ones(len(normalised))] @ K1[:2].T
    model = geometry.verify(pts0, pts1_k1, K, K1)
    assert model.kind == "essential"
    assert angle_error_mat(model.R, R) < 1.0
    assert angle_error_vec(model.t, t) < 3.0
    assert model.inliers[is_inlier].mean() > 0.9


def test_fundamental_fits_inliers():
    rng = np.random.default_rng(3)
    pts0, pts1, is_inlier, R, t = synthetic_two_view(rng, 400, outlier_ratio=0.4, noise_px=0.5)
    model = geometry.verify(pts0, pts1)  # no intrinsics -> fundamental
    assert model.kind == "fundamental" and model.R is None
    distance = sampson_distance(model.matrix, pts0[is_inlier], pts1[is_inlier])
    assert np.median(distance) < 1.0
    assert model.inliers[is_inlier].mean() > 0.85
    assert model.inliers[~is_inlier].mean() < 0.1
    # the true F = K^-T [t]x R K^-1 agrees with the estimate on noise-free geometry
    tx = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])
    F_true = np.linalg.inv(K).T @ tx @ R @ np.linalg.inv(K)
    assert np.median(sampson_distance(F_true, pts0[is_inlier], pts1[is_inlier])) < 1.0


@pytest.mark.parametrize("estimator", [None, "poselib", "accurate"])
@pytest.mark.parametrize("seed", [0, 1])
def test_homography_recovers_corners(seed, estimator):
    rng = np.random.default_rng(seed)
    pts0, pts1, is_inlier, H = synthetic_homography(rng, 300, outlier_ratio=0.5, noise_px=0.5)
    model = geometry.verify(pts0, pts1, model="homography", estimator=estimator)
    assert model.kind == "homography"
    corners = np.array([[0, 0], [639, 0], [639, 479], [0, 479]], np.float64)
    est = cv2.perspectiveTransform(corners[None], model.matrix)[0]
    true = cv2.perspectiveTransform(corners[None], H)[0]
    assert np.linalg.norm(est - true, axis=1).mean() < 1.0
    assert model.inliers[is_inlier].mean() > 0.9
    assert model.inliers[~is_inlier].mean() < 0.05


def test_noise_free_homography_is_exact():
    rng = np.random.default_rng(7)
    pts0, pts1, is_inlier, H = synthetic_homography(rng, 100, outlier_ratio=0.0, noise_px=0.0)
    model = geometry.verify(pts0, pts1, model="homography", estimator="ransac")
    np.testing.assert_allclose(model.matrix / model.matrix[2, 2], H / H[2, 2], atol=1e-6)
    assert model.inliers.all()


@pytest.mark.parametrize("kind,n", [("homography", 3), ("fundamental", 7), ("essential", 4)])
def test_too_few_points_give_none(kind, n):
    pts = np.random.default_rng(0).uniform(0, 100, (n, 2))
    model = geometry.verify(pts, pts + 1, K, K, model=kind)
    assert model.kind == "none"
    assert model.inliers.shape == (n,) and not model.inliers.any()
    assert model.R is None and model.t is None


def test_bad_input_raises_clear_errors():
    pts = np.zeros((10, 2))
    with pytest.raises(ValueError, match="pts0 must have shape"):
        geometry.verify(np.zeros((10, 3)), pts)
    with pytest.raises(ValueError, match="10 points but pts1 has 9"):
        geometry.verify(pts, pts[:9])
    with pytest.raises(ValueError, match="unknown model"):
        geometry.verify(pts, pts, model="affine")
    with pytest.raises(ValueError, match="needs both K0 and K1"):
        geometry.verify(pts, pts, K0=K, model="essential")
    with pytest.raises(ValueError, match="unknown robust estimator"):
        geometry.verify(pts, pts, model="homography", estimator="magic")
    with pytest.raises(ValueError, match="essential and homography only"):
        geometry.verify(pts, pts, model="fundamental", estimator="poselib")


@pytest.mark.parametrize("seed", [0, 1])
def test_best_first_sampling_recovers_pose_at_a_small_budget(seed):
    """75% outliers, 100 RANSAC iterations: uniform sampling hits an all-inlier 5-sample with
    probability ~0.1; with the match confidences (inliers score higher on average, as a matcher's
    do) PoseLib samples the best first and recovers the pose, and the inlier mask comes back in
    the caller's (unsorted) order."""
    rng = np.random.default_rng(seed)
    pts0, pts1, is_inlier, R, t = synthetic_two_view(rng, 400, outlier_ratio=0.75, noise_px=0.5)
    scores = np.where(
        is_inlier, rng.uniform(0.3, 1.0, len(is_inlier)), rng.uniform(0.0, 0.6, len(is_inlier))
    )
    model = geometry.verify(pts0, pts1, K, K, model="essential", max_iters=100, scores=scores)
    assert model.kind == "essential"
    assert angle_error_mat(model.R, R) < 1.0
    assert angle_error_vec(model.t, t) < 3.0
    assert model.inliers[is_inlier].mean() > 0.9
    assert model.inliers[~is_inlier].mean() < 0.05
    with pytest.raises(ValueError, match="scores has 3 values"):
        geometry.verify(pts0, pts1, K, K, model="essential", scores=scores[:3])


def test_best_first_homography_mask_in_caller_order():
    rng = np.random.default_rng(3)
    pts0, pts1, is_inlier, H = synthetic_homography(rng, 300, outlier_ratio=0.5, noise_px=0.5)[:4]
    scores = rng.random(len(pts0))  # any order: the mask must still refer to the input order
    model = geometry.verify(pts0, pts1, model="homography", estimator="poselib", scores=scores)
    assert model.kind == "homography"
    assert model.inliers[is_inlier].mean() > 0.9 and model.inliers[~is_inlier].mean() < 0.05


def test_an_opencv_estimator_error_is_a_failed_estimate(monkeypatch):
    """Degenerate input can make OpenCV's USAC fail an assertion (cv2.error) instead of
    returning no model; the geometry reports no model, as for too few points (the case that
    raised is in test_frontend_pipeline)."""

    def raising(*args, **kwargs):
        raise cv2.error("(-215:Assertion failed) !model.empty() in function 'setModelParameters'")

    rng = np.random.default_rng(0)
    pts0 = rng.uniform(0, 640, (50, 2))
    pts1 = pts0 + 1.0
    for name, call in (
        ("findFundamentalMat", lambda: geometry.verify(pts0, pts1, model="fundamental")),
        ("findHomography", lambda: geometry.verify(pts0, pts1, model="homography")),
        (
            "findEssentialMat",
            lambda: geometry.verify(pts0, pts1, K, K, model="essential", estimator="magsac"),
        ),
    ):
        with monkeypatch.context() as patch:
            patch.setattr(cv2, name, raising)
            model = call()
        assert model.kind == "none" and model.num_inliers == 0, name
