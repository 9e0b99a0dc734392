"""Ground-truth assignment between two keypoint sets related by a known homography.

SuperGlue paper, homographic self-supervision: keypoint i of image 0 and j of image 1 match when
they are mutual nearest neighbours (after warping image 0's keypoints into image 1) within
``match_px``; a keypoint farther than ``unmatched_px`` from every keypoint of the other image is
unmatched (its target is the dustbin); keypoints in between are ambiguous and ignored by the
loss. Distances are measured in image 1 pixels for both sides (image 1's keypoints are compared
against the warped keypoints of image 0).
"""

from __future__ import annotations

import numpy as np
import torch

from ..homography import warp_points


def ground_truth_assignment(
    kpts0: np.ndarray,
    kpts1: np.ndarray,
    H: np.ndarray,
    match_px: float = 3.0,
    unmatched_px: float = 5.0,
) -> dict:
    """kpts0 [M,2], kpts1 [N,2] (x, y) px; H maps image 0 to image 1.

    Returns numpy arrays: matches0 int64 [M] (index into kpts1, -1 = none),
    matches1 int64 [N], unmatched0 bool [M], unmatched1 bool [N] (dustbin targets).
    Keypoints with matchesX == -1 and unmatchedX False are ignored.
    """
    kpts0 = np.asarray(kpts0, np.float64).reshape(-1, 2)
    kpts1 = np.asarray(kpts1, np.float64).reshape(-1, 2)
    m, n = len(kpts0), len(kpts1)
    matches0 = np.full(m, -1, np.int64)
    matches1 = np.full(n, -1, np.int64)
    if m == 0 or n == 0:
        return dict(
            matches0=matches0,
            matches1=matches1,
            unmatched0=np.ones(m, bool),
            unmatched1=np.ones(n, bool),
        )
    warped0 = warp_points(H, kpts0)
    dist = np.linalg.norm(warped0[:, None] - kpts1[None], axis=-1)  # [M,N]
    dist[~np.isfinite(dist)] = np.inf
    nn01 = dist.argmin(1)
    nn10 = dist.argmin(0)
    rows = np.arange(m)
    mutual = nn10[nn01] == rows
    ok = mutual & (dist[rows, nn01] <= match_px)
    matches0[ok] = nn01[ok]
    matches1[nn01[ok]] = rows[ok]
    unmatched0 = (dist.min(1) > unmatched_px) & (matches0 < 0)
    unmatched1 = (dist.min(0) > unmatched_px) & (matches1 < 0)
    return dict(matches0=matches0, matches1=matches1, unmatched0=unmatched0, unmatched1=unmatched1)


def assignment_nll(
    log_assignment: torch.Tensor,
    matches0: torch.Tensor,
    unmatched0: torch.Tensor,
    unmatched1: torch.Tensor,
) -> torch.Tensor:
    """Negative log-likelihood of the ground truth under SuperGlue's assignment.

    log_assignment [B,M+1,N+1]; matches0 [B,M] long (-1 = none); unmatched0 [B,M],
    unmatched1 [B,N] bool. Mean over all supervised entries (matches + both dustbins) of each
    pair, then over the batch (pairs without supervision are skipped). Returns a scalar.
    """
    b, m1, n1 = log_assignment.shape
    m, n = m1 - 1, n1 - 1
    is_match = matches0 >= 0
    idx = matches0.clamp(min=0)
    match_lp = log_assignment[:, :m, :].gather(2, idx[..., None])[..., 0]  # [B,M]
    bin0_lp = log_assignment[:, :m, n]  # [B,M]
    bin1_lp = log_assignment[:, m, :n]  # [B,N]
    total = (
        -(match_lp * is_match).sum(1)
        - (bin0_lp * unmatched0).sum(1)
        - (bin1_lp * unmatched1).sum(1)
    )
    count = is_match.sum(1) + unmatched0.sum(1) + unmatched1.sum(1)
    valid = count > 0
    if not valid.any():
        return log_assignment.sum() * 0.0
    return (total[valid] / count[valid]).mean()
