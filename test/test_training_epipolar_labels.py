"""Labels of real pairs from the ground-truth pose (training/epipolar_labels.py), checked on
constructed geometry: 3D points projected by a known camera pair, so every answer is exact."""

import math

import numpy as np
import pytest
import torch

from superglue_ros.training.epipolar_labels import (
    candidate_set_nll,
    depth_segments,
    epipolar_labels,
    fundamental_matrix,
    point_segment_distances,
    snap_matches,
)

K = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
R_FWD, T_FWD = np.eye(3), np.array([0.0, 0.0, -1.0])  # camera 1 is 1 m ahead: X1 = X0 - (0,0,1)


def project(X, R=np.eye(3), t=np.zeros(3)):
    Xc = np.asarray(X, float) @ R.T + t
    return Xc[:, :2] / Xc[:, 2:] * 500.0 + [320.0, 240.0]


def test_depth_segment_of_forward_motion_runs_from_infinity_to_the_nearest_depth():
    # x0 = (420, 290) is the ray (0.2, 0.1, 1); at infinity view 1 sees it at the same pixel,
    # at depth 2 m the point (0.4, 0.2, 2) is 1 m from camera 1: (520, 340)
    near, far, valid = depth_segments([[420.0, 290.0]], K, K, R_FWD, T_FWD, min_depth=2.0)
    np.testing.assert_allclose(near, [[520.0, 340.0]], atol=1e-9)
    np.testing.assert_allclose(far, [[420.0, 290.0]], atol=1e-9)
    assert valid.tolist() == [True]
    # the true projection of the 10 m point lies on the segment
    x1 = project([[2.0, 1.0, 10.0]], R_FWD, T_FWD)
    d = point_segment_distances(near, far, x1)
    assert d[0, 0] < 1e-9
    # camera 1 3 m ahead: depths 2-3 m are behind it, so the near end is clipped at its
    # plane (far outside the image) while the far end stays at the same pixel
    near, far, valid = depth_segments([[420.0, 290.0]], K, K, R_FWD, np.array([0, 0, -3.0]), 2.0)
    assert valid.tolist() == [True]
    np.testing.assert_allclose(far, [[420.0, 290.0]], atol=1e-9)
    assert np.hypot(*(near[0] - [320.0, 240.0])) > 1e4
    # looking backwards (camera 1 turned by 180 deg about y): the whole ray is behind it
    R_back = np.diag([-1.0, 1.0, -1.0])
    _, _, valid = depth_segments([[420.0, 290.0]], K, K, R_back, np.zeros(3), 2.0)
    assert valid.tolist() == [False]


def test_point_segment_distances_exact():
    start, end = np.array([[420.0, 290.0]]), np.array([[520.0, 340.0]])
    q = np.array(
        [
            [430.0, 300.0],  # inside: projection (432, 296), residual (-2, 4)
            [540.0, 340.0],  # beyond the near end: distance to (520, 340)
            [410.0, 290.0],
        ]
    )  # before the far end (the infinite line would give 4.47)
    d = point_segment_distances(start, end, q)
    np.testing.assert_allclose(d[0], [math.sqrt(20.0), 20.0, 10.0], atol=1e-9)


def test_fundamental_matrix_of_projected_points_is_zero():
    rng = np.random.default_rng(0)
    X = rng.uniform([-3, -2, 4], [3, 2, 30], (20, 3))
    R = np.array([[math.cos(0.1), 0, math.sin(0.1)], [0, 1, 0], [-math.sin(0.1), 0, math.cos(0.1)]])
    t = np.array([0.3, 0.0, -1.0])
    x0, x1 = project(X), project(X, R, t)
    F = fundamental_matrix(K, K, R, t)
    r = (np.c_[x1, np.ones(20)] * (np.c_[x0, np.ones(20)] @ F.T)).sum(1)
    assert np.abs(r).max() < 1e-9


def scene():
    """Four 3D points seen by both cameras of a forward motion, plus one keypoint in each view
    that has no partner (its segment and position are far from every keypoint of the other
    view). Returns kpts0 [5,2], kpts1 [5,2] with partners i <-> i for i < 4 and view 1 in a
    shuffled order (perm: kpts1[perm[i]] is the partner of kpts0[i])."""
    X = np.array([[2.0, 1.0, 10.0], [-3.0, 0.5, 8.0], [1.0, -1.5, 20.0], [-1.0, -0.5, 6.0]])
    x0, x1 = project(X), project(X, R_FWD, T_FWD)
    kpts0 = np.vstack([x0, [[100.0, 60.0]]])
    kpts1 = np.vstack([x1, [[600.0, 60.0]]])
    perm = np.array([2, 0, 3, 1, 4])
    shuffled = np.empty_like(kpts1)
    shuffled[perm] = kpts1
    return kpts0, shuffled, perm


def test_labels_mnn_source_matches_dustbins_and_candidates():
    kpts0, kpts1, perm = scene()
    rng = np.random.default_rng(1)
    desc0 = rng.normal(size=(5, 16))
    desc0 /= np.linalg.norm(desc0, axis=1, keepdims=True)
    desc1 = np.empty_like(desc0)
    desc1[perm] = desc0  # partners have equal descriptors
    lab = epipolar_labels(kpts0, kpts1, K, K, R_FWD, T_FWD, desc0, desc1, source="mnn")
    np.testing.assert_array_equal(lab["matches0"], [2, 0, 3, 1, -1])
    np.testing.assert_array_equal(lab["matches1"], [1, 3, 0, 2, -1])
    np.testing.assert_array_equal(lab["unmatched0"], [False] * 4 + [True])
    np.testing.assert_array_equal(lab["unmatched1"], [False] * 4 + [True])
    assert lab["candidates"][np.arange(4), perm[:4]].all()
    assert lab["counts"] == dict(positives_mnn=4, positives_sift=0, agree=0)


def test_labels_reject_a_descriptor_match_off_the_epipolar_band():
    kpts0, kpts1, perm = scene()
    # keypoint 0's partner is moved 5 px across its epipolar line: no candidate is left for
    # it, so it and the moved keypoint become dustbins although their descriptors agree
    kpts1 = kpts1.copy()
    kpts1[perm[0]] += np.array([-1.0, 2.0]) / math.sqrt(5) * 5.0  # normal to direction (2, 1)
    desc0 = np.eye(5)
    desc1 = np.empty_like(desc0)
    desc1[perm] = desc0
    lab = epipolar_labels(kpts0, kpts1, K, K, R_FWD, T_FWD, desc0, desc1, source="mnn", band_px=3.0)
    np.testing.assert_array_equal(lab["matches0"], [-1, 0, 3, 1, -1])
    assert lab["unmatched0"].tolist() == [True, False, False, False, True]
    assert lab["unmatched1"][perm[0]]


def test_labels_between_positive_and_band_are_candidates_only():
    kpts0, kpts1, perm = scene()
    kpts1 = kpts1.copy()
    kpts1[perm[1]] += np.array([0.0, 2.0])  # 2 px off: inside the 3 px band, not < 1 px
    desc0 = np.eye(5)
    desc1 = np.empty_like(desc0)
    desc1[perm] = desc0
    lab = epipolar_labels(kpts0, kpts1, K, K, R_FWD, T_FWD, desc0, desc1, source="mnn")
    assert lab["matches0"][1] == -1 and not lab["unmatched0"][1]
    assert lab["candidates"][1, perm[1]]


def test_labels_sift_source_snaps_verified_matches():
    kpts0, kpts1, perm = scene()
    # SIFT matches: partners 0 and 2 near the keypoints (snapped within 1.5 px), one match that
    # violates the epipolar geometry (kpts0[1] with kpts1[perm[3]]) and is dropped
    sift0 = np.array([kpts0[0] + [0.5, -0.5], kpts0[2] + [1.0, 0.0], kpts0[1]])
    sift1 = np.array([kpts1[perm[0]] + [0.0, 0.0], kpts1[perm[2]] + [0.0, 0.0], kpts1[perm[3]]])
    # the SIFT points themselves must be exact; shift view 0's point back onto the geometry
    sift0[:2] = kpts0[[0, 2]]
    lab = epipolar_labels(kpts0, kpts1, K, K, R_FWD, T_FWD, sift0=sift0, sift1=sift1, source="sift")
    np.testing.assert_array_equal(lab["matches0"], [perm[0], -1, perm[2], -1, -1])
    assert lab["counts"]["positives_sift"] == 2
    i0, i1 = snap_matches(sift0 + [1.0, 1.0], sift1, kpts0, kpts1, snap_px=1.5)
    np.testing.assert_array_equal(i0, [0, 2, 1])
    i0, _ = snap_matches(sift0 + [2.0, 0.0], sift1, kpts0, kpts1, snap_px=1.5)
    assert len(i0) == 0


def test_labels_of_the_reversed_pair_are_transposed():
    kpts0, kpts1, perm = scene()
    desc0 = np.eye(5)
    desc1 = np.empty_like(desc0)
    desc1[perm] = desc0
    a = epipolar_labels(kpts0, kpts1, K, K, R_FWD, T_FWD, desc0, desc1, source="mnn")
    b = epipolar_labels(kpts1, kpts0, K, K, R_FWD.T, -R_FWD.T @ T_FWD, desc1, desc0, source="mnn")
    np.testing.assert_array_equal(a["matches0"], b["matches1"])
    np.testing.assert_array_equal(a["candidates"], b["candidates"].T)


def test_unknown_source_and_missing_inputs_are_clear_errors():
    kpts0, kpts1, _ = scene()
    with pytest.raises(ValueError, match="unknown label source"):
        epipolar_labels(kpts0, kpts1, K, K, R_FWD, T_FWD, source="teacher")
    with pytest.raises(ValueError, match="needs descriptors"):
        epipolar_labels(kpts0, kpts1, K, K, R_FWD, T_FWD, source="mnn")
    with pytest.raises(ValueError, match="needs SIFT"):
        epipolar_labels(kpts0, kpts1, K, K, R_FWD, T_FWD, source="sift")


def test_candidate_set_nll_exact():
    # 2 x 2 keypoints + dustbins; probabilities chosen by hand
    p = torch.tensor([[0.5, 0.2, 0.3], [0.1, 0.6, 0.3], [0.4, 0.2, 0.0]])
    la = p.clamp(min=1e-30).log()[None]
    cand = torch.tensor([[[True, False], [False, False]]])
    rows0 = torch.tensor([[True, True]])
    rows1 = torch.tensor([[False, True]])
    nll = candidate_set_nll(la, cand, rows0, rows1)
    # row 0: P(0,0) + bin = 0.8; row 1: bin only = 0.3; column 1: bin only = 0.2
    expected = -(math.log(0.8) + math.log(0.3) + math.log(0.2)) / 3
    assert float(nll) == pytest.approx(expected, rel=1e-6)
    none = candidate_set_nll(
        la, cand, torch.zeros(1, 2, dtype=torch.bool), torch.zeros(1, 2, dtype=torch.bool)
    )
    assert float(none) == 0.0
    # a dustbin weight w scales the dustbin's share: row 0 0.5 + 0.3 w, row 1 0.3 w, column 1 0.2 w
    w = 0.5
    weighted = candidate_set_nll(la.clone().requires_grad_(), cand, rows0, rows1, w)
    expected = -(math.log(0.5 + 0.3 * w) + math.log(0.3 * w) + math.log(0.2 * w)) / 3
    assert float(weighted) == pytest.approx(expected, rel=1e-6)
    assert float(candidate_set_nll(la, cand, rows0, rows1, 1.0)) == pytest.approx(float(nll))
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="dustbin_weight"):
            candidate_set_nll(la, cand, rows0, rows1, bad)
