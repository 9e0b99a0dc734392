"""Quantisation-aware fine-tuning of SuperPoint's backbone for int8 (models/quantization.py).

Recipe: self-distillation. The float network (a weights file, the shipped one by default) is the
teacher; the student starts as its copy, runs with int8 fake quantisation of every convolution
and learns to reproduce the teacher's dense outputs on random photo crops:
- detector: KL(teacher || student) over the 65 bins of every 8x8 cell (the heatmap, its NMS
  peaks and their sub-pixel offsets come from these logits);
- descriptor: 1 - cosine between the student's and the teacher's L2-normalised descriptor in
  every cell (what matching compares).
Every cell is supervised, so a few hundred CPU steps move the int8 network most of the way back.
The student's weights are first equalised across layers (the same float function with
int8-friendly ranges); activation scales start from a quantile calibration and are learned (LSQ).

Usage: superglue-quantize-superpoint --images DIR [DIR ...] --out runs/sp_int8 [--resume]
       (OUT/best.pth keeps the student of the lowest validation loss)
       then --export FILE writes the float weights file with the int8 weights as its 'int8'
       entry (the shipped file: --export superglue_ros/weights/superpoint.pth).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import math
import pathlib
import sys

import numpy as np
import torch

from ..homography import photometric_augment
from ..models.quantization import (
    ACTIVATION_POINTS,
    IMAGE_SCALE,
    Int8Backbone,
    calibrate_scales,
    equalize_ranges,
)
from ..models.weights import add_int8_variant, default_weights_path, load_model
from .common import (
    CurveLog,
    Timer,
    git_commit,
    list_images,
    load_checkpoint,
    machine_description,
    random_crop,
    read_gray,
    run_training_loop,
    save_checkpoint,
    seed_everything,
    stop_on_sigterm,
)
from .train_superpoint import detector_loss

LOG_FIELDS = ["step", "time_s", "lr", "loss", "det_kl", "desc_cos", "val_det_kl", "val_desc_cos"]


def crop_batch(rng: np.random.Generator, images: list, size, batch_size: int, photometric=0.5):
    """[B,1,h,w] float crops in [0,1] of random images, quantised to 8 bits (as camera frames)."""
    idx = rng.integers(0, len(images), size=batch_size)
    crops = [
        photometric_augment(rng, random_crop(rng, images[int(i)], size), photometric) for i in idx
    ]
    return torch.from_numpy(np.stack(crops).astype(np.float32) / 255.0)[:, None]


def distillation_losses(student: Int8Backbone, teacher, batch: torch.Tensor) -> dict:
    """Detector KL and descriptor (1 - cosine) of the int8 student against the float teacher,
    each averaged over all cells of ``batch`` [B,1,H,W]."""
    with torch.no_grad():
        target = teacher.forward_dense(batch)
    logits, desc = student(batch)
    cells = torch.ones(logits.shape[0], *logits.shape[2:], dtype=torch.bool)
    det = detector_loss(logits, target["logits"], cells)
    cos = 1.0 - (desc * target["descriptors"]).sum(1).mean()
    return dict(det=det, desc=cos)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--images", nargs="+", required=True, help="folder(s) of training photos")
    p.add_argument("--weights", default=None, help="float SuperPoint file (default: shipped)")
    p.add_argument("--out", default="runs/superpoint_int8", help="run folder")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pth")
    p.add_argument("--steps", type=int, default=450, help="length of the cosine schedule")
    p.add_argument("--max-minutes", type=float, default=0, help="stop this process after (0: off)")
    p.add_argument("--batch-size", type=int, default=6)
    p.add_argument("--size", type=int, nargs=2, default=[320, 240], metavar=("W", "H"))
    p.add_argument("--lr", type=float, default=5e-6, help="weights' peak learning rate")
    p.add_argument("--scale-lr", type=float, default=2e-4, help="log-scales' peak learning rate")
    p.add_argument("--desc-weight", type=float, default=10.0)
    p.add_argument("--calibration-images", type=int, default=16)
    p.add_argument("--val-images", type=int, default=16, help="held-out files (every k-th)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--save-every", type=int, default=25)
    p.add_argument("--val-every", type=int, default=25)
    p.add_argument("--log-every", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--export", default=None, help="write the weights file FILE and exit")
    p.add_argument(
        "--export-from",
        choices=("best", "last"),
        default="best",
        help="--export: the student of the lowest validation loss (OUT/best.pth) or the last",
    )
    return p


def export_weights(student: Int8Backbone, float_weights, out, info: dict) -> None:
    """The float weights file, unchanged, plus the student as its int8 entry (weights.py)."""
    source = float_weights or default_weights_path("superpoint")
    variant = dict(state_dict=student.model.state_dict(), activation_scales=student.scale_list())
    meta = dict(
        trainer="superglue_ros.training.quantize_superpoint",
        machine=machine_description(),
        git_commit=git_commit(),
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **info,
    )
    add_int8_variant(source, out, variant, meta)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    stop_on_sigterm()
    torch.set_num_threads(args.threads)
    if args.size[0] % 8 or args.size[1] % 8:
        raise SystemExit(f"--size must be multiples of 8, got {args.size}")
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pth"
    rng = seed_everything(args.seed)

    teacher = load_model("superpoint", args.weights).float().eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    files = list_images(args.images)
    every = max(len(files) // max(args.val_images, 1), 2)
    val_files, train_files = (
        files[::every][: args.val_images],
        [f for i, f in enumerate(files) if i % every or i // every >= args.val_images],
    )
    best_path = out / "best.pth"
    if args.export:  # a checkpoint holds the whole student: no images are read
        student = Int8Backbone(copy.deepcopy(teacher), [IMAGE_SCALE] * len(ACTIVATION_POINTS))
        source = best_path if args.export_from == "best" else ckpt_path
        ckpt = load_checkpoint(source, student, None, rng)
        export_weights(
            student,
            args.weights,
            args.export,
            dict(
                steps=ckpt["step"],
                wall_time_s=round(float(ckpt.get("extra", {}).get("wall_time_s", 0.0)), 1),
                data=[pathlib.Path(d).name for d in args.images],
                num_images=len(train_files),
                teacher=pathlib.Path(str(teacher.weights_path)).name,
                batch_size=args.batch_size,
                crop_size=args.size,
                lr=args.lr,
                scale_lr=args.scale_lr,
                desc_weight=args.desc_weight,
                seed=args.seed,
            ),
        )
        print(f"wrote {args.export} from {source} (step {ckpt['step']})", file=sys.stderr)
        return 0
    images = [read_gray(f) for f in train_files]
    val_batch = torch.cat(
        [
            crop_batch(np.random.default_rng(i), [read_gray(f)], args.size, 1, 0)
            for i, f in enumerate(val_files)
        ]
    )
    calib = crop_batch(
        np.random.default_rng(args.seed), images, args.size, args.calibration_images, 0
    )
    student_model = copy.deepcopy(teacher)
    equalize_ranges(student_model)  # the same float function, int8-friendly weight ranges
    student = Int8Backbone(student_model, calibrate_scales(student_model, calib)).train()
    for p in student_model.parameters():
        p.requires_grad_(True)
    weights = [p for n, p in student.named_parameters() if n != "log_scales"]
    opt = torch.optim.Adam(
        [dict(params=weights, lr=args.lr), dict(params=[student.log_scales], lr=args.scale_lr)]
    )
    step, extra = 0, {}
    if args.resume:
        ckpt = load_checkpoint(ckpt_path, student, opt, rng)
        step, extra = ckpt["step"], ckpt.get("extra", {})
        print(f"resumed from {ckpt_path} at step {step}", file=sys.stderr)
    timer = Timer(float(extra.get("wall_time_s", 0.0)))
    info = dict(
        images=[str(d) for d in args.images],
        num_images=len(train_files),
        teacher=str(teacher.weights_path),
        args=vars(args),
    )
    log = CurveLog(out / "log.csv", LOG_FIELDS)
    with open(out / "args.json", "w") as f:
        json.dump(vars(args), f, indent=1)

    best_loss = [float(extra.get("best_val_loss", math.inf))]  # lowest so far (best.pth's)
    done = [step]  # steps done

    def save(step, path=ckpt_path):
        save_checkpoint(
            path,
            student,
            opt,
            step,
            rng,
            dict(wall_time_s=timer.total_s(), best_val_loss=best_loss[0], **info),
        )

    def lr_factor(step):
        """Cosine decay from 1 to 0.01 over --steps (a fixed schedule, so resuming is exact)."""
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(step / args.steps, 1.0)))

    def train_step(step):
        done[0] = step + 1
        for group, base in zip(opt.param_groups, (args.lr, args.scale_lr)):
            group["lr"] = base * lr_factor(step)
        batch = crop_batch(rng, images, args.size, args.batch_size)
        losses = distillation_losses(student, teacher, batch)
        loss = losses["det"] + args.desc_weight * losses["desc"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return dict(
            lr=args.lr * lr_factor(step),
            loss=float(loss.detach()),
            det_kl=float(losses["det"].detach()),
            desc_cos=float(losses["desc"].detach()),
        )

    def validate():
        student.eval()
        with torch.no_grad():
            losses = distillation_losses(student, teacher, val_batch)
        student.train()
        val_loss = float(losses["det"] + args.desc_weight * losses["desc"])
        if val_loss < best_loss[0] and done[0] > 0:
            best_loss[0] = val_loss
            save(done[0], best_path)
        return dict(val_det_kl=float(losses["det"]), val_desc_cos=float(losses["desc"]))

    print(f"step {step}: validation before training {validate()}", file=sys.stderr)
    run_training_loop(
        step,
        args,
        timer,
        log,
        out,
        train_step,
        save,
        validate=validate,
        postfix=lambda row: dict(kl=f"{row['det_kl']:.4f}", cos=f"{row['desc_cos']:.4f}"),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
