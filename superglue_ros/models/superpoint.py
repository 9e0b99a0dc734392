"""SuperPoint: self-supervised interest point detector and descriptor.

Written from the paper (DeTone, Malisiewicz, Rabinovich, "SuperPoint: Self-Supervised Interest
Point Detection and Description", CVPR-W 2018). Layer names follow the published
``superpoint_v1.pth`` state dict so those weights load unchanged.

Keypoints (x, y) are in pixels of the image given to ``forward``, pixel centres at integer
coordinates. Two decoding conventions exist, chosen by the configuration:

- ``reference`` (default; what the published weights were trained and evaluated with):
  NMS = window maximum, then ``nms_suppression_rounds`` = 2 rounds of "suppress every pixel
  within the radius of a kept point, keep the window maxima of the remaining scores" (recovers
  peaks that were only hidden by a suppressed neighbour, e.g. in chains of near-equal peaks).
  Descriptors are sampled from the 1/8 map (W cells wide, s = 8) with ``align_corners=True`` at
  normalised x' = (x - s/2 + 0.5) / (W s - s/2 - 0.5) * 2 - 1 (same for y): pixel 3.5 maps to
  the first cell centre and pixel W s - 1 to the last, a slight stretch of the cell grid.
- ``descriptor_sampling: pixel_centre`` (what our own ``superglue_ros/1`` files were trained
  with, see weights.py): descriptor cell j covers pixels [8j, 8j + 8) with its centre at
  8j + 3.5, sampled with ``align_corners=False`` at (x + 0.5) / (8 W) * 2 - 1, the border
  descriptor repeated outside. ``nms_suppression_rounds: 0`` is a single window maximum.

Keypoint localisation: the published decoding keeps the integer pixel of each NMS maximum
(``subpixel: none``). ``subpixel: quadratic`` moves each keypoint by the vertex of a parabola
through the log-heatmap at the maximum and its two neighbours, per axis (offset within +-0.5
px). Why: on real camera motion the integer keypoints of a 640 px working image land ~1-2 px of
the original frame off their epipolar lines (issue 10), which costs an essential-matrix fit at
1 px most of its inliers.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..timing import stage


def _window_max_torch(values: torch.Tensor, radius: int) -> torch.Tensor:
    """[B,H,W] -> maximum over each (2r+1)^2 window (outside the image counts as -inf).

    Separable (a row maximum, then a column maximum): the same values as one square max-pool,
    about 4x fewer comparisons for r = 4."""
    k = 2 * radius + 1
    rows = F.max_pool2d(values[:, None], kernel_size=(1, k), stride=1, padding=(0, radius))
    return F.max_pool2d(rows, kernel_size=(k, 1), stride=1, padding=(radius, 0))[:, 0]


def _window_max_cv2(values: np.ndarray, radius: int) -> np.ndarray:
    """[H,W] float32 or uint8 -> window maximum with cv2.dilate (outside = below any value)."""
    import cv2

    k = 2 * radius + 1
    border = -np.inf if values.dtype != np.uint8 else 0
    return cv2.dilate(
        values, np.ones((k, k), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=border
    )


def nms_torch(heatmap: torch.Tensor, radius: int, suppression_rounds: int = 0) -> torch.Tensor:
    """Keep window maxima ((2r+1)^2 windows), then ``suppression_rounds`` rounds that add the
    window maxima of the scores left after zeroing everything within r of a kept point.

    heatmap: [B,H,W] float >= 0. Returns [B,H,W], non-kept pixels zero. Equal values on a
    plateau are all kept (a plateau has no unique maximum)."""
    if radius <= 0:
        return heatmap
    kept = heatmap == _window_max_torch(heatmap, radius)
    for _ in range(suppression_rounds):
        suppressed = _window_max_torch(kept.float(), radius) > 0
        remaining = torch.where(suppressed, torch.zeros_like(heatmap), heatmap)
        kept = kept | (~suppressed & (remaining == _window_max_torch(remaining, radius)))
    return torch.where(kept, heatmap, torch.zeros_like(heatmap))


def nms_numpy(heat: np.ndarray, radius: int, suppression_rounds: int = 0) -> np.ndarray:
    """``nms_torch`` of one [H,W] float32 heatmap on the CPU (cv2.dilate and masked copies).

    Why: decoding is single-threaded beside the backbone on the node's 2 cores; with masks
    applied by cv2.bitwise_and instead of np.where this takes about half the time (VGA, radius 4,
    2 rounds: 2.1-2.8 ms against 5.3-5.6 ms), with the same result bit for bit."""
    import cv2

    if radius <= 0:
        return heat
    kept = heat == _window_max_cv2(heat, radius)
    for _ in range(suppression_rounds):
        free = _window_max_cv2(kept.view(np.uint8), radius) == 0  # not within r of a kept one
        remaining = cv2.bitwise_and(heat, heat, mask=free.view(np.uint8))  # +0.0 where not free
        kept |= free & (remaining == _window_max_cv2(remaining, radius))
    return cv2.bitwise_and(heat, heat, mask=kept.view(np.uint8))


def nms_cv2(heatmap: torch.Tensor, radius: int, suppression_rounds: int = 0) -> torch.Tensor:
    """Same result as ``nms_torch``, each image through ``nms_numpy`` (far faster on CPU)."""
    if radius <= 0:
        return heatmap
    heat_np = np.ascontiguousarray(heatmap.detach().float().cpu().numpy())
    out = np.stack([nms_numpy(heat, radius, suppression_rounds) for heat in heat_np])
    return torch.from_numpy(out).to(device=heatmap.device, dtype=heatmap.dtype)


NMS_FUNCTIONS = {"torch": nms_torch, "cv2": nms_cv2}
DESCRIPTOR_SAMPLING = ("reference", "pixel_centre")
SUBPIXEL = ("none", "quadratic")


def refine_subpixel(keypoints: torch.Tensor, heatmap: torch.Tensor) -> torch.Tensor:
    """Integer NMS maxima [N,2] (x, y) of ``heatmap`` [H,W] -> sub-pixel positions [N,2].

    Per axis, the vertex of the parabola through log h(x-1), log h(x), log h(x+1) (a Gaussian
    peak is exactly a parabola in log): dx = (l- - l+) / (2 (l- - 2 l0 + l+)), clipped to +-0.5;
    an axis at the image border or without a strict maximum keeps its integer position."""
    if keypoints.shape[0] == 0:
        return keypoints
    height, width = heatmap.shape

    def log_at(rows, cols):  # the log of only the values read (not of the whole heatmap)
        return torch.log(heatmap[rows, cols].float().clamp_min(1e-12))

    x, y = keypoints[:, 0].long(), keypoints[:, 1].long()
    l_zero = log_at(y, x)
    offsets = []
    for centre, limit, step in ((x, width, (0, 1)), (y, height, (1, 0))):
        inside = (centre > 0) & (centre < limit - 1)
        lo = torch.where(inside, centre - 1, centre)
        hi = torch.where(inside, centre + 1, centre)
        if step == (0, 1):
            l_minus, l_plus = log_at(y, lo), log_at(y, hi)
        else:
            l_minus, l_plus = log_at(lo, x), log_at(hi, x)
        curvature = l_minus - 2 * l_zero + l_plus
        ok = inside & (curvature < 0)
        delta = torch.where(
            ok,
            (l_minus - l_plus) / (2 * torch.where(ok, curvature, -1.0)),
            torch.zeros_like(curvature),
        )
        offsets.append(delta.clamp(-0.5, 0.5))
    return keypoints + torch.stack(offsets, dim=-1).to(keypoints.dtype)


def sample_descriptors(
    keypoints: torch.Tensor, dense: torch.Tensor, cell: int = 8, convention: str = "reference"
) -> torch.Tensor:
    """Bilinearly sample an L2-normalised descriptor at each keypoint.

    keypoints: [N,2] (x, y) pixels; dense: [D,Hc,Wc] 1/cell-resolution map. Returns [N,D].
    ``convention``: 'reference' or 'pixel_centre' (see the module docstring)."""
    d, hc, wc = dense.shape
    if keypoints.shape[0] == 0:
        return dense.new_zeros((0, d))
    size = keypoints.new_tensor([wc * cell, hc * cell])
    if convention == "reference":
        grid = (keypoints - cell / 2 + 0.5) / (size - cell / 2 - 0.5) * 2 - 1  # [N,2]
        options = dict(padding_mode="zeros", align_corners=True)
    elif convention == "pixel_centre":
        grid = (keypoints + 0.5) / size * 2 - 1
        options = dict(padding_mode="border", align_corners=False)
    else:
        raise ValueError(
            f"unknown descriptor_sampling {convention!r}; choose from {DESCRIPTOR_SAMPLING}"
        )
    sampled = F.grid_sample(
        dense[None].float(), grid[None, None].float(), mode="bilinear", **options
    )  # [1,D,1,N]
    return F.normalize(sampled[0, :, 0].t(), p=2, dim=1)


class SuperPoint(nn.Module):
    """Shared VGG encoder (1/8 resolution) + detector head (65 bins) + descriptor head."""

    default_conf = dict(
        descriptor_dim=256,
        nms_radius=4,
        keypoint_threshold=0.005,
        max_keypoints=-1,
        remove_borders=4,
        # decoding convention (module docstring): the published one by default; our own
        # superglue_ros/1 files without descriptor_sampling get 'pixel_centre' (weights.py)
        nms_suppression_rounds=2,
        descriptor_sampling="reference",  # 'reference' | 'pixel_centre'
        subpixel="none",  # 'none' (integer NMS maxima, the published decoding) | 'quadratic'
        nms="torch",  # 'torch' (max-pool) or 'cv2' (dilate); same result, cv2 is faster on CPU
        # inference backend of the dense backbone (see backends.py); reference = torch fp32
        backend="torch",  # 'torch' | 'openvino' | 'onnxruntime'
        # 'fp32' | 'bf16' | 'fp16' | 'auto' (see backends.py) | 'int8' (needs int8_variant)
        precision="fp32",
        channels_last=False,  # torch backend only
        small_op_threads=None,  # torch threads for decoding (fast path: 1), None = unchanged
        backend_threads=None,  # OpenVINO/ONNX Runtime threads, None = torch.get_num_threads()
        static_shapes=False,  # OpenVINO: compile once per image size (faster than dynamic)
    )
    cell = 8

    def __init__(self, conf: dict | None = None):
        super().__init__()
        self.conf = {**self.default_conf, **(conf or {})}
        if self.conf["nms"] not in NMS_FUNCTIONS:
            raise ValueError(
                f"unknown nms {self.conf['nms']!r}; choose from {sorted(NMS_FUNCTIONS)}"
            )
        if self.conf["descriptor_sampling"] not in DESCRIPTOR_SAMPLING:
            raise ValueError(
                f"unknown descriptor_sampling {self.conf['descriptor_sampling']!r}; "
                f"choose from {DESCRIPTOR_SAMPLING}"
            )
        if self.conf["subpixel"] not in SUBPIXEL:
            raise ValueError(f"unknown subpixel {self.conf['subpixel']!r}; choose from {SUBPIXEL}")
        rounds = self.conf["nms_suppression_rounds"]
        if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 0:
            raise ValueError(f"nms_suppression_rounds must be an integer >= 0, got {rounds!r}")
        c1, c2, c3, c4, c5 = 64, 64, 128, 128, 256
        dim = self.conf["descriptor_dim"]
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.conv1a = nn.Conv2d(1, c1, 3, padding=1)
        self.conv1b = nn.Conv2d(c1, c1, 3, padding=1)
        self.conv2a = nn.Conv2d(c1, c2, 3, padding=1)
        self.conv2b = nn.Conv2d(c2, c2, 3, padding=1)
        self.conv3a = nn.Conv2d(c2, c3, 3, padding=1)
        self.conv3b = nn.Conv2d(c3, c3, 3, padding=1)
        self.conv4a = nn.Conv2d(c3, c4, 3, padding=1)
        self.conv4b = nn.Conv2d(c4, c4, 3, padding=1)
        self.convPa = nn.Conv2d(c4, c5, 3, padding=1)
        self.convPb = nn.Conv2d(c5, self.cell * self.cell + 1, 1)
        self.convDa = nn.Conv2d(c4, c5, 3, padding=1)
        self.convDb = nn.Conv2d(c5, dim, 1)

    # int8 weights of the backbone (models/quantization.py), or None: a dict with 'state_dict'
    # (this model's keys, fine-tuned for int8) and 'activation_scales' (one per
    # quantization.ACTIVATION_POINTS entry). Kept apart from the float weights, which the float
    # precisions and training use unchanged; weight files carry it as their 'int8' entry.
    int8_variant: dict | None = None

    def set_int8_variant(self, variant: dict | None) -> None:
        """Attach (or with None drop) int8 weights; ValueError if they do not fit this model."""
        if variant is not None:
            from .quantization import ACTIVATION_POINTS

            scales = variant.get("activation_scales")
            state = variant.get("state_dict")
            if not isinstance(state, dict) or set(state) != set(self.state_dict()):
                raise ValueError("int8 variant: 'state_dict' must hold this model's keys")
            for key, value in self.state_dict().items():
                if tuple(state[key].shape) != tuple(value.shape):
                    raise ValueError(f"int8 variant: {key} has shape {tuple(state[key].shape)}")
            if (
                not isinstance(scales, (list, tuple))
                or len(scales) != len(ACTIVATION_POINTS)
                or not all(float(v) > 0 for v in scales)
            ):
                raise ValueError(
                    f"int8 variant: 'activation_scales' must be {len(ACTIVATION_POINTS)} "
                    f"positive numbers, got {scales!r}"
                )
            variant = dict(state_dict=state, activation_scales=[float(v) for v in scales])
        self.int8_variant = variant
        self.reset_backend()

    def int8_backbone(self) -> nn.Module:
        """The int8 variant as a fake-quantised module (quantization.Int8Backbone)."""
        from .quantization import Int8Backbone

        if self.int8_variant is None:
            raise ValueError("this SuperPoint has no int8 variant")
        weights = SuperPoint({"descriptor_dim": self.conf["descriptor_dim"]})
        weights.load_state_dict(self.int8_variant["state_dict"])
        device = self.conv1a.weight.device
        return Int8Backbone(weights, self.int8_variant["activation_scales"]).to(device).eval()

    def reset_backend(self) -> None:
        """Forget the compiled backend (it is rebuilt from the current weights on next use)."""
        self.__dict__["_runner"] = None

    def load_state_dict(self, *args, **kwargs):
        self.reset_backend()
        return super().load_state_dict(*args, **kwargs)

    def uses_reference_path(self) -> bool:
        c = self.conf
        return self.training or (
            c["backend"] == "torch" and c["precision"] == "fp32" and not c["channels_last"]
        )

    def dense_runner(self):
        """The backend running forward_dense at inference (built once, on first use)."""
        runner = self.__dict__.get("_runner")
        if runner is None:
            from .backends import build_runner, resolve_precision

            device = self.conv1a.weight.device
            example = (torch.zeros(1, 1, 480, 640, device=device),)
            int8_capable = self.int8_variant is not None and self.conf["backend"] == "openvino"
            precision = resolve_precision(self.conf["precision"], device, int8=int8_capable)
            graph = self.int8_backbone() if precision == "int8" else _DenseGraph(self)
            runner = build_runner(
                self.conf["backend"],
                graph,
                device,
                precision,
                example_inputs=example,
                input_names=["image"],
                output_names=["logits", "descriptors"],
                dynamic_axes={"image": {0: "b", 2: "h", 3: "w"}},
                channels_last=self.conf["channels_last"],
                tag="superpoint-int8" if precision == "int8" else "superpoint",
                threads=self.conf["backend_threads"],
                static_shapes=self.conf["static_shapes"],
                int8=precision == "int8",
            )
            self.__dict__["_runner"] = runner
        return runner

    def dense(self, image: torch.Tensor) -> dict:
        """forward_dense through the configured backend (reference: plain eager fp32)."""
        if self.uses_reference_path():
            return self.forward_dense(image)
        logits, desc = self.dense_runner()(image)
        return dict(logits=logits.to(image.device), descriptors=desc.to(image.device))

    def forward_dense(self, image: torch.Tensor, conv=None, pool=None) -> dict:
        """image [B,1,H,W] in [0,1], H and W multiples of 8 ->
        logits [B,65,H/8,W/8] (raw) and descriptors [B,D,H/8,W/8] (L2-normalised over D).

        ``conv(name, x)`` applies the convolution called ``name`` (default: the layer itself),
        ``pool(name, x)`` the max pooling called ``name`` (pool1-3; default: ``self.pool``); the
        int8 backbone and its calibration pass their own (models/quantization.py)."""
        if conv is None:
            conv = self._float_conv
        if pool is None:
            pool = self._float_pool
        x = self.relu(conv("conv1a", image))
        x = pool("pool1", self.relu(conv("conv1b", x)))
        x = self.relu(conv("conv2a", x))
        x = pool("pool2", self.relu(conv("conv2b", x)))
        x = self.relu(conv("conv3a", x))
        x = pool("pool3", self.relu(conv("conv3b", x)))
        x = self.relu(conv("conv4a", x))
        x = self.relu(conv("conv4b", x))
        logits = conv("convPb", self.relu(conv("convPa", x)))
        desc = conv("convDb", self.relu(conv("convDa", x)))
        desc = F.normalize(desc, p=2, dim=1)
        return dict(logits=logits, descriptors=desc)

    def _float_conv(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, name)(x)

    def _float_pool(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x)

    @staticmethod
    def logits_to_heatmap(logits: torch.Tensor) -> torch.Tensor:
        """[B,65,Hc,Wc] logits -> [B,8Hc,8Wc] keypoint probability (dustbin dropped).

        Channel c = 8 * row + col inside the 8x8 cell (pixel_shuffle order)."""
        prob = torch.softmax(logits.float(), dim=1)[:, :-1]
        return F.pixel_shuffle(prob, 8)[:, 0]

    @staticmethod
    def to_gray(image: torch.Tensor) -> torch.Tensor:
        if image.dim() == 3:
            image = image[:, None]
        if image.shape[1] == 3:
            w = image.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            image = (image * w).sum(1, keepdim=True)
        if image.shape[1] != 1:
            raise ValueError(
                f"SuperPoint expects [B,1,H,W] or [B,3,H,W] images, got {tuple(image.shape)}"
            )
        return image

    def pad_to_cell(self, image: torch.Tensor) -> torch.Tensor:
        """Replicate-pad bottom/right so H and W are multiples of 8 (keypoints there are dropped)."""
        h, w = image.shape[-2:]
        ph, pw = (-h) % self.cell, (-w) % self.cell
        if ph or pw:
            image = F.pad(image, (0, pw, 0, ph), mode="replicate")
        return image

    def extract_keypoints(self, heatmap: torch.Tensor, height: int, width: int):
        """heatmap [B,Hp,Wp] (padded size) -> per image (keypoints [N,2] xy, scores [N]).

        NMS, then drop the pad and a border of ``remove_borders`` px of the real image, keep
        scores > ``keypoint_threshold``, then the top ``max_keypoints`` by decreasing score."""
        conf = self.conf
        if conf["nms"] == "cv2" and heatmap.device.type == "cpu":
            return self._extract_keypoints_numpy(heatmap, height, width)
        heat = NMS_FUNCTIONS[conf["nms"]](
            heatmap, conf["nms_radius"], conf["nms_suppression_rounds"]
        )
        b = conf["remove_borders"]
        valid = torch.zeros_like(heat, dtype=torch.bool)
        valid[:, b : height - b, b : width - b] = True
        heat = torch.where(valid, heat, torch.zeros_like(heat))
        keypoints, scores = [], []
        for i, hb in enumerate(heat):
            ys, xs = torch.nonzero(hb > conf["keypoint_threshold"], as_tuple=True)
            s = hb[ys, xs]
            # stable sort: equal scores keep raster order, so results don't depend on the crop
            s, idx = torch.sort(s, descending=True, stable=True)
            k = conf["max_keypoints"]
            if k is not None and k >= 0:
                s, idx = s[:k], idx[:k]
            kpts = torch.stack([xs[idx], ys[idx]], dim=-1).to(heatmap.dtype)
            if conf["subpixel"] == "quadratic":
                kpts = refine_subpixel(kpts, heatmap[i])
            keypoints.append(kpts)
            scores.append(s)
        return keypoints, scores

    def _extract_keypoints_numpy(self, heatmap: torch.Tensor, height: int, width: int):
        """``extract_keypoints`` with nms 'cv2' on the CPU, in numpy: the same keypoints and
        scores in the same order (raster order, then a stable sort by decreasing score).

        Why: torch's masking and nonzero over a VGA heatmap cost ~4 ms per frame on one
        thread, numpy's flatnonzero on the thresholded map ~0.1 ms."""
        conf = self.conf
        b, k, threshold = conf["remove_borders"], conf["max_keypoints"], conf["keypoint_threshold"]
        keypoints, scores = [], []
        for i, heat in enumerate(np.ascontiguousarray(heatmap.detach().float().numpy())):
            peaks = nms_numpy(heat, conf["nms_radius"], conf["nms_suppression_rounds"])
            inside = np.zeros(peaks.shape, dtype=bool)
            inside[b : height - b, b : width - b] = True  # the torch path's slice
            if threshold < 0:  # the torch path's zeroed border then passes the threshold
                peaks = np.where(inside, peaks, np.float32(0))
                candidate = peaks > threshold
            else:
                candidate = (peaks > threshold) & inside
            flat = np.flatnonzero(candidate)
            s = peaks.ravel()[flat]
            order = np.argsort(-s, kind="stable")  # equal scores keep raster order
            if k is not None and k >= 0:
                order = order[:k]
            ys, xs = np.divmod(flat[order], heat.shape[1])
            kpts = torch.from_numpy(np.stack([xs, ys], axis=-1)).to(heatmap.dtype)
            if conf["subpixel"] == "quadratic":
                kpts = refine_subpixel(kpts, heatmap[i])
            keypoints.append(kpts)
            scores.append(torch.from_numpy(np.ascontiguousarray(s[order])).to(heatmap.dtype))
        return keypoints, scores

    def forward(self, image: torch.Tensor) -> dict:
        """image [B,1,H,W] (or [B,3,H,W] RGB) in [0,1], any H, W ->
        keypoints list of [N_i,2] (x, y) px, scores list of [N_i], descriptors list of [N_i,D]."""
        image = self.to_gray(image)
        height, width = image.shape[-2:]
        with stage("superpoint_backbone"):
            dense = self.dense(self.pad_to_cell(image))
        from .backends import limited_threads

        with (
            stage("superpoint_decode"),
            limited_threads(None if self.training else self.conf["small_op_threads"]),
        ):
            heatmap = self.logits_to_heatmap(dense["logits"])
            keypoints, scores = self.extract_keypoints(heatmap, height, width)
            descriptors = [
                sample_descriptors(k, d, self.cell, self.conf["descriptor_sampling"])
                for k, d in zip(keypoints, dense["descriptors"])
            ]
        return dict(keypoints=keypoints, scores=scores, descriptors=descriptors)


class _DenseGraph(nn.Module):
    """forward_dense as a tuple-returning module, for tracing into a backend."""

    def __init__(self, model: SuperPoint):
        super().__init__()
        self.model = model

    def forward(self, image):
        out = self.model.forward_dense(image)
        return out["logits"], out["descriptors"]
