"""superglue-benchmark: it times the shipped models through their timing hook, and it runs."""

import json
import threading

import numpy as np
import torch

from superglue_ros import benchmark, timing
from superglue_ros.baselines import MutualNearestNeighborMatcher
from superglue_ros.geometry import verify
from superglue_ros.learned import SuperGlueMatcher, SuperPointExtractor
from superglue_ros.models.superglue import SuperGlue
from superglue_ros.models.superpoint import SuperPoint

torch.set_num_threads(2)


def test_timing_hook_times_the_shipped_forward_and_changes_nothing():
    """The benchmark's stages come from the models themselves: recording gives the same
    keypoints, descriptors and matches as not recording, and every stage is seen."""
    torch.manual_seed(0)
    sp = SuperPoint(dict(max_keypoints=150, nms="cv2")).eval()
    sg = SuperGlue(
        dict(
            descriptor_dim=256,
            gnn_layers=["self", "cross"],
            match_threshold=0.0,
            cache_keyframes=True,
            sinkhorn="scaling",
        )
    ).eval()
    extractor, matcher = SuperPointExtractor(model=sp), SuperGlueMatcher(model=sg)
    frames = [
        benchmark.convert_image_array(benchmark.to_message_bytes(f))
        for f in benchmark.camera_path_frames(4, size=(200, 152))
    ]
    K = np.array([[180.0, 0, 99.5], [0, 180.0, 75.5], [0, 0, 1]])

    def run():
        feats = [extractor.extract(frame) for frame in frames]
        matches = matcher.match_many(benchmark.uncached(feats[-1]), feats[:3])
        mnn = MutualNearestNeighborMatcher().match(feats[0], feats[1])
        model = verify(
            feats[0].keypoints[mnn.indices()[0]], feats[1].keypoints[mnn.indices()[1]], K, K
        )
        return feats, matches, mnn, model

    assert timing.stage("a") is timing.stage("b")  # off: one shared no-op context
    plain = run()
    with timing.recording() as times:
        timed = run()
    assert timing.stage("a") is timing.stage("b")  # off again after the recording
    for f_plain, f_timed in zip(plain[0], timed[0]):
        np.testing.assert_array_equal(f_plain.keypoints, f_timed.keypoints)
        np.testing.assert_array_equal(f_plain.descriptors, f_timed.descriptors)
    for m_plain, m_timed in zip(plain[1], timed[1]):
        np.testing.assert_array_equal(m_plain.matches0, m_timed.matches0)
    np.testing.assert_array_equal(plain[2].matches0, timed[2].matches0)
    np.testing.assert_array_equal(plain[3].inliers, timed[3].inliers)
    assert set(times.ms) == {
        "conversion",
        "superpoint_backbone",
        "superpoint_decode",
        "superglue_encode",
        "superglue_gnn",
        "superglue_sinkhorn",
        "matcher",
        "geometry",
    }
    assert all(ms > 0 for ms in times.ms.values())


def test_recording_is_per_thread():
    """The node's other threads are never timed by a recording in this one."""
    seen = {}
    with timing.recording() as times:
        worker = threading.Thread(target=lambda: seen.setdefault("off", timing.stage("x")))
        worker.start()
        worker.join()
        with timing.stage("here"):
            pass
    assert seen["off"] is timing.stage("y") and set(times.ms) == {"here"}


def test_camera_path_frames_move_smoothly():
    frames = benchmark.camera_path_frames(5, size=(160, 120))
    assert all(f.shape == (120, 160, 3) and f.dtype == np.uint8 for f in frames)
    diffs = [np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(frames, frames[1:])]
    assert all(d > 1.0 for d in diffs)  # the camera moves between frames


def test_benchmark_command_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = benchmark.main(
        [
            "--frames",
            "3",
            "--reference-frames",
            "3",
            "--loop-repeats",
            "1",
            "--reference-loop-repeats",
            "1",
            "--accuracy-pairs",
            "1",
            "--width",
            "160",
            "--height",
            "120",
            "--max-keypoints",
            "64",
            "--backend",
            "torch",
            "--random-weights",
            "--output",
            str(out),
        ]
    )
    assert rc == 0
    res = json.loads(out.read_text())
    for mode in ("fast", "reference"):
        r = res["modes"][mode]
        assert set(r["stages"]) >= {
            "conversion",
            "superpoint_backbone",
            "superglue_gnn",
            "geometry",
        }
        assert r["end_to_end"]["n"] == 3 and r["loop_verification_5"]["n"] == 1
        assert r["end_to_end"]["p90_ms"] >= r["end_to_end"]["median_ms"] > 0
        assert r["frontend_vo"]["n"] == 3 and r["frontend_vo"]["median_ms"] > 0
    assert res["speedup_end_to_end"] > 0
    standard = res["standard_superglue"]  # the papers' 9+9 SuperGlue, timed beside the shipped one
    assert standard["layers"] == 18
    for mode in ("fast", "reference"):
        r = standard["modes"][mode]
        assert set(r["stages"]) >= {"superglue_encode", "superglue_gnn", "superglue_sinkhorn"}
        assert r["superglue_per_frame"]["n"] == 3 and r["loop_matching_5"]["n"] == 1
    # the papers' configuration end to end (reference runtime): issue 14's speed-up baseline
    assert standard["modes"]["reference"]["frontend_vo"]["n"] == 3
    assert res["speedup_frontend_vo_vs_standard"] > 0
    assert set(res["targets"]) == {
        "vo_median_le_80ms",
        "loop5_le_250ms",
        "speedup_vs_standard_ge_8x",
    }
    assert "random-initialised" in res["weights"]["superglue"]
    assert "delta_fast_minus_reference" in res["accuracy"]
    assert "speed-up over reference" in capsys.readouterr().out
