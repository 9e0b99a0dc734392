"""`superglue-match` end to end on pairs made from shipped photos, and draw_matches."""

import pathlib

import cv2
import numpy as np
import pytest
from skimage import data

import superglue_ros
from superglue_ros.cli.match import main, resized_shape
from superglue_ros.evaluation.metrics import match_precision_recall
from superglue_ros.homography import sample_homography, warp_image
from superglue_ros.visualization import GAP_PX, GREEN, RED, draw_matches
from quality_gap import BELOW_BAR

WEIGHTS = pathlib.Path(superglue_ros.__file__).parent / "weights"


@pytest.fixture(scope="module")
def pair_dir(tmp_path_factory):
    """astronaut 512x512 and coffee 600x400 photos plus warped copies with known H."""
    folder = tmp_path_factory.mktemp("pairs")
    homographies = {}
    for index, (name, rgb) in enumerate(
        [("astronaut", data.astronaut()), ("coffee", data.coffee())]
    ):
        image = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        h, w = image.shape[:2]
        H = sample_homography(np.random.default_rng(index), w, h, difficulty=0.4)
        cv2.imwrite(str(folder / f"{name}.png"), image)
        cv2.imwrite(str(folder / f"{name}_warped.png"), warp_image(image, H, (w, h)))
        homographies[name] = H
    (folder / "broken.png").write_bytes(b"not a png")
    (folder / "pairs.txt").write_text(
        "astronaut.png astronaut_warped.png 0 0 extra columns are ignored\n"
        "just_one_column.png\n"
        "\n"
        "# a comment\n"
        "coffee.png missing.png\n"
        "broken.png coffee.png\n"
        "coffee.png coffee_warped.png\n"
    )
    return folder, homographies


def check_npz(path, image_size, H, max_move_px=4.0):
    """npz contract + precision against the known homography in ORIGINAL pixels; max_move_px:
    the refinement's 3 working pixels in original pixels."""
    with np.load(path) as npz:
        assert set(npz.files) == {
            "keypoints0",
            "keypoints1",
            "matches",
            "match_confidence",
            "matched_points1",
        }
        kpts0, kpts1 = npz["keypoints0"], npz["keypoints1"]
        matches, confidence = npz["matches"], npz["match_confidence"]
        points1 = npz["matched_points1"]
    # the refined partner of each matched keypoint: near its keypoint (the default refinement
    # moves at most 3 working pixels), NaN where unmatched
    matched = matches >= 0
    assert points1.shape == (len(kpts0), 2) and np.isnan(points1[~matched]).all()
    moved = np.linalg.norm(points1[matched] - kpts1[matches[matched]], axis=1)
    assert np.isfinite(moved).all() and moved.max() <= max_move_px
    assert kpts0.ndim == 2 and kpts0.shape[1] == 2 and kpts1.shape[1] == 2
    assert matches.shape == (len(kpts0),) and confidence.shape == (len(kpts0),)
    assert np.issubdtype(matches.dtype, np.integer)
    assert matches.min() >= -1 and matches.max() < len(kpts1)
    assert np.all(confidence[matches < 0] == 0)
    w, h = image_size
    for kpts in (kpts0, kpts1):
        assert kpts.min() >= -0.5 and kpts[:, 0].max() <= w - 0.5 and kpts[:, 1].max() <= h - 0.5
    result = match_precision_recall(kpts0, kpts1, matches, H, image_size, 3.0)
    # distance of the keypoints and of the refined points to the truth, for the right matches
    ph = np.c_[kpts0[matched], np.ones(matched.sum())] @ H.T
    truth = ph[:, :2] / ph[:, 2:]
    detected = np.linalg.norm(kpts1[matches[matched]] - truth, axis=1)
    right = detected < 3.0
    result["median_error_px"] = float(np.median(detected[right]))
    result["median_refined_error_px"] = float(
        np.median(np.linalg.norm(points1[matched] - truth, axis=1)[right])
    )
    return kpts0, result


def test_match_cli_sift_with_resize(pair_dir, tmp_path, capsys):
    folder, homographies = pair_dir
    out = tmp_path / "out"
    code = main(
        [
            "--input_pairs",
            str(folder / "pairs.txt"),
            "--input_dir",
            str(folder),
            "--output_dir",
            str(out),
            "--matcher",
            "sift",
            "--resize",
            "320",
            "--max_keypoints",
            "400",
            "--viz",
            "--device",
            "cpu",
        ]
    )
    captured = capsys.readouterr()
    assert code == 1  # some pairs were skipped, but the run finished
    # every problem is reported with its line and reason
    assert "pairs.txt:2" in captured.out and 'expected "name0 name1' in captured.out
    assert "pairs.txt:5" in captured.out and "missing.png: file not found" in captured.out
    assert "pairs.txt:6" in captured.out and "broken.png: not a readable image" in captured.out
    assert "matched 2 pair(s), skipped 3" in captured.out
    written = sorted(p.name for p in out.iterdir())
    assert written == [
        "astronaut_astronaut_warped_matches.npz",
        "astronaut_astronaut_warped_matches.png",
        "coffee_coffee_warped_matches.npz",
        "coffee_coffee_warped_matches.png",
    ]
    for name, size in (("astronaut", (512, 512)), ("coffee", (600, 400))):
        kpts0, result = check_npz(
            out / f"{name}_{name}_warped_matches.npz",
            size,
            homographies[name],
            max_move_px=3.0 * max(size) / 320,
        )
        # resized to max side 320 but coordinates span the original image
        assert kpts0[:, 0].max() > 330 or kpts0[:, 1].max() > 330
        assert result["num_correct"] >= 30 and result["precision"] >= 0.85
        viz = cv2.imread(str(out / f"{name}_{name}_warped_matches.png"))
        assert viz.shape == (size[1], 2 * size[0] + GAP_PX, 3)


def test_match_cli_orb_exact_size_and_config(pair_dir, tmp_path):
    folder, homographies = pair_dir
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("coffee.png coffee_warped.png\n")
    config = tmp_path / "orb.yaml"
    config.write_text("preset: orb\nextractor: {max_keypoints: 300}\nmatcher: {ratio: 0.8}\n")
    out = tmp_path / "out"
    code = main(
        [
            "--input_pairs",
            str(pairs),
            "--input_dir",
            str(folder),
            "--output_dir",
            str(out),
            "--config",
            str(config),
            "--resize",
            "450",
            "300",
        ]
    )
    assert code == 0
    kpts0, result = check_npz(
        out / "coffee_coffee_warped_matches.npz", (600, 400), homographies["coffee"]
    )
    assert 250 <= len(kpts0) <= 300  # the config wins over the --max_keypoints default (1024)
    assert result["num_correct"] >= 30 and result["precision"] >= 0.8


def test_match_cli_setup_errors(pair_dir, tmp_path, capsys):
    folder, _ = pair_dir
    config = tmp_path / "bad.yaml"
    config.write_text("extractor: {name: orb}\nmatchers: {}\n")
    code = main(["--input_pairs", str(folder / "pairs.txt"), "--config", str(config)])
    assert code == 2
    assert "unknown key(s) ['matchers']" in capsys.readouterr().err
    code = main(["--input_pairs", str(tmp_path / "nope.txt"), "--matcher", "orb"])
    assert code == 2 and "nope.txt" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--input_pairs", "x", "--resize", "1", "2", "3"])


def test_resized_shape():
    assert resized_shape(600, 400, [-1]) == (600, 400)
    assert resized_shape(600, 400, [300]) == (300, 200)
    assert resized_shape(400, 600, [1200]) == (800, 1200)  # like the reference: may upscale
    assert resized_shape(600, 400, [640, 480]) == (640, 480)
    # the default is the node's working size: 640x480 pixels, aspect kept
    assert resized_shape(1241, 376, None) == (1007, 305)
    assert resized_shape(600, 400, None) == (600, 400)
    assert resized_shape(1200, 800, None) == (679, 453)


def test_draw_matches_colours():
    image0 = np.zeros((40, 50), np.uint8)
    image1 = np.zeros((30, 60, 3), np.uint8)
    kpts0 = np.array([[10, 10], [40, 30]])
    kpts1 = np.array([[10, 20], [50, 5]])
    canvas = draw_matches(image0, image1, kpts0, kpts1, inliers=[True, False])
    assert canvas.shape == (40, 50 + GAP_PX + 60, 3) and canvas.dtype == np.uint8
    assert tuple(canvas[10, 10]) == GREEN  # inlier endpoint in image0
    assert tuple(canvas[5, 50 + GAP_PX + 50]) == RED  # outlier endpoint in image1
    assert tuple(canvas[35, 55]) == (255, 255, 255)  # gap/background below image1
    with pytest.raises(ValueError, match="2 points in image0 but 1 in image1"):
        draw_matches(image0, image1, kpts0, kpts1[:1])


@BELOW_BAR
def test_match_cli_superglue_with_shipped_weights(pair_dir, tmp_path):
    missing = [k for k in ("superpoint", "superglue") if not (WEIGHTS / f"{k}.pth").is_file()]
    if missing:
        pytest.skip(f"trained weights not shipped yet: {missing} absent from {WEIGHTS}")
    folder, homographies = pair_dir
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("astronaut.png astronaut_warped.png\n")
    out = tmp_path / "out"
    # fp32: the same matches on every CPU (bf16 differs slightly between AMX and AVX512-BF16,
    # and this bar has little margin)
    config = tmp_path / "fp32.yaml"
    config.write_text("extractor: {precision: fp32}\nmatcher: {precision: fp32}\n")
    assert (
        main(
            [
                "--input_pairs",
                str(pairs),
                "--input_dir",
                str(folder),
                "--output_dir",
                str(out),
                "--resize",
                "400",
                "--max_keypoints",
                "512",
                "--config",
                str(config),
            ]
        )
        == 0
    )
    _, result = check_npz(
        out / "astronaut_astronaut_warped_matches.npz", (512, 512), homographies["astronaut"]
    )
    print("superglue-match, shipped weights, fp32:", result)
    # the node's refinement (the default --refine lk) brings the matched points onto the truth
    assert result["median_refined_error_px"] < 0.6 * result["median_error_px"]
    # issue 4's bar, held in fp32 (the same on every CPU) and marked as not yet reached. The
    # session-15 SuperGlue: 329 correct of 408, precision 0.806, recall 0.95 (the session-4
    # file: 318 of 376, 0.846; bf16 on an Intel AMX machine 0.853, which another CPU may not
    # give).
    assert result["num_correct"] >= 50 and result["precision"] >= 0.85
