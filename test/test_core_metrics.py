"""Evaluation metrics on hand-made cases whose answers are worked out by hand."""

import math

import cv2
import numpy as np
import pytest

from superglue_ros.evaluation import metrics
from superglue_ros.evaluation.pose_eval import (
    epipolar_errors,
    make_middlebury_pairs,
    parse_pose_pair,
    read_pose_pairs,
    relative_transform,
    write_pose_pairs,
)

# image0 -> image1: shift right by 10 px; both images 100x100
H_SHIFT = np.array([[1, 0, 10], [0, 1, 0], [0, 0, 1]], np.float64)
SIZE = (100, 100)
KPTS0 = np.array([[5, 5], [50, 50], [95, 50]], np.float64)  # last one leaves image1 (x=105)
KPTS1 = np.array([[16, 5], [60, 52], [30, 30]], np.float64)


def test_repeatability_counts_shared_region_only():
    # shared: kpts0[0:2] (n0=2), all of kpts1 (n1=3); found: 2 of kpts0, 2 of kpts1 -> 4/5
    assert metrics.repeatability(KPTS0, KPTS1, H_SHIFT, SIZE, SIZE, 3.0) == pytest.approx(0.8)
    # at 1.5 px only the 1-px pair is repeated: (1 + 1) / 5
    assert metrics.repeatability(KPTS0, KPTS1, H_SHIFT, SIZE, SIZE, 1.5) == pytest.approx(0.4)
    assert metrics.repeatability(np.zeros((0, 2)), np.zeros((0, 2)), H_SHIFT, SIZE, SIZE) == 0


def test_precision_recall():
    matches0 = np.array([0, 2, -1])
    result = metrics.match_precision_recall(KPTS0, KPTS1, matches0, H_SHIFT, SIZE, 3.0)
    # match 0->0 has error 1 px (correct); 1->2 has error |(60,50)-(30,30)| = 36 px (wrong)
    assert result["precision"] == 0.5
    assert result["num_matches"] == 2 and result["num_correct"] == 1
    # GT: 0<->0 and 1<->1 (2 px); kpts0[2] is outside image1 -> 1 of 2 recalled
    assert result["num_gt"] == 2
    assert result["recall"] == 0.5
    perfect = metrics.match_precision_recall(KPTS0, KPTS1, [0, 1, -1], H_SHIFT, SIZE, 3.0)
    assert perfect["precision"] == 1.0 and perfect["recall"] == 1.0
    empty = metrics.match_precision_recall(KPTS0, KPTS1, [-1, -1, -1], H_SHIFT, SIZE, 3.0)
    assert math.isnan(empty["precision"]) and empty["recall"] == 0.0
    np.testing.assert_array_equal(
        metrics.ground_truth_matches(KPTS0, KPTS1, H_SHIFT, SIZE, 3.0), [0, 1, -1]
    )


def test_corner_error():
    H_est = H_SHIFT.copy()
    H_est[:2, 2] += [3, 4]  # every corner off by (3, 4) -> 5 px
    assert metrics.homography_corner_error(H_est, H_SHIFT, (640, 480)) == pytest.approx(5.0)
    assert metrics.homography_corner_error(H_SHIFT, H_SHIFT, (640, 480)) == 0.0
    assert metrics.homography_corner_error(None, H_SHIFT, (640, 480)) == math.inf
    # scaling about the origin by 2: corners (0,0),(99,0),(99,99),(0,99) move by 0,99,99*sqrt2,99
    H_scale = np.diag([2.0, 2.0, 1.0])
    expected = (0 + 99 + 99 * math.sqrt(2) + 99) / 4
    assert metrics.homography_corner_error(H_scale, np.eye(3), SIZE) == pytest.approx(expected)


def test_error_auc():
    # curve through (0,0), (1,0.5), then flat at 0.5 up to 2: area 0.25 + 0.5 = 0.75 -> /2
    assert metrics.error_auc([1.0, math.inf], [2]) == [pytest.approx(0.375)]
    assert metrics.error_auc([0.0, 0.0], [1, 5]) == [1.0, 1.0]
    assert metrics.error_auc([math.inf, math.nan], [5]) == [0.0]
    # errors beyond the threshold only count in the denominator; (0,0)->(1,1/3): area 1/6
    assert metrics.error_auc([1.0, 7.0, 9.0], [1]) == [pytest.approx(1 / 6)]
    assert metrics.error_auc([], [1]) == [0.0]


def rotation(axis, degrees):
    axis = np.asarray(axis, np.float64)
    return cv2.Rodrigues(axis / np.linalg.norm(axis) * math.radians(degrees))[0]


def test_pose_errors():
    T = np.eye(4)
    T[:3, :3] = rotation([0, 0, 1], 10)
    T[:3, 3] = [2, 0, 0]
    err_R, err_t = metrics.relative_pose_error(T, rotation([0, 0, 1], 7), np.array([-1, 0, 0]))
    assert err_R == pytest.approx(3.0) and err_t == pytest.approx(0.0, abs=1e-6)  # sign-free
    err_R, err_t = metrics.relative_pose_error(T, T[:3, :3], np.array([0, 1, 0]))
    assert err_R == pytest.approx(0.0, abs=1e-6) and err_t == pytest.approx(90.0)
    err_R, err_t = metrics.relative_pose_error(T, T[:3, :3], np.array([1, 1, 0]))
    assert err_t == pytest.approx(45.0)
    assert metrics.relative_pose_error(T, None, None) == (180.0, 180.0)
    assert metrics.angle_error_vec([0, 0, 0], [1, 0, 0]) == 180.0


def test_relative_transform_maps_camera0_to_camera1():
    rng = np.random.default_rng(0)
    R0, R1 = rotation([1, 2, 3], 20), rotation([-1, 0, 2], 35)
    t0, t1 = rng.normal(size=3), rng.normal(size=3)
    T = relative_transform(R0, t0, R1, t1)
    X = rng.normal(size=(5, 3))
    X0, X1 = X @ R0.T + t0, X @ R1.T + t1
    np.testing.assert_allclose(X0 @ T[:3, :3].T + T[:3, 3], X1, atol=1e-12)
    # exact correspondences have zero epipolar error under that pose
    K = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
    x0 = X0 @ K.T
    x1 = X1 @ K.T
    errors = epipolar_errors(x0[:, :2] / x0[:, 2:], x1[:, :2] / x1[:, 2:], T, K, K)
    assert np.all(errors < 1e-20)


def write_par(path, names, angles_deg):
    """Middlebury par file: cameras on a ring about the y axis, looking at the origin."""
    K = np.array([[1500.0, 0, 300], [0, 1500.0, 240], [0, 0, 1]])
    lines = [str(len(names))]
    for name, angle in zip(names, angles_deg):
        R = rotation([0, 1, 0], angle)
        t = np.array([0, 0, 0.6])
        lines.append(" ".join([name] + [repr(float(v)) for v in np.r_[K.ravel(), R.ravel(), t]]))
    path.write_text("\n".join(lines) + "\n")
    return K


def test_middlebury_pairs_and_pairs_file(tmp_path):
    names = [f"v{i}.png" for i in range(5)]
    K = write_par(tmp_path / "par.txt", names, [0, 8, 16, 40, 48])
    for name in names[:4]:  # v4 missing on disk
        (tmp_path / name).write_bytes(b"")
    pairs = make_middlebury_pairs(tmp_path / "par.txt", tmp_path, 5, 25)
    # angles: (0,8)=8 (0,16)=16 (8,16)=8 (16,40)=24 (8,40)=32 (0,40)=40; v4 excluded
    assert [(p.name0, p.name1) for p in pairs] == [
        ("v0.png", "v1.png"),
        ("v0.png", "v2.png"),
        ("v1.png", "v2.png"),
        ("v2.png", "v3.png"),
    ]
    np.testing.assert_allclose(pairs[0].K0, K)
    np.testing.assert_allclose(pairs[0].T_0to1[:3, :3], rotation([0, 1, 0], 8), atol=1e-12)
    write_pose_pairs(tmp_path / "pairs.txt", pairs)
    again = read_pose_pairs(tmp_path / "pairs.txt")
    assert [(p.name0, p.name1) for p in again] == [(p.name0, p.name1) for p in pairs]
    np.testing.assert_array_equal(again[3].T_0to1, pairs[3].T_0to1)


def test_pose_pair_parse_errors(tmp_path):
    with pytest.raises(ValueError, match="f.txt:3: expected 38 columns"):
        parse_pose_pair("a b 0 0 1 2", "f.txt:3")
    good = "a.png b.png 0 0 " + " ".join(["1"] * 34)
    assert parse_pose_pair(good).name1 == "b.png"
    with pytest.raises(ValueError, match="EXIF rotations"):
        parse_pose_pair(good.replace(" 0 0 ", " 1 0 "), "x")
    with pytest.raises(ValueError, match="non-numeric"):
        parse_pose_pair(good.replace(" 0 0 ", " 0 zero "), "x")
    (tmp_path / "p.txt").write_text(good + "\n\n# comment\n" + "bad line\n")
    with pytest.raises(ValueError, match=r"p.txt:4"):
        read_pose_pairs(tmp_path / "p.txt")
    with pytest.raises(FileNotFoundError, match="pairs file not found"):
        read_pose_pairs(tmp_path / "none.txt")
