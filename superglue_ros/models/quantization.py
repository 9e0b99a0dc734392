"""Int8 SuperPoint backbone: the fake-quantised graph used for fine-tuning and for export.

Why: SuperPoint's backbone is most of a frame's cost on a 2-core CPU, and int8 convolutions
(AMX-INT8 on Intel, AVX512-VNNI on AMD) run it about twice as fast as bf16. Plain
post-training quantisation lost 6-15 points of homography AUC@3px here, so the scales and
weights are fine-tuned with the quantisation in the loop (training/quantize_superpoint.py).

Scheme (symmetric, what OpenVINO runs as int8 convolutions): every convolution takes uint8
activations (one scale per tensor, zero point 0: each input is the image in [0, 1] or follows a
ReLU) and int8 weights (one scale per output channel, absmax / 127), accumulates in int32 and
returns float. The image's scale is fixed at 1/255, exact for 8-bit cameras. The other scales
are learned as in LSQ (Esser et al., "Learned Step Size Quantization", ICLR 2020): the rounding
passes gradients straight through, the scale gets (round(x/s) - x/s) inside the range and the
range's end outside it. In export (tracing) the same points become ONNX QuantizeLinear /
DequantizeLinear pairs, which OpenVINO's low-precision transformations fuse into int8 kernels.

Fine-tuning moves the weights away from the float network (run in float they are no better
than plain quantisation), so the int8 weights are kept beside the float ones: a SuperPoint's
``int8_variant`` (state dict + scales, one per entry of ``ACTIVATION_POINTS``), the 'int8' entry
of a weights file (weights.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# quantised tensors, in forward order: the input of each convolution (convPa and convDa share
# conv4b's output); pool1-3 are quantised before their max pooling, which gives the same values
# (rounding is monotonic, so it commutes with a maximum) and lets OpenVINO pool in uint8
ACTIVATION_POINTS = (
    "image",
    "conv1a",
    "pool1",
    "conv2a",
    "pool2",
    "conv3a",
    "pool3",
    "conv4a",
    "conv4b",
    "convPa",
    "convDa",
)
# each convolution -> the index in ACTIVATION_POINTS of the tensor it takes
CONV_INPUTS = {
    "conv1a": 0,
    "conv1b": 1,
    "conv2a": 2,
    "conv2b": 3,
    "conv3a": 4,
    "conv3b": 5,
    "conv4a": 6,
    "conv4b": 7,
    "convPa": 8,
    "convDa": 8,
    "convPb": 9,
    "convDb": 10,
}
POOLED_POINTS = ("pool1", "pool2", "pool3")
IMAGE_SCALE = 1.0 / 255.0
ACTIVATION_MAX = 255  # uint8
WEIGHT_MAX = 127  # int8, symmetric (-128 unused)


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round to the nearest integer with an identity gradient (straight-through estimator)."""
    return x + (torch.round(x) - x).detach()


def fake_quantize_activation(x: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """x >= 0 -> round(x / scale) clipped to [0, 255], times scale (uint8 values, zero point 0).

    Traced for export, the ONNX QuantizeLinear/DequantizeLinear pair."""
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return torch.fake_quantize_per_tensor_affine(x, float(scale), 0, 0, ACTIVATION_MAX)
    return round_ste(torch.clamp(x / scale, 0, ACTIVATION_MAX)) * scale


def weight_scales(weight: torch.Tensor) -> torch.Tensor:
    """[C_out,...] -> [C_out] per-output-channel symmetric scales absmax / 127 (no gradient)."""
    return (weight.detach().abs().amax(dim=tuple(range(1, weight.dim()))) / WEIGHT_MAX).clamp_min(
        1e-12
    )


def fake_quantize_weight(weight: torch.Tensor) -> torch.Tensor:
    """Per-output-channel int8 weights (round with a straight-through gradient)."""
    scales = weight_scales(weight)
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        zero = torch.zeros_like(scales, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(weight, scales, zero, 0, -128, WEIGHT_MAX)
    shape = (-1,) + (1,) * (weight.dim() - 1)
    s = scales.view(shape)
    return round_ste(torch.clamp(weight / s, -WEIGHT_MAX, WEIGHT_MAX)) * s


class Int8Backbone(nn.Module):
    """SuperPoint's forward_dense with int8 convolutions (fake-quantised in float).

    Shares the convolutions of ``model`` (a SuperPoint); ``scales`` [11] are the activation
    scales of ACTIVATION_POINTS (the first, the image's, is not trained). They are learned as
    logarithms (``log_scales``), so Adam's step is relative to each scale's size."""

    def __init__(self, model: nn.Module, scales):
        super().__init__()
        self.model = model
        if len(scales) != len(ACTIVATION_POINTS):
            raise ValueError(
                f"int8 needs {len(ACTIVATION_POINTS)} activation scales, got {scales!r}"
            )
        if any(not float(s) > 0 for s in scales):
            raise ValueError(f"int8 activation scales must be positive, got {list(scales)}")
        self.log_scales = nn.Parameter(torch.tensor([float(s) for s in scales]).log())

    def scale_list(self) -> list[float]:
        """The current scales as plain floats (the image's pinned at 1/255)."""
        return [IMAGE_SCALE] + [float(s) for s in self.log_scales.detach()[1:].exp()]

    def scale_of(self, point: int) -> torch.Tensor | float:
        return IMAGE_SCALE if point == 0 else self.log_scales[point].exp()

    def conv(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """SuperPoint.forward_dense's convolution ``name`` on uint8 ``x`` with int8 weights."""
        layer = getattr(self.model, name)
        point = CONV_INPUTS[name]
        if ACTIVATION_POINTS[point] not in POOLED_POINTS:  # pooled ones came quantised
            x = fake_quantize_activation(x, self.scale_of(point))
        return F.conv2d(x, fake_quantize_weight(layer.weight), layer.bias, padding=layer.padding)

    def pool(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """Max pooling ``name`` (pool1-3) of ``x`` quantised to uint8 first.

        Measured on OpenVINO (Intel AMX, 2 cores, VGA): 31 -> 24 ms for the backbone, since
        pooling after the dequantisation had run in bf16 on full-resolution float tensors
        with a layout reorder and a second quantisation after it."""
        point = ACTIVATION_POINTS.index(name)
        return self.model.pool(fake_quantize_activation(x, self.scale_of(point)))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """image [B,1,H,W] in [0,1] -> logits [B,65,H/8,W/8], descriptors [B,D,H/8,W/8]."""
        out = self.model.forward_dense(image, conv=self.conv, pool=self.pool)
        return out["logits"], out["descriptors"]


# (producer, consumers): the layers whose weights equalize_ranges balances (ReLU and max pooling
# between them commute with a positive per-channel scale)
EQUALIZATION_PAIRS = (
    ("conv1a", ("conv1b",)),
    ("conv1b", ("conv2a",)),
    ("conv2a", ("conv2b",)),
    ("conv2b", ("conv3a",)),
    ("conv3a", ("conv3b",)),
    ("conv3b", ("conv4a",)),
    ("conv4a", ("conv4b",)),
    ("conv4b", ("convPa", "convDa")),
    ("convPa", ("convPb",)),
    ("convDa", ("convDb",)),
)


@torch.no_grad()
def equalize_ranges(model: nn.Module, rounds: int = 4) -> None:
    """Cross-layer equalisation (Nagel et al., "Data-Free Quantization", ICCV 2019), in place.

    Why: some input channels of the shipped weights carry weights hundreds of times larger than
    the rest of their output channel (convDb: 65.9 against a median of 0.01), so per-channel
    int8 rounds the rest of that channel to zero (descriptor cosine to float 0.50). Dividing a
    producer's output channel i (weights and bias) by s_i and multiplying its consumers' input
    channel i by s_i changes nothing in float (ReLU and max pooling commute with s_i > 0); with
    s_i = sqrt(r1_i / r2_i) both ranges become sqrt(r1_i r2_i)."""
    for _ in range(rounds):
        for producer_name, consumer_names in EQUALIZATION_PAIRS:
            producer = getattr(model, producer_name)
            consumers = [getattr(model, n) for n in consumer_names]
            r1 = producer.weight.abs().flatten(1).amax(1)  # [C]
            r2 = torch.stack(
                [c.weight.abs().transpose(0, 1).flatten(1).amax(1) for c in consumers]
            ).amax(0)  # [C]
            s = torch.sqrt(r1 / r2.clamp_min(1e-12)).clamp(1e-4, 1e4)
            s = torch.where((r1 > 0) & (r2 > 0), s, torch.ones_like(s))
            producer.weight.div_(s.view(-1, 1, 1, 1))
            producer.bias.div_(s)
            for c in consumers:
                c.weight.mul_(s.view(1, -1, 1, 1))


@torch.no_grad()
def calibrate_scales(model: nn.Module, images: torch.Tensor, quantile: float = 0.9999) -> list:
    """Initial activation scales from the float network on ``images`` [B,1,H,W] in [0,1]:
    the ``quantile`` of each quantised tensor's values / 255 (the image's is 1/255)."""
    seen: dict[int, float] = {}

    def observed(name, x):
        point = CONV_INPUTS[name]
        if point not in seen:  # convPa and convDa share their input
            flat = x.detach().flatten().float()
            if flat.numel() > 4_000_000:  # torch.quantile's input limit; a strided subsample
                flat = flat[:: flat.numel() // 4_000_000 + 1]
            seen[point] = float(torch.quantile(flat, quantile))
        return getattr(model, name)(x)

    model.forward_dense(images, conv=observed)
    return [IMAGE_SCALE] + [
        max(seen[point], 1e-6) / ACTIVATION_MAX for point in range(1, len(ACTIVATION_POINTS))
    ]
