"""superglue-benchmark: its staged pipeline computes what the models compute, and it runs."""

import json

import numpy as np
import torch

from superglue_ros import benchmark
from superglue_ros.models.superglue import SuperGlue
from superglue_ros.models.superpoint import SuperPoint

torch.set_num_threads(2)


def test_staged_pipeline_equals_model_forward():
    torch.manual_seed(0)
    sp = SuperPoint(dict(max_keypoints=150, nms="cv2")).eval()
    sg = SuperGlue(dict(descriptor_dim=256, gnn_layers=["self", "cross"], match_threshold=0.0,
                        cache_keyframes=True, sinkhorn="scaling")).eval()
    frames = benchmark.camera_path_frames(4, size=(200, 152))
    timer = benchmark.Timer()
    feats = []
    for frame in frames:
        image = benchmark.convert_image(benchmark.to_message_bytes(frame), "cpu")
        staged = benchmark.superpoint_staged(sp, image, timer)
        with torch.no_grad():
            direct = sp(image)
        assert torch.equal(staged["keypoints"], direct["keypoints"][0])
        assert torch.equal(staged["descriptors"], direct["descriptors"][0])
        feats.append(staged)
    q = feats[-1]
    out = benchmark.superglue_staged(sg, dict(q, cache={}), feats[:3], timer)
    with torch.no_grad():
        for b in range(3):
            r = feats[b]
            want = sg(dict(keypoints0=q["keypoints"][None], scores0=q["scores"][None],
                           descriptors0=q["descriptors"][None], image_size0=q["image_size"],
                           keypoints1=r["keypoints"][None], scores1=r["scores"][None],
                           descriptors1=r["descriptors"][None], image_size1=r["image_size"]))
            n = len(r["keypoints"])
            la = out["log_assignment"][b]
            rows = list(range(la.shape[0]))
            cols = list(range(n)) + [la.shape[1] - 1]
            assert torch.allclose(la[rows][:, cols], want["log_assignment"][0], atol=1e-4)
    assert set(timer.frame) >= {"superpoint_backbone", "superpoint_decode", "superglue_gnn",
                                "superglue_sinkhorn", "superglue_encode"}


def test_camera_path_frames_move_smoothly():
    frames = benchmark.camera_path_frames(5, size=(160, 120))
    assert all(f.shape == (120, 160, 3) and f.dtype == np.uint8 for f in frames)
    diffs = [np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(frames, frames[1:])]
    assert all(d > 1.0 for d in diffs)  # the camera moves between frames


def test_benchmark_command_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    rc = benchmark.main(["--frames", "3", "--reference-frames", "3", "--loop-repeats", "1",
                         "--reference-loop-repeats", "1", "--accuracy-pairs", "1",
                         "--width", "160", "--height", "120", "--max-keypoints", "64",
                         "--backend", "torch", "--random-weights", "--output", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    for mode in ("fast", "reference"):
        r = res["modes"][mode]
        assert set(r["stages"]) >= {"conversion", "superpoint_backbone", "superglue_gnn", "geometry"}
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
    assert "random-initialised" in res["weights"]["superglue"]
    assert "delta_fast_minus_reference" in res["accuracy"]
    assert "speed-up over reference" in capsys.readouterr().out
