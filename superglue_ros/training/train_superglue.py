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

Real motion ('--real-cache DIR', issue 10): pairs of the KITTI train sequences with the frozen
SuperPoint's features cached once (training/real_cache.py) and labels from the ground-truth
relative pose (training/epipolar_labels.py: depth-segment epipolar geometry; exact matches,
exact dustbins, and a set loss that forbids mass outside each keypoint's epipolar band);
'--homography-every N' mixes in a homographic photo pair every N-th step so homography quality
does not collapse. Validation on cached real pairs (pose AUC, the validation split) picks the
checkpoint: OUT/best.pth holds the best one so far.

Fine-tuning ('--init FILE'): '--lr-schedule cosine' decays the rate to '--lr-min' and
'--weight-average DECAY' keeps a moving average of the weights (validated, picked and exported
in place of the last weights), both against the swings of small-batch steps.

Usage: superglue-train-superglue --images DIR [DIR ...] --out runs/superglue [--resume]
       superglue-train-superglue --real-cache /work/cache/train10 [--images DIR ...
           --homography-every 4] --init superglue_ros/weights/superglue.pth --out runs/sg_real
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import sys

import cv2
import numpy as np
import torch

from ..models.superglue import SuperGlue
from ..models.superpoint import SuperPoint, sample_descriptors
from .common import (
    CurveLog,
    PairSampler,
    Timer,
    WeightAverage,
    list_images,
    load_checkpoint,
    run_training_loop,
    save_checkpoint,
    seed_everything,
    select_device,
    stop_on_sigterm,
)
from .epipolar_labels import LABEL_SOURCES, candidate_set_nll, epipolar_labels
from .gt_matches import assignment_nll, ground_truth_assignment

LOG_FIELDS = [
    "step",
    "time_s",
    "lr",
    "loss",
    "gt_matches",
    "match_recall_train",
    "kind",
    "set_loss",
    "gt_unmatched",
    "val_precision",
    "val_recall",
    "val_num_matches",
    "val_h_auc3",
    "val_loss",
    "val_kitti07_auc5",
    "val_kitti07_auc10",
    "val_kitti07_matches",
    "val_kitti07_inliers",
    "val_euroc_auc5",
    "val_euroc_auc10",
    "val_euroc_matches",
    "val_euroc_inliers",
    "val_real_score",
]


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
def detect(
    superpoint: SuperPoint,
    images: torch.Tensor,
    num_keypoints: int,
    random_fraction: float,
    rng: np.random.Generator,
    border: int = 4,
) -> list[dict]:
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
        rxy = np.stack(
            [
                rng.uniform(border, w - 1 - border, n_rand),
                rng.uniform(border, h - 1 - border, n_rand),
            ],
            -1,
        )
        rk = torch.from_numpy(rxy).float().to(k.device)
        ri = rk.round().long()
        rs = heat[i, ri[:, 1], ri[:, 0]]
        k_all = torch.cat([k.float(), rk])
        s_all = torch.cat([s.float(), rs.float()])
        desc = sample_descriptors(
            k_all, dense["descriptors"][i], convention=superpoint.conf["descriptor_sampling"]
        )
        is_random = torch.zeros(len(k_all), dtype=torch.bool)
        is_random[len(k) :] = True
        out.append(dict(keypoints=k_all, scores=s_all, descriptors=desc, is_random=is_random))
    return out


def make_batch(superpoint, sampler, rng, batch_size, num_keypoints, random_fraction, device):
    """Homographic pairs -> SuperGlue input dict + ground truth tensors."""
    pairs = sampler.batch(rng, batch_size)
    f0 = detect(superpoint, pairs["image0"].to(device), num_keypoints, random_fraction, rng)
    f1 = detect(superpoint, pairs["image1"].to(device), num_keypoints, random_fraction, rng)
    w, h = sampler.size
    gts = [
        ground_truth_assignment(
            a["keypoints"].cpu().numpy(), b["keypoints"].cpu().numpy(), pairs["H"][i].numpy()
        )
        for i, (a, b) in enumerate(zip(f0, f1))
    ]
    stack = lambda feats, key: torch.stack([f[key] for f in feats])  # noqa: E731
    size = torch.tensor([[w, h]] * batch_size, dtype=torch.float32, device=device)
    data = dict(
        keypoints0=stack(f0, "keypoints"),
        scores0=stack(f0, "scores"),
        descriptors0=stack(f0, "descriptors"),
        image_size0=size,
        keypoints1=stack(f1, "keypoints"),
        scores1=stack(f1, "scores"),
        descriptors1=stack(f1, "descriptors"),
        image_size1=size,
    )
    gt = {
        k: torch.from_numpy(np.stack([g[k] for g in gts])).to(device)
        for k in ("matches0", "matches1", "unmatched0", "unmatched1")
    }
    return data, gt


def training_loss(model, data, gt) -> tuple[torch.Tensor, dict]:
    out = model(data)
    loss = assignment_nll(out["log_assignment"], gt["matches0"], gt["unmatched0"], gt["unmatched1"])
    is_gt = gt["matches0"] >= 0
    hit = (out["matches0"] == gt["matches0"]) & is_gt
    stats = dict(
        gt_matches=float(is_gt.sum(1).float().mean()),
        match_recall_train=float(hit.sum() / is_gt.sum().clamp(min=1)),
    )
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
            wh = torch.tensor(
                [[p.image_size[0], p.image_size[1]]], dtype=torch.float32, device=device
            )
            data = dict(
                keypoints0=feats[0]["keypoints"][None],
                scores0=feats[0]["scores"][None],
                descriptors0=feats[0]["descriptors"][None],
                image_size0=wh,
                keypoints1=feats[1]["keypoints"][None],
                scores1=feats[1]["scores"][None],
                descriptors1=feats[1]["descriptors"][None],
                image_size1=wh,
            )
            gt = ground_truth_assignment(
                feats[0]["keypoints"].cpu().numpy(), feats[1]["keypoints"].cpu().numpy(), p.H
            )
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
        losses.append(
            float(
                assignment_nll(
                    out["log_assignment"], gt["matches0"], gt["unmatched0"], gt["unmatched1"]
                )
            )
        )
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
    return dict(
        val_precision=float(np.nanmean(prec)),
        val_recall=float(np.nanmean(rec)),
        val_num_matches=float(np.mean(nm)),
        val_h_auc3=float(error_auc(errs, [3.0])[0]),
        val_loss=float(np.mean(losses)),
    )


def _side(feats: dict, keep=None) -> tuple:
    """Cached features (training/real_cache.py) -> keypoints [N,2], scores [N], fp32
    descriptors [N,D], image size (w, h); keep: optional index array of the kept keypoints."""
    k, s, d = feats["keypoints"], feats["scores"], feats["descriptors"].float()
    if keep is not None:
        k, s, d = k[keep], s[keep], d[keep]
    return k.float(), s.float(), d, feats["image_size"].float()


def keypoint_subset(scores: torch.Tensor, rng, budgets) -> np.ndarray | None:
    """Indices (sorted) of the keypoints one side of a real pair keeps: the best-scored k for a
    k drawn from budgets (all if budgets is empty), then a random 70-100% of those. Why: the
    cache holds 1024 keypoints per frame while the node extracts 512, so training on both
    budgets shows SuperGlue the keypoint densities of both defaults. None when the side is
    empty."""
    n = len(scores)
    if n == 0:
        return None
    top = np.arange(n)
    if budgets:
        k = int(budgets[int(rng.integers(len(budgets)))])
        if k < n:
            top = np.sort(np.argsort(-scores.numpy(), kind="stable")[:k])
    m = max(int(round(len(top) * rng.uniform(0.7, 1.0))), 1)
    return np.sort(rng.choice(top, m, replace=False))


def real_batch(cache: dict, rng, batch_size, args, device) -> list[tuple[dict, dict]]:
    """batch_size random real pairs (random direction, each side's keypoints from
    keypoint_subset) -> list of (SuperGlue input dict of batch 1, labels as tensors)."""
    budgets = args.real_keypoints or ()
    out = []
    for _ in range(batch_size):
        pair = cache["pairs"][int(rng.integers(len(cache["pairs"])))]
        f0, f1 = cache["frames"][pair["frame0"]], cache["frames"][pair["frame1"]]
        K0, K1 = pair["K0"].numpy(), pair["K1"].numpy()
        R, t = pair["R"].numpy(), pair["t"].numpy()
        s0, s1 = pair["sift0"].numpy(), pair["sift1"].numpy()
        if rng.random() < 0.5:  # the reversed pair: X0 = R^T X1 - R^T t
            f0, f1, K0, K1, s0, s1 = f1, f0, K1, K0, s1, s0
            R, t = R.T, -R.T @ t
        sides = []
        for f in (f0, f1):
            keep = keypoint_subset(f["scores"], rng, budgets)
            sides.append(_side(f, None if keep is None else torch.from_numpy(keep)))
        (k0, c0, d0, wh0), (k1, c1, d1, wh1) = sides
        lab = epipolar_labels(
            k0.numpy(),
            k1.numpy(),
            K0,
            K1,
            R,
            t,
            d0.numpy(),
            d1.numpy(),
            s0,
            s1,
            source=args.label_source,
            min_depth=args.min_depth,
            band_px=args.band_px,
            positive_px=args.positive_px,
        )
        data = _batch_of_one(sides, device)
        gt = {
            k: torch.from_numpy(np.asarray(lab[k]))[None].to(device)
            for k in ("matches0", "matches1", "unmatched0", "unmatched1", "candidates")
        }
        out.append((data, gt))
    return out


def real_loss(
    model, data, gt, set_weight: float, set_dustbin_weight: float = 1.0
) -> tuple[torch.Tensor, dict]:
    """NLL of the exact labels (matches, dustbins) + set_weight x the candidate-set NLL of the
    keypoints without an exact label (their dustbin weighted by set_dustbin_weight)."""
    out = model(data)
    la = out["log_assignment"]
    loss = assignment_nll(la, gt["matches0"], gt["unmatched0"], gt["unmatched1"])
    free0 = (gt["matches0"] < 0) & ~gt["unmatched0"]
    free1 = (gt["matches1"] < 0) & ~gt["unmatched1"]
    set_loss = candidate_set_nll(la, gt["candidates"], free0, free1, set_dustbin_weight)
    is_gt = gt["matches0"] >= 0
    hit = (out["matches0"] == gt["matches0"]) & is_gt
    stats = dict(
        gt_matches=float(is_gt.sum()),
        set_loss=float(set_loss.detach()),
        gt_unmatched=float(gt["unmatched0"].sum()),
        match_recall_train=float(hit.sum() / is_gt.sum().clamp(min=1)),
    )
    return loss + set_weight * set_loss, stats


def _batch_of_one(sides, device) -> dict:
    """SuperGlue's input dict (batch of 1) from the two (keypoints, scores, descriptors,
    image size) sides of a pair."""
    data = {}
    for i, (k, c, d, wh) in enumerate(sides):
        data.update(
            {
                f"keypoints{i}": k[None].to(device),
                f"scores{i}": c[None].to(device),
                f"descriptors{i}": d[None].to(device),
                f"image_size{i}": wh[None].to(device),
            }
        )
    return data


def real_val_sides(entry: dict, device) -> dict:
    return _batch_of_one([_side(entry["feats0"]), _side(entry["feats1"])], device)


def pose_rows(entry: dict, kpts0: np.ndarray, kpts1: np.ndarray, m0: np.ndarray) -> dict:
    """pose_result of the matches m0 [M] (-1 = none) of one cached validation pair."""
    from ..evaluation.pose_eval import pose_result
    from ..evaluation.real_pairs import undistort_points

    i0 = np.flatnonzero(m0 >= 0)
    K0, K1 = entry["K0"].numpy(), entry["K1"].numpy()
    p0 = undistort_points(kpts0[i0].astype(np.float64), K0, entry["dist0"].numpy())
    p1 = undistort_points(kpts1[m0[i0]].astype(np.float64), K1, entry["dist1"].numpy())
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = entry["R"].numpy(), entry["t"].numpy()
    return pose_result(p0, p1, K0, K1, T)


@torch.no_grad()
def validate_real(model, val_pairs: list, device, matcher=None) -> dict:
    """Pose AUC@5/10, matches and RANSAC inliers per validation set (cached features; the
    essential matrix as in superglue-eval --real). matcher: None = the model, 'mnn' = mutual
    nearest neighbour on the same features (the baseline to beat). val_real_score = mean AUC@5
    over the sets (what picks best.pth)."""
    from ..evaluation.pose_eval import summarize_pose

    was_training = model.training
    model.eval()
    rows: dict[str, list] = {}
    for entry in val_pairs:
        data = real_val_sides(entry, device)
        if matcher == "mnn":
            sim = data["descriptors0"][0] @ data["descriptors1"][0].T
            nn01, nn10 = sim.argmax(1), sim.argmax(0)
            m0 = torch.where(nn10[nn01] == torch.arange(len(nn01)), nn01, -1).cpu().numpy()
        else:
            m0 = model(data)["matches0"][0].cpu().numpy()
        rows.setdefault(entry["set"], []).append(
            pose_rows(
                entry, data["keypoints0"][0].cpu().numpy(), data["keypoints1"][0].cpu().numpy(), m0
            )
        )
    model.train(was_training)
    out = {}
    for name, r in rows.items():
        s = summarize_pose(r)
        out.update(
            {
                f"val_{name}_auc5": 100 * s["pose_auc@5deg"],
                f"val_{name}_auc10": 100 * s["pose_auc@10deg"],
                f"val_{name}_matches": s["num_matches"],
                f"val_{name}_inliers": s["num_inliers"],
            }
        )
    out["val_real_score"] = float(np.mean([out[f"val_{n}_auc5"] for n in rows]))
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="superglue-train-superglue",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--images", nargs="+", default=None, help="folder(s) of training photos (homographic pairs)"
    )
    p.add_argument(
        "--real-cache",
        default=None,
        help="folder written by training/real_cache.py (train.pt, val.pt): train on "
        "real pairs with epipolar labels",
    )
    p.add_argument(
        "--homography-every",
        type=int,
        default=0,
        help="with --real-cache and --images: a homographic batch every N-th step (0 = never)",
    )
    p.add_argument(
        "--real-keypoints",
        type=int,
        nargs="+",
        default=None,
        help="with --real-cache: per side, keep the best-scored K keypoints for a K drawn "
        "from these budgets (e.g. 512 1024: the node's and superglue-match's defaults); "
        "default: every cached keypoint",
    )
    p.add_argument(
        "--label-source",
        default="both",
        choices=LABEL_SOURCES,
        help="positives of real pairs: descriptor mutual-NN among epipolar "
        "candidates, SIFT-supported, or both (see epipolar_labels.py)",
    )
    p.add_argument(
        "--min-depth",
        type=float,
        default=2.0,
        help="nearest scene depth (units of the poses, metres on KITTI)",
    )
    p.add_argument(
        "--band-px",
        type=float,
        default=3.0,
        help="epipolar band: farther from every keypoint = dustbin",
    )
    p.add_argument(
        "--positive-px",
        type=float,
        default=1.5,
        help="exact matches lie this close to each other's depth segment",
    )
    p.add_argument(
        "--set-weight",
        type=float,
        default=1.0,
        help="weight of the candidate-set NLL of keypoints without an exact label",
    )
    p.add_argument(
        "--set-dustbin-weight",
        type=float,
        default=1.0,
        help="weight in (0, 1] of the dustbin inside the candidate-set NLL (1 = the dustbin is "
        "free for a keypoint without an exact label; lower pushes it towards its candidates)",
    )
    p.add_argument(
        "--log-every",
        type=int,
        default=10,
        help="print a progress line to stderr every N steps (0 = never)",
    )
    p.add_argument("--out", default="runs/superglue", help="run folder (checkpoint, log, plot)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pth")
    p.add_argument(
        "--superpoint",
        default=None,
        help="SuperPoint weights (default: the shipped superglue_ros/weights/superpoint.pth)",
    )
    p.add_argument(
        "--init",
        default="identity",
        help="'identity' (see module doc), 'random', or a SuperGlue weights file",
    )
    p.add_argument(
        "--layers",
        type=int,
        default=3,
        help="number of self+cross layer pairs (9 = the published architecture)",
    )
    p.add_argument("--sinkhorn-iterations", type=int, default=100)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--size", type=int, nargs=2, default=[512, 384], metavar=("W", "H"))
    p.add_argument("--num-keypoints", type=int, default=384, help="keypoints per image")
    p.add_argument(
        "--random-fraction",
        type=float,
        default=0.1,
        help="at least this fraction of each keypoint set is random positions",
    )
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--bin-lr-scale", type=float, default=30.0, help="lr multiplier of bin_score")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument(
        "--lr-schedule",
        default="constant",
        choices=("constant", "cosine"),
        help="after the warm-up: constant, or a cosine decay from --lr to --lr-min at "
        "--decay-steps",
    )
    p.add_argument("--lr-min", type=float, default=0.0, help="with --lr-schedule cosine")
    p.add_argument(
        "--decay-steps",
        type=int,
        default=None,
        help="with --lr-schedule cosine: the step where the decay ends (default --steps; give "
        "it when a run is split into parts with growing --steps, so every part decays alike)",
    )
    p.add_argument(
        "--weight-average",
        type=float,
        default=0.0,
        metavar="DECAY",
        help="keep an exponential moving average of the weights with this decay per step "
        "(e.g. 0.995; 0 = off): validation, best.pth and the exported file then use the "
        "average, the checkpoint holds both",
    )
    p.add_argument("--difficulty", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--threads", type=int, default=2, help="CPU threads for SuperPoint (large convs)"
    )
    p.add_argument(
        "--gnn-threads",
        type=int,
        default=1,
        help="CPU threads for SuperGlue: its many small ops run much faster on one "
        "thread than on two when the CPU is shared (measured 10x)",
    )
    p.add_argument("--save-every", type=int, default=25)
    p.add_argument(
        "--keep-every",
        type=int,
        default=0,
        help="also keep the checkpoint of every N-th step as OUT/step_NNNNNN.pth (0 = never)",
    )
    p.add_argument("--val-every", type=int, default=50)
    p.add_argument("--val-images", default=None)
    p.add_argument("--val-pairs", type=int, default=12)
    p.add_argument("--val-size", type=int, nargs=2, default=[640, 480], metavar=("W", "H"))
    p.add_argument("--val-keypoints", type=int, default=512)
    p.add_argument("--no-progress", action="store_true")
    return p


def build_model(args) -> SuperGlue:
    conf = dict(
        gnn_layers=gnn_layer_names(args.layers), sinkhorn_iterations=args.sinkhorn_iterations
    )
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
    if args.images is None and args.real_cache is None:
        raise SystemExit("give --images (homographic pairs) and/or --real-cache (real pairs)")
    files = list_images(args.images) if args.images else []
    sampler = PairSampler(files, args.size, args.difficulty) if files else None
    real = real_val = None
    if args.real_cache:
        from .real_cache import load_cache

        real = load_cache(pathlib.Path(args.real_cache) / "train.pt")
        val_file = pathlib.Path(args.real_cache) / "val.pt"
        real_val = load_cache(val_file)["pairs"] if val_file.is_file() else None
        print(
            f"real pairs: {len(real['pairs'])} ({len(real['frames'])} frames); validation "
            f"pairs: {0 if real_val is None else len(real_val)}",
            file=sys.stderr,
        )
    model = build_model(args).to(device).train()
    bin_params = [model.bin_score]
    other = [p for n, p in model.named_parameters() if n != "bin_score"]
    opt = torch.optim.Adam(
        [dict(params=other, lr_scale=1.0), dict(params=bin_params, lr_scale=args.bin_lr_scale)],
        lr=args.lr,
    )
    average = WeightAverage(model, args.weight_average) if args.weight_average else None
    step, extra = 0, {}
    if args.resume:
        ckpt = load_checkpoint(ckpt_path, model, opt, rng, map_location=device)
        step, extra = ckpt["step"], ckpt.get("extra", {})
        if average is not None:
            if "average_model" not in ckpt:
                raise SystemExit(f"{ckpt_path} holds no weight average to resume")
            average.model.load_state_dict(ckpt["average_model"])
        print(f"resumed from {ckpt_path} at step {step}", file=sys.stderr)
    scored = model if average is None else average.model  # what validation scores and ships
    timer = Timer(float(extra.get("wall_time_s", 0.0)))
    best = dict(score=float(extra.get("best_score", -1.0)), step=int(extra.get("best_step", -1)))
    log = CurveLog(out / "log.csv", LOG_FIELDS)
    with open(out / "args.json", "w") as f:
        json.dump(vars(args), f, indent=1)
    torch.set_num_threads(args.threads)
    val = (
        prepare_validation(
            superpoint, args.val_images, args.val_pairs, args.val_size, args.val_keypoints, device
        )
        if args.val_images
        else None
    )

    def lr_at(s):
        if args.lr_schedule == "cosine" and s >= args.warmup:
            end = args.decay_steps or args.steps
            t = min(1.0, (s - args.warmup) / max(end - args.warmup, 1))
            return args.lr_min + (args.lr - args.lr_min) * 0.5 * (1.0 + math.cos(math.pi * t))
        return args.lr * min(1.0, (s + 1) / max(args.warmup, 1))

    def save(step, path=ckpt_path):
        save_checkpoint(
            path,
            model,
            opt,
            step,
            rng,
            dict(
                wall_time_s=timer.total_s(),
                images=[str(d) for d in (args.images or [])]
                + ([str(args.real_cache)] if args.real_cache else []),
                num_images=len(files),
                args=vars(args),
                best_score=best["score"],
                best_step=best["step"],
                superpoint=str(getattr(superpoint, "weights_path", args.superpoint)),
            ),
            average,
        )

    done = [step]

    def train_step(step):
        for g in opt.param_groups:
            g["lr"] = lr_at(step) * g["lr_scale"]
        homographic = real is None or (
            sampler is not None
            and args.homography_every > 0
            and step % args.homography_every == args.homography_every - 1
        )
        if homographic:
            torch.set_num_threads(args.threads)
            data, gt = make_batch(
                superpoint,
                sampler,
                rng,
                args.batch_size,
                args.num_keypoints,
                args.random_fraction,
                device,
            )
            torch.set_num_threads(args.gnn_threads)
            loss, stats = training_loss(model, data, gt)
            stats.update(kind="homography")
        else:
            torch.set_num_threads(args.gnn_threads)
            batch = real_batch(real, rng, args.batch_size, args, device)
            parts = [
                real_loss(model, data, gt, args.set_weight, args.set_dustbin_weight)
                for data, gt in batch
            ]
            loss = sum(p[0] for p in parts) / len(parts)
            stats = {k: float(np.mean([p[1][k] for p in parts])) for k in parts[0][1]}
            stats.update(kind="real")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if average is not None:
            average.update(model)
        done[0] = step + 1
        return dict(lr=lr_at(step), loss=float(loss.detach()), **stats)

    def validate_all():
        row = validate(scored, val) if val is not None else {}
        if real_val is not None:
            torch.set_num_threads(args.threads)
            row.update(validate_real(scored, real_val, device))
            torch.set_num_threads(args.gnn_threads)
            if row["val_real_score"] > best["score"]:
                best.update(score=row["val_real_score"], step=done[0])
                save(done[0], out / "best.pth")
        return row

    torch.set_num_threads(args.gnn_threads)
    if (val is not None or real_val is not None) and step == 0:
        if real_val is not None:
            base = validate_real(model, real_val, device, matcher="mnn")
            print(
                "validation, mutual NN on the same features: "
                + ", ".join(f"{k} {v:.1f}" for k, v in base.items()),
                file=sys.stderr,
            )
            (out / "val_mnn.json").write_text(json.dumps(base, indent=1))
        log.append(dict(step=0, time_s=0.0, **validate_all()))
    run_training_loop(
        step,
        args,
        timer,
        log,
        out,
        train_step,
        save,
        validate=validate_all if (val is not None or real_val is not None) else None,
        postfix=lambda row: dict(loss=f"{row['loss']:.3f}", rec=f"{row['match_recall_train']:.2f}"),
    )
    if real_val is not None:
        print(
            f"best validation score {best['score']:.2f} at step {best['step']} "
            f"({out / 'best.pth'})",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
