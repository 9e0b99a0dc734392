"""Seeded synthetic homography pairs from any folder of photos (exact ground truth).

Pair i is a function of (image i mod #images, seed, i) only, so a pair set is reproducible,
growing num_pairs keeps the earlier pairs, and the trainers' periodic validation and the
`superglue-eval` command see the same data for the same arguments.
"""

from __future__ import annotations

import functools
import pathlib
from dataclasses import dataclass

import cv2
import numpy as np

from ..homography import photometric_augment, sample_homography, warp_image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


@dataclass
class HomographyPair:
    """image1 = warp(photometric(image0), H).

    image0, image1: uint8 [h,w] gray at `size`; H: float64 3x3 mapping image0 -> image1 pixels.
    """

    name: str
    image0: np.ndarray
    image1: np.ndarray
    H: np.ndarray

    @property
    def image_size(self) -> tuple[int, int]:
        return self.image0.shape[1], self.image0.shape[0]


def list_images(image_dir) -> list[pathlib.Path]:
    """Sorted image files of a folder (not recursive); clear error when there are none."""
    image_dir = pathlib.Path(image_dir)
    if not image_dir.is_dir():
        raise FileNotFoundError(f"image folder not found: {image_dir}")
    paths = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not paths:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {image_dir}")
    return paths


def read_gray(path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ValueError(f"cannot read image {path} (missing, unreadable or not an image)")
    return image


def make_pair(
    image: np.ndarray,
    seed: int,
    index: int,
    size=(640, 480),
    difficulty=1.0,
    photometric=1.0,
    name="",
) -> HomographyPair:
    """One pair from a uint8 gray image, resized to size=(width, height)."""
    rng = np.random.default_rng([seed, index])
    image0 = cv2.resize(image, tuple(size), interpolation=cv2.INTER_AREA)
    H = sample_homography(rng, size[0], size[1], difficulty=difficulty)
    image1 = warp_image(photometric_augment(rng, image0, strength=photometric), H, tuple(size))
    return HomographyPair(name or f"pair{index:05d}", image0, image1, H)


@functools.lru_cache(maxsize=4)
def _pairs(
    image_dir: str, num_pairs: int, seed: int, size: tuple, difficulty: float, photometric: float
) -> tuple:
    paths = list_images(image_dir)
    pairs = []
    for index in range(num_pairs):
        path = paths[index % len(paths)]
        pairs.append(
            make_pair(
                read_gray(path),
                seed,
                index,
                size,
                difficulty,
                photometric,
                name=f"{index:05d}_{path.stem}",
            )
        )
    return tuple(pairs)


def make_homography_pairs(
    image_dir, num_pairs=200, seed=0, size=(640, 480), difficulty=1.0, photometric=1.0
) -> list[HomographyPair]:
    """num_pairs HomographyPairs from the photos of image_dir (cycled when fewer), cached
    in memory per argument set (about 0.6 MB per pair at 640x480)."""
    if num_pairs < 1:
        raise ValueError(f"num_pairs must be >= 1, got {num_pairs}")
    return list(
        _pairs(
            str(pathlib.Path(image_dir).resolve()),
            int(num_pairs),
            int(seed),
            (int(size[0]), int(size[1])),
            float(difficulty),
            float(photometric),
        )
    )
