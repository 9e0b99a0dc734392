"""Classical baselines behind the Extractor/Matcher interfaces: ORB, SIFT, ratio test, MNN.

They give the learned pipeline a reference point in every evaluation and a fallback that needs
no weights.
"""

from __future__ import annotations

import cv2
import numpy as np

from .feature_types import Extractor, Features, Matcher, Matches
from .images import to_gray


def _keypoint_arrays(keypoints, descriptors, max_keypoints, descriptor_shape, dtype):
    """OpenCV keypoints -> (kpts [N,2], scores [N], desc [N,D]), strongest first, at most
    max_keypoints (<= 0: all)."""
    if descriptors is None or len(keypoints) == 0:
        return (
            np.zeros((0, 2), np.float32),
            np.zeros(0, np.float32),
            np.zeros((0, descriptor_shape), dtype),
        )
    kpts = np.array([kp.pt for kp in keypoints], np.float32)
    scores = np.array([kp.response for kp in keypoints], np.float32)
    keep = np.argsort(-scores, kind="stable")  # strongest first
    if max_keypoints is not None and max_keypoints > 0:
        keep = keep[:max_keypoints]
    kpts, scores, descriptors = kpts[keep], scores[keep], descriptors[keep]
    return kpts, scores, descriptors


class ORBExtractor(Extractor):
    """ORB (oriented FAST + rotated BRIEF), binary uint8 [N,32] descriptors."""

    name = "orb"
    default_conf = dict(max_keypoints=512, scale_factor=1.2, n_levels=8, fast_threshold=20)

    def __init__(self, device="cpu", **conf):
        super().__init__(device, **conf)
        budget = self.conf["max_keypoints"] if self.conf["max_keypoints"] > 0 else 100000
        self.orb = cv2.ORB_create(
            nfeatures=budget,
            scaleFactor=self.conf["scale_factor"],
            nlevels=self.conf["n_levels"],
            fastThreshold=self.conf["fast_threshold"],
        )

    def extract(self, image):
        gray = to_gray(image)
        keypoints, desc = self.orb.detectAndCompute(gray, None)
        kpts, scores, desc = _keypoint_arrays(
            keypoints, desc, self.conf["max_keypoints"], 32, np.uint8
        )
        return Features(kpts, scores, desc, (gray.shape[1], gray.shape[0]))


class SIFTExtractor(Extractor):
    """SIFT with float32 L2-normalised [N,128] descriptors (RootSIFT when root=True)."""

    name = "sift"
    default_conf = dict(max_keypoints=512, root=True, contrast_threshold=0.04)

    def __init__(self, device="cpu", **conf):
        super().__init__(device, **conf)
        budget = self.conf["max_keypoints"] if self.conf["max_keypoints"] > 0 else 0
        self.sift = cv2.SIFT_create(
            nfeatures=budget, contrastThreshold=self.conf["contrast_threshold"]
        )

    def extract(self, image):
        gray = to_gray(image)
        keypoints, desc = self.sift.detectAndCompute(gray, None)
        kpts, scores, desc = _keypoint_arrays(
            keypoints, desc, self.conf["max_keypoints"], 128, np.float32
        )
        desc = desc.astype(np.float32)
        if self.conf["root"]:  # RootSIFT: Hellinger kernel = L2 on sqrt of L1-normalised
            desc = np.sqrt(desc / np.maximum(desc.sum(1, keepdims=True), 1e-12))
        desc /= np.maximum(np.linalg.norm(desc, axis=1, keepdims=True), 1e-12)
        return Features(kpts, scores, desc, (gray.shape[1], gray.shape[0]))


def l2_distances(desc0: np.ndarray, desc1: np.ndarray) -> np.ndarray:
    """Euclidean distances [N0,N1] between float descriptors [N0,D] and [N1,D]."""
    desc0 = desc0.astype(np.float32)
    desc1 = desc1.astype(np.float32)
    sq = (desc0**2).sum(1)[:, None] + (desc1**2).sum(1)[None] - 2 * desc0 @ desc1.T
    return np.sqrt(np.maximum(sq, 0))


def hamming_distances(desc0: np.ndarray, desc1: np.ndarray) -> np.ndarray:
    """Hamming distances [N0,N1] between packed binary descriptors uint8 [N0,B] and [N1,B]."""
    bits0 = np.unpackbits(desc0, axis=1).astype(np.float32)
    bits1 = np.unpackbits(desc1, axis=1).astype(np.float32)
    return bits0.sum(1)[:, None] + bits1.sum(1)[None] - 2 * bits0 @ bits1.T


def mutual_check(nn01: np.ndarray, nn10: np.ndarray) -> np.ndarray:
    """bool [N0]: i -> nn01[i] -> i round trip."""
    return nn10[nn01] == np.arange(len(nn01))


def _ratio_match(dist: np.ndarray, ratio: float, mutual: bool, max_distance) -> Matches:
    n0, n1 = dist.shape
    if n0 == 0 or n1 == 0:
        return Matches.none(n0)
    if n1 == 1:  # no second neighbour: the ratio test cannot reject anything
        nn01 = np.zeros(n0, np.int64)
        best, second = dist[:, 0], np.full(n0, np.inf)
    else:
        order = np.argpartition(dist, 1, axis=1)[:, :2]
        d_two = np.take_along_axis(dist, order, 1)
        swap = d_two[:, 1] < d_two[:, 0]
        nn01 = np.where(swap, order[:, 1], order[:, 0])
        best = np.where(swap, d_two[:, 1], d_two[:, 0])
        second = np.where(swap, d_two[:, 0], d_two[:, 1])
    keep = best < ratio * second
    if mutual:
        keep &= mutual_check(nn01, dist.argmin(0))
    if max_distance is not None:
        keep &= best <= max_distance
    scores = np.clip(1.0 - best / np.maximum(second, 1e-12), 0, 1)
    idx0 = np.flatnonzero(keep)
    return Matches.from_pairs(n0, idx0, nn01[idx0], scores[idx0])


class RatioMatcher(Matcher):
    """Lowe's ratio test on float descriptors (SIFT); optional mutual check."""

    name = "ratio"
    default_conf = dict(ratio=0.8, mutual=False, max_distance=None)

    def _match(self, f0, f1):
        if f0.descriptors.dtype == np.uint8 and len(f0):
            raise ValueError("'ratio' expects float descriptors; use 'ratio-hamming' for ORB")
        return _ratio_match(
            l2_distances(f0.descriptors, f1.descriptors),
            self.conf["ratio"],
            self.conf["mutual"],
            self.conf["max_distance"],
        )


class HammingRatioMatcher(Matcher):
    """Lowe's ratio test on binary descriptors (ORB) with Hamming distance."""

    name = "ratio-hamming"
    default_conf = dict(ratio=0.8, mutual=False, max_distance=None)

    def _match(self, f0, f1):
        if len(f0) and f0.descriptors.dtype != np.uint8:
            raise ValueError("'ratio-hamming' expects uint8 binary descriptors (ORB)")
        return _ratio_match(
            hamming_distances(f0.descriptors, f1.descriptors),
            self.conf["ratio"],
            self.conf["mutual"],
            self.conf["max_distance"],
        )


class MutualNearestNeighborMatcher(Matcher):
    """Mutual nearest neighbours of L2-normalised descriptors; optional max L2 distance.

    Score = cosine similarity of the pair (clipped to [0, 1]).
    """

    name = "mnn"
    default_conf = dict(max_distance=None)

    def _match(self, f0, f1):
        n0, n1 = len(f0), len(f1)
        if n0 == 0 or n1 == 0:
            return Matches.none(n0)
        desc0 = f0.descriptors.astype(np.float32)
        desc1 = f1.descriptors.astype(np.float32)
        desc0 = desc0 / np.maximum(np.linalg.norm(desc0, axis=1, keepdims=True), 1e-12)
        desc1 = desc1 / np.maximum(np.linalg.norm(desc1, axis=1, keepdims=True), 1e-12)
        sim = desc0 @ desc1.T
        nn01, nn10 = sim.argmax(1), sim.argmax(0)
        keep = mutual_check(nn01, nn10)
        best = sim[np.arange(n0), nn01]
        if self.conf["max_distance"] is not None:
            keep &= np.sqrt(np.maximum(2 - 2 * best, 0)) <= self.conf["max_distance"]
        idx0 = np.flatnonzero(keep)
        return Matches.from_pairs(n0, idx0, nn01[idx0], np.clip(best[idx0], 0, 1))
