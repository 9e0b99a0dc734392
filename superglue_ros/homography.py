"""Random homographies and photometric changes for self-supervision and synthetic evaluation.

Both the trainers (``superglue_ros.training``) and the evaluation toolkit build image pairs with
exact ground truth from single photos: image1 = warp(image0, H), so a pixel ``p0`` of image0 is
seen at ``warp_points(H, p0)`` in image1. Everything is seeded through a
``numpy.random.Generator`` so a pair set is reproducible from one integer.

Conventions: points are ``(x, y)`` pixel coordinates with the origin at the centre of the top-left
pixel (OpenCV's convention); sizes are ``(width, height)``.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

# Ranges at difficulty 1.0 (SuperPoint/SuperGlue-paper-like homographic adaptation).
MAX_ROTATION_DEG = 25.0  # in-plane rotation, uniform in [-r, r]
MAX_LOG_SCALE = math.log(1.5)  # scale = exp(u), u uniform in [-s, s] -> scale in [0.67, 1.5]
MAX_PERSPECTIVE = 0.12  # each corner moves by up to this fraction of min(width, height)
CORNER_MARGIN = 0.25  # warped corners of image0 stay within this fraction outside image1
MAX_TRIES = 100


def _corners(width: float, height: float) -> np.ndarray:
    """[4,2] float64 corners of a width x height image (pixel centres of the extreme pixels)."""
    return np.array(
        [[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], dtype=np.float64
    )


def corner_bounds(width: int, height: int, margin: float = CORNER_MARGIN) -> tuple:
    """(xmin, ymin, xmax, ymax) inside which sample_homography keeps the warped corners."""
    return (
        -margin * width,
        -margin * height,
        (width - 1) + margin * width,
        (height - 1) + margin * height,
    )


def sample_homography(
    rng: np.random.Generator,
    width: int,
    height: int,
    difficulty: float = 1.0,
    out_size: tuple | None = None,
) -> np.ndarray:
    """Sample a random homography H (3x3 float64) mapping image0 pixels to image1 pixels.

    The image corners are scaled about the image centre (scale in [1/1.5, 1.5] at difficulty 1),
    rotated (up to +-25 deg), each corner is displaced independently (perspective, up to 12% of
    the short side), then the quadrilateral is translated. All ranges scale linearly with
    ``difficulty`` (0 = identity). Guarantee: the four warped corners of image0 lie inside
    ``corner_bounds(*out_size)``, i.e. at most 25% of the image size outside image1, so image0
    stays mostly visible in image1; translation is drawn uniformly among positions that satisfy
    this. ``out_size`` (width, height) of image1 defaults to the size of image0.
    """
    if width < 2 or height < 2:
        raise ValueError(
            f"sample_homography: image size must be at least 2x2, got {width}x{height}"
        )
    if difficulty < 0:
        raise ValueError(f"sample_homography: difficulty must be >= 0, got {difficulty}")
    out_w, out_h = out_size if out_size is not None else (width, height)
    src = _corners(width, height)
    centre_src = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
    centre_dst = np.array([(out_w - 1) / 2.0, (out_h - 1) / 2.0])
    xmin, ymin, xmax, ymax = corner_bounds(out_w, out_h)
    short = min(width, height)

    shrink = 1.0
    for attempt in range(MAX_TRIES):
        if attempt and attempt % 20 == 0:
            shrink *= 0.8  # unlucky draws keep failing: make the quad smaller, always terminates
        scale = math.exp(rng.uniform(-1, 1) * MAX_LOG_SCALE * difficulty) * shrink
        angle = math.radians(rng.uniform(-1, 1) * MAX_ROTATION_DEG * difficulty)
        persp = rng.uniform(-1, 1, size=(4, 2)) * MAX_PERSPECTIVE * difficulty * short
        c, s = math.cos(angle), math.sin(angle)
        rot = np.array([[c, -s], [s, c]])
        quad = ((src - centre_src) * scale) @ rot.T + persp  # centred at the origin
        lo = np.array([xmin, ymin]) - quad.min(0)  # allowed translation range
        hi = np.array([xmax, ymax]) - quad.max(0)
        if np.all(lo <= hi):
            # Uniform in the allowed range, shrunk towards the centred position by difficulty.
            t_free = rng.uniform(lo, hi)
            t_centre = np.clip(centre_dst, lo, hi)
            t = t_centre + min(difficulty, 1.0) * (t_free - t_centre)
            dst = quad + t
            H = cv2.getPerspectiveTransform(src.astype(np.float32), dst.astype(np.float32))
            return H / H[2, 2]
    # Unreachable in practice (shrink makes the quad fit), but keep a defined result.
    return np.eye(3)


def warp_points(H: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply homography H (3x3) to points pts [N,2] (x, y); returns [N,2] in pts' float dtype.

    Points mapped to infinity (w == 0) come out as inf, never as a division error.
    """
    pts = np.asarray(pts)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError(f"warp_points: expected points of shape [N,2], got {pts.shape}")
    dtype = pts.dtype if np.issubdtype(pts.dtype, np.floating) else np.float64
    p = pts.astype(np.float64)
    H = np.asarray(H, dtype=np.float64)
    x = p @ H[:, :2].T + H[:, 2]
    w = x[:, 2:3]
    with np.errstate(divide="ignore", invalid="ignore"):
        out = x[:, :2] / w
    out[np.broadcast_to(w == 0, out.shape)] = np.inf
    return out.astype(dtype)


def local_rotation_scale(H: np.ndarray, point) -> tuple[float, float]:
    """In-plane rotation [deg, (-180, 180]] and scale of homography H (3x3) near pixel point
    (x, y): those of the similarity closest to H's Jacobian there (rotation from its antisymmetric
    part, scale = sqrt(|det J|)). Why: tells zoomed or rotated synthetic pairs apart when a
    matcher is studied per kind of warp (evaluation/matcher_study.py)."""
    H = np.asarray(H, dtype=np.float64)
    x, y = (float(v) for v in point)
    p = H @ np.array([x, y, 1.0])
    if p[2] == 0:
        raise ValueError(f"local_rotation_scale: H maps {point} to infinity")
    image = p[:2] / p[2]
    J = (H[:2, :2] - np.outer(image, H[2, :2])) / p[2]  # d(image point) / d(x, y)
    rotation = math.degrees(math.atan2(J[1, 0] - J[0, 1], J[0, 0] + J[1, 1]))
    return rotation, math.sqrt(abs(float(np.linalg.det(J))))


def warp_image(image: np.ndarray, H: np.ndarray, out_size: tuple[int, int]) -> np.ndarray:
    """Warp image (HxW or HxWxC) by H into an image of out_size (width, height), black outside."""
    w, h = int(out_size[0]), int(out_size[1])
    return cv2.warpPerspective(
        image,
        np.asarray(H, dtype=np.float64),
        (w, h),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def valid_mask(H: np.ndarray, in_size: tuple[int, int], out_size: tuple[int, int]) -> np.ndarray:
    """bool [h_out, w_out]: True where the warped image1 pixel comes from inside image0."""
    ones = np.full((int(in_size[1]), int(in_size[0])), 255, np.uint8)
    warped = cv2.warpPerspective(
        ones,
        np.asarray(H, dtype=np.float64),
        (int(out_size[0]), int(out_size[1])),
        flags=cv2.INTER_NEAREST,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return warped > 0


def photometric_augment(
    rng: np.random.Generator, image: np.ndarray, strength: float = 1.0
) -> np.ndarray:
    """Random blur, contrast, brightness, gamma and Gaussian noise (illumination/sensor change).

    image: uint8 (HxW or HxWxC, returned as uint8) or float in [0, 1] (returned as float32).
    ``strength`` scales all ranges (0 = unchanged). At strength 1: blur sigma up to 1.5 px
    (half of the time), contrast x[0.7, 1.3], brightness +-0.2, gamma in [0.7, 1.4], noise std
    up to 0.03 (in [0, 1] units).
    """
    is_uint8 = image.dtype == np.uint8
    if not is_uint8 and not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"photometric_augment: expected uint8 or float image, got {image.dtype}")
    img = image.astype(np.float32) / 255.0 if is_uint8 else image.astype(np.float32)
    if strength <= 0:
        return image.copy() if is_uint8 else img
    if rng.random() < 0.5:
        sigma = rng.uniform(0.3, 1.5) * strength
        img = cv2.GaussianBlur(img, (0, 0), sigmaX=float(sigma))
    contrast = math.exp(rng.uniform(-1, 1) * math.log(1.3) * strength)
    brightness = rng.uniform(-0.2, 0.2) * strength
    mean = float(img.mean())
    img = (img - mean) * contrast + mean + brightness
    img = np.clip(img, 0.0, 1.0)
    gamma = math.exp(rng.uniform(math.log(0.7), math.log(1.4)) * strength)
    img = img**gamma
    noise_std = rng.uniform(0.0, 0.03) * strength
    img = img + rng.normal(0.0, 1.0, size=img.shape).astype(np.float32) * noise_std
    img = np.clip(img, 0.0, 1.0)
    if is_uint8:
        return np.round(img * 255.0).astype(np.uint8)
    return img.astype(np.float32)
