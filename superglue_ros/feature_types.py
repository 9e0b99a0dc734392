"""Feature and match containers and the extractor/matcher interfaces.

Everything that produces or consumes correspondences (the node, ``superglue-match``, the
evaluation toolkit, training validation) talks to these types only, so a classical baseline and
the learned SuperPoint/SuperGlue pair are interchangeable by name (registry: ``features.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .devices import resolve_device
from .options import check_options
from .timing import stage

# Features.cache[CACHE_KEY] = dict(device=str, keypoints, scores, descriptors): the tensors of
# the features on the compute device, kept by the learned wrappers (learned.py) and re-pointed
# by the front-end when it maps keypoints to original pixels
CACHE_KEY = "torch"


@dataclass
class Features:
    """Keypoints of one image.

    keypoints: float32 [N,2] (x, y) pixels of the image given to extract()
    scores: float32 [N]
    descriptors: [N,D] float32 L2-normalised, or uint8 [N,32] for ORB
    image_size: (width, height)
    cache: matcher-private data (e.g. tensors on the compute device) so reference frames are
        not re-uploaded for every match; never part of the public value of the features.
    """

    keypoints: np.ndarray
    scores: np.ndarray
    descriptors: np.ndarray
    image_size: tuple[int, int]
    cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        self.keypoints = np.asarray(self.keypoints, np.float32).reshape(-1, 2)
        self.scores = np.asarray(self.scores, np.float32).reshape(-1)
        self.descriptors = np.asarray(self.descriptors)
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        n = len(self.keypoints)
        if len(self.scores) != n or len(self.descriptors) != n:
            raise ValueError(
                f"inconsistent feature counts: {n} keypoints, {len(self.scores)} "
                f"scores, {len(self.descriptors)} descriptors"
            )

    def __len__(self) -> int:
        return len(self.keypoints)

    def scaled(self, sx: float, sy: float, image_size) -> "Features":
        """Copy with keypoints mapped to the same image resized by sx = new_width / width,
        sy = new_height / height; image_size is the new (width, height).

        Pixel centres are aligned as cv2.resize does: x' = (x + 0.5) * sx - 0.5. Of the
        matcher's device copy (``cache[CACHE_KEY]``) the scores and descriptors stay valid and are
        kept; its keypoints are replaced by the new ones (one upload, not three). Any other cache
        entry is dropped, since it may hold the old coordinates.
        """
        scale = np.array([sx, sy], np.float32)
        kpts = (self.keypoints + 0.5) * scale - 0.5
        out = Features(kpts, self.scores.copy(), self.descriptors.copy(), tuple(image_size))
        entry = self.cache.get(CACHE_KEY)
        if isinstance(entry, dict) and isinstance(entry.get("keypoints"), torch.Tensor):
            old = entry["keypoints"]
            new = torch.from_numpy(out.keypoints).to(device=old.device, dtype=old.dtype)
            out.cache[CACHE_KEY] = dict(entry, keypoints=new)
        return out

    def nbytes(self) -> int:
        """Host memory of the arrays plus tensors in the cache (for bounded keyframe caches)."""
        total = self.keypoints.nbytes + self.scores.nbytes + self.descriptors.nbytes

        def size(value):
            if isinstance(value, torch.Tensor):
                return value.element_size() * value.nelement()
            if isinstance(value, np.ndarray):
                return value.nbytes
            if isinstance(value, dict):
                return sum(size(v) for v in value.values())
            if isinstance(value, (list, tuple)):
                return sum(size(v) for v in value)
            return 0

        return total + size(self.cache)

    @classmethod
    def empty(cls, image_size, descriptor_dim=256, dtype=np.float32) -> "Features":
        return cls(
            np.zeros((0, 2), np.float32),
            np.zeros(0, np.float32),
            np.zeros((0, descriptor_dim), dtype),
            image_size,
        )


@dataclass
class Matches:
    """Matches from image 0 to image 1.

    matches0: int64 [N0], index into keypoints1 or -1
    scores0: float32 [N0], confidence, 0 where unmatched
    """

    matches0: np.ndarray
    scores0: np.ndarray

    def __post_init__(self):
        self.matches0 = np.asarray(self.matches0, np.int64).reshape(-1)
        self.scores0 = np.asarray(self.scores0, np.float32).reshape(-1)
        if len(self.matches0) != len(self.scores0):
            raise ValueError(
                f"matches0 has {len(self.matches0)} entries but scores0 {len(self.scores0)}"
            )

    def __len__(self) -> int:
        return int((self.matches0 >= 0).sum())

    def indices(self) -> tuple[np.ndarray, np.ndarray]:
        """(idx0, idx1) int64 [K] of the matched pairs."""
        idx0 = np.flatnonzero(self.matches0 >= 0)
        return idx0, self.matches0[idx0]

    @classmethod
    def none(cls, n0: int) -> "Matches":
        return cls(np.full(n0, -1, np.int64), np.zeros(n0, np.float32))

    @classmethod
    def from_pairs(cls, n0: int, idx0, idx1, scores) -> "Matches":
        matches = cls.none(n0)
        matches.matches0[np.asarray(idx0, np.int64)] = np.asarray(idx1, np.int64)
        matches.scores0[np.asarray(idx0, np.int64)] = np.asarray(scores, np.float32)
        return matches


class _Configured:
    """Shared by extractors and matchers: `default_conf` merged with checked overrides, and the
    resolved compute device."""

    name = "component"
    default_conf: dict = {}

    def __init__(self, device="cpu", **conf):
        check_options(self.name, conf, self.default_conf)
        self.conf = {**self.default_conf, **conf}
        self.device = resolve_device(device)

    def __repr__(self):
        return f"{type(self).__name__}({self.conf})"


class Extractor(_Configured):
    """Turns a uint8 image (HxW gray or HxWx3 BGR) into Features."""

    name = "extractor"

    def extract(self, image: np.ndarray) -> Features:
        raise NotImplementedError


class Matcher(_Configured):
    """Matches Features of image 0 against Features of image 1 (or many references)."""

    name = "matcher"

    def match(self, f0: Features, f1: Features) -> Matches:
        """Matches of f0 in f1; timed as stage 'matcher' when the caller records (timing.py)."""
        with stage("matcher"):
            return self._match(f0, f1)

    def _match(self, f0: Features, f1: Features) -> Matches:
        raise NotImplementedError

    def match_many(self, f0: Features, refs: list[Features]) -> list[Matches]:
        """Match one query against several references (loop closure). Default: one by one."""
        return [self.match(f0, f1) for f1 in refs]

    def prepare(self, max_keypoints: int) -> int:
        """Build now what would otherwise be built on first use for up to max_keypoints per
        side (a long-running node calls it at start). Returns how many shapes it built;
        default: nothing to build."""
        return 0
