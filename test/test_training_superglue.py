"""SuperGlue trainer: identity initialisation, fixed-K keypoint sets with random extras, the NLL
decreases on a fixed batch, and a resumed run continues bit-for-bit. Uses the shipped SuperPoint."""

import csv

import cv2
import numpy as np
import pytest
import torch
from skimage import data as skdata

from superglue_ros.models.superglue import SuperGlue
from superglue_ros.models.weights import default_weights_path, load_model
from superglue_ros.training import train_superglue as tsg
from superglue_ros.training.common import PairSampler, list_images
from training_helpers import one_thread, write_photos  # noqa: F401 (autouse fixture)

pytestmark = pytest.mark.skipif(
    not default_weights_path("superpoint").is_file(),
    reason="shipped SuperPoint weights not written yet",
)


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory):
    return write_photos(tmp_path_factory.mktemp("photos"), ("astronaut", "coffee", "chelsea"))


@pytest.fixture(scope="module")
def superpoint():
    return load_model("superpoint").eval()


def test_identity_init_is_similarity_sinkhorn():
    """Before training, the network matches by descriptor similarity: identical descriptor
    sets give the identity assignment."""
    model = SuperGlue(dict(gnn_layers=tsg.gnn_layer_names(2))).eval()
    tsg.identity_init(model)
    g = torch.Generator().manual_seed(0)
    desc = torch.nn.functional.normalize(torch.randn(1, 50, 256, generator=g), dim=-1)
    kpts = torch.rand(1, 50, 2, generator=g) * 300
    data = dict(
        keypoints0=kpts,
        keypoints1=kpts.flip(1),
        scores0=torch.ones(1, 50),
        scores1=torch.ones(1, 50),
        descriptors0=desc,
        descriptors1=desc.flip(1),
        image_size0=torch.tensor([[320.0, 240.0]]),
        image_size1=torch.tensor([[320.0, 240.0]]),
    )
    with torch.no_grad():
        out = model(data)
    assert torch.equal(out["matches0"][0], torch.arange(49, -1, -1))


def test_detect_gives_fixed_size_sets_with_random_extras(superpoint):
    rng = np.random.default_rng(0)
    img = torch.from_numpy(cv2.resize(skdata.camera(), (128, 96))).float()[None, None] / 255
    feats = tsg.detect(superpoint, img.repeat(2, 1, 1, 1), 64, 0.25, rng)
    for f in feats:
        assert f["keypoints"].shape == (64, 2) and f["descriptors"].shape == (64, 256)
        assert f["is_random"].sum() >= 16  # at least the random fraction
        k = f["keypoints"]
        assert (k[:, 0] >= 4).all() and (k[:, 0] <= 123).all() and (k[:, 1] <= 91).all()
        torch.testing.assert_close(f["descriptors"].norm(dim=1), torch.ones(64))


def test_fixed_batch_nll_decreases(photo_dir, superpoint):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    sampler = PairSampler(list_images([photo_dir]), (128, 96))
    data, gt = tsg.make_batch(superpoint, sampler, rng, 2, 48, 0.1, torch.device("cpu"))
    assert (gt["matches0"] >= 0).sum() > 5  # homographic pairs do produce ground-truth matches
    model = SuperGlue(dict(gnn_layers=tsg.gnn_layer_names(1))).train()
    tsg.identity_init(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    losses = []
    for _ in range(6):
        loss, _ = tsg.training_loss(model, data, gt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < 0.9 * losses[0], losses


def read_log(path):
    with open(path) as f:
        return {int(r["step"]): r for r in csv.DictReader(f) if r["loss"]}


def test_resume_is_bit_exact(photo_dir, tmp_path):
    common = [
        "--images",
        str(photo_dir),
        "--size",
        "128",
        "96",
        "--batch-size",
        "1",
        "--num-keypoints",
        "32",
        "--layers",
        "1",
        "--sinkhorn-iterations",
        "20",
        "--seed",
        "5",
        "--no-progress",
        "--save-every",
        "100",
        "--threads",
        "1",
    ]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert tsg.main(common + ["--out", str(straight), "--steps", "3"]) == 0
    assert tsg.main(common + ["--out", str(resumed), "--steps", "2"]) == 0
    assert tsg.main(common + ["--out", str(resumed), "--steps", "3", "--resume"]) == 0
    a = torch.load(straight / "checkpoint.pth", weights_only=True)
    b = torch.load(resumed / "checkpoint.pth", weights_only=True)
    assert a["step"] == b["step"] == 3
    for k in a["model"]:  # includes batch-norm running statistics
        assert torch.equal(a["model"][k], b["model"][k]), k
    la, lb = read_log(straight / "log.csv"), read_log(resumed / "log.csv")
    assert la[3]["loss"] == lb[3]["loss"]
