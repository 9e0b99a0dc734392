"""Real image pairs with ground-truth relative pose: KITTI odometry, EuRoC stereo, photo SfM.

Each loader returns RealPair objects (images read on access), so the same code serves the
real-motion evaluation (validation split) and training (train split). Conventions:
X1 = R X0 + t (camera 0 to camera 1, metres for KITTI/EuRoC, SfM units for photos); K0/K1 are
3x3 pinhole intrinsics; dist0/dist1 OpenCV distortion coefficients (k1, k2, p1, p2) of the
image as stored, zeros when the images are undistorted already. Layouts are described in
``../shared/datasets/README.md``; nothing here is needed at run time.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass

import cv2
import numpy as np

from ..camera import CameraModel
from .metrics import angle_error_mat
from .pose_eval import numbered_rows, parse_cameras, relative_transform

NO_DISTORTION = np.zeros(4)
KITTI_GAPS = (1, 3, 10)
KITTI_STRIDE = 4  # a start frame every 4 frames: 40 + 40 + 38 = 118 pairs on kitti/07


@dataclass
class RealPair:
    name: str
    path0: pathlib.Path
    path1: pathlib.Path
    K0: np.ndarray  # 3x3
    K1: np.ndarray  # 3x3
    dist0: np.ndarray  # (k1, k2, p1, p2)
    dist1: np.ndarray
    R: np.ndarray  # 3x3, camera 0 -> camera 1
    t: np.ndarray  # (3,)

    @property
    def image0(self) -> np.ndarray:
        return read_gray(self.path0)

    @property
    def image1(self) -> np.ndarray:
        return read_gray(self.path1)

    @property
    def T_0to1(self) -> np.ndarray:
        """4x4 form of (R, t), as the pose metrics take it."""
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = self.R, self.t
        return T

    def __iter__(self):
        """Unpacks as (image0, image1, K0, K1, dist0, dist1, R, t)."""
        return iter(
            (self.image0, self.image1, self.K0, self.K1, self.dist0, self.dist1, self.R, self.t)
        )


def read_gray(path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ValueError(f"cannot read image {path}")
    return image


def undistort_points(pts, K, dist) -> np.ndarray:
    """Pixels [N,2] of a distorted image -> pixels of the ideal pinhole camera K.

    OpenCV radial-tangential coefficients (the EuRoC/KITTI calibrations), through the same
    CameraModel the node uses, which iterates to convergence (EuRoC's k1 = -0.28 needs more
    than cv2.undistortPoints' default 5 steps at the corners)."""
    dist = np.asarray(dist, np.float64).reshape(-1)
    if not np.any(dist):
        return np.asarray(pts, np.float64).reshape(-1, 2).copy()
    return CameraModel(K, dist, "plumb_bob").undistort(pts)


# ------------------------------------------------------------------------------- KITTI


def read_kitti_poses(path) -> dict[int, np.ndarray]:
    """poses.txt (frame index + 12 values of the 3x4 camera-to-world [R t]) -> {frame: 4x4}."""
    poses = {}
    lines = pathlib.Path(path).read_text().splitlines()
    for _, fields in numbered_rows(lines, 13, "frame + 3x4", path):
        T = np.eye(4)
        T[:3] = np.array(fields[1:], np.float64).reshape(3, 4)
        poses[int(fields[0])] = T
    return poses


def kitti_pairs(sequence_dir, gaps=KITTI_GAPS, stride=KITTI_STRIDE) -> list[RealPair]:
    """Pairs (f, f + gap) for every gap, f = every `stride`-th stored frame; a pair is kept
    when both frames are stored (gap is in KITTI frame indices, so the train sequences, which
    keep every second frame, need even gaps)."""
    folder = pathlib.Path(sequence_dir)
    K = np.loadtxt(folder / "K.txt").reshape(3, 3)
    poses = read_kitti_poses(folder / "poses.txt")
    images = {int(p.stem): p for p in (folder / "image_0").glob("*.jpg")}
    frames = sorted(f for f in poses if f in images)
    stored = set(frames)
    pairs = []
    for gap in gaps:
        for f0 in frames[::stride]:
            f1 = f0 + gap
            if f1 not in stored:
                continue
            T = np.linalg.inv(poses[f1]) @ poses[f0]  # camera 0 -> world -> camera 1
            pairs.append(
                RealPair(
                    f"{folder.name}/{f0:06d}-{f1:06d}",
                    images[f0],
                    images[f1],
                    K,
                    K,
                    NO_DISTORTION,
                    NO_DISTORTION,
                    T[:3, :3],
                    T[:3, 3],
                )
            )
    return pairs


# ------------------------------------------------------------------------------- EuRoC


def read_euroc_camera(sensor_yaml) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """EuRoC cam*/sensor.yaml -> (K 3x3, distortion (k1, k2, p1, p2), T_BS 4x4 camera-to-body)."""
    import yaml

    text = pathlib.Path(sensor_yaml).read_text()
    conf = yaml.safe_load(text.split("\n", 1)[1] if text.startswith("%YAML") else text)
    if conf.get("distortion_model") != "radial-tangential":
        raise ValueError(
            f"{sensor_yaml}: unsupported distortion model "
            f"{conf.get('distortion_model')!r} (expected radial-tangential)"
        )
    fu, fv, cu, cv = conf["intrinsics"]
    K = np.array([[fu, 0, cu], [0, fv, cv], [0, 0, 1]], np.float64)
    T_BS = np.array(conf["T_BS"]["data"], np.float64).reshape(4, 4)
    return K, np.array(conf["distortion_coefficients"], np.float64), T_BS


def euroc_stereo_pairs(folder, stride=1) -> list[RealPair]:
    """cam0/cam1 images with the same timestamp; pose cam1 <- cam0 = inv(T_BS1) T_BS0."""
    folder = pathlib.Path(folder)
    K0, dist0, T_BS0 = read_euroc_camera(folder / "cam0" / "sensor.yaml")
    K1, dist1, T_BS1 = read_euroc_camera(folder / "cam1" / "sensor.yaml")
    T = np.linalg.inv(T_BS1) @ T_BS0
    stamps1 = {p.stem for p in (folder / "cam1").glob("*.jpg")}
    stamps = sorted(p.stem for p in (folder / "cam0").glob("*.jpg") if p.stem in stamps1)
    return [
        RealPair(
            f"euroc/{s}",
            folder / "cam0" / f"{s}.jpg",
            folder / "cam1" / f"{s}.jpg",
            K0,
            K1,
            dist0,
            dist1,
            T[:3, :3],
            T[:3, 3],
        )
        for s in stamps[::stride]
    ]


# ------------------------------------------------------------------- photo collection (SfM)


def photo_pairs(folder, num_pairs=100, max_rotation_deg=30.0, seed=0) -> list[RealPair]:
    """A seeded choice of `num_pairs` view pairs whose relative rotation is under
    max_rotation_deg, from cameras.txt (name K(9) R(9) t(3), world-to-camera; approximate SfM
    ground truth, no distortion). The choice depends on (seed, the candidate list) only; the
    chosen pairs are returned in candidate order. num_pairs <= 0 keeps every candidate."""
    folder = pathlib.Path(folder)
    cameras = parse_cameras(
        (folder / "cameras.txt").read_text().splitlines(), folder / "cameras.txt"
    )
    names = sorted(n for n in cameras if (folder / "images" / n).is_file())
    candidates = []
    for i, name0 in enumerate(names):
        K0, R0, t0 = cameras[name0]
        for name1 in names[i + 1 :]:
            K1, R1, t1 = cameras[name1]
            T = relative_transform(R0, t0, R1, t1)
            if angle_error_mat(T[:3, :3], np.eye(3)) < max_rotation_deg:
                candidates.append(
                    RealPair(
                        f"{folder.name}/{name0} {name1}",
                        folder / "images" / name0,
                        folder / "images" / name1,
                        K0,
                        K1,
                        NO_DISTORTION,
                        NO_DISTORTION,
                        T[:3, :3],
                        T[:3, 3],
                    )
                )
    if 0 < num_pairs < len(candidates):
        keep = np.sort(
            np.random.default_rng(seed).choice(len(candidates), num_pairs, replace=False)
        )
        candidates = [candidates[i] for i in keep]
    return candidates
