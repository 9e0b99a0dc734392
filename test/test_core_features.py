"""Feature containers, the registry, and every preset on a real photo with a known homography."""

import pathlib

import cv2
import numpy as np
import pytest
import torch
from skimage import data

import superglue_ros
from superglue_ros import baselines
from superglue_ros.evaluation.metrics import match_precision_recall
from superglue_ros.features import (
    PRESETS,
    Features,
    Matches,
    SuperGlueMatcher,
    build_components,
    build_extractor,
    build_matcher,
    build_preset,
    resolve_device,
    runtime_of,
)
from superglue_ros.homography import sample_homography, warp_image

torch.set_num_threads(2)
WEIGHTS = pathlib.Path(superglue_ros.__file__).parent / "weights"


def needs_weights(*kinds):
    missing = [k for k in kinds if not (WEIGHTS / f"{k}.pth").is_file()]
    if missing:
        pytest.skip(
            f"trained weights not shipped yet: {', '.join(missing)}.pth absent from {WEIGHTS}"
        )


@pytest.fixture(scope="module")
def warped_pair():
    """Astronaut (512x512 BGR) and a copy warped by a seeded homography (difficulty 0.5)."""
    image0 = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    H = sample_homography(np.random.default_rng(3), 512, 512, difficulty=0.5)
    image1 = warp_image(image0, H, (512, 512))
    return image0, image1, H


def run_preset(name, pair, **conf):
    image0, image1, H = pair
    extractor, matcher = build_preset(name, **conf)
    f0, f1 = extractor.extract(image0), extractor.extract(image1)
    matches = matcher.match(f0, f1)
    return (
        f0,
        f1,
        matches,
        match_precision_recall(f0.keypoints, f1.keypoints, matches.matches0, H, (512, 512), 3.0),
    )


@pytest.mark.parametrize("name", ["orb", "sift"])
def test_classical_presets_find_correct_matches(name, warped_pair):
    f0, f1, matches, result = run_preset(name, warped_pair, max_keypoints=512)
    assert 0 < len(f0) <= 512 and 0 < len(f1) <= 512
    assert f0.image_size == (512, 512)
    assert result["num_correct"] >= 60
    assert result["precision"] >= 0.85
    assert matches.matches0.dtype == np.int64 and matches.scores0.dtype == np.float32
    assert np.all(matches.scores0[matches.matches0 < 0] == 0)
    assert np.all(matches.matches0 < len(f1))


def test_sift_descriptors_and_mnn(warped_pair):
    extractor = build_extractor("sift", max_keypoints=300)
    f0, f1 = extractor.extract(warped_pair[0]), extractor.extract(warped_pair[1])
    assert f0.descriptors.dtype == np.float32 and f0.descriptors.shape[1] == 128
    np.testing.assert_allclose(np.linalg.norm(f0.descriptors, axis=1), 1, atol=1e-5)
    matches = build_matcher("mnn").match(f0, f1)
    result = match_precision_recall(
        f0.keypoints, f1.keypoints, matches.matches0, warped_pair[2], (512, 512), 3.0
    )
    assert result["num_correct"] >= 40 and result["precision"] >= 0.7


def test_orb_descriptors_are_binary(warped_pair):
    features = build_extractor("orb", max_keypoints=100).extract(warped_pair[0][..., 0])
    assert features.descriptors.dtype == np.uint8 and features.descriptors.shape == (100, 32)
    assert np.all(np.diff(features.scores) <= 0)  # strongest first


def test_hamming_and_ratio_on_hand_made_descriptors():
    d0 = np.array([[0b11110000] + [0] * 31, [0b00001111] + [0] * 31], np.uint8)
    d1 = np.array([[0b11110001] + [0] * 31, [0b00001111] + [0] * 31, [0xFF] * 32], np.uint8)
    np.testing.assert_array_equal(
        baselines.hamming_distances(d0, d1), [[1, 8, 252], [7, 0, 252]]
    )  # XOR popcounts
    f0 = Features(np.zeros((2, 2)), np.ones(2), d0, (10, 10))
    f1 = Features(np.zeros((3, 2)), np.ones(3), d1, (10, 10))
    matches = build_matcher("ratio-hamming", ratio=0.8).match(f0, f1)
    np.testing.assert_array_equal(matches.matches0, [0, 1])
    np.testing.assert_allclose(matches.scores0, [1 - 1 / 8, 1.0])
    # an ambiguous descriptor (equidistant to two) is rejected by the ratio test
    e0 = np.eye(4, dtype=np.float32)[:2]
    e1 = np.array(
        [[1, 0, 0, 0], [0, 0.7071068, 0.7071068, 0], [0, 0.7071068, -0.7071068, 0]], np.float32
    )
    g0 = Features(np.zeros((2, 2)), np.ones(2), e0, (10, 10))
    g1 = Features(np.zeros((3, 2)), np.ones(3), e1, (10, 10))
    np.testing.assert_array_equal(build_matcher("ratio").match(g0, g1).matches0, [0, -1])
    # MNN keeps both: e0[1]'s nearest (tie -> first) is e1[1], whose nearest is e0[1]
    np.testing.assert_array_equal(build_matcher("mnn").match(g0, g1).matches0, [0, 1])
    assert build_matcher("mnn", max_distance=0.5).match(g0, g1).matches0.tolist() == [0, -1]


def test_permuted_descriptors_are_matched_exactly():
    rng = np.random.default_rng(0)
    desc0 = rng.normal(size=(50, 64)).astype(np.float32)
    desc0 /= np.linalg.norm(desc0, axis=1, keepdims=True)
    perm = rng.permutation(50)
    f0 = Features(rng.uniform(0, 100, (50, 2)), np.ones(50), desc0, (100, 100))
    f1 = Features(f0.keypoints[perm], np.ones(50), desc0[perm], (100, 100))
    expected = np.argsort(perm)  # desc0[i] == desc1[argsort(perm)[i]]
    for name in ("mnn", "ratio"):
        np.testing.assert_array_equal(build_matcher(name).match(f0, f1).matches0, expected)


def test_empty_features_match_to_nothing():
    empty = Features.empty((10, 10), 128)
    full = Features(np.zeros((3, 2)), np.ones(3), np.eye(3, 128, dtype=np.float32), (10, 10))
    for name in ("mnn", "ratio"):
        assert build_matcher(name).match(empty, full).matches0.shape == (0,)
        np.testing.assert_array_equal(build_matcher(name).match(full, empty).matches0, [-1] * 3)


def test_features_and_matches_containers():
    f = Features([[10, 20], [0, 0]], [0.5, 0.25], np.ones((2, 4), np.float32), (100, 50))
    assert f.keypoints.dtype == np.float32 and len(f) == 2
    f.cache["torch"] = dict(descriptors=torch.zeros(2, 4))
    assert f.nbytes() == 16 + 8 + 32 + 32
    half = f.scaled(0.5, 0.5, (50, 25))
    np.testing.assert_allclose(half.keypoints, [[4.75, 9.75], [-0.25, -0.25]])
    assert half.image_size == (50, 25) and half.cache == {}
    back = half.scaled(2, 2, (100, 50))
    np.testing.assert_allclose(back.keypoints, f.keypoints, atol=1e-5)
    # the matcher's device copy: scores/descriptors kept (same tensors), keypoints replaced
    descriptors = torch.ones(2, 4)
    f.cache["torch"] = dict(keypoints=torch.zeros(2, 2), descriptors=descriptors)
    half = f.scaled(0.5, 0.5, (50, 25))
    assert half.cache["torch"]["descriptors"] is descriptors
    np.testing.assert_allclose(half.cache["torch"]["keypoints"].numpy(), half.keypoints)
    with pytest.raises(ValueError, match="inconsistent feature counts"):
        Features(np.zeros((2, 2)), np.zeros(3), np.zeros((2, 4)), (1, 1))
    matches = Matches(np.array([2, -1, 0]), np.array([0.9, 0, 0.5]))
    idx0, idx1 = matches.indices()
    assert idx0.tolist() == [0, 2] and idx1.tolist() == [2, 0] and len(matches) == 2


def test_registry_errors_and_devices():
    with pytest.raises(ValueError, match="unknown extractor 'surf'"):
        build_extractor("surf")
    with pytest.raises(ValueError, match="unknown matcher 'flann'"):
        build_matcher("flann")
    with pytest.raises(ValueError, match="unknown preset 'akaze'"):
        build_preset("akaze")
    with pytest.raises(ValueError, match=r"orb: unknown option\(s\) \['nfeatures'\]"):
        build_extractor("orb", nfeatures=10)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    assert set(PRESETS) == {"superglue", "superpoint-mnn", "sift", "orb"}


def random_superglue(seed=0):
    from superglue_ros.models.superglue import SuperGlue

    torch.manual_seed(seed)
    model = SuperGlue(
        dict(
            descriptor_dim=32,
            keypoint_encoder=[16],
            gnn_layers=["self", "cross"],
            num_heads=2,
            sinkhorn_iterations=50,
            match_threshold=0.0,
        )
    )
    with torch.no_grad():
        model.final_proj.weight.mul_(10.0)  # confident random assignments
    return model


def random_features(n, seed, size=(640, 480)):
    rng = np.random.default_rng(seed)
    desc = rng.normal(size=(n, 32)).astype(np.float32)
    return Features(
        rng.uniform(0, 400, (n, 2)),
        rng.uniform(0, 1, n),
        desc / np.linalg.norm(desc, axis=1, keepdims=True),
        size,
    )


@pytest.mark.parametrize("cache_keyframes", [False, True])
def test_superglue_match_many_equals_one_by_one(cache_keyframes):
    """Padding for unequal keypoint counts must not change any result (random weights), with
    and without the fast runtime's keypoint-encoding cache in Features.cache."""
    model = random_superglue()
    model.conf["cache_keyframes"] = cache_keyframes
    matcher = SuperGlueMatcher(model=model, match_threshold=0.0)
    query = random_features(40, 0)
    refs = [
        random_features(n, i + 1, size)
        for i, (n, size) in enumerate(
            [(25, (640, 480)), (60, (320, 240)), (0, (640, 480)), (41, (500, 500))]
        )
    ]
    batched = matcher.match_many(query, refs)
    assert len(batched) == 4
    assert batched[2].matches0.tolist() == [-1] * 40  # empty reference
    for ref, result in zip(refs, batched):
        single = matcher.match(query, ref)
        np.testing.assert_array_equal(result.matches0, single.matches0)
        np.testing.assert_allclose(result.scores0, single.scores0, atol=1e-5)
        assert result.matches0.max() < max(len(ref), 1)
    assert sum(len(r) for r in batched) > 20  # the comparison is not between empty results
    # reference tensors stay cached on the device, not re-uploaded on the next call
    cached = refs[1].cache["torch"]["descriptors"]
    matcher.match_many(query, refs)
    assert refs[1].cache["torch"]["descriptors"] is cached


# Accuracy with the shipped weights runs in fp32, so it is the same on every CPU (bf16 rounds
# differently on AMX and AVX512-BF16); test_fast_runtime_bf16_within_tolerance_of_fp32 holds bf16
# to fp32. Bars keep a margin below the measured figures (fp32, this pair, with the reference NMS
# and sub-pixel keypoints the shipped SuperPoint uses since session 3: SuperPoint+MNN 369 correct
# at 0.913 precision, SuperPoint+SuperGlue 365 at 0.855).
FP32 = dict(extractor=dict(precision="fp32"), matcher=dict(precision="fp32"))


def test_superpoint_mnn_with_shipped_weights(warped_pair):
    needs_weights("superpoint")
    f0, f1, matches, result = run_preset(
        "superpoint-mnn", warped_pair, max_keypoints=512, extractor=dict(precision="fp32")
    )
    assert 100 <= len(f0) <= 512
    np.testing.assert_allclose(np.linalg.norm(f0.descriptors, axis=1), 1, atol=1e-4)
    assert result["num_correct"] >= 60 and result["precision"] >= 0.6


def test_superglue_with_shipped_weights(warped_pair):
    needs_weights("superpoint", "superglue")
    f0, f1, matches, result = run_preset("superglue", warped_pair, max_keypoints=512, **FP32)
    assert result["num_correct"] >= 80 and result["precision"] >= 0.80
    assert np.all((matches.scores0 > 0) == (matches.matches0 >= 0))


def test_match_threshold_reaches_superglue_and_nests_its_matches(warped_pair):
    """build_components' match_threshold (the node's parameter): SuperGlue keeps a match
    whose assignment probability exceeds it both ways, so a higher threshold keeps a subset
    of the same extraction's matches, and they are more precise on the warped photo."""
    needs_weights("superpoint", "superglue")
    extractor, _ = build_components(dict(max_keypoints=512, extractor_options=FP32["extractor"]))
    f0, f1 = extractor.extract(warped_pair[0]), extractor.extract(warped_pair[1])
    found = {}
    for threshold in (0.05, 0.2, 0.6):
        _, matcher = build_components(
            dict(match_threshold=threshold, matcher_options=FP32["matcher"])
        )
        assert matcher.model.conf["match_threshold"] == threshold
        found[threshold] = matcher.match(f0, f1).matches0
    for low, high in ((0.05, 0.2), (0.2, 0.6)):
        kept = found[high] >= 0
        assert kept.sum() < (found[low] >= 0).sum()
        assert np.array_equal(found[high][kept], found[low][kept])
    precision = {
        t: match_precision_recall(f0.keypoints, f1.keypoints, m, warped_pair[2], (512, 512), 3.0)[
            "precision"
        ]
        for t, m in found.items()
    }
    assert precision[0.6] > precision[0.05]
    # a matcher_options threshold wins; out-of-range values are refused
    _, matcher = build_components(
        dict(match_threshold=0.2, matcher_options=dict(match_threshold=0.3))
    )
    assert matcher.model.conf["match_threshold"] == 0.3
    for bad in (dict(match_threshold=1.5), dict(matcher_options=dict(match_threshold=-0.1))):
        with pytest.raises(ValueError, match="match_threshold must be in"):
            build_components(bad)


def same_keypoints(a: Features, b: Features, tol_px: float) -> np.ndarray:
    """[len(a)] index of the keypoint of b within tol_px of each keypoint of a, or -1."""
    if len(a) == 0 or len(b) == 0:
        return np.full(len(a), -1)
    dist = np.abs(a.keypoints[:, None] - b.keypoints[None]).max(-1)
    nearest = dist.argmin(1)
    return np.where(dist[np.arange(len(a)), nearest] <= tol_px, nearest, -1)


def fast_run(warped_pair, precision: str, matcher_precision: str):
    """The superglue preset with SuperPoint in ``precision`` on the pair: f0, f1, matches and
    their precision/recall at 3 px against the exact homography."""
    extractor, matcher = build_preset(
        "superglue",
        max_keypoints=512,
        extractor=dict(precision=precision),
        matcher=dict(precision=matcher_precision),
    )
    assert runtime_of(extractor) == ("pending", "")  # the backend is built on first use
    f0, f1 = extractor.extract(warped_pair[0]), extractor.extract(warped_pair[1])
    assert runtime_of(extractor) == ("openvino", precision)
    matches = matcher.match(f0, f1)
    assert runtime_of(matcher) == ("openvino", matcher_precision)
    result = match_precision_recall(
        f0.keypoints, f1.keypoints, matches.matches0, warped_pair[2], (512, 512), 3.0
    )
    return f0, f1, matches, result


def test_runtime_of_names_what_each_component_runs_on():
    extractor, matcher = build_components(dict(runtime="reference", max_keypoints=64))
    assert runtime_of(extractor) == runtime_of(matcher) == ("torch", "fp32")
    extractor, matcher = build_preset("orb")
    assert runtime_of(extractor) == runtime_of(matcher) == ("opencv", "")


def test_fast_runtime_bf16_within_tolerance_of_fp32(warped_pair):
    """The default precision on CPUs with native bf16, against fp32 on the same pair with the
    shipped weights. Stated tolerance: >= 85 % of the keypoints the same, >= 75 % of
    fp32's matches identical, precision within 3 points and correct matches within 10 %
    (keypoints count as the same within 0.1 px: the sub-pixel refinement reads the heatmap).
    Measured (Intel AMX): 92-94 % keypoints, 85 % matches, precision 0.857 vs 0.855, 355 vs 365
    correct; with the earlier integer keypoints an AMD AVX512-BF16 machine gave precision
    within a point of this one's (issue 11)."""
    needs_weights("superpoint", "superglue")
    pytest.importorskip("openvino")
    from superglue_ros.models.backends import cpu_has_native_bf16

    if not cpu_has_native_bf16():
        pytest.skip("this CPU has no native bf16: the fast runtime uses fp32 here")
    out = {precision: fast_run(warped_pair, precision, precision) for precision in ("fp32", "bf16")}
    (a0, a1, a_matches, a_result), (b0, b1, b_matches, b_result) = out["fp32"], out["bf16"]
    # the same keypoint: within 0.1 px (sub-pixel refinement reads the bf16 heatmap)
    same0, same1 = same_keypoints(a0, b0, 0.1), same_keypoints(a1, b1, 0.1)
    for same in (same0, same1):
        assert (same >= 0).mean() >= 0.85, (same >= 0).mean()
    idx0, idx1 = a_matches.indices()
    assert len(idx0) >= 200
    b_idx0, b_idx1 = same0[idx0], same1[idx1]
    kept = (b_idx0 >= 0) & (b_idx1 >= 0)
    agree = kept & (b_matches.matches0[np.where(kept, b_idx0, 0)] == b_idx1)
    assert agree.sum() >= 0.75 * len(idx0), agree.mean()
    assert abs(a_result["precision"] - b_result["precision"]) <= 0.03
    assert abs(a_result["num_correct"] - b_result["num_correct"]) <= 0.1 * a_result["num_correct"]


def test_fast_runtime_int8_backbone_within_tolerance_of_fp32(warped_pair):
    """The default SuperPoint precision with the shipped file on CPUs with 8-bit dot products
    (its int8 entry; int8 kernels run on any x86 CPU, so this runs everywhere), against fp32
    on the same pair, SuperGlue in fp32 in both. Stated tolerance: >= 70 % of the keypoints within 0.5 px,
    precision within 3 points and correct matches within 15 %. Measured (Intel AMX): 91 / 88 %
    of the keypoints, precision 0.912 (fp32) vs 0.929, 351 vs 339 correct."""
    needs_weights("superpoint", "superglue")
    pytest.importorskip("openvino")
    out = {precision: fast_run(warped_pair, precision, "fp32") for precision in ("fp32", "int8")}
    (a0, a1, _, a_result), (b0, b1, _, b_result) = out["fp32"], out["int8"]
    for a, b in ((a0, b0), (a1, b1)):
        same = (same_keypoints(a, b, 0.5) >= 0).mean()
        assert same >= 0.7, same
    assert abs(a_result["precision"] - b_result["precision"]) <= 0.03
    assert abs(a_result["num_correct"] - b_result["num_correct"]) <= 0.15 * a_result["num_correct"]


def test_learned_wrappers_load_weight_files(tmp_path, warped_pair):
    """SuperPoint/SuperGlue wrappers load files written by weights.save_model and use the
    options given by name (random weights: this checks the plumbing, not quality)."""
    from superglue_ros.models.superpoint import SuperPoint
    from superglue_ros.models.weights import save_model

    torch.manual_seed(0)
    save_model(SuperPoint(), tmp_path / "sp.pth", meta=dict(note="random test weights"))
    save_model(random_superglue(), tmp_path / "sg.pth", meta=dict(note="random test weights"))
    extractor = build_extractor(
        "superpoint", weights=str(tmp_path / "sp.pth"), max_keypoints=100, keypoint_threshold=0.0
    )
    features = extractor.extract(warped_pair[0])
    assert len(features) == 100 and features.image_size == (512, 512)
    assert features.descriptors.shape == (100, 256)
    assert np.all((features.keypoints >= 0) & (features.keypoints <= 511))
    assert features.cache["torch"]["descriptors"].device.type == extractor.device.type
    again = extractor.extract(warped_pair[0])
    np.testing.assert_array_equal(again.keypoints, features.keypoints)
    matcher = build_matcher("superglue", weights=str(tmp_path / "sg.pth"), match_threshold=0.0)
    reference = SuperGlueMatcher(model=random_superglue(), match_threshold=0.0)
    f0, f1 = random_features(30, 1), random_features(35, 2)
    np.testing.assert_array_equal(matcher.match(f0, f1).matches0, reference.match(f0, f1).matches0)


def test_fast_runtime_fp32_equals_reference_runtime(warped_pair):
    """The wrappers' default 'fast' runtime (here in fp32) against 'reference' on a real photo
    pair with the shipped weights: same keypoints (>= 99 % within 1e-3 px), same matches
    (>= 98 %); the keyframe side's SuperGlue encoding is kept in its Features.cache."""
    needs_weights("superpoint", "superglue")
    pytest.importorskip("openvino")
    image0, image1, _ = warped_pair
    out = {}
    for runtime in ("reference", "fast"):
        extractor = build_extractor("superpoint", runtime=runtime, precision="fp32")
        matcher = build_matcher("superglue", runtime=runtime, precision="fp32")
        f0, f1 = extractor.extract(image0), extractor.extract(image1)
        out[runtime] = (f0, f1, matcher.match(f1, f0), matcher)
    (r0, _, r_matches, _), (f0, _, f_matches, fast_matcher) = out["reference"], out["fast"]
    assert fast_matcher.model.conf["backend"] == "openvino"
    assert fast_matcher.model.conf["cache_keyframes"] and "superglue_encoding" in f0.cache
    same_kpts = (same_keypoints(r0, f0, 1e-3) >= 0).mean()  # sub-pixel: float rounding only
    assert same_kpts >= 0.99
    assert len(r_matches) >= 50
    agree = (r_matches.matches0 == f_matches.matches0) & (r_matches.matches0 >= 0)
    assert agree.sum() >= 0.98 * len(r_matches)
    with pytest.raises(ValueError, match="unknown runtime"):
        build_extractor("superpoint", runtime="turbo")


def test_missing_weights_name_the_file(tmp_path):
    from superglue_ros.models.weights import WeightsError

    with pytest.raises(WeightsError, match="absent.pth"):
        build_extractor("superpoint", weights=str(tmp_path / "absent.pth"))
    with pytest.raises(WeightsError, match="absent_sg.pth"):
        build_matcher("superglue", weights=str(tmp_path / "absent_sg.pth"))
