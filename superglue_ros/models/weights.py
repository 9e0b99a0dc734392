"""Weight files: our own format (state dict + config + provenance) and the published raw ones.

Our format, a dict saved with torch.save:
    {'format': 'superglue_ros/1', 'kind': 'superpoint' | 'superglue', 'config': {...},
     'state_dict': {...}, 'meta': {... provenance: data, steps, date, git commit ...}}
A SuperPoint file may add 'int8': {'state_dict': {...}, 'activation_scales': [...], 'meta':
{...}}, the backbone's int8 weights (models/quantization.py; SuperPoint.int8_variant).
Published files (superpoint_v1.pth, superglue_indoor.pth, superglue_outdoor.pth) are raw state
dicts; their architecture (descriptor size, encoder widths, number of GNN layers) is read from
the tensor shapes, and SuperPoint decodes them with the published convention (the defaults). A
SuperPoint file of ours whose config lacks ``descriptor_sampling`` gets the sampling it was
trained with (OUR_FORMAT_SUPERPOINT_DECODING); files saved now record it. Everything is loaded
with ``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import re
import subprocess

import torch
from torch import nn

from ..devices import resolve_device
from .superglue import SuperGlue
from .superpoint import SuperPoint

FORMAT = "superglue_ros/1"
# SuperPoint decoding of our-format files whose config does not name it (written before the
# key existed): pixel-centre descriptor sampling, the convention they were trained with. Measured
# with the shipped file (60 bsds500_test pairs, fp32, 512 keypoints, MNN): homography AUC@3px
# 79.1 vs 77.4 with the reference sampling, recall 91.9 vs 90.9. Their NMS is the reference one
# (repeatability 63.5 vs 62.2 with a single window maximum, AUC@3px 79.1 vs 78.9). Published raw
# state dicts and models built without a file get SuperPoint.default_conf (the published
# convention); files saved now record both keys.
# Keypoints of our files are refined to sub-pixel positions (subpixel 'quadratic'; published
# files keep the integer NMS maxima of the reference). Measured with the shipped files, fp32, in
# one run each: KITTI 07 (118 real pairs at gaps 1/3/10, longest side 640, 1024 keypoints,
# essential matrix at 1 px) pose AUC@5 MNN 70.4 vs 64.9, SuperGlue 67.9 vs 60.1; 60 bsds500_test
# homographies MNN AUC@1/3px 47.2/79.4 vs 42.5/79.1, SuperGlue 43.1/78.1 vs 41.3/77.1.
OUR_FORMAT_SUPERPOINT_DECODING = dict(descriptor_sampling="pixel_centre", subpixel="quadratic")
MODEL_CLASSES = {"superpoint": SuperPoint, "superglue": SuperGlue}
TRAIN_COMMANDS = {
    "superpoint": "superglue-train-superpoint",
    "superglue": "superglue-train-superglue",
}


class WeightsError(RuntimeError):
    """A weight file is missing, unreadable, or does not fit the model; the message says which."""


def _check_kind(kind: str) -> None:
    if kind not in MODEL_CLASSES:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {sorted(MODEL_CLASSES)}")


def default_weights_path(kind: str) -> pathlib.Path:
    """The shipped weights inside the installed package: superglue_ros/weights/<kind>.pth."""
    _check_kind(kind)
    return pathlib.Path(__file__).resolve().parent.parent / "weights" / f"{kind}.pth"


def guess_kind(state_dict: dict) -> str | None:
    """'superpoint' / 'superglue' from characteristic key names, None if neither."""
    if "convPb.weight" in state_dict or "conv1a.weight" in state_dict:
        return "superpoint"
    if "bin_score" in state_dict or any(k.startswith("gnn.layers.") for k in state_dict):
        return "superglue"
    return None


def config_from_state_dict(kind: str, state_dict: dict) -> dict:
    """Architecture settings implied by a raw state dict's shapes (for the published files)."""
    conf: dict = {}
    try:
        if kind == "superpoint":
            conf["descriptor_dim"] = int(state_dict["convDb.weight"].shape[0])
        else:
            conf["descriptor_dim"] = int(state_dict["final_proj.weight"].shape[0])
            convs = sorted(
                (int(m.group(1)), v.shape[0])
                for k, v in state_dict.items()
                if (m := re.fullmatch(r"kenc\.encoder\.(\d+)\.weight", k)) and v.dim() == 3
            )
            if convs:
                conf["keypoint_encoder"] = [int(c) for _, c in convs[:-1]]
            layers = {
                int(m.group(1)) for k in state_dict if (m := re.match(r"gnn\.layers\.(\d+)\.", k))
            }
            if layers:
                conf["gnn_layers"] = ["self", "cross"] * ((max(layers) + 1) // 2) + (
                    ["self"] if (max(layers) + 1) % 2 else []
                )
    except (KeyError, AttributeError, IndexError):
        pass  # missing keys are reported precisely by the key check that follows
    return conf


def _describe_mismatch(path, model: nn.Module, state_dict: dict) -> str | None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = []
    for k, v in expected.items():
        if k in state_dict:
            got = state_dict[k]
            if not isinstance(got, torch.Tensor):
                wrong.append(f"{k}: expected tensor {tuple(v.shape)}, got {type(got).__name__}")
            elif tuple(got.shape) != tuple(v.shape):
                wrong.append(f"{k}: expected {tuple(v.shape)}, got {tuple(got.shape)}")

    def listing(title, items):
        shown = ", ".join(items[:12]) + (
            f", ... ({len(items)} in total)" if len(items) > 12 else ""
        )
        return f"{title} ({len(items)}): {shown}"

    parts = []
    if missing:
        parts.append(listing("missing keys", missing))
    if unexpected:
        parts.append(listing("unexpected keys", unexpected))
    if wrong:
        parts.append(listing("shape mismatches", wrong))
    if not parts:
        return None
    return f"weights file {path} does not fit {type(model).__name__}: " + "; ".join(parts)


def read_weights_file(path) -> dict:
    """torch.load with weights_only=True; any failure becomes a WeightsError naming the file."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, pickle error, forbidden global, ...
        raise WeightsError(
            f"cannot read weights file {path} (truncated, corrupt or not a torch file?): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(obj, dict):
        raise WeightsError(f"weights file {path} holds a {type(obj).__name__}, expected a dict")
    return obj


def load_model(kind: str, path=None, conf: dict | None = None, device="cpu") -> nn.Module:
    """Build a SuperPoint or SuperGlue and load weights from our format or a published file.

    ``conf`` overrides the stored configuration (e.g. max_keypoints, match_threshold); an
    override that changes the architecture shows up as shape mismatches. The returned model is
    in eval mode on ``device`` ('cpu', 'cuda', 'auto') and carries ``.meta`` and
    ``.weights_path``."""
    _check_kind(kind)
    default = path is None
    path = pathlib.Path(default_weights_path(kind) if default else path)
    if default and not path.is_file():
        raise WeightsError(
            f"no trained {kind} weights at {path} yet: the shipped file is written by "
            f"`{TRAIN_COMMANDS[kind]}` (training may still be running). Pass a weights file "
            f"explicitly (ours or the published {kind} .pth) or train first."
        )
    obj = read_weights_file(path)

    if obj.get("format") is not None:
        if obj.get("format") != FORMAT:
            raise WeightsError(
                f"weights file {path} has unknown format {obj.get('format')!r}, expected {FORMAT!r}"
            )
        file_kind = obj.get("kind")
        if file_kind != kind:
            raise WeightsError(f"weights file {path} holds a {file_kind!r} model, not {kind!r}")
        if not isinstance(obj.get("state_dict"), dict):
            raise WeightsError(f"weights file {path} has no 'state_dict' entry")
        state_dict = obj["state_dict"]
        file_conf = dict(obj.get("config") or {})
        if kind == "superpoint":
            file_conf = {**OUR_FORMAT_SUPERPOINT_DECODING, **file_conf}
        meta = dict(obj.get("meta") or {})
    else:
        state_dict = obj
        if isinstance(obj.get("state_dict"), dict):  # plain {'state_dict': ...} checkpoint
            state_dict = obj["state_dict"]
        if state_dict and all(k.startswith("module.") for k in state_dict):
            state_dict = {k[len("module.") :]: v for k, v in state_dict.items()}
        file_kind = guess_kind(state_dict)
        if file_kind is not None and file_kind != kind:
            raise WeightsError(f"weights file {path} holds a {file_kind} state dict, not {kind}")
        file_conf = config_from_state_dict(kind, state_dict)
        meta = {"source": "published raw state dict", "file": path.name}

    try:
        model = MODEL_CLASSES[kind]({**file_conf, **(conf or {})})
    except (ValueError, TypeError) as exc:
        raise WeightsError(f"weights file {path}: invalid configuration: {exc}") from exc
    problem = _describe_mismatch(path, model, state_dict)
    if problem:
        raise WeightsError(problem)
    model.load_state_dict(state_dict, strict=True)
    if kind == "superpoint" and obj.get("format") is not None and obj.get("int8") is not None:
        int8 = obj["int8"]
        try:
            if not isinstance(int8, dict):
                raise ValueError(f"expected a dict, got {type(int8).__name__}")
            model.set_int8_variant(int8)
        except (ValueError, TypeError, AttributeError) as exc:
            raise WeightsError(f"weights file {path}: unusable 'int8' entry: {exc}") from exc
        meta["int8"] = dict(int8.get("meta") or {})
    model.meta = meta
    model.weights_path = path
    return model.to(resolve_device(device)).eval()


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=pathlib.Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _plain(value):
    """Meta/config as plain JSON-like types, so weights_only loading accepts them."""
    return json.loads(json.dumps(value, default=str))


def save_model(model: nn.Module, path, meta: dict) -> None:
    """Write ``model`` in our format (atomically). ``meta`` is provenance (data, steps, ...);
    date, git commit and torch version are filled in when absent. A SuperPoint's int8 variant
    goes into the 'int8' entry, with ``meta['int8']`` as its provenance."""
    kind = next((k for k, cls in MODEL_CLASSES.items() if isinstance(model, cls)), None)
    if kind is None:
        raise TypeError(f"save_model expects SuperPoint or SuperGlue, got {type(model).__name__}")
    meta = dict(meta or {})
    meta.setdefault(
        "date", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    )
    meta.setdefault("git_commit", _git_commit())
    meta.setdefault("torch", torch.__version__)
    state_dict = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    obj = {
        "format": FORMAT,
        "kind": kind,
        "config": _plain(model.conf),
        "state_dict": state_dict,
        "meta": _plain({k: v for k, v in meta.items() if k != "int8"}),
    }
    variant = getattr(model, "int8_variant", None)
    if variant is not None:
        obj["int8"] = _int8_entry(variant, meta.get("int8"))
    _save_atomically(obj, path)


def _int8_entry(variant: dict, meta: dict | None) -> dict:
    return dict(
        state_dict={k: v.detach().cpu().contiguous() for k, v in variant["state_dict"].items()},
        activation_scales=[float(v) for v in variant["activation_scales"]],
        meta=_plain(meta or {}),
    )


def _save_atomically(obj: dict, path) -> None:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def add_int8_variant(source, out, variant: dict, meta: dict) -> None:
    """Copy the SuperPoint weights file ``source`` (our format) to ``out`` with ``variant``
    (SuperPoint.int8_variant layout) as its 'int8' entry; everything else stays as it was, so
    the float weights, config and provenance are unchanged. ``meta``: the variant's provenance."""
    obj = read_weights_file(source)
    if obj.get("format") != FORMAT or obj.get("kind") != "superpoint":
        raise WeightsError(f"{source}: an int8 entry needs a SuperPoint file in our format")
    check = load_model("superpoint", source)
    check.set_int8_variant(variant)  # ValueError if it does not fit
    obj["int8"] = _int8_entry(check.int8_variant, meta)
    _save_atomically(obj, out)
