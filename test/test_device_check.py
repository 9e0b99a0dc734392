"""scripts/device_check.py, the prepared check for a lent GPU machine, dry-run on the CPU so that
it still runs when a GPU is lent: models agree with themselves, the FrontEnd runs on the demo
sequence, training steps run and resume."""

import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_device_check_dry_run_on_cpu(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "device_check.py"),
            "--device",
            "cpu",
            "--frames",
            "7",
            "--train-steps",
            "2",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads((tmp_path / "device_check.json").read_text())
    assert report["environment"]["device"] == "cpu"
    assert report["models"]["same_keypoints"] == 1.0 and report["models"]["same_matches"] == 1.0
    run = report["frontend"]["cpu/reference"]
    assert len(run["inliers"]) == 7 and max(run["inliers"]) > 0
    assert report["training"]["returncode"] == 0 and report["training"]["resumed_returncode"] == 0
    assert "OK" in result.stdout
