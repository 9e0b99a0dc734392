"""Cache of frozen-SuperPoint features (and SIFT matches) of real pairs, computed once.

The SuperPoint used to train SuperGlue is frozen, so its features of the real training frames
never change: extracting them once makes a SuperGlue step on a real pair cost only the GNN.
Features are extracted exactly as the real-motion evaluation does (``extract_at`` at
``--resize``: by default the node's working size, VGA's pixel count; keypoints mapped back to the
original pixels, ``--max_keypoints``), so training sees the keypoint statistics of the
validation.

Layout of OUT: ``train.pt`` (KITTI train sequences: per frame SuperPoint keypoints/scores/fp16
descriptors; per pair K, R, t and the SIFT ratio matches at full resolution as point
coordinates, for the 'sift' label source) and ``val.pt`` (validation pairs: the same features,
no labels; used only to pick steps/lr, never trained on). Run:
    python -m superglue_ros.training.real_cache --real ../shared/datasets/real \
        --out /work/cache/train10
``--pack SRC --out DIR`` writes a copy small enough for a lent GPU machine (``pack_cache``;
scripts/device_train.py trains on it).
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import cv2
import numpy as np
import torch
from tqdm import tqdm

TRAIN_SEQUENCES = ("00", "02", "05")
TRAIN_GAPS = (2, 4, 6, 10)  # KITTI frame gaps; the train sequences store every second frame
DESCRIPTOR_SCALE = 127.0  # a packed cache's descriptors: int8 = round(127 * unit-vector component)


def feature_dict(f) -> dict:
    return dict(
        keypoints=torch.from_numpy(np.asarray(f.keypoints, np.float32)),
        scores=torch.from_numpy(np.asarray(f.scores, np.float32)),
        descriptors=torch.from_numpy(np.asarray(f.descriptors, np.float16)),
        image_size=torch.tensor(f.image_size),
    )


def build_cache(
    real_root,
    out,
    resize=(640, 480),
    max_keypoints=1024,
    sequences=TRAIN_SEQUENCES,
    gaps=TRAIN_GAPS,
    val_kitti=40,
    val_euroc=24,
    sift_keypoints=2048,
    superpoint=None,
) -> None:
    from ..evaluation.pose_eval import extract_at
    from ..evaluation.real_eval import load_real_set
    from ..evaluation.real_pairs import kitti_pairs
    from ..features import build_preset

    real_root = pathlib.Path(real_root)
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    conf = dict(max_keypoints=max_keypoints, precision="fp32")
    if superpoint:
        conf["weights"] = superpoint
    extractor, _ = build_preset("superglue", extractor=conf)
    sift, ratio = build_preset("sift", max_keypoints=sift_keypoints)
    start = time.time()
    frames, pairs = {}, []
    sift_feats = {}
    for seq in sequences:
        for pair in tqdm(kitti_pairs(real_root / "kitti" / seq, gaps, stride=1), desc=seq):
            for path in (pair.path0, pair.path1):
                key = f"{seq}/{path.stem}"
                if key not in frames:
                    image = pair.image0 if path == pair.path0 else pair.image1
                    frames[key] = feature_dict(extract_at(extractor, image, resize))
                    sift_feats[key] = sift.extract(image)
            k0, k1 = f"{seq}/{pair.path0.stem}", f"{seq}/{pair.path1.stem}"
            i0, i1 = ratio.match(sift_feats[k0], sift_feats[k1]).indices()
            pairs.append(
                dict(
                    name=pair.name,
                    frame0=k0,
                    frame1=k1,
                    K0=torch.from_numpy(pair.K0),
                    K1=torch.from_numpy(pair.K1),
                    R=torch.from_numpy(pair.R),
                    t=torch.from_numpy(pair.t),
                    sift0=torch.from_numpy(sift_feats[k0].keypoints[i0]),
                    sift1=torch.from_numpy(sift_feats[k1].keypoints[i1]),
                )
            )
    meta = dict(
        resize=resize,
        max_keypoints=max_keypoints,
        sequences=list(sequences),
        gaps=list(gaps),
        sift_keypoints=sift_keypoints,
        superpoint=str(superpoint),
        build_s=time.time() - start,
    )
    torch.save(dict(frames=frames, pairs=pairs, meta=meta), out / "train.pt")
    print(f"train: {len(frames)} frames, {len(pairs)} pairs", file=sys.stderr)
    val = []
    for set_name, count in (("kitti07", val_kitti), ("euroc", val_euroc)):
        for pair in tqdm(load_real_set(set_name, real_root, count), desc=set_name):
            f0, f1 = (
                feature_dict(extract_at(extractor, im, resize)) for im in (pair.image0, pair.image1)
            )
            val.append(
                dict(
                    set=set_name,
                    name=pair.name,
                    feats0=f0,
                    feats1=f1,
                    K0=torch.from_numpy(pair.K0),
                    K1=torch.from_numpy(pair.K1),
                    dist0=torch.from_numpy(pair.dist0),
                    dist1=torch.from_numpy(pair.dist1),
                    R=torch.from_numpy(pair.R),
                    t=torch.from_numpy(pair.t),
                )
            )
    torch.save(dict(pairs=val, meta=meta), out / "val.pt")
    print(f"val: {len(val)} pairs; {time.time() - start:.0f} s", file=sys.stderr)


def load_cache(path) -> dict:
    """A cache file; a packed cache's int8 descriptors come back as fp16 unit vectors."""
    cache = torch.load(path, map_location="cpu", weights_only=True)
    scale = cache.get("meta", {}).get("descriptor_scale")
    if scale:
        for feats in cache["frames"].values():
            feats["descriptors"] = (feats["descriptors"].float() / scale).half()
    return cache


def _nbytes(obj) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_nbytes(v) for v in obj.values())
    return 0


def pack_cache(src, out, max_mib=56.0, images=(), max_photos=200) -> dict:
    """A copy of SRC/train.pt small enough to travel to a lent GPU machine, whose tool carries
    at most 64 MiB: descriptors as int8 (round(127 d); unit vectors, so the error is at most
    0.4 % of a component's range), the same leading share of every sequence's frames (so every
    frame gap stays), the pairs inside them, and the first ``max_photos`` photos of ``images``
    as JPEG in OUT/photos for the homographic batches. No val.pt: validate on the CPU after.
    Returns the counts and the size written."""
    from .common import list_images

    src, out = pathlib.Path(src), pathlib.Path(out)
    (out / "photos").mkdir(parents=True, exist_ok=True)
    num_photos = photo_bytes = 0
    for i, path in enumerate((list_images(list(images)) if images else [])[:max_photos]):
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if image is None:
            continue
        target = out / "photos" / f"{i:04d}.jpg"
        cv2.imwrite(str(target), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        num_photos += 1
        photo_bytes += target.stat().st_size
    cache = torch.load(src / "train.pt", map_location="cpu", weights_only=True)
    frames = {
        key: dict(
            f, descriptors=torch.round(f["descriptors"].float() * DESCRIPTOR_SCALE).to(torch.int8)
        )
        for key, f in cache["frames"].items()
    }
    by_sequence: dict[str, list[str]] = {}
    for key in sorted(frames):
        by_sequence.setdefault(key.split("/")[0], []).append(key)
    budget = max_mib * 2**20 - photo_bytes
    for share in np.linspace(1.0, 0.02, 50):
        kept = {k for keys in by_sequence.values() for k in keys[: max(2, int(share * len(keys)))]}
        pairs = [p for p in cache["pairs"] if p["frame0"] in kept and p["frame1"] in kept]
        size = sum(_nbytes(frames[k]) for k in kept) + sum(_nbytes(p) for p in pairs)
        if size <= budget:
            break
    else:
        raise ValueError(f"cannot pack {src} into {max_mib} MiB ({photo_bytes} bytes of photos)")
    meta = dict(
        cache["meta"],
        descriptor_scale=DESCRIPTOR_SCALE,
        packed_from=str(src),
        frame_share=round(float(share), 2),
    )
    kept_frames = {k: frames[k] for k in sorted(kept)}
    torch.save(dict(frames=kept_frames, pairs=pairs, meta=meta), out / "train.pt")
    total = photo_bytes + (out / "train.pt").stat().st_size
    return dict(
        frames=len(kept_frames), pairs=len(pairs), photos=num_photos, mib=round(total / 2**20, 1)
    )


def label_statistics(cache: dict, num_pairs=60, seed=0, **label_kw) -> dict:
    """Mean per pair over a seeded sample of cached pairs: exact positives by source (mnn =
    descriptor mutual-NN among the epipolar candidates, sift = verified SIFT matches snapped to
    keypoints, agree = both), the final positives, dustbins, candidate-only keypoints, and
    how often a mutual-NN match of the descriptors (no geometry) is a final positive or lies
    outside every band (the outliers that training should remove)."""
    from .epipolar_labels import epipolar_labels

    rng = np.random.default_rng(seed)
    pick = rng.choice(len(cache["pairs"]), min(num_pairs, len(cache["pairs"])), replace=False)
    rows = []
    for i in pick:
        pair = cache["pairs"][int(i)]
        f0, f1 = cache["frames"][pair["frame0"]], cache["frames"][pair["frame1"]]
        d0, d1 = f0["descriptors"].float().numpy(), f1["descriptors"].float().numpy()
        lab = epipolar_labels(
            f0["keypoints"].numpy(),
            f1["keypoints"].numpy(),
            pair["K0"].numpy(),
            pair["K1"].numpy(),
            pair["R"].numpy(),
            pair["t"].numpy(),
            d0,
            d1,
            pair["sift0"].numpy(),
            pair["sift1"].numpy(),
            **label_kw,
        )
        sim = d0 @ d1.T
        nn01, nn10 = sim.argmax(1), sim.argmax(0)
        mutual = np.flatnonzero(nn10[nn01] == np.arange(len(nn01)))
        m0 = lab["matches0"]
        free = (m0 < 0) & ~lab["unmatched0"]
        rows.append(
            dict(
                **lab["counts"],
                positives=int((m0 >= 0).sum()),
                dustbin0=int(lab["unmatched0"].sum()),
                candidate_only0=int(free.sum()),
                keypoints0=len(m0),
                mnn=len(mutual),
                mnn_is_positive=int((m0[mutual] == nn01[mutual]).sum()),
                mnn_outside_band=int((~lab["candidates"][mutual, nn01[mutual]]).sum()),
            )
        )
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--real", help="the datasets/real folder (to build a cache)")
    p.add_argument("--out", required=True, help="cache folder (outside the repository)")
    p.add_argument(
        "--resize", type=int, nargs="+", default=[640, 480], help="as superglue-eval's --resize"
    )
    p.add_argument("--max_keypoints", type=int, default=1024)
    p.add_argument("--superpoint", default=None, help="SuperPoint weights (default: shipped)")
    p.add_argument("--val_kitti", type=int, default=40)
    p.add_argument("--val_euroc", type=int, default=24)
    p.add_argument(
        "--pack",
        metavar="SRC",
        help="write a copy of the cache folder SRC small enough for a GPU machine into --out "
        "(int8 descriptors, a share of the frames, --images photos as JPEG; see pack_cache)",
    )
    p.add_argument("--max_mib", type=float, default=56.0, help="--pack: size budget")
    p.add_argument("--images", nargs="*", default=[], help="--pack: photo folders to include")
    p.add_argument("--max_photos", type=int, default=200, help="--pack: photos to include")
    p.add_argument(
        "--stats",
        action="store_true",
        help="print label statistics of an existing cache (no extraction)",
    )
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.real is None and not (args.pack or args.stats):
        p.error("--real is needed to build a cache")
    if args.pack:
        counts = pack_cache(args.pack, args.out, args.max_mib, args.images, args.max_photos)
        print(", ".join(f"{k} {v}" for k, v in counts.items()), file=sys.stderr)
        return 0
    if args.stats:
        cache = load_cache(pathlib.Path(args.out) / "train.pt")
        for source in ("mnn", "sift", "both"):
            stats = label_statistics(cache, source=source)
            print(source + ": " + ", ".join(f"{k} {v:.1f}" for k, v in stats.items()))
        return 0
    build_cache(
        args.real,
        args.out,
        args.resize,
        args.max_keypoints,
        val_kitti=args.val_kitti,
        val_euroc=args.val_euroc,
        superpoint=args.superpoint,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
