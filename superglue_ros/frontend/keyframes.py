"""Bounded keyframe store shared by the VO thread and loop-verification requests.

The cache is bounded twice, by count and by bytes (local features + global descriptor +
thumbnail + working image), because a robot runs for hours and keyframes are the one thing that
grows. Eviction is oldest-first, except that keyframes referenced by a pending
request are pinned (reference-counted) so a loop verification never loses its inputs half-way.
Evicted ids are remembered (bounded) so a request can be answered with 'evicted' rather than
'unknown'.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Iterator

import numpy as np

if TYPE_CHECKING:  # only a type: the cache needs nothing but Features.nbytes()
    from ..camera import CameraModel
    from ..feature_types import Features


@dataclass
class Keyframe:
    """One stored keyframe.

    features: keypoints [N,2] in ORIGINAL image pixels; matcher-private tensors live in
        ``features.cache`` on the compute device.
    global_descriptor: [G] float32, L2-normalised (see ``global_descriptor.py``).
    K: [3,3] intrinsics in original pixels, or None (no camera_info).
    camera: the full camera model (K + distortion) the geometry undistorts keypoints with,
        or None (then K, if any, is a distortion-free pinhole camera).
    thumbnail: small uint8 gray image for debug drawing, or None.
    image: uint8 gray image at the working size the features were extracted from, kept so
        that matches against this keyframe can be refined to sub-pixel (``refinement.py``),
        or None (refinement off).
    frame_index: index of the accepted frame that became this keyframe.
    """

    id: int
    stamp_ns: int
    frame_id: str
    image_size: tuple[int, int]  # (width, height) of the ORIGINAL image
    features: "Features"
    global_descriptor: np.ndarray
    K: np.ndarray | None = None
    thumbnail: np.ndarray | None = None
    frame_index: int = -1
    camera: "CameraModel | None" = None
    image: np.ndarray | None = None

    def nbytes(self) -> int:
        """Bytes this keyframe costs in the cache (features + global descriptor + images)."""
        total = int(self.features.nbytes())
        total += int(self.global_descriptor.nbytes) if self.global_descriptor is not None else 0
        total += int(self.thumbnail.nbytes) if self.thumbnail is not None else 0
        total += int(self.image.nbytes) if self.image is not None else 0
        total += int(self.K.nbytes) if self.K is not None else 0
        total += self.camera.nbytes if self.camera is not None else 0
        return total


class KeyframeCache:
    """Thread-safe keyframe store bounded by count and by bytes.

    Keyframes are kept in insertion order (ids must increase). ``add`` evicts the oldest
    unpinned keyframes until both bounds hold again; pinned keyframes are skipped (so the cache
    can temporarily exceed its bounds while requests are pending; the excess is evicted on the
    next ``add`` or ``unpin``). The newest keyframe is never evicted by its own ``add``: the VO
    path always needs a reference.
    """

    def __init__(self, max_keyframes: int, max_bytes: int, max_remembered_evictions: int = 100_000):
        if max_keyframes < 1:
            raise ValueError(f"max_keyframes must be >= 1, got {max_keyframes}")
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
        self.max_keyframes = int(max_keyframes)
        self.max_bytes = int(max_bytes)
        self.max_remembered_evictions = int(max_remembered_evictions)
        self._lock = threading.RLock()
        self._kfs: OrderedDict[int, Keyframe] = OrderedDict()
        self._sizes: dict[int, int] = {}
        self._nbytes = 0
        self._pins: dict[int, int] = {}
        # Evicted ids: ids are increasing, so remember them in an ordered dict and forget the
        # oldest when the bound is hit; ids older than the oldest remembered one are still known
        # to have existed if they are <= the highest id ever added (see was_evicted).
        self._evicted: OrderedDict[int, None] = OrderedDict()
        self._forgotten_below = -1  # every id <= this existed and was evicted (memory trimmed)
        self._max_id = -1
        self._num_evicted = 0

    # ------------------------------------------------------------------ mutation
    def add(self, kf: Keyframe) -> list[int]:
        """Store ``kf``; return the ids evicted to make room (oldest first)."""
        with self._lock:
            if kf.id in self._kfs or kf.id <= self._max_id:
                raise ValueError(f"keyframe ids must increase: got {kf.id} after {self._max_id}")
            size = kf.nbytes()
            self._kfs[kf.id] = kf
            self._sizes[kf.id] = size
            self._nbytes += size
            self._max_id = kf.id
            return self._evict(protect=kf.id)

    def _evict(self, protect: int | None = None) -> list[int]:
        evicted: list[int] = []
        while len(self._kfs) > self.max_keyframes or self._nbytes > self.max_bytes:
            victim = None
            for kid in self._kfs:  # oldest first
                if kid != protect and self._pins.get(kid, 0) == 0:
                    victim = kid
                    break
            if victim is None:
                break  # everything left is pinned or the newest one
            del self._kfs[victim]
            self._nbytes -= self._sizes.pop(victim)
            self._remember_evicted(victim)
            evicted.append(victim)
        return evicted

    def set_bounds(self, max_keyframes: int, max_bytes: int) -> list[int]:
        """New bounds (a parameter changed at run time); evicts what they no longer allow,
        pinned keyframes and the newest excepted, as ``add`` does. Returns the evicted ids."""
        if max_keyframes < 1 or max_bytes < 1:
            raise ValueError(
                f"need max_keyframes >= 1 and max_bytes >= 1, got {max_keyframes}, {max_bytes}"
            )
        with self._lock:
            self.max_keyframes, self.max_bytes = int(max_keyframes), int(max_bytes)
            latest = next(reversed(self._kfs)) if self._kfs else None
            return self._evict(protect=latest)

    def clear(self) -> list[int]:
        """Evict every keyframe, pinned ones too (a request holding one keeps its object), e.g.
        on a reset; ids keep increasing and the old ones answer ``was_evicted``. Returns them."""
        with self._lock:
            evicted = list(self._kfs)
            for kid in evicted:
                self._remember_evicted(kid)
            self._kfs.clear()
            self._sizes.clear()
            self._nbytes = 0
            return evicted

    def _remember_evicted(self, kid: int) -> None:
        self._num_evicted += 1
        self._evicted[kid] = None
        while len(self._evicted) > self.max_remembered_evictions:
            old, _ = self._evicted.popitem(last=False)
            self._forgotten_below = max(self._forgotten_below, old)

    def pin(self, ids: Iterable[int]) -> list[int]:
        """Protect ``ids`` from eviction (reference-counted). Returns the ids actually pinned
        (those present in the cache); pass exactly that list to ``unpin``."""
        pinned = []
        with self._lock:
            for kid in ids:
                if kid in self._kfs:
                    self._pins[kid] = self._pins.get(kid, 0) + 1
                    pinned.append(kid)
        return pinned

    def unpin(self, ids: Iterable[int]) -> list[int]:
        """Release pins taken by ``pin``; evicts what the bounds no longer allow. Returns evicted ids."""
        with self._lock:
            for kid in ids:
                count = self._pins.get(kid, 0)
                if count <= 1:
                    self._pins.pop(kid, None)
                else:
                    self._pins[kid] = count - 1
            latest = next(reversed(self._kfs)) if self._kfs else None
            return self._evict(protect=latest)

    @contextlib.contextmanager
    def pinned(self, ids: Iterable[int]) -> Iterator[list[int]]:
        """``with cache.pinned(ids) as present:`` keeps the present ids alive for the block."""
        present = self.pin(ids)
        try:
            yield present
        finally:
            self.unpin(present)

    # ------------------------------------------------------------------ queries
    def get(self, kid: int) -> Keyframe | None:
        with self._lock:
            return self._kfs.get(kid)

    def was_evicted(self, kid: int) -> bool:
        """True when ``kid`` was stored once and has been evicted since."""
        with self._lock:
            if kid in self._kfs:
                return False
            return kid in self._evicted or (0 <= kid <= self._forgotten_below)

    def is_pinned(self, kid: int) -> bool:
        with self._lock:
            return self._pins.get(kid, 0) > 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._kfs)

    def __contains__(self, kid: int) -> bool:
        with self._lock:
            return kid in self._kfs

    def nbytes(self) -> int:
        with self._lock:
            return self._nbytes

    @property
    def num_evicted(self) -> int:
        with self._lock:
            return self._num_evicted

    def ids(self) -> list[int]:
        with self._lock:
            return list(self._kfs)

    def latest(self) -> Keyframe | None:
        with self._lock:
            return self._kfs[next(reversed(self._kfs))] if self._kfs else None

    def older_than(self, id_gap: int, ref_id: int | None = None) -> list[Keyframe]:
        """Keyframes with ``id <= ref_id - id_gap`` (``ref_id`` defaults to the latest id),
        oldest first: the loop-closure candidates of keyframe ``ref_id``."""
        with self._lock:
            if ref_id is None:
                if not self._kfs:
                    return []
                ref_id = next(reversed(self._kfs))
            return [kf for kid, kf in self._kfs.items() if kid <= ref_id - id_gap]
