"""Pieces shared by both trainers: image folders, homographic pairs, checkpoints, logs.

Checkpoints hold everything needed to continue bit-for-bit: model and optimizer state, the step,
and the states of every random generator the trainer draws from (numpy Generator for data,
torch CPU generator). They are written to a temporary file and renamed, so a crash while saving
never leaves a broken checkpoint behind.
"""

from __future__ import annotations

import copy
import csv
import os
import pathlib
import random
import shutil
import subprocess
import sys
import time

import cv2
import numpy as np
import torch

from ..homography import photometric_augment, sample_homography, valid_mask, warp_image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp"}


def list_images(dirs: list[str | os.PathLike]) -> list[pathlib.Path]:
    """Sorted image files (by suffix) directly inside or below each folder."""
    files = []
    for d in dirs:
        d = pathlib.Path(d)
        if not d.is_dir():
            raise FileNotFoundError(f"image folder not found: {d}")
        files += [p for p in d.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise FileNotFoundError(
            f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {list(map(str, dirs))}"
        )
    return sorted(files)


def read_gray(path: pathlib.Path) -> np.ndarray:
    """uint8 HxW grayscale; a clear error naming the file if it can't be decoded."""
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise ValueError(f"cannot read image: {path}")
    return img


def random_crop(
    rng: np.random.Generator,
    img: np.ndarray,
    size: tuple[int, int],
    scale_range: tuple[float, float] = (0.7, 2.0),
) -> np.ndarray:
    """Random rescale (log-uniform in scale_range, at least enough to cover the crop) then a
    random (width, height) crop. The range covers the evaluation's up-scaling of 481x321 photos
    to 640x480 (x1.33-1.5), so the networks see that blur level during training."""
    w, h = size
    ih, iw = img.shape[:2]
    scale = max(w / iw, h / ih, float(np.exp(rng.uniform(*np.log(scale_range)))))
    nw, nh = max(w, int(round(iw * scale))), max(h, int(round(ih * scale)))
    img = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    x0 = int(rng.integers(0, nw - w + 1))
    y0 = int(rng.integers(0, nh - h + 1))
    return img[y0 : y0 + h, x0 : x0 + w]


def homographic_pair(
    rng: np.random.Generator,
    img: np.ndarray,
    size: tuple[int, int],
    difficulty: float = 1.0,
    photometric: float = 1.0,
) -> dict:
    """One training pair from a photo: crop, random H, warp, independent photometric changes.

    Returns image0, image1 float32 [h,w] in [0,1], H (3x3, image0 px -> image1 px),
    valid1 bool [h,w] (image1 pixels that come from inside image0).
    """
    crop = random_crop(rng, img, size)
    H = sample_homography(rng, size[0], size[1], difficulty)
    warped = warp_image(crop, H, size)
    image0 = photometric_augment(rng, crop, photometric)
    image1 = photometric_augment(rng, warped, photometric)
    return dict(
        image0=image0.astype(np.float32) / 255.0,
        image1=image1.astype(np.float32) / 255.0,
        H=H,
        valid1=valid_mask(H, size, size),
    )


class PairSampler:
    """Draws homographic pairs from a list of image files, deterministically from a Generator."""

    def __init__(self, files, size, difficulty=1.0, photometric=1.0, cache_images=True):
        self.files = list(files)
        self.size = tuple(size)
        self.difficulty = difficulty
        self.photometric = photometric
        self.cache = {} if cache_images else None

    def image(self, i: int) -> np.ndarray:
        if self.cache is not None and i in self.cache:
            return self.cache[i]
        img = read_gray(self.files[i])
        if self.cache is not None:
            self.cache[i] = img
        return img

    def batch(self, rng: np.random.Generator, batch_size: int) -> dict:
        """image0/image1 [B,1,h,w] float tensors, H [B,3,3] float64, valid1 [B,h,w] bool."""
        idx = rng.integers(0, len(self.files), size=batch_size)
        pairs = [
            homographic_pair(rng, self.image(int(i)), self.size, self.difficulty, self.photometric)
            for i in idx
        ]
        return dict(
            image0=torch.from_numpy(np.stack([p["image0"] for p in pairs]))[:, None],
            image1=torch.from_numpy(np.stack([p["image1"] for p in pairs]))[:, None],
            H=torch.from_numpy(np.stack([p["H"] for p in pairs])),
            valid1=torch.from_numpy(np.stack([p["valid1"] for p in pairs])),
        )


def select_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> np.random.Generator:
    random.seed(seed)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def rng_state(rng: np.random.Generator) -> dict:
    """States of all generators, as plain containers that torch.load(weights_only=True) accepts."""
    st = rng.bit_generator.state
    state = dict(
        numpy_bit_generator=st["bit_generator"],
        numpy_state=str(st["state"]["state"]),
        numpy_inc=str(st["state"]["inc"]),
        numpy_has_uint32=int(st["has_uint32"]),
        numpy_uinteger=int(st["uinteger"]),
        torch=torch.get_rng_state(),
    )
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(rng: np.random.Generator, state: dict) -> None:
    rng.bit_generator.state = dict(
        bit_generator=state["numpy_bit_generator"],
        state=dict(state=int(state["numpy_state"]), inc=int(state["numpy_inc"])),
        has_uint32=int(state["numpy_has_uint32"]),
        uinteger=int(state["numpy_uinteger"]),
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    path: os.PathLike,
    model,
    optimizer,
    step: int,
    rng: np.random.Generator,
    extra: dict | None = None,
    average=None,
) -> None:
    """Atomic write (tmp file + rename) of model, optimizer, step and RNG states, and of the
    weight average (WeightAverage) under 'average_model' when one is given."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt = dict(
        model=model.state_dict(),
        optimizer=optimizer.state_dict(),
        step=int(step),
        rng=rng_state(rng),
        extra=extra or {},
    )
    if average is not None:
        ckpt["average_model"] = average.model.state_dict()
    tmp = path.with_name(path.name + ".tmp")
    torch.save(ckpt, tmp)
    os.replace(tmp, path)


def load_checkpoint(
    path: os.PathLike, model, optimizer, rng: np.random.Generator, map_location="cpu"
) -> dict:
    """Restore what save_checkpoint wrote; returns the checkpoint (step, extra)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated / not a torch file
        raise RuntimeError(f"cannot load checkpoint {path}: {e}") from e
    for key in ("model", "optimizer", "step", "rng"):
        if key not in ckpt:
            raise RuntimeError(f"checkpoint {path} lacks key {key!r}")
    model.load_state_dict(ckpt["model"])
    if optimizer is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
    restore_rng_state(rng, ckpt["rng"])
    return ckpt


class WeightAverage:
    """Exponential moving average of a model's weights (Polyak averaging).

    Fine-tuning with batches of two pairs makes the validation scores swing from one hundred
    steps to the next (model card, session 16); the average of the recent weights follows the
    trend without the swing. Buffers (BatchNorm statistics) are copied, not averaged."""

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"weight-average decay must lie in (0, 1), got {decay}")
        self.decay = float(decay)
        self.model = copy.deepcopy(model).requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for mine, theirs in zip(self.model.parameters(), model.parameters()):
            mine.lerp_(theirs, 1.0 - self.decay)
        for mine, theirs in zip(self.model.buffers(), model.buffers()):
            mine.copy_(theirs)


class CurveLog:
    """Append-only CSV of training/validation scalars plus a PNG of the curves."""

    def __init__(self, path: os.PathLike, fields: list[str]):
        self.path = pathlib.Path(path)
        self.fields = list(fields)
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerow(self.fields)

    def append(self, row: dict) -> None:
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([row.get(k, "") for k in self.fields])

    def rows(self) -> list[dict]:
        with open(self.path, newline="") as f:
            return list(csv.DictReader(f))

    def plot(self, png: os.PathLike, x: str = "step") -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = self.rows()
        keys = [k for k in self.fields if k not in (x, "time_s", "lr")]
        keys = [k for k in keys if any(_is_number(r.get(k)) for r in rows)]
        if not rows or not keys:
            return
        fig, axes = plt.subplots(len(keys), 1, figsize=(7, 2.2 * len(keys)), sharex=True)
        axes = np.atleast_1d(axes)
        for ax, k in zip(axes, keys):
            pts = [(float(r[x]), float(r[k])) for r in rows if _is_number(r.get(k))]
            ax.plot(*zip(*pts), ".-" if len(pts) < 50 else "-", lw=1, ms=3)
            ax.set_ylabel(k, fontsize=8)
            ax.grid(alpha=0.3)
        axes[-1].set_xlabel(x)
        fig.tight_layout()
        tmp = pathlib.Path(str(png) + ".tmp.png")
        fig.savefig(tmp, dpi=80)
        plt.close(fig)
        os.replace(tmp, png)


def _is_number(value) -> bool:
    """A CSV cell that holds a number (text columns such as 'kind' are not plotted)."""
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


def git_commit() -> str:
    try:
        return subprocess.check_output(
            ["git", "rev-parse", "HEAD"],
            text=True,
            cwd=pathlib.Path(__file__).resolve().parents[2],
            stderr=subprocess.DEVNULL,
        ).strip()
    except Exception:
        return "unknown"


def machine_description() -> str:
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {os.cpu_count()} cores, {dev}, torch {torch.__version__}"


def stop_on_sigterm() -> None:
    """Turn SIGTERM into KeyboardInterrupt so the trainers' finally-blocks save a checkpoint."""
    import signal

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


class Timer:
    """Accumulated wall time across resumed runs (stored in the checkpoint's extra)."""

    def __init__(self, previous_s: float = 0.0):
        self.start = time.time()
        self.previous_s = previous_s

    def total_s(self) -> float:
        return self.previous_s + time.time() - self.start


def run_training_loop(
    step: int,
    args,
    timer: Timer,
    log: CurveLog,
    out: pathlib.Path,
    train_step,
    save,
    validate=None,
    postfix=None,
) -> int:
    """The trainers' shared outer loop; returns the last step.

    train_step(step) does one optimisation step (step = steps done before it) and returns the
    row to log (its losses and statistics). Runs until args.steps or args.max_minutes in this
    process; validate() adds its metrics every args.val_every steps and at the end; save(step)
    writes the checkpoint and the curves are plotted every args.save_every steps, and both once
    more on exit, Ctrl-C or SIGTERM (see stop_on_sigterm). With args.keep_every > 0 the
    checkpoint of every keep_every-th step is also kept as OUT/step_NNNNNN.pth, so a long run's
    snapshots can be evaluated on the full sets afterwards."""
    from tqdm import tqdm

    bar = tqdm(total=args.steps, initial=step, disable=args.no_progress, dynamic_ncols=True)
    keep_every = getattr(args, "keep_every", 0)  # only the SuperGlue trainer declares it
    start = time.time()
    try:
        while step < args.steps:
            if args.max_minutes and time.time() - start > args.max_minutes * 60:
                break
            row = train_step(step)
            step += 1
            row = dict(step=step, time_s=round(timer.total_s(), 1), **row)
            if validate is not None and (step % args.val_every == 0 or step == args.steps):
                row.update(validate())
            log.append(row)
            bar.update(1)
            every = getattr(args, "log_every", 0)
            if every and (step % every == 0 or any(k.startswith("val_") for k in row)):
                print(
                    " ".join(
                        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                        for k, v in row.items()
                    ),
                    file=sys.stderr,
                    flush=True,
                )
            if postfix is not None:
                bar.set_postfix(**postfix(row))
            kept = keep_every > 0 and step % keep_every == 0
            if step % args.save_every == 0 or kept:
                save(step)
                log.plot(out / "curves.png")
            if kept:
                shutil.copyfile(out / "checkpoint.pth", out / f"step_{step:06d}.pth")
    except KeyboardInterrupt:
        print("interrupted: saving checkpoint", file=sys.stderr)
    finally:
        save(step)
        log.plot(out / "curves.png")
        bar.close()
    print(
        f"step {step}, wall time {timer.total_s() / 60:.1f} min; checkpoint {out / 'checkpoint.pth'}",
        file=sys.stderr,
    )
    return step
