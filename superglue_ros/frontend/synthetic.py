"""A synthetic camera sequence with exact ground truth, for tests, the demo player and benchmarks.

A virtual pinhole camera (VGA, f = 500 px) flies over a planar mosaic of photos that ship with
scikit-image (astronaut, coffee, chelsea / rocket, motorcycle, camera) along a smooth closed loop:
it pans across the mosaic and back with a gentle zoom, roll and tilt, then passes its start
again, so a loop closure against the first keyframes must fire. Because the scene is a plane,
the map between any two frames is an exact homography, ``H_ij = G_j @ inv(G_i)`` where ``G_i``
maps mosaic pixels to frame ``i`` pixels; and since ``G_i = K R_i [e1 e2 -C_i]`` comes from a
real camera pose, the essential matrix with ``K`` is also valid (the motion has translation).
No photo from /work/shared is needed at run time.
"""

from __future__ import annotations

import importlib.util
import pathlib
from dataclasses import dataclass, field

import cv2
import numpy as np

MOSAIC_ROWS = (
    ("astronaut.png", "coffee.png", "chelsea.png"),
    ("rocket.jpg", "motorcycle_left.png", "camera.png"),
)
ROW_HEIGHT = 512


def _skimage_data_dir() -> pathlib.Path:
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("scikit-image is not installed: the synthetic sequence uses its photos")
    return pathlib.Path(list(spec.submodule_search_locations)[0]) / "data"


def load_mosaic() -> np.ndarray:
    """uint8 BGR mosaic [1024, W, 3] of six scikit-image photos (two rows, each 512 px high)."""
    root = _skimage_data_dir()
    rows = []
    for names in MOSAIC_ROWS:
        tiles = []
        for name in names:
            path = root / name
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise RuntimeError(f"cannot read the scikit-image photo {path}")
            h, w = image.shape[:2]
            tiles.append(
                cv2.resize(
                    image, (round(w * ROW_HEIGHT / h), ROW_HEIGHT), interpolation=cv2.INTER_AREA
                )
            )
        rows.append(np.concatenate(tiles, axis=1))
    width = min(r.shape[1] for r in rows)
    return np.ascontiguousarray(np.concatenate([r[:, :width] for r in rows], axis=0))


def _rotation(roll: float, tilt_x: float, tilt_y: float) -> np.ndarray:
    """World->camera rotation: roll about the optical axis after small tilts (radians)."""
    cz, sz = np.cos(roll), np.sin(roll)
    cx, sx = np.cos(tilt_x), np.sin(tilt_x)
    cy, sy = np.cos(tilt_y), np.sin(tilt_y)
    Rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    Rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    Ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    return Rz @ Rx @ Ry


@dataclass
class SyntheticSequence:
    """Frames rendered on demand from the mosaic; exact homographies between any two frames.

    mosaic_to_frame: [N,3,3] G_i, mosaic pixels -> frame i pixels.
    K: [3,3] intrinsics of every frame; R [N,3,3], C [N,3]: world->camera rotation and camera
        centre (world = mosaic plane z=0, units = mosaic pixels).
    stamps_ns: [N] int64, 1/fps apart. t: [N] loop phase (0 = start, 1 = back at start).
    """

    mosaic: np.ndarray
    mosaic_to_frame: np.ndarray
    K: np.ndarray
    R: np.ndarray
    C: np.ndarray
    stamps_ns: np.ndarray
    t: np.ndarray
    width: int = 640
    height: int = 480
    noise_sigma: float = 2.0
    seed: int = 0
    _cache: dict = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.mosaic_to_frame)

    def frame(self, i: int) -> np.ndarray:
        """uint8 BGR [height, width, 3] of frame i (deterministic: seeded noise, slight
        brightness drift so revisits are not pixel-identical)."""
        if not 0 <= i < len(self):
            raise IndexError(f"frame {i} out of range (sequence has {len(self)} frames)")
        image = cv2.warpPerspective(
            self.mosaic,
            self.mosaic_to_frame[i],
            (self.width, self.height),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REFLECT,
        )
        gain = 1.0 + 0.08 * np.sin(2 * np.pi * self.t[i] * 1.5)
        out = image.astype(np.float32) * gain
        if self.noise_sigma > 0:
            rng = np.random.default_rng([self.seed, i])
            out += rng.normal(0.0, self.noise_sigma, out.shape).astype(np.float32)
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    def __iter__(self):
        return (self.frame(i) for i in range(len(self)))

    def homography(self, i: int, j: int) -> np.ndarray:
        """[3,3] exact map from frame i pixels to frame j pixels."""
        H = self.mosaic_to_frame[j] @ np.linalg.inv(self.mosaic_to_frame[i])
        return H / H[2, 2]

    def warp_points(self, i: int, j: int, pts: np.ndarray) -> np.ndarray:
        """pts [K,2] in frame i pixels -> [K,2] in frame j pixels."""
        pts = np.asarray(pts, np.float64).reshape(-1, 2)
        ph = np.concatenate([pts, np.ones((len(pts), 1))], axis=1) @ self.homography(i, j).T
        return ph[:, :2] / ph[:, 2:3]

    def overlap(self, i: int, j: int, grid: int = 16) -> float:
        """Fraction of frame i (sampled on a grid) that is visible in frame j."""
        xs, ys = np.meshgrid(
            np.linspace(0, self.width - 1, grid), np.linspace(0, self.height - 1, grid)
        )
        q = self.warp_points(i, j, np.stack([xs.ravel(), ys.ravel()], 1))
        eps = 1e-6
        inside = (
            (q[:, 0] >= -eps)
            & (q[:, 0] <= self.width - 1 + eps)
            & (q[:, 1] >= -eps)
            & (q[:, 1] <= self.height - 1 + eps)
        )
        return float(inside.mean())


def make_sequence(
    num_frames: int = 80,
    loop_frames: int | None = None,
    width: int = 640,
    height: int = 480,
    focal_px: float = 500.0,
    fps: float = 10.0,
    scale: float = 0.8,
    amplitude: tuple[float, float] | None = None,
    roll_deg: float = 5.0,
    tilt_deg: float = 2.0,
    zoom: float = 0.08,
    noise_sigma: float = 2.0,
    seed: int = 0,
    stamp0_ns: int = 1_000_000_000,
) -> SyntheticSequence:
    """Build the loop sequence.

    num_frames: frames in total; loop_frames (default round(num_frames / 1.15)): frames for one
        lap, so the last ~15% revisit the start. scale: frame pixels per mosaic pixel at the
        nominal height. amplitude (ax, ay): half extents of the elliptic path in mosaic pixels
        (default: as large as the mosaic allows). Rolls/tilts in degrees, zoom as a fraction.
    Raises ValueError if a frame would see beyond the mosaic.
    """
    if num_frames < 2:
        raise ValueError(f"num_frames must be >= 2, got {num_frames}")
    loop_frames = int(loop_frames or round(num_frames / 1.15))
    mosaic = load_mosaic()
    mh, mw = mosaic.shape[:2]
    K = np.array([[focal_px, 0, (width - 1) / 2], [0, focal_px, (height - 1) / 2], [0, 0, 1]])
    z0 = focal_px / scale
    # Footprint half-extents at the widest zoom, padded for roll and tilt.
    reach = 1.0 / (scale * (1 - zoom))
    rr, tr = np.deg2rad(roll_deg), np.deg2rad(tilt_deg)
    half_w = reach * (width / 2 * np.cos(rr) + height / 2 * np.sin(rr)) * (1 + 2 * np.tan(tr)) + 8
    half_h = reach * (height / 2 * np.cos(rr) + width / 2 * np.sin(rr)) * (1 + 2 * np.tan(tr)) + 8
    if amplitude is None:
        amplitude = (mw / 2 - half_w, mh / 2 - half_h)
    ax, ay = amplitude
    if ax <= 0 or ay < 0:
        raise ValueError("the mosaic is too small for this camera scale; lower `scale`")
    t = np.arange(num_frames) / loop_frames
    phase = 2 * np.pi * t
    centre = np.array([mw / 2, mh / 2])
    Rs, Cs, Gs = [], [], []
    for ph in phase:
        # Start at the left end of an ellipse, sweep along its top to the right end, back along
        # the bottom; zoom, roll and tilt are periodic in the lap so the start pose recurs.
        cx = centre[0] - ax * np.cos(ph)
        cy = centre[1] - ay * np.sin(ph)
        z = z0 * (1 + zoom * np.sin(2 * ph))
        R = _rotation(rr * np.sin(ph), tr * np.sin(3 * ph + 0.5), tr * np.cos(2 * ph) - tr)
        C = np.array([cx, cy, -z])
        G = K @ R @ np.column_stack([[1, 0, 0], [0, 1, 0], -C])
        G = G / G[2, 2]
        Rs.append(R), Cs.append(C), Gs.append(G)
    Gs = np.array(Gs)
    corners = np.array(
        [[0, 0, 1], [width - 1, 0, 1], [0, height - 1, 1], [width - 1, height - 1, 1]], float
    )
    for i, G in enumerate(Gs):
        m = corners @ np.linalg.inv(G).T
        m = m[:, :2] / m[:, 2:3]
        if m.min() < 0 or m[:, 0].max() > mw - 1 or m[:, 1].max() > mh - 1:
            raise ValueError(
                f"frame {i} would see beyond the {mw}x{mh} mosaic; lower amplitude/scale"
            )
    stamps = stamp0_ns + np.round(np.arange(num_frames) * 1e9 / fps).astype(np.int64)
    return SyntheticSequence(
        mosaic,
        Gs,
        K,
        np.array(Rs),
        np.array(Cs),
        stamps,
        t,
        width,
        height,
        float(noise_sigma),
        int(seed),
    )
