"""Train SuperGlue by homographic self-supervision (SuperGlue paper, Sec. 5.1 recipe).

Each sample: a photo crop, a random homography and independent photometric changes
(superglue_ros.homography); our frozen SuperPoint detects up to K keypoints on both images,
a fraction of each set is replaced/filled by random positions (descriptors and scores sampled
there) so every image holds exactly K keypoints; the ground truth comes from warping
(gt_matches.ground_truth_assignment: mutual nearest within 3 px = match, > 5 px from all =
dustbin, else ignored); the loss is the negative log-likelihood of the ground-truth matches and
both dustbins under the Sinkhorn assignment (gt_matches.assignment_nll).

Initialisation ('--init identity', default): the residual branches of the GNN and the keypoint
encoder start at zero and final_proj at a scaled identity, so the untrained network is
'Sinkhorn over descriptor similarities' (a soft mutual nearest neighbour) and training refines
it; on a CPU budget this converges far faster than a random start (measured, see MODEL_CARD.md).

Usage: superglue-train-superglue --images DIR [DIR ...] --out runs/superglue [--resume]
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

import cv2
import numpy as np
import torch

from ..models.superglue import SuperGlue
from ..models.superpoint import SuperPoint, sample_descriptors
from .common import (CurveLog, PairSampler, Timer, list_images, load_checkpoint,
                     run_training_loop, save_checkpoint, seed_everything, select_device,
                     stop_on_sigterm)
from .gt_matches import assignment_nll, ground_truth_assignment

LOG_FIELDS = ["step", "time_s", "lr", "loss", "gt_matches", "match_recall_train",
              "val_precision", "val_recall", "val_num_matches", "val_h_auc3", "val_loss"]


def gnn_layer_names(num_pairs: int) -> list[str]:
    return ["self", "cross"] * int(num_pairs)


def identity_init(model: SuperGlue, scale: float = 15.0, bin_score: float = 7.0) -> None:
    """Start as Sinkhorn over scaled descriptor similarities (see module docstring)."""
    with torch.no_grad():
        for layer in model.gnn.layers:
            last = layer.mlp[-1]
            last.weight.zero_()
            last.bias.zero_()
        model.kenc.encoder[-1].weight.zero_()
        model.kenc.encoder[-1].bias.zero_()
        d = model.final_proj.weight.shape[0]
        model.final_proj.weight.copy_(torch.eye(d)[..., None] * scale)
        model.final_proj.bias.zero_()
        model.bin_score.fill_(bin_score)


@torch.no_grad()
def detect(superpoint: SuperPoint, images: torch.Tensor, num_keypoints: int,
           random_fraction: float, rng: np.random.Generator, border: int = 4) -> list[dict]:
    """Frozen SuperPoint on [B,1,h,w] images -> per image exactly num_keypoints keypoints:
    the top detections (at most (1 - random_fraction) * K), the rest random positions.
    Returns dicts with keypoints [K,2], scores [K], descriptors [K,D], is_random [K] bool."""
    h, w = images.shape[-2:]
    dense = superpoint.forward_dense(superpoint.pad_to_cell(images))
    heat = superpoint.logits_to_heatmap(dense["logits"])
    max_det = int(round(num_keypoints * (1.0 - random_fraction)))
    conf = superpoint.conf
    old = conf["max_keypoints"]
    conf["max_keypoints"] = max_det
    kpts, scores = superpoint.extract_keypoints(heat, h, w)
    conf["max_keypoints"] = old
    out = []
    for i in range(images.shape[0]):
        k, s = kpts[i], scores[i]
        n_rand = num_keypoints - len(k)
        rxy = np.stack([rng.uniform(border, w - 1 - border, n_rand),
                        rng.uniform(border, h - 1 - border, n_rand)], -1)
        rk = torch.from_numpy(rxy).float().to(k.device)
        ri = rk.round().long()
        rs = heat[i, ri[:, 1], ri[:, 0]]
        k_all = torch.cat([k.float(), rk])
        s_all = torch.cat([s.float(), rs.float()])
        desc = sample_descriptors(k_all, dense["descriptors"][i],
                                  convention=superpoint.conf["descriptor_sampling"])
        is_random = torch.zeros(len(k_all), dtype=torch.bool)
        is_random[len(k):] = True
        out.append(dict(keypoints=k_all, scores=s_all, descriptors=desc, is_random=is_random))
    return out


def make_batch(superpoint, sampler, rng, batch_size, num_keypoints, random_fraction, device):
    """Homographic pairs -> SuperGlue input dict + ground truth tensors."""
    pairs = sampler.batch(rng, batch_size)
    f0 = detect(superpoint, pairs["image0"].to(device), num_keypoints, random_fraction, rng)
    f1 = detect(superpoint, pairs["image1"].to(device), num_keypoints, random_fraction, rng)
    w, h = sampler.size
    gts = [ground_truth_assignment(a["keypoints"].cpu().numpy(), b["keypoints"].cpu().numpy(),
                                   pairs["H"][i].numpy()) for i, (a, b) in enumerate(zip(f0, f1))]
    stack = lambda feats, key: torch.stack([f[key] for f in feats])  # noqa: E731
    size = torch.tensor([[w, h]] * batch_size, dtype=torch.float32, device=device)
    data = dict(keypoints0=stack(f0, "keypoints"), scores0=stack(f0, "scores"),
                descriptors0=stack(f0, "descriptors"), image_size0=size,
                keypoints1=stack(f1, "keypoints"), scores1=stack(f1, "scores"),
                descriptors1=stack(f1, "descriptors"), image_size1=size)
    gt = {k: torch.from_numpy(np.stack([g[k] for g in gts])).to(device)
          for k in ("matches0", "matches1", "unmatched0", "unmatched1")}
    return data, gt


def training_loss(model, data, gt) -> tuple[torch.Tensor, dict]:
    out = model(data)
    loss = assignment_nll(out["log_assignment"], gt["matches0"], gt["unmatched0"], gt["unmatched1"])
    is_gt = gt["matches0"] >= 0
    hit = (out["matches0"] == gt["matches0"]) & is_gt
    stats = dict(gt_matches=float(is_gt.sum(1).float().mean()),
                 match_recall_train=float(hit.sum() / is_gt.sum().clamp(min=1)))
    return loss, stats


def prepare_validation(superpoint, folder, num_pairs, size, num_keypoints, device):
    """Fixed synthetic pairs (superglue_ros.evaluation, seed 0) with SuperPoint features
    computed once (the detector is frozen): list of (pair, data dict)."""
    from ..evaluation.synthetic import make_homography_pairs
    pairs = make_homography_pairs(folder, num_pairs=num_pairs, seed=0, size=tuple(size))
    superpoint.conf["max_keypoints"] = num_keypoints
    out = []
    with torch.no_grad():
        for p in pairs:
            feats = []
            for im in (p.image0, p.image1):
                t = torch.from_numpy(im).float()[None, None].to(device) / 255
                feats.append({k: v[0] for k, v in superpoint(t).items()})
            wh = torch.tensor([[p.image_size[0], p.image_size[1]]], dtype=torch.float32, device=device)
            data = dict(keypoints0=feats[0]["keypoints"][None], scores0=feats[0]["scores"][None],
                        descriptors0=feats[0]["descriptors"][None], image_size0=wh,
                        keypoints1=feats[1]["keypoints"][None], scores1=feats[1]["scores"][None],
                        descriptors1=feats[1]["descriptors"][None], image_size1=wh)
            gt = ground_truth_assignment(feats[0]["keypoints"].cpu().numpy(),
                                         feats[1]["keypoints"].cpu().numpy(), p.H)
            gt = {k: torch.from_numpy(v)[None].to(device) for k, v in gt.items()}
            out.append((p, data, gt))
    return out


@torch.no_grad()
def validate(model, val) -> dict:
    """Matching precision/recall at 3 px, homography AUC at 3 px (RANSAC), validation NLL."""
    from ..evaluation.metrics import error_auc, homography_corner_error, match_precision_recall

    was_training = model.training
    model.eval()
    prec, rec, nm, errs, losses = [], [], [], [], []
    for p, data, gt in val:
        out = model(data)
        losses.append(float(assignment_nll(out["log_assignment"], gt["matches0"],
                                           gt["unmatched0"], gt["unmatched1"])))
        k0 = data["keypoints0"][0].cpu().numpy()
        k1 = data["keypoints1"][0].cpu().numpy()
        m0 = out["matches0"][0].cpu().numpy()
        r = match_precision_recall(k0, k1, m0, p.H, p.image_size, 3.0)
        prec.append(r["precision"])
        rec.append(r["recall"])
        nm.append(r["num_matches"])
        valid = m0 >= 0
        H_est = None
        if valid.sum() >= 4:
            H_est, _ = cv2.findHomography(k0[valid], k1[m0[valid]], cv2.RANSAC, 3.0)
        errs.append(homography_corner_error(H_est, p.H, p.image_size))
    model.train(was_training)
    return dict(val_precision=float(np.nanmean(prec)), val_recall=float(np.nanmean(rec)),
                val_num_matches=float(np.mean(nm)), val_h_auc3=float(error_auc(errs, [3.0])[0]),
                val_loss=float(np.mean(losses)))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="superglue-train-superglue", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", nargs="+", required=True, help="folder(s) of training photos")
    p.add_argument("--out", default="runs/superglue", help="run folder (checkpoint, log, plot)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pth")
    p.add_argument("--superpoint", default=None,
                   help="SuperPoint weights (default: the shipped superglue_ros/weights/superpoint.pth)")
    p.add_argument("--init", default="identity",
                   help="'identity' (see module doc), 'random', or a SuperGlue weights file")
    p.add_argument("--layers", type=int, default=3,
                   help="number of self+cross layer pairs (9 = the published architecture)")
    p.add_argument("--sinkhorn-iterations", type=int, default=100)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--size", type=int, nargs=2, default=[512, 384], metavar=("W", "H"))
    p.add_argument("--num-keypoints", type=int, default=384, help="keypoints per image")
    p.add_argument("--random-fraction", type=float, default=0.1,
                   help="at least this fraction of each keypoint set is random positions")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--bin-lr-scale", type=float, default=30.0, help="lr multiplier of bin_score")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--difficulty", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=2, help="CPU threads for SuperPoint (large convs)")
    p.add_argument("--gnn-threads", type=int, default=1,
                   help="CPU threads for SuperGlue: its many small ops run much faster on one "
                        "thread than on two when the CPU is shared (measured 10x)")
    p.add_argument("--save-every", type=int, default=25)
    p.add_argument("--val-every", type=int, default=50)
    p.add_argument("--val-images", default=None)
    p.add_argument("--val-pairs", type=int, default=12)
    p.add_argument("--val-size", type=int, nargs=2, default=[640, 480], metavar=("W", "H"))
    p.add_argument("--val-keypoints", type=int, default=512)
    p.add_argument("--no-progress", action="store_true")
    return p


def build_model(args) -> SuperGlue:
    conf = dict(gnn_layers=gnn_layer_names(args.layers),
                sinkhorn_iterations=args.sinkhorn_iterations)
    model = SuperGlue(conf)
    if args.init == "identity":
        identity_init(model)
    elif args.init != "random":
        from ..models.weights import load_model
        loaded = load_model("superglue", args.init, conf=conf)
        model.load_state_dict(loaded.state_dict())
    return model


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    stop_on_sigterm()
    torch.set_num_threads(args.threads)
    device = select_device(args.device)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pth"

    from ..models.weights import load_model
    superpoint = load_model("superpoint", args.superpoint, device=device).eval()
    for prm in superpoint.parameters():
        prm.requires_grad_(False)

    rng = seed_everything(args.seed)
    files = list_images(args.images)
    sampler = PairSampler(files, args.size, args.difficulty)
    model = build_model(args).to(device).train()
    bin_params = [model.bin_score]
    other = [p for n, p in model.named_parameters() if n != "bin_score"]
    opt = torch.optim.Adam([dict(params=other, lr_scale=1.0),
                            dict(params=bin_params, lr_scale=args.bin_lr_scale)], lr=args.lr)
    step, extra = 0, {}
    if args.resume:
        ckpt = load_checkpoint(ckpt_path, model, opt, rng, map_location=device)
        step, extra = ckpt["step"], ckpt.get("extra", {})
        print(f"resumed from {ckpt_path} at step {step}", file=sys.stderr)
    timer = Timer(float(extra.get("wall_time_s", 0.0)))
    log = CurveLog(out / "log.csv", LOG_FIELDS)
    with open(out / "args.json", "w") as f:
        json.dump(vars(args), f, indent=1)
    torch.set_num_threads(args.threads)
    val = (prepare_validation(superpoint, args.val_images, args.val_pairs, args.val_size,
                              args.val_keypoints, device) if args.val_images else None)

    def lr_at(s):
        return args.lr * min(1.0, (s + 1) / max(args.warmup, 1))

    def save(step):
        save_checkpoint(ckpt_path, model, opt, step, rng,
                        dict(wall_time_s=timer.total_s(), images=[str(d) for d in args.images],
                             num_images=len(files), args=vars(args),
                             superpoint=str(getattr(superpoint, "weights_path", args.superpoint))))

    def train_step(step):
        for g in opt.param_groups:
            g["lr"] = lr_at(step) * g["lr_scale"]
        torch.set_num_threads(args.threads)
        data, gt = make_batch(superpoint, sampler, rng, args.batch_size, args.num_keypoints,
                              args.random_fraction, device)
        torch.set_num_threads(args.gnn_threads)
        loss, stats = training_loss(model, data, gt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return dict(lr=lr_at(step), loss=float(loss.detach()), **stats)

    torch.set_num_threads(args.gnn_threads)
    if val is not None and step == 0:
        log.append(dict(step=0, time_s=0.0, **validate(model, val)))
    run_training_loop(
        step, args, timer, log, out, train_step, save,
        validate=(lambda: validate(model, val)) if val is not None else None,
        postfix=lambda row: dict(loss=f"{row['loss']:.3f}", rec=f"{row['match_recall_train']:.2f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
