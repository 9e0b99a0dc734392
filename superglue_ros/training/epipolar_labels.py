"""Matching labels for real pairs from the ground-truth relative pose (no depth available).

Without depth a keypoint's partner is only known to lie on its epipolar line; with a depth range
[min_depth, inf) it lies on a *segment* of that line: the projections into the other view of the
ray's points from depth min_depth (near end) to infinity (far end). For forward driving the
segments are short (distant points barely move), so far more keypoints get an exact label than
with the whole line:
- a keypoint whose segment passes farther than ``band_px`` from every keypoint of the other
  image, in either direction, has no partner: unmatched (dustbin);
- its candidates are the keypoints of the other image within ``band_px`` of its segment and
  whose own segment passes within ``band_px`` of it (symmetric): the set loss
  (``candidate_set_nll``) asks that its assignment mass lie on these candidates or the dustbin;
- positives (exact matches) are candidates within ``positive_px`` in both directions that are
  the mutual best in SuperPoint descriptor similarity among the candidates ('mnn' source) and/or
  supported by a SIFT ratio match that is itself within ``sift_px`` of the ground truth,
  snapped to the nearest SuperPoint keypoint within ``snap_px`` in both views ('sift' source).
Distances are in pixels of the images as the poses' K describe them.
Convention: X1 = R X0 + t (camera 0 to camera 1), depths in the units of t.
"""

from __future__ import annotations

import math

import numpy as np
import torch

LABEL_SOURCES = ("mnn", "sift", "both")


def skew(v) -> np.ndarray:
    v = np.asarray(v, np.float64).reshape(3)
    return np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])


def fundamental_matrix(K0, K1, R, t) -> np.ndarray:
    """F [3,3] with x1^T F x0 = 0 for pixels x0 (view 0) and x1 (view 1)."""
    E = skew(t) @ np.asarray(R, np.float64)
    return np.linalg.inv(K1).T @ E @ np.linalg.inv(K0)


def depth_segments(
    kpts0, K0, K1, R, t, min_depth: float, far_z: float = 1e-6
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where view 1 sees the rays of kpts0 [M,2] for depths in [min_depth, inf).

    Inverse depth w in [0, 1/min_depth]: homogeneous projection a + w b with a = K1 R K0^-1 x0,
    b = K1 t. The part in front of camera 1 (third coordinate > far_z) is one segment.
    Returns near [M,2], far [M,2] end points and valid [M] bool (False: the whole range lies
    behind camera 1)."""
    kpts0 = np.asarray(kpts0, np.float64).reshape(-1, 2)
    rays = np.c_[kpts0, np.ones(len(kpts0))] @ np.linalg.inv(K0).T  # [M,3], z = 1
    a = rays @ (np.asarray(K1, np.float64) @ np.asarray(R, np.float64)).T  # [M,3]
    b = np.asarray(K1, np.float64) @ np.asarray(t, np.float64).reshape(3)  # [3]
    w_lo = np.zeros(len(a))
    w_hi = np.full(len(a), 1.0 / min_depth)
    # clip to a_z + w b_z >= far_z (in front of camera 1)
    if abs(b[2]) > 0:
        w_edge = (far_z - a[:, 2]) / b[2]
        if b[2] > 0:
            w_lo = np.maximum(w_lo, w_edge)
        else:
            w_hi = np.minimum(w_hi, w_edge)
    valid = w_lo <= w_hi
    if b[2] == 0:
        valid &= a[:, 2] >= far_z
    h_lo, h_hi = a + w_lo[:, None] * b, a + w_hi[:, None] * b
    z_lo = np.maximum(h_lo[:, 2:], far_z)
    z_hi = np.maximum(h_hi[:, 2:], far_z)
    return h_hi[:, :2] / z_hi, h_lo[:, :2] / z_lo, valid


def point_segment_distances(start, end, points) -> np.ndarray:
    """Distances [M,N] from points [N,2] to the segments start[m]-end[m] ([M,2] each)."""
    start = np.asarray(start, np.float64)[:, None]
    d = np.asarray(end, np.float64)[:, None] - start  # [M,1,2]
    q = np.asarray(points, np.float64)[None] - start  # [M,N,2]
    length2 = (d**2).sum(-1)
    s = np.clip((q * d).sum(-1) / np.maximum(length2, 1e-12), 0.0, 1.0)
    return np.linalg.norm(q - s[..., None] * d, axis=-1)


def segment_distances(
    kpts0, kpts1, K0, K1, R, t, min_depth: float
) -> tuple[np.ndarray, np.ndarray]:
    """(d01 [M,N]: keypoint j of view 1 to the depth segment of keypoint i of view 0,
    d10 [M,N]: keypoint i of view 0 to the segment of keypoint j), inf where no segment."""
    kpts0 = np.asarray(kpts0, np.float64).reshape(-1, 2)
    kpts1 = np.asarray(kpts1, np.float64).reshape(-1, 2)
    R = np.asarray(R, np.float64)
    t = np.asarray(t, np.float64).reshape(3)
    near, far, ok = depth_segments(kpts0, K0, K1, R, t, min_depth)
    d01 = point_segment_distances(near, far, kpts1)
    d01[~ok] = np.inf
    near, far, ok = depth_segments(kpts1, K1, K0, R.T, -R.T @ t, min_depth)
    d10 = point_segment_distances(near, far, kpts0)
    d10[~ok] = np.inf
    return d01, d10.T


def snap_matches(sift0, sift1, kpts0, kpts1, snap_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Matched SIFT points sift0/sift1 [S,2] -> (idx0, idx1) of the nearest keypoints of each
    view when both are within snap_px; a keypoint claimed twice is dropped."""
    if len(sift0) == 0 or len(kpts0) == 0 or len(kpts1) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    d0 = np.linalg.norm(np.asarray(sift0)[:, None] - np.asarray(kpts0)[None], axis=-1)
    d1 = np.linalg.norm(np.asarray(sift1)[:, None] - np.asarray(kpts1)[None], axis=-1)
    i0, i1 = d0.argmin(1), d1.argmin(1)
    rows = np.arange(len(sift0))
    ok = (d0[rows, i0] <= snap_px) & (d1[rows, i1] <= snap_px)
    i0, i1 = i0[ok], i1[ok]
    once = (np.bincount(i0, minlength=len(kpts0))[i0] == 1) & (
        np.bincount(i1, minlength=len(kpts1))[i1] == 1
    )
    return i0[once], i1[once]


def epipolar_labels(
    kpts0,
    kpts1,
    K0,
    K1,
    R,
    t,
    desc0=None,
    desc1=None,
    sift0=None,
    sift1=None,
    source: str = "both",
    min_depth: float = 2.0,
    band_px: float = 3.0,
    positive_px: float = 1.5,
    sift_px: float = 1.0,
    snap_px: float = 3.0,
) -> dict:
    """Labels of one real pair (see the module docstring).

    kpts0 [M,2], kpts1 [N,2] px; desc0 [M,D], desc1 [N,D] L2-normalised (needed for 'mnn' and
    'both'); sift0/sift1 [S,2] px of SIFT ratio matches (needed for 'sift' and 'both').
    Returns numpy arrays: matches0 int64 [M] (-1 = none), matches1 int64 [N], unmatched0 bool
    [M], unmatched1 bool [N], candidates bool [M,N] (the partner of i, if any, is among these),
    and counts {positives_mnn, positives_sift, agree}."""
    if source not in LABEL_SOURCES:
        raise ValueError(f"unknown label source {source!r}; choose from {LABEL_SOURCES}")
    kpts0 = np.asarray(kpts0, np.float64).reshape(-1, 2)
    kpts1 = np.asarray(kpts1, np.float64).reshape(-1, 2)
    m, n = len(kpts0), len(kpts1)
    d01, d10 = segment_distances(kpts0, kpts1, K0, K1, R, t, min_depth)
    dist = np.maximum(d01, d10)
    candidates = dist <= band_px
    close = dist <= positive_px
    matches0 = np.full(m, -1, np.int64)
    counts = dict(positives_mnn=0, positives_sift=0, agree=0)
    mnn_pairs = set()
    if source in ("mnn", "both") and m and n:
        if desc0 is None or desc1 is None:
            raise ValueError("label source 'mnn' needs descriptors")
        sim = np.asarray(desc0, np.float32) @ np.asarray(desc1, np.float32).T
        sim = np.where(candidates, sim, -np.inf)
        nn01, nn10 = sim.argmax(1), sim.argmax(0)
        rows = np.arange(m)
        ok = (nn10[nn01] == rows) & close[rows, nn01] & np.isfinite(sim[rows, nn01])
        mnn_pairs = set(zip(rows[ok].tolist(), nn01[ok].tolist()))
        counts["positives_mnn"] = len(mnn_pairs)
    sift_pairs = set()
    if source in ("sift", "both"):
        if sift0 is None or sift1 is None:
            raise ValueError("label source 'sift' needs SIFT matches")
        sift0 = np.asarray(sift0, np.float64).reshape(-1, 2)
        sift1 = np.asarray(sift1, np.float64).reshape(-1, 2)
        if len(sift0):
            F = fundamental_matrix(K0, K1, R, t)
            h0 = np.c_[sift0, np.ones(len(sift0))]
            h1 = np.c_[sift1, np.ones(len(sift1))]
            l1, l0 = h0 @ F.T, h1 @ F
            r = np.abs((h1 * l1).sum(1))
            err = np.maximum(r / np.hypot(l1[:, 0], l1[:, 1]), r / np.hypot(l0[:, 0], l0[:, 1]))
            good = err <= sift_px
            i0, i1 = snap_matches(sift0[good], sift1[good], kpts0, kpts1, snap_px)
            keep = close[i0, i1]
            sift_pairs = set(zip(i0[keep].tolist(), i1[keep].tolist()))
        counts["positives_sift"] = len(sift_pairs)
    counts["agree"] = len(mnn_pairs & sift_pairs)
    # SIFT-supported pairs first; MNN pairs fill keypoints that SIFT left free
    used0, used1 = set(), set()
    for i, j in sorted(sift_pairs) + sorted(mnn_pairs - sift_pairs):
        if i in used0 or j in used1:
            continue
        matches0[i] = j
        used0.add(i)
        used1.add(j)
    matches1 = np.full(n, -1, np.int64)
    matches1[matches0[matches0 >= 0]] = np.flatnonzero(matches0 >= 0)
    unmatched0 = ~candidates.any(1)
    unmatched1 = ~candidates.any(0)
    return dict(
        matches0=matches0,
        matches1=matches1,
        unmatched0=unmatched0,
        unmatched1=unmatched1,
        candidates=candidates,
        counts=counts,
    )


def candidate_set_nll(
    log_assignment: torch.Tensor,
    candidates: torch.Tensor,
    rows0: torch.Tensor,
    rows1: torch.Tensor,
    dustbin_weight: float = 1.0,
) -> torch.Tensor:
    """Set-valued NLL: -log(w P(dustbin) + sum of P over the geometric candidates), for the rows
    rows0 [B,M] bool of view 0 and columns rows1 [B,N] bool of view 1 (e.g. those without an
    exact label): mass on a keypoint outside the band is geometrically impossible.
    dustbin_weight w in (0, 1]: at 1 the dustbin costs nothing, so an uncertain keypoint is
    safest there; below 1 mass on the dustbin costs at least -log(w), which pushes such rows
    towards their candidates (the recall study in the model card, "Session 14").

    log_assignment [B,M+1,N+1], candidates [B,M,N] bool. Mean over the selected rows and
    columns of each pair, then over pairs that have any. Returns a scalar."""
    if not 0.0 < dustbin_weight <= 1.0:
        raise ValueError(f"dustbin_weight must be in (0, 1], got {dustbin_weight}")
    m, n = candidates.shape[1:]
    neg = torch.finfo(log_assignment.dtype).min
    log_w = math.log(dustbin_weight)
    allowed0 = torch.cat([candidates, torch.ones_like(candidates[:, :, :1])], 2)  # [B,M,N+1]
    rows = log_assignment[:, :m, :].masked_fill(~allowed0, neg)  # a copy: weight in place
    rows[:, :, n] += log_w  # view 0's dustbin column
    lp0 = torch.logsumexp(rows, 2)  # [B,M]
    allowed1 = torch.cat([candidates, torch.ones_like(candidates[:, :1, :])], 1)  # [B,M+1,N]
    cols = log_assignment[:, :, :n].masked_fill(~allowed1, neg)
    cols[:, m, :] += log_w  # view 1's dustbin row
    lp1 = torch.logsumexp(cols, 1)  # [B,N]
    total = -(lp0 * rows0).sum(1) - (lp1 * rows1).sum(1)
    count = rows0.sum(1) + rows1.sum(1)
    valid = count > 0
    if not valid.any():
        return log_assignment.sum() * 0.0
    return (total[valid] / count[valid]).mean()
