"""SuperGlue training on a lent GPU machine: the shipped file's recipe (model card, "Session
15"), for as many steps as the minutes allow, then the exported file and the log in OUT.

Why: on the team's 2-core CPUs one step of this recipe takes 3.6 s, so a session trains a few
hundred steps; a large GPU runs thousands in the 15 minutes a lent machine gives. The data
travels with the run as a packed real-pair cache (int8 descriptors, a share of the KITTI
frames and JPEG photos for the homographic batches, under the tool's 64 MiB carry limit):

    python -m superglue_ros.training.real_cache --pack /work/cache/train14 --out .gpu_cache \
        --images ../shared/datasets/photos/bsds500_train ../shared/datasets/photos/bsds500_val

On the device machine (carry ``.gpu_cache`` and ``.whl``, as scripts/device_check.py does):

    pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    PYTHONPATH=$PWD:/tmp/site python3 scripts/device_train.py --cache .gpu_cache \
        --minutes 8 --out $OUT

Then validate the returned ``superglue.pth`` here with the model card's commands before
shipping it. Dry run on the CPU: ``python scripts/device_train.py --cache DIR --device cpu
--minutes 1 --out /tmp/x``. Arguments after ``--`` go to the trainer and win over the recipe.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from superglue_ros.training import export, train_superglue  # noqa: E402

# session 15's recipe (model card), less what depends on the machine (device, threads, steps)
RECIPE = [
    "--homography-every", "2",
    "--size", "512", "384",
    "--num-keypoints", "384",
    "--real-keypoints", "512", "1024",
    "--layers", "3",
    "--lr", "5e-5",
    "--no-progress",
    "--log-every", "50",
]  # fmt: skip


def trainer_argv(args, extra: list[str]) -> list[str]:
    """The trainer's command line: data, recipe, machine, then the caller's overrides."""
    cache = pathlib.Path(args.cache)
    photos = cache / "photos"
    argv = ["--real-cache", str(cache)]
    if photos.is_dir() and any(photos.iterdir()):
        argv += ["--images", str(photos)]
    argv += RECIPE + [
        "--init", args.init,
        "--device", args.device,
        "--batch-size", str(args.batch_size),
        "--steps", str(args.steps),
        "--max-minutes", str(args.minutes),
        "--save-every", str(args.save_every),
        "--out", str(pathlib.Path(args.out) / "run"),
    ]  # fmt: skip
    if args.resume:
        argv.append("--resume")
    return argv + extra


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cache", required=True, help="folder written by real_cache --pack")
    p.add_argument("--out", required=True, help="run folder; superglue.pth and log.csv land here")
    p.add_argument("--device", default="cuda")
    p.add_argument("--minutes", type=float, default=8.0, help="training time before export")
    p.add_argument("--steps", type=int, default=100000, help="stop earlier at this step")
    p.add_argument("--batch-size", type=int, default=2, help="2 = the CPU recipe's")
    p.add_argument("--save-every", type=int, default=200)
    p.add_argument(
        "--init",
        default=str(ROOT / "superglue_ros" / "weights" / "superglue.pth"),
        help="starting SuperGlue file (default: the shipped one)",
    )
    p.add_argument("--resume", action="store_true", help="continue OUT/run/checkpoint.pth")
    args = p.parse_args(own)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    code = train_superglue.main(trainer_argv(args, extra))
    run = out / "run"
    if code != 0 or not (run / "checkpoint.pth").is_file():
        print(f"device_train: the trainer failed (exit {code})", file=sys.stderr)
        return code or 1
    code = export.main(
        [
            "--kind", "superglue",
            "--checkpoint", str(run / "checkpoint.pth"),
            "--out", str(out / "superglue.pth"),
            "--notes", f"device_train.py on {args.device}, init {pathlib.Path(args.init).name}, "
            f"batch {args.batch_size}, session 15's recipe",
        ]
    )  # fmt: skip
    for name in ("log.csv", "args.json"):
        if (run / name).is_file():
            shutil.copy(run / name, out / name)
    summary = dict(exit=code, out=str(out / "superglue.pth"))
    print(json.dumps(summary), file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
