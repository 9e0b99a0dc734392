"""superglue-benchmark --node: a node process fed 30 Hz VGA frames over DDS by the camera player
of the benchmark, with ORB on a few seconds of frames: it runs and writes its JSON (no timing is
asserted; the numbers belong in the README's Performance section)."""

import json
import pathlib
import subprocess
import sys

from superglue_ros.ros import node_benchmark

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_node_benchmark_runs_and_writes_json(tmp_path, capsys):
    out = tmp_path / "node.json"
    log = tmp_path / "node.log"
    rc = node_benchmark.cli(
        [
            "--node",
            "--preset",
            "orb",
            "--warmup",
            "2",
            "--duration",
            "3",
            "--drain",
            "1",
            "--param",
            "debug_image:=never",
            "--output",
            str(out),
            "--node-log",
            str(log),
        ]
    )
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["input"]["width"] == 640 and res["input"]["height"] == 480
    assert res["input"]["encoding"] == "mono8" and res["input"]["qos"] == "sensor_data"
    assert res["input"]["rate_hz"] == 30.0 and res["input"]["camera_info"]
    assert 0 < res["processed"] <= res["published"]
    assert res["latency_ms"]["p90"] >= res["latency_ms"]["p50"] > 0
    assert 0 < res["delivered"] <= 1.0
    node = res["node"]  # the node's own diagnostics: per-worker timings and loop job counts
    assert node["extractor"] == "orb" and node["frames_processed"] >= res["processed"]
    assert {
        "extraction_worker_p50_ms",
        "odometry_worker_p50_ms",
        "loop_worker_p50_ms",
        "loop_jobs_done",
        "loop_jobs_dropped",
        "latency_p50_ms",
    } <= set(node)
    assert res["rss_mib"]["start"] > 0 and res["rss_mib"]["max"] >= res["rss_mib"]["end"] > 0
    assert "processed" in capsys.readouterr().out and "ready" in log.read_text()


def test_pose_accuracy_against_ground_truth_exact(tmp_path):
    """--poses: the node's ODOMETRY poses (reference -> query) are compared with T_q^-1 T_r of the
    KITTI-format ground truth; a pose rotated by 2 deg about y reads 2.00 deg of rotation error,
    an exact one 0, a message without a valid pose counts as invalid, one whose reference stamp
    was never published as without ground truth, one outside the window not at all."""
    import argparse

    import numpy as np
    from scipy.spatial.transform import Rotation

    from superglue_ros.ros.node_benchmark import pose_accuracy

    images = tmp_path / "image_0"
    images.mkdir()
    for name in ("000004", "000006", "000008"):
        (images / f"{name}.png").write_bytes(b"")
    rng = np.random.default_rng(0)
    poses = {}
    lines = []
    for k in (4, 6, 8):  # camera-to-world, KITTI poses.txt: frame + 12 values of [R t]
        T = np.eye(4)
        T[:3, :3] = Rotation.from_rotvec(rng.normal(0, 0.1, 3)).as_matrix()
        T[:3, 3] = rng.normal(0, 2.0, 3)
        poses[k] = T
        lines.append(" ".join([str(k)] + [f"{v:.17g}" for v in T[:3].reshape(-1)]))
    (tmp_path / "poses.txt").write_text("\n".join(lines) + "\n")
    frame_of_stamp = {100: 0, 200: 1, 300: 2}

    def motion(q, r):  # ground truth reference -> query
        T = np.linalg.inv(poses[q]) @ poses[r]
        return T[:3, :3], T[:3, 3] / np.linalg.norm(T[:3, 3])

    R0, t0 = motion(6, 4)
    R1, t1 = motion(8, 4)
    tilted = Rotation.from_euler("y", 2.0, degrees=True).as_matrix() @ R1
    odometry = [
        (200, 100, R0, t0),
        (300, 100, tilted, t1),
        (300, 200, None, None),
        (300, 999, R0, t0),
        (400, 100, R0, t0),
    ]
    args = argparse.Namespace(poses=str(tmp_path / "poses.txt"), images=str(images), max_images=10)
    result = pose_accuracy(args, odometry, frame_of_stamp, lambda stamp: stamp < 400)
    assert (result["valid"], result["invalid"], result["without_ground_truth"]) == (2, 1, 1)
    assert result["rotation_deg"]["p50"] == 1.0  # median of 0 and 2
    assert result["rotation_deg"]["p90"] == 1.8
    assert result["translation_deg"]["p90"] == 0.0


def test_node_pythonpath_runs_the_other_checkout(tmp_path):
    """--node-pythonpath: the node process imports superglue_ros from the given folder even when
    the benchmark runs inside this checkout (python -m puts the current directory first)."""
    other = tmp_path / "other"
    (other / "superglue_ros").mkdir(parents=True)
    (other / "superglue_ros" / "__init__.py").write_text("")
    where = [sys.executable, "-c", "import superglue_ros; print(superglue_ros.__file__)"]
    for pythonpath, expected in ((str(other), other), (None, REPO)):
        out = subprocess.run(
            where,
            cwd=REPO,
            env=node_benchmark.node_environment(pythonpath),
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert pathlib.Path(out).parent.parent == expected
