"""Whole-image descriptor for loop-closure retrieval, computed from a keyframe's local features.

Why this design: retrieval only has to put the right old keyframe into the top-k that the
(expensive, batched) matcher then verifies, so it must be cheap, deterministic, training-free
and ROS-free, and work for every extractor (SuperPoint/SIFT float descriptors and ORB binary
descriptors). We use a bag of visual words whose vocabulary is defined by random-hyperplane
locality-sensitive hashing (Charikar 2002): each local descriptor is hashed by the signs of
``bits_per_table`` seeded random projections, in ``num_tables`` independent tables; the image
descriptor is the concatenated per-table histogram of hash codes. Similar local descriptors fall
in the same bucket with high probability, so two views of the same place share buckets. No
codebook has to be learned (a learned vocabulary would need data at run time or a shipped file)
and the cost is one [N,D]x[D,T*B] product. Binary ORB descriptors are unpacked to +-1 vectors
first, for which random hyperplanes approximate Hamming similarity. Histograms are
square-rooted (tempers bursty repeated texture, as in RootSIFT/power-normalised VLAD) and
L2-normalised so ranking is by cosine similarity. The ``thumbnail`` method (zero-mean
normalised 32x24 image) is a fallback for scenes with few features; 'both' concatenates the two.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np

from ..options import check_options


class GlobalDescriptor:
    """Callable: ``desc = GlobalDescriptor()(features, image)`` -> float32 [G], unit L2 norm.

    default_conf:
      method: 'lsh-bow' (default), 'thumbnail', or 'both' (concatenation, halves weighted equally).
      num_tables (int >= 1, default 4), bits_per_table (int 1..16, default 8): G = tables * 2**bits.
      seed (int, default 0): hyperplanes are a pure function of (seed, descriptor dim), so the
          descriptors of two runs (or two nodes) are comparable.
      thumbnail_size ((w, h), default (32, 24)).
    """

    default_conf = dict(
        method="lsh-bow", num_tables=4, bits_per_table=8, seed=0, thumbnail_size=(32, 24)
    )

    def __init__(self, conf: dict | None = None):
        check_options("global descriptor", conf or {}, self.default_conf)
        self.conf = {**self.default_conf, **(conf or {})}
        if self.conf["method"] not in ("lsh-bow", "thumbnail", "both"):
            raise ValueError(
                f"global descriptor method must be 'lsh-bow', 'thumbnail' or 'both', "
                f"got {self.conf['method']!r}"
            )
        if not 1 <= int(self.conf["bits_per_table"]) <= 16 or int(self.conf["num_tables"]) < 1:
            raise ValueError("bits_per_table must be in [1, 16] and num_tables >= 1")
        self._planes: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    @property
    def bow_dim(self) -> int:
        return int(self.conf["num_tables"]) * (1 << int(self.conf["bits_per_table"]))

    @property
    def thumbnail_dim(self) -> int:
        w, h = self.conf["thumbnail_size"]
        return int(w) * int(h)

    @property
    def dim(self) -> int:
        """G, the length of every descriptor this instance returns (fixed per method)."""
        m = self.conf["method"]
        return {
            "lsh-bow": self.bow_dim,
            "thumbnail": self.thumbnail_dim,
            "both": self.bow_dim + self.thumbnail_dim,
        }[m]

    def _hyperplanes(self, dim: int) -> np.ndarray:
        """[D, T*B] float32 Gaussian projections for descriptor dimension D (seeded)."""
        with self._lock:
            planes = self._planes.get(dim)
            if planes is None:
                rng = np.random.default_rng([int(self.conf["seed"]), dim])
                t, b = int(self.conf["num_tables"]), int(self.conf["bits_per_table"])
                planes = rng.standard_normal((dim, t * b)).astype(np.float32)
                self._planes[dim] = planes
            return planes

    @staticmethod
    def _as_float(descriptors: np.ndarray) -> np.ndarray:
        """[N,D] float32; uint8 binary descriptors [N,B] become +-1 vectors [N,8B]."""
        if descriptors.dtype == np.uint8:
            bits = np.unpackbits(descriptors, axis=1).astype(np.float32)
            return bits * 2.0 - 1.0
        return np.asarray(descriptors, dtype=np.float32)

    def bag_of_words(self, descriptors: np.ndarray) -> np.ndarray:
        """descriptors [N,D] (float or uint8 binary) -> [T*2**B] float32, L2-normalised (zeros if N=0)."""
        t, b = int(self.conf["num_tables"]), int(self.conf["bits_per_table"])
        hist = np.zeros((t, 1 << b), np.float32)
        if len(descriptors):
            desc = self._as_float(descriptors)
            signs = (desc @ self._hyperplanes(desc.shape[1])) > 0  # [N, T*B]
            weights = 1 << np.arange(b, dtype=np.int64)
            codes = signs.reshape(len(desc), t, b).astype(np.int64) @ weights  # [N, T]
            for ti in range(t):
                hist[ti] = np.bincount(codes[:, ti], minlength=1 << b)
        hist = np.sqrt(hist).reshape(-1)
        return _l2n(hist)

    def thumbnail(self, image: np.ndarray) -> np.ndarray:
        """image uint8 HxW or HxWx3 -> [w*h] float32 zero-mean, L2-normalised."""
        gray = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        small = (
            cv2.resize(
                gray,
                tuple(int(v) for v in self.conf["thumbnail_size"]),
                interpolation=cv2.INTER_AREA,
            )
            .astype(np.float32)
            .reshape(-1)
        )
        return _l2n(small - small.mean())

    def __call__(self, features, image: np.ndarray | None = None) -> np.ndarray:
        """features: superglue_ros.features.Features (uses .descriptors [N,D]); image: the
        frame (any resolution; only for 'thumbnail'/'both'/fallback). Returns float32 [G]."""
        method = self.conf["method"]
        desc = features.descriptors
        if method == "thumbnail":
            if image is None:
                raise ValueError("the 'thumbnail' global descriptor needs the image")
            return self.thumbnail(image)
        bow = self.bag_of_words(desc)
        if method == "lsh-bow":
            return bow
        if image is None:
            raise ValueError("the 'both' global descriptor needs the image")
        return _l2n(np.concatenate([bow, self.thumbnail(image)]))


def _l2n(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return (v / n).astype(np.float32) if n > 0 else v.astype(np.float32)


def cosine_similarity(query: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """query [G], refs [M,G] (both L2-normalised) -> [M] cosine similarity."""
    refs = np.asarray(refs, np.float32).reshape(-1, query.shape[0])
    return refs @ query.astype(np.float32)


def rank_by_similarity(
    query: np.ndarray, refs: list[np.ndarray], top_k: int
) -> list[tuple[int, float]]:
    """Indices into ``refs`` of the ``top_k`` most similar descriptors, best first, with scores.
    Descriptors of a different length (e.g. another configuration) are skipped."""
    valid = [i for i, r in enumerate(refs) if r is not None and r.shape == query.shape]
    if not valid or top_k <= 0:
        return []
    sims = cosine_similarity(query, np.stack([refs[i] for i in valid]))
    order = np.argsort(-sims, kind="stable")[:top_k]
    return [(valid[j], float(sims[j])) for j in order]
