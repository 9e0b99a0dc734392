"""The learned components: SuperPoint and SuperGlue behind the Extractor/Matcher interfaces.

Thin wrappers around ``superglue_ros.models``: numpy in and out, tensors kept on the compute
device in ``Features.cache`` so a keyframe is uploaded (and, in the fast runtime, encoded) once.
Runtime of both (option 'runtime'): 'fast' (default: OpenVINO with bf16 where the CPU has it
natively and SuperPoint's backbone in int8 when its weights carry an int8 entry and the CPU
has 8-bit dot products (VNNI/AMX), static shapes, cv2 NMS, cached keyframe encodings, scaling
Sinkhorn; fp16 autocast on CUDA) or 'reference' (eager fp32 torch as in the papers). Options
'backend' / 'precision' override the runtime's choice ('torch' | 'openvino' | 'onnxruntime';
'auto' | 'fp32' | 'bf16' | 'fp16' | 'int8'). See models/backends.py and models/quantization.py.
"""

from __future__ import annotations

import numpy as np
import torch

from .feature_types import CACHE_KEY, Extractor, Features, Matcher, Matches
from .images import to_gray
from .models.backends import RUNTIMES
from .models.weights import load_model
from .timing import stage


def _cached_tensors(features: Features, device: torch.device) -> dict:
    """Tensors of `features` on `device`, uploaded once and kept in features.cache.

    keypoints [N,2], scores [N], descriptors [N,D] float32.
    """
    entry = features.cache.get(CACHE_KEY)
    if entry is None or entry["device"] != str(device):
        entry = dict(
            device=str(device),
            keypoints=torch.from_numpy(features.keypoints).to(device),
            scores=torch.from_numpy(features.scores).to(device),
            descriptors=torch.from_numpy(np.ascontiguousarray(features.descriptors, np.float32)).to(
                device
            ),
        )
        features.cache[CACHE_KEY] = entry
    return entry


def _runtime_options(conf: dict, which: int) -> dict:
    """Model options of conf['runtime'] (0 = SuperPoint, 1 = SuperGlue) with the overrides."""
    if conf["runtime"] not in RUNTIMES:
        raise ValueError(f"unknown runtime {conf['runtime']!r}; choose from {sorted(RUNTIMES)}")
    options = dict(RUNTIMES[conf["runtime"]][which])
    options.update({k: conf[k] for k in ("backend", "precision") if conf[k] is not None})
    if conf["threads"]:
        options["backend_threads"] = int(conf["threads"])
    return options


class SuperPointExtractor(Extractor):
    """SuperPoint keypoints and 256-d descriptors (weights: shipped file or `weights` path)."""

    name = "superpoint"
    default_conf = dict(
        max_keypoints=512,
        keypoint_threshold=0.005,
        nms_radius=4,
        remove_borders=4,
        weights=None,
        keep_on_device=True,
        runtime="fast",
        backend=None,
        precision=None,
        threads=None,  # the fast runtime's inference threads; None = torch's thread count
    )

    def __init__(self, device="cpu", model=None, **conf):
        """model: an already built SuperPoint (e.g. during training; its own runtime options
        are kept); else loaded from conf["weights"] or the shipped file. A given model is put in
        eval mode (call .train() again afterwards when training).
        """
        super().__init__(device, **conf)
        model_conf = {
            k: self.conf[k]
            for k in ("max_keypoints", "keypoint_threshold", "nms_radius", "remove_borders")
        }
        model_conf.update(_runtime_options(self.conf, 0))
        if model is None:
            model = load_model(
                "superpoint", self.conf["weights"], conf=model_conf, device=self.device
            )
        self.model = model.to(self.device).eval()

    @torch.inference_mode()
    def extract(self, image: np.ndarray) -> Features:
        with stage("conversion"):
            gray = to_gray(image)
            height, width = gray.shape
            tensor = torch.from_numpy(gray).to(self.device, torch.float32)[None, None] / 255.0
        pred = self.model(tensor)
        kpts, scores, desc = (pred["keypoints"][0], pred["scores"][0], pred["descriptors"][0])
        features = Features(
            kpts.float().cpu().numpy(),
            scores.float().cpu().numpy(),
            desc.float().cpu().numpy(),
            (width, height),
        )
        if self.conf["keep_on_device"]:
            features.cache[CACHE_KEY] = dict(
                device=str(self.device),
                keypoints=kpts.float(),
                scores=scores.float(),
                descriptors=desc.float(),
            )
        return features


class SuperGlueMatcher(Matcher):
    """SuperGlue attentional matcher; match_many runs one padded batch for N references."""

    name = "superglue"
    default_conf = dict(
        weights=None,
        sinkhorn_iterations=100,
        match_threshold=0.2,
        runtime="fast",
        backend=None,
        precision=None,
        threads=None,  # the fast runtime's inference threads; None = torch's thread count
    )

    def __init__(self, device="cpu", model=None, **conf):
        """model: an already built SuperGlue (e.g. during training; its own runtime options
        are kept); else loaded from conf["weights"] or the shipped file. A given model is put in
        eval mode (call .train() again afterwards when training).
        """
        super().__init__(device, **conf)
        threshold = float(self.conf["match_threshold"])
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"match_threshold must be in [0, 1), got {threshold}")
        self.conf["match_threshold"] = threshold
        model_conf = {k: self.conf[k] for k in ("sinkhorn_iterations", "match_threshold")}
        model_conf.update(_runtime_options(self.conf, 1))
        if model is None:
            model = load_model(
                "superglue", self.conf["weights"], conf=model_conf, device=self.device
            )
        self.model = model.to(self.device).eval()

    def match(self, f0: Features, f1: Features) -> Matches:
        return self.match_many(f0, [f1])[0]

    def prepare(self, max_keypoints: int) -> int:
        return self.model.compile_shapes(max_keypoints)

    @torch.inference_mode()
    def match_many(self, f0: Features, refs: list[Features]) -> list[Matches]:
        results = [Matches.none(len(f0)) for _ in refs]
        batch = [i for i, f1 in enumerate(refs) if len(f1) > 0]
        if len(f0) == 0 or not batch:
            return results
        q = _cached_tensors(f0, self.device)
        r = [_cached_tensors(refs[i], self.device) for i in batch]
        size_b, max_n = len(batch), max(len(refs[i]) for i in batch)
        dim = q["descriptors"].shape[-1]
        kpts1 = q["keypoints"].new_zeros(size_b, max_n, 2)
        scores1 = q["scores"].new_zeros(size_b, max_n)
        desc1 = q["descriptors"].new_zeros(size_b, max_n, dim)
        mask1 = torch.zeros(size_b, max_n, dtype=torch.bool, device=self.device)
        for b, entry in enumerate(r):
            n = len(entry["keypoints"])
            kpts1[b, :n], scores1[b, :n], desc1[b, :n] = (
                entry["keypoints"],
                entry["scores"],
                entry["descriptors"],
            )
            mask1[b, :n] = True
        data = dict(  # side 0 is a batch of one: the model repeats it for the B candidates
            keypoints0=q["keypoints"][None],
            scores0=q["scores"][None],
            descriptors0=q["descriptors"][None],
            image_size0=torch.tensor([f0.image_size], dtype=torch.float32, device=self.device),
            keypoints1=kpts1,
            scores1=scores1,
            descriptors1=desc1,
            image_size1=torch.tensor(
                [refs[i].image_size for i in batch], dtype=torch.float32, device=self.device
            ),
            mask1=mask1,
            # each side's keypoint encoding is kept in its Features.cache (a keyframe is
            # encoded once, then reused for every later query when the runtime caches)
            cache0=f0.cache,
            cache1=[refs[i].cache for i in batch],
        )
        pred = self.model(data)
        matches0 = pred["matches0"].cpu().numpy()
        scores0 = pred["matching_scores0"].float().cpu().numpy()
        for b, i in enumerate(batch):
            n = len(refs[i])
            valid = (matches0[b] >= 0) & (matches0[b] < n)  # never point into padding
            results[i] = Matches(np.where(valid, matches0[b], -1), np.where(valid, scores0[b], 0.0))
        return results
