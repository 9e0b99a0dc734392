"""Turn a training checkpoint into a shipped weights file (models.weights format + provenance).

python -m superglue_ros.training.export --kind superpoint --checkpoint runs/sp/checkpoint.pth \
    --out superglue_ros/weights/superpoint.pth
"""

from __future__ import annotations

import argparse
import hashlib
import pathlib
import sys

import torch

from .common import git_commit, machine_description


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_from_checkpoint(kind: str, checkpoint) -> tuple[torch.nn.Module, dict]:
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    extra = ckpt.get("extra", {})
    args = extra.get("args", {})
    if kind == "superpoint":
        from ..models.superpoint import SuperPoint

        model = SuperPoint()
    elif kind == "superglue":
        from ..models.superglue import SuperGlue
        from .train_superglue import gnn_layer_names

        model = SuperGlue(dict(gnn_layers=gnn_layer_names(args.get("layers", 9))))
    else:
        raise ValueError(f"unknown kind {kind!r} (superpoint | superglue)")
    # A run with a weight average (--weight-average) validated and picked its checkpoints on
    # the average, so that is what ships.
    weights = "average_model" if "average_model" in ckpt else "model"
    model.load_state_dict(ckpt[weights])
    return model.eval(), dict(step=ckpt["step"], weights=weights, **extra)


def export(kind: str, checkpoint, out, notes: str = "") -> str:
    from ..models.weights import save_model

    model, info = model_from_checkpoint(kind, checkpoint)
    args = info.get("args", {})
    meta = dict(
        trainer=f"superglue_ros.training.train_{kind}",
        steps=int(info["step"]),
        wall_time_s=round(float(info.get("wall_time_s", 0.0)), 1),
        data=[pathlib.Path(d).name for d in info.get("images", [])],
        num_images=info.get("num_images"),
        batch_size=args.get("batch_size"),
        crop_size=args.get("size"),
        lr=args.get("lr"),
        seed=args.get("seed"),
        init=args.get("init"),
        weights=info["weights"],
        machine=machine_description(),
        git_commit=git_commit(),
        notes=notes,
    )
    if kind == "superglue":
        meta.update(
            num_keypoints=args.get("num_keypoints"),
            superpoint=pathlib.Path(str(info.get("superpoint", ""))).name,
        )
    out = pathlib.Path(out)
    save_model(model, out, meta)
    size = out.stat().st_size
    if size > 50e6:
        raise RuntimeError(f"{out} is {size / 1e6:.1f} MB, over the 50 MB repository limit")
    return sha256(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--kind", required=True, choices=["superpoint", "superglue"])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--notes", default="")
    a = p.parse_args(argv)
    digest = export(a.kind, a.checkpoint, a.out, a.notes)
    print(f"{a.out} sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
