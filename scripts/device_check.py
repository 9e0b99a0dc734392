"""CUDA checks and timings for a lent GPU machine, as one short run (about 2-4 minutes).

Why: CI and the team's machines have no GPU, yet the code must run with ``device: auto`` on
CUDA. When a session is lent a GPU machine (15 minutes in all), this script is what runs there:
1. the shipped SuperPoint/SuperGlue on CUDA against the same models on the CPU (fp32 reference
   runtime): identical keypoints, descriptor and matching agreement;
2. the FrontEnd (the node's core) on the demo's synthetic loop sequence on CUDA and on the CPU:
   odometry inliers per frame agree, stage timings on both;
3. a few SuperGlue training steps on CUDA (homographic pairs of the photos scikit-image ships),
   their time per step, and a resumed step (checkpoint written and read back).
Figures go to stdout and ``OUT/device_check.json``. Nothing needs ../shared or the internet.

Dry run here (CPU only, the same code path): ``python scripts/device_check.py --device cpu``.
On the device machine (its python3 has torch/CUDA, OpenCV, SciPy, scikit-image; poselib travels
as a wheel in ``.whl``; see README, "GPU"):
``pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl; PYTHONPATH=$PWD:/tmp/site
python3 scripts/device_check.py --out $OUT``
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from superglue_ros.frontend.pipeline import Frame, FrontEnd  # noqa: E402
from superglue_ros.frontend.synthetic import make_sequence  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def environment(device: torch.device) -> dict:
    info = dict(
        torch=torch.__version__,
        device=str(device),
        cuda=torch.cuda.is_available(),
        python=sys.version.split()[0],
        cpus=os.cpu_count(),
    )
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["gpu_memory_gib"] = round(
            torch.cuda.get_device_properties(device).total_memory / 2**30, 1
        )
    return info


def model_agreement(device: torch.device, frames: list[np.ndarray]) -> dict:
    """Shipped models, fp32 reference runtime: device vs CPU on pairs of the sequence."""
    cpu = FrontEnd.from_preset("superglue", device="cpu", runtime="reference", max_keypoints=1024)
    dev = FrontEnd.from_preset(
        "superglue", device=str(device), runtime="reference", max_keypoints=1024
    )
    same_kp, desc_diff, same_matches = [], [], []
    for a, b in zip(frames[:-3:3], frames[3::3]):
        fa_c, fb_c = cpu.extractor.extract(a), cpu.extractor.extract(b)
        fa_d = dev.extractor.extract(a)
        n = min(len(fa_c.keypoints), len(fa_d.keypoints))
        close = np.linalg.norm(fa_c.keypoints[:n] - fa_d.keypoints[:n], axis=1) < 1e-3
        same_kp.append(float(close.mean()) if n else 0.0)
        if close.any():
            desc_diff.append(
                float(np.abs(fa_c.descriptors[:n][close] - fa_d.descriptors[:n][close]).max())
            )
        m_c = cpu.matcher.match(fa_c, fb_c).matches0
        m_d = dev.matcher.match(fa_c, fb_c).matches0  # same features: the matcher alone
        same_matches.append(float((m_c == m_d).mean()) if len(m_c) else 1.0)
    return dict(
        pairs=len(same_kp),
        same_keypoints=round(min(same_kp), 4),
        descriptor_max_abs_diff=max(desc_diff) if desc_diff else None,
        same_matches=round(min(same_matches), 4),
    )


def frontend_run(device: str, runtime: str, frames, K, stamps) -> dict:
    fe = FrontEnd.from_preset("superglue", device=device, runtime=runtime, max_keypoints=512)
    inliers, times = [], []
    for i, (image, stamp) in enumerate(zip(frames, stamps)):
        t0 = time.perf_counter()
        result = fe.process(Frame(image, stamp, "camera", K))
        _sync(torch.device(device))
        if i >= 3:  # warm-up: first calls compile / allocate
            times.append(time.perf_counter() - t0)
        odo = result.odometry
        inliers.append(-1 if odo is None else int(odo.num_inliers))
    return dict(
        inliers=inliers,
        frame_ms_p50=round(float(np.median(times)) * 1000, 1),
        frame_ms_p90=round(float(np.percentile(times, 90)) * 1000, 1),
        keyframes=len(fe.cache),
    )


def training_steps(device: str, steps: int) -> dict:
    """A few SuperGlue training steps on CUDA, then one resumed step, in a temporary folder."""
    import skimage

    photos = pathlib.Path(skimage.__file__).parent / "data"
    with tempfile.TemporaryDirectory() as tmp:
        base = [
            sys.executable,
            "-m",
            "superglue_ros.training.train_superglue",
            "--images",
            str(photos),
            "--out",
            tmp,
            "--device",
            device,
            "--size",
            "320",
            "240",
            "--num-keypoints",
            "256",
            "--val-pairs",
            "2",
            "--val-size",
            "320",
            "240",
            "--val-keypoints",
            "256",
            "--val-every",
            "1000",
            "--save-every",
            str(steps),
            "--no-progress",
        ]
        env = dict(
            os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
        )
        t0 = time.perf_counter()
        first = subprocess.run(
            base + ["--steps", str(steps)], env=env, capture_output=True, text=True
        )
        t_first = time.perf_counter() - t0
        resumed = subprocess.run(
            base + ["--steps", str(steps + 1), "--resume"], env=env, capture_output=True, text=True
        )
        return dict(
            steps=steps,
            returncode=first.returncode,
            resumed_returncode=resumed.returncode,
            wall_s=round(t_first, 1),
            tail=(first.stdout + first.stderr)[-1500:],
            resumed_tail=(resumed.stdout + resumed.stderr)[-800:],
        )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--device", default="cuda", help="'cuda' on the device machine, 'cpu' to dry-run"
    )
    p.add_argument("--frames", type=int, default=24, help="frames of the synthetic sequence")
    p.add_argument("--train-steps", type=int, default=20)
    p.add_argument("--out", default=os.environ.get("OUT", "."))
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("device_check: CUDA is not available here", file=sys.stderr)
        return 2
    report: dict = dict(environment=environment(device))
    print(json.dumps(report["environment"]))

    seq = make_sequence(num_frames=args.frames)
    import cv2

    frames = [cv2.cvtColor(seq.frame(i), cv2.COLOR_BGR2GRAY) for i in range(len(seq))]
    stamps = [1_000_000_000 + i * 100_000_000 for i in range(len(frames))]

    report["models"] = model_agreement(device, frames)
    print("models, device vs cpu (fp32):", json.dumps(report["models"]))
    runs = {
        f"{args.device}/reference": (args.device, "reference"),
        "cpu/reference": ("cpu", "reference"),
    }
    if device.type == "cuda":
        runs[f"{args.device}/fast"] = (args.device, "fast")
    report["frontend"] = {
        name: frontend_run(d, r, frames, seq.K, stamps) for name, (d, r) in runs.items()
    }
    ref = np.array(report["frontend"]["cpu/reference"]["inliers"])
    for name, run in report["frontend"].items():
        inl = np.array(run["inliers"])
        both = (inl > 0) & (ref > 0)
        run["inliers_vs_cpu"] = (
            round(float(np.median(inl[both] / ref[both])), 3) if both.any() else None
        )
        print(
            f"frontend {name}: frame p50 {run['frame_ms_p50']} ms, p90 {run['frame_ms_p90']} ms, "
            f"keyframes {run['keyframes']}, inliers/cpu median {run['inliers_vs_cpu']}"
        )
    if args.train_steps > 0:
        report["training"] = training_steps(args.device, args.train_steps)
        t = report["training"]
        print(
            f"training: {t['steps']} steps in {t['wall_s']} s (rc {t['returncode']}, resumed rc "
            f"{t['resumed_returncode']})\n{t['tail'][-600:]}"
        )
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "device_check.json").write_text(json.dumps(report, indent=2))
    ok = (
        report["models"]["same_keypoints"] >= 0.9
        and report["models"]["same_matches"] >= 0.9
        and all(
            r["inliers_vs_cpu"] is None or r["inliers_vs_cpu"] >= 0.9
            for r in report["frontend"].values()
        )
        and report.get("training", {}).get("returncode", 0) == 0
        and report.get("training", {}).get("resumed_returncode", 0) == 0
    )
    print("device_check:", "OK" if ok else "DIFFERENCES (see device_check.json)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
