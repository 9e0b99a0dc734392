"""Evaluation toolkit end to end: seeded synthetic pairs, homography and pose evaluation, CLI."""

import json
import math

import cv2
import numpy as np
import pytest
from skimage import data

from superglue_ros.evaluation import evaluate_homography, evaluate_pose, make_homography_pairs
from superglue_ros.evaluation.cli import main as eval_main
from superglue_ros.evaluation.pose_eval import PosePair, working_size, write_pose_pairs
from superglue_ros.features import build_preset
from superglue_ros.homography import warp_image


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    for name in ("astronaut", "coffee", "chelsea"):
        cv2.imwrite(
            str(folder / f"{name}.png"), cv2.cvtColor(getattr(data, name)(), cv2.COLOR_RGB2BGR)
        )
    (folder / "notes.txt").write_text("not an image, ignored")
    return folder


def test_pairs_are_seeded_exact_and_cached(photo_dir):
    pairs = make_homography_pairs(photo_dir, 4, seed=0)
    assert [p.name for p in pairs] == [
        "00000_astronaut",
        "00001_chelsea",
        "00002_coffee",
        "00003_astronaut",
    ]
    for pair in pairs:
        assert pair.image0.shape == pair.image1.shape == (480, 640)
        assert pair.image0.dtype == np.uint8 and pair.H.shape == (3, 3)
    again = make_homography_pairs(photo_dir, 4, seed=0)
    assert again[0].image1 is pairs[0].image1  # served from the cache
    longer = make_homography_pairs(photo_dir, 5, seed=0)  # pair i depends on (seed, i) only
    np.testing.assert_array_equal(longer[3].H, pairs[3].H)
    np.testing.assert_array_equal(longer[3].image1, pairs[3].image1)
    other = make_homography_pairs(photo_dir, 4, seed=1)
    assert not np.allclose(other[0].H, pairs[0].H)
    assert not np.array_equal(pairs[0].H, pairs[3].H)  # same photo, different warp
    # without photometric change image1 is exactly image0 warped by H
    exact = make_homography_pairs(photo_dir, 1, seed=0, photometric=0.0)[0]
    np.testing.assert_array_equal(exact.image1, warp_image(exact.image0, exact.H, (640, 480)))
    empty = photo_dir / "empty"
    empty.mkdir(exist_ok=True)
    with pytest.raises(ValueError, match="no images"):
        make_homography_pairs(empty, 1)
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        make_homography_pairs(photo_dir / "absent", 1)


def test_evaluate_homography_sift(photo_dir):
    pairs = make_homography_pairs(photo_dir, 3, seed=0, difficulty=0.5)
    extractor, matcher = build_preset("sift", max_keypoints=512)
    summary = evaluate_homography(extractor, matcher, pairs, return_per_pair=True)
    assert summary["num_pairs"] == 3 and len(summary["per_pair"]) == 3
    assert summary["precision"] > 0.85 and summary["num_correct"] > 50
    assert 0.3 < summary["repeatability"] <= 1 and 0 < summary["recall"] <= 1
    # corner error is sub-pixel to a few pixels with USAC; the AUCs are monotone
    assert summary["auc_robust@5px"] > 0.5
    assert summary["auc_robust@1px"] <= summary["auc_robust@3px"] <= summary["auc_robust@5px"]
    # DLT on all matches suffers from the outliers the robust fit rejects
    assert summary["auc_dlt@5px"] <= summary["auc_robust@5px"]


def rotation_y(degrees):
    return cv2.Rodrigues(np.array([0, math.radians(degrees), 0]))[0]


def plane_views(tmp_path):
    """A textured plane at depth 3 seen from two calibrated cameras -> pose pairs file."""
    K = np.array([[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]])
    image0 = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2GRAY), (640, 480))
    pairs = []
    for index, (angle, t) in enumerate([(8, [-0.4, 0.0, 0.1]), (-6, [0.3, 0.1, -0.1])]):
        R, t = rotation_y(angle), np.array(t)
        n, depth = np.array([0, 0, 1.0]), 3.0  # plane n.X = depth in camera 0
        H = K @ (R + np.outer(t, n) / depth) @ np.linalg.inv(K)
        cv2.imwrite(str(tmp_path / f"view{index}_0.png"), image0)
        cv2.imwrite(str(tmp_path / f"view{index}_1.png"), warp_image(image0, H, (640, 480)))
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = R, t
        pairs.append(PosePair(f"view{index}_0.png", f"view{index}_1.png", K, K, T))
    write_pose_pairs(tmp_path / "pairs.txt", pairs)
    return pairs


def test_working_size_longest_side_or_pixel_budget():
    # KITTI 07 (1226x370) and a portrait photo (683x1024): superglue-match's --resize 640 scales
    # the longest side, W H is the node's rule (W*H pixels, aspect kept)
    assert working_size(1226, 370, [640]) == working_size(1226, 370, 640) == (640, 193)
    assert working_size(1226, 370, [640, 480]) == (1009, 304)
    assert working_size(683, 1024, [640]) == (427, 640)
    assert working_size(683, 1024, [640, 480]) == (453, 679)
    assert working_size(320, 240, [640, 480]) == (320, 240)  # the budget never upscales
    assert working_size(320, 240, [640]) == (640, 480)  # longest side does
    assert working_size(752, 480, None) == working_size(752, 480, [-1]) == (752, 480)
    with pytest.raises(ValueError, match="one value"):
        working_size(752, 480, [1, 2, 3])


def test_evaluate_pose_on_plane(tmp_path):
    pairs = plane_views(tmp_path)
    extractor, matcher = build_preset("sift", max_keypoints=1024)
    summary = evaluate_pose(extractor, matcher, pairs, tmp_path, return_per_pair=True)
    for result in summary["per_pair"]:
        assert result["error_R"] < 1.0 and result["error_t"] < 5.0
    assert summary["pose_auc@20deg"] > 0.75
    assert summary["precision"] > 0.9


def test_eval_cli_homography_and_pose(photo_dir, tmp_path, capsys):
    out = tmp_path / "hom"
    code = eval_main(
        [
            "--images",
            str(photo_dir),
            "--num_pairs",
            "2",
            "--methods",
            "orb,sift,superglue",
            "--output",
            str(out),
            "--max_keypoints",
            "300",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "auc_robust@3px" in printed and "\norb " in printed and "\nsift " in printed
    report = json.loads((out / "results.json").read_text())
    assert set(report["results"]) | set(report["skipped"]) == {"orb", "sift", "superglue"}
    assert len(report["results"]["orb"]["per_pair"]) == 2
    if "superglue" in report["skipped"]:  # no shipped weights: named in the reason
        assert "superpoint" in report["skipped"]["superglue"]
    assert cv2.imread(str(out / "results.png")) is not None
    pose_pairs = plane_views(tmp_path)
    out = tmp_path / "pose"
    code = eval_main(
        [
            "--pairs",
            str(tmp_path / "pairs.txt"),
            "--input_dir",
            str(tmp_path),
            "--methods",
            "sift",
            "--output",
            str(out),
            "--max_keypoints",
            "1024",
        ]
    )
    assert code == 0
    report = json.loads((out / "results.json").read_text())
    assert report["results"]["sift"]["pose_auc@20deg"] > 0.75
    # Middlebury mode: par file (projection K [R t]) -> pairs.txt in the output -> pose AUC
    pair = pose_pairs[0]
    par_lines = ["2"]
    for name, R, t in (
        (pair.name0, np.eye(3), np.zeros(3)),
        (pair.name1, pair.T_0to1[:3, :3], pair.T_0to1[:3, 3]),
    ):
        par_lines.append(
            " ".join([name] + [repr(float(v)) for v in np.r_[pair.K0.ravel(), R.ravel(), t]])
        )
    (tmp_path / "scene_par.txt").write_text("\n".join(par_lines) + "\n")
    out = tmp_path / "middlebury"
    code = eval_main(
        [
            "--middlebury_par",
            str(tmp_path / "scene_par.txt"),
            "--input_dir",
            str(tmp_path),
            "--methods",
            "sift",
            "--output",
            str(out),
            "--max_keypoints",
            "1024",
        ]
    )
    assert code == 0
    assert (out / "pairs.txt").read_text().split()[:2] == [pair.name0, pair.name1]
    report = json.loads((out / "results.json").read_text())
    assert report["results"]["sift"]["num_pairs"] == 1
    assert report["results"]["sift"]["pose_auc@5deg"] > 0.75
    with pytest.raises(SystemExit):
        eval_main(["--images", str(photo_dir), "--pairs", "x"])
    with pytest.raises(SystemExit):
        eval_main(["--images", str(photo_dir), "--methods", "surf"])


def test_matcher_study_homography_sweep_nests_by_threshold(photo_dir, tmp_path, capsys):
    """SuperGlue's matches at a higher threshold are a subset of those at a lower one (mutual
    argmax of one assignment, then a score bar), so over one extraction the sweep's match
    counts and recall can only fall as the threshold rises; MNN rides along on the same
    features; the command line writes the table and JSON."""
    from superglue_ros.evaluation.matcher_study import (
        SWEEP_THRESHOLDS,
        homography_sweep,
        warp_kinds,
    )
    from superglue_ros.evaluation.matcher_study import main as study_main

    pairs = make_homography_pairs(photo_dir, 3, seed=0)
    extractor, _ = build_preset(
        "superglue", extractor=dict(max_keypoints=256, runtime="fast", precision="fp32")
    )
    full = homography_sweep(pairs, extractor, progress=False)
    report = full["all"]
    assert list(report) == ["mnn"] + [f"superglue t={t:g}" for t in SWEEP_THRESHOLDS]
    counts = [report[f"superglue t={t:g}"]["num_matches"] for t in SWEEP_THRESHOLDS]
    recalls = [report[f"superglue t={t:g}"]["recall"] for t in SWEEP_THRESHOLDS]
    assert counts == sorted(counts, reverse=True) and counts[0] > counts[-1] > 0
    assert recalls == sorted(recalls, reverse=True)
    assert report["mnn"]["num_matches"] > 0 and report["mnn"]["repeatability"] == pytest.approx(
        report["superglue t=0.2"]["repeatability"]
    )
    # every pair falls in one scale bin and one rotation bin; a bin's rows cover its pairs only
    kinds = [warp_kinds(pair) for pair in pairs]
    assert all(len(k) == 2 and k[0].startswith("scale") and "rotation" in k[1] for k in kinds)
    by_warp = full["by_warp"]
    assert sum(row["num_pairs"] for name, row in by_warp.items() if name.startswith("scale")) == 3
    assert sum(row["num_pairs"] for name, row in by_warp.items() if "rotation" in name) == 3
    for name, row in by_warp.items():
        assert row["num_pairs"] == sum(name in k for k in kinds) > 0
        assert set(row) == {"num_pairs", *report} and row["mnn"]["num_pairs"] == row["num_pairs"]
    out = tmp_path / "sweep"
    argv = ["--images", str(photo_dir), "--num_pairs", "2", "--max_keypoints", "128"]
    assert study_main(argv + ["--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "superglue t=0.2" in printed
    written = json.loads((out / "homography_sweep.json").read_text())
    assert set(written) == {"all", "by_warp"} and set(written["all"]) == set(report)
    assert "by kind of warp" in printed
