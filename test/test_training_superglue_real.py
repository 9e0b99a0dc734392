"""SuperGlue trainer on real pairs (--real-cache): labels from the pose, the loss falls on a fixed
batch, validation by pose AUC picks best.pth, homographic batches mix in, and a resumed run
is bit-exact. The cache is built here from constructed geometry (3D points seen by a
forward-moving camera), in the format training/real_cache.py writes."""

import csv
import math

import numpy as np
import pytest
import torch

from superglue_ros.models.superglue import SuperGlue
from superglue_ros.models.weights import default_weights_path
from superglue_ros.training import train_superglue as tsg
from training_helpers import one_thread, write_photos  # noqa: F401 (autouse fixture)

K = np.array([[300.0, 0, 320], [0, 300.0, 100], [0, 0, 1]])
SIZE = (640, 200)


def make_cache(folder, seed=0):
    """Three frames 1 m apart (forward), 80 points in view + 20 distractor keypoints per frame;
    a point's descriptor is the same unit vector in every frame plus a little noise."""
    rng = np.random.default_rng(seed)
    X = np.c_[rng.uniform(-12, 12, 150), rng.uniform(-3, 2, 150), rng.uniform(6, 40, 150)]
    point_desc = rng.normal(size=(150, 256))
    frames = {}
    for f in range(3):
        Xc = X - [0, 0, f]
        x = Xc[:, :2] / Xc[:, 2:] @ np.diag([K[0, 0], K[1, 1]]) + K[:2, 2]
        inside = np.flatnonzero(
            (x[:, 0] > 4) & (x[:, 0] < SIZE[0] - 4) & (x[:, 1] > 4) & (x[:, 1] < SIZE[1] - 4)
        )[:80]
        noise = rng.uniform([4, 4], [SIZE[0] - 4, SIZE[1] - 4], (20, 2))
        kpts = np.vstack([x[inside], noise])
        desc = np.vstack(
            [
                point_desc[inside] + 0.3 * rng.normal(size=(len(inside), 256)),
                rng.normal(size=(20, 256)),
            ]
        )
        desc /= np.linalg.norm(desc, axis=1, keepdims=True)
        frames[f"s/{f}"] = dict(
            keypoints=torch.tensor(kpts, dtype=torch.float32),
            scores=torch.rand(len(kpts)),
            descriptors=torch.tensor(desc, dtype=torch.float16),
            image_size=torch.tensor(SIZE),
        )
    pairs, val = [], []
    for f0, f1 in ((0, 1), (1, 2), (0, 2)):
        R, t = (
            torch.eye(3, dtype=torch.float64),
            torch.tensor([0.0, 0.0, -(f1 - f0)], dtype=torch.float64),
        )
        Kt = torch.from_numpy(K)
        pairs.append(
            dict(
                name=f"s/{f0}-{f1}",
                frame0=f"s/{f0}",
                frame1=f"s/{f1}",
                K0=Kt,
                K1=Kt,
                R=R,
                t=t,
                sift0=torch.zeros(0, 2),
                sift1=torch.zeros(0, 2),
            )
        )
        val.append(
            dict(
                set="kitti07",
                name=f"s/{f0}-{f1}",
                feats0=frames[f"s/{f0}"],
                feats1=frames[f"s/{f1}"],
                K0=Kt,
                K1=Kt,
                dist0=torch.zeros(4),
                dist1=torch.zeros(4),
                R=R,
                t=t,
            )
        )
    torch.save(dict(frames=frames, pairs=pairs, meta={}), folder / "train.pt")
    torch.save(dict(pairs=val, meta={}), folder / "val.pt")
    return folder


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return make_cache(tmp_path_factory.mktemp("real_cache"))


def args_for(argv):
    return tsg.build_parser().parse_args(argv)


def test_real_batch_labels_follow_the_geometry(cache_dir):
    cache = torch.load(cache_dir / "train.pt", weights_only=True)
    args = args_for(["--real-cache", str(cache_dir), "--label-source", "mnn"])
    rng = np.random.default_rng(0)
    batch = tsg.real_batch(cache, rng, 4, args, torch.device("cpu"))
    for data, gt in batch:
        m0 = gt["matches0"][0]
        assert (m0 >= 0).sum() >= 30  # most of the subsampled scene points
        assert gt["unmatched0"].sum() >= 3  # distractors far from every segment
        assert not ((m0 >= 0) & gt["unmatched0"][0]).any()
        # every positive is a geometric candidate
        i0 = torch.nonzero(m0 >= 0)[:, 0]
        assert gt["candidates"][0, i0, m0[i0]].all()
        assert data["keypoints0"].shape[1] == gt["matches0"].shape[1]


def test_real_keypoint_budgets_keep_the_best_scored_keypoints(cache_dir):
    scores = torch.tensor([0.1, 0.9, 0.5, 0.8, 0.2, 0.7])
    rng = np.random.default_rng(0)
    for _ in range(20):
        keep = tsg.keypoint_subset(scores, rng, (3,))
        assert set(keep) <= {1, 3, 5} and len(keep) >= 2 and list(keep) == sorted(keep)
    assert len(tsg.keypoint_subset(scores, rng, (100,))) >= 4  # a budget over n keeps all n
    assert tsg.keypoint_subset(torch.zeros(0), rng, (3,)) is None
    cache = torch.load(cache_dir / "train.pt", weights_only=True)
    args = args_for(["--real-cache", str(cache_dir), "--real-keypoints", "40"])
    for data, gt in tsg.real_batch(cache, np.random.default_rng(2), 4, args, torch.device("cpu")):
        assert 28 <= data["keypoints0"].shape[1] <= 40
        assert gt["matches0"].shape[1] == data["keypoints0"].shape[1]


def test_real_loss_decreases_on_a_fixed_batch(cache_dir):
    torch.manual_seed(0)
    cache = torch.load(cache_dir / "train.pt", weights_only=True)
    args = args_for(["--real-cache", str(cache_dir), "--label-source", "mnn"])
    batch = tsg.real_batch(cache, np.random.default_rng(1), 2, args, torch.device("cpu"))
    model = SuperGlue(dict(gnn_layers=tsg.gnn_layer_names(1), sinkhorn_iterations=20)).train()
    tsg.identity_init(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    losses = []
    for _ in range(8):
        loss = sum(tsg.real_loss(model, d, g, 1.0)[0] for d, g in batch) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.9 * losses[0], losses


def test_a_dustbin_weight_below_one_raises_only_the_candidate_set_loss(cache_dir):
    """--set-dustbin-weight w < 1 makes the dustbin cost something for keypoints without an
    exact label: their set loss rises, the exact-label part of the loss stays."""
    cache = torch.load(cache_dir / "train.pt", weights_only=True)
    args = args_for(["--real-cache", str(cache_dir), "--label-source", "mnn"])
    data, gt = tsg.real_batch(cache, np.random.default_rng(2), 1, args, torch.device("cpu"))[0]
    model = SuperGlue(dict(gnn_layers=tsg.gnn_layer_names(1), sinkhorn_iterations=20)).eval()
    tsg.identity_init(model)
    with torch.no_grad():
        exact, _ = tsg.real_loss(model, data, gt, 0.0)
        free, free_stats = tsg.real_loss(model, data, gt, 1.0)
        weighted, weighted_stats = tsg.real_loss(model, data, gt, 1.0, 0.3)
    assert weighted_stats["set_loss"] > free_stats["set_loss"] > 0
    assert float(free) == pytest.approx(float(exact) + free_stats["set_loss"], rel=1e-5)
    assert float(weighted) == pytest.approx(float(exact) + weighted_stats["set_loss"], rel=1e-5)


def test_validate_real_scores_the_model_and_mnn(cache_dir):
    val = torch.load(cache_dir / "val.pt", weights_only=True)["pairs"]
    model = SuperGlue(dict(gnn_layers=tsg.gnn_layer_names(1)))
    tsg.identity_init(model)
    mnn = tsg.validate_real(model, val, torch.device("cpu"), matcher="mnn")
    sg = tsg.validate_real(model, val, torch.device("cpu"))
    # noisy-descriptor MNN still finds the pure forward motion: well above zero AUC@10
    assert mnn["val_kitti07_auc10"] > 50
    assert sg["val_kitti07_matches"] > 30
    assert sg["val_real_score"] == sg["val_kitti07_auc5"]


def read_log(path):
    with open(path) as f:
        return [r for r in csv.DictReader(f)]


needs_shipped_superpoint = pytest.mark.skipif(
    not default_weights_path("superpoint").is_file(),
    reason="shipped SuperPoint weights not written yet",
)


def mixed_run_args(cache_dir, tmp_path) -> list[str]:
    """A tiny mixed real + homographic run, validated every second step."""
    (tmp_path / "photos").mkdir()
    photos = write_photos(tmp_path / "photos", ("astronaut", "coffee"))
    return [
        "--real-cache",
        str(cache_dir),
        "--images",
        str(photos),
        "--homography-every",
        "2",
        "--size",
        "128",
        "96",
        "--num-keypoints",
        "32",
        "--batch-size",
        "1",
        "--layers",
        "1",
        "--sinkhorn-iterations",
        "20",
        "--seed",
        "3",
        "--no-progress",
        "--save-every",
        "100",
        "--val-every",
        "2",
        "--threads",
        "1",
        "--log-every",
        "1",
        "--set-dustbin-weight",
        "0.5",
    ]


@needs_shipped_superpoint
def test_mixed_training_best_checkpoint_and_bit_exact_resume(cache_dir, tmp_path):
    common = mixed_run_args(cache_dir, tmp_path)
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert tsg.main(common + ["--out", str(straight), "--steps", "4", "--keep-every", "2"]) == 0
    assert tsg.main(common + ["--out", str(resumed), "--steps", "2"]) == 0
    assert tsg.main(common + ["--out", str(resumed), "--steps", "4", "--resume"]) == 0
    a = torch.load(straight / "checkpoint.pth", weights_only=True)
    b = torch.load(resumed / "checkpoint.pth", weights_only=True)
    assert a["step"] == b["step"] == 4
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    rows = [r for r in read_log(straight / "log.csv") if r["loss"]]
    assert [r["kind"] for r in rows] == ["real", "homography", "real", "homography"]
    assert all(r["val_kitti07_auc5"] for r in rows if int(r["step"]) % 2 == 0)
    best = torch.load(straight / "best.pth", weights_only=True)
    assert best["extra"]["best_step"] == best["step"] in (0, 2, 4)
    assert (straight / "val_mnn.json").is_file()
    # --keep-every 2: the checkpoints of steps 2 and 4 kept beside the rolling one
    assert sorted(p.name for p in straight.glob("step_*.pth")) == [
        "step_000002.pth",
        "step_000004.pth",
    ]
    snap = torch.load(straight / "step_000002.pth", weights_only=True)
    assert snap["step"] == 2
    last = torch.load(straight / "step_000004.pth", weights_only=True)
    assert all(torch.equal(last["model"][k], a["model"][k]) for k in a["model"])
    assert not list(resumed.glob("step_*.pth"))


def test_packed_cache_keeps_every_gap_of_a_frame_share_with_int8_descriptors(cache_dir, tmp_path):
    """real_cache --pack (the data of a GPU run): int8 descriptors that load back as the
    fp16 unit vectors to within half a quantisation step, the leading frames of the sequence
    up to the budget and only the pairs inside them."""
    from superglue_ros.training.real_cache import DESCRIPTOR_SCALE, load_cache, pack_cache

    full = load_cache(cache_dir / "train.pt")
    frame_bytes = (
        sum(
            t.numel() * t.element_size()
            for t in full["frames"]["s/0"].values()
            if t.dtype != torch.float16
        )
        + full["frames"]["s/0"]["descriptors"].numel()
    )
    # room for two of the three frames: frames s/0 and s/1, pair s/0-1
    counts = pack_cache(cache_dir, tmp_path / "two", max_mib=2.5 * frame_bytes / 2**20)
    assert (counts["frames"], counts["pairs"], counts["photos"]) == (2, 1, 0)
    packed = torch.load(tmp_path / "two" / "train.pt", weights_only=True)
    assert packed["frames"]["s/0"]["descriptors"].dtype == torch.int8
    assert packed["meta"]["descriptor_scale"] == DESCRIPTOR_SCALE
    loaded = load_cache(tmp_path / "two" / "train.pt")
    assert sorted(loaded["frames"]) == ["s/0", "s/1"]
    assert [p["name"] for p in loaded["pairs"]] == ["s/0-1"]
    for key in ("s/0", "s/1"):
        a, b = loaded["frames"][key]["descriptors"], full["frames"][key]["descriptors"]
        assert a.dtype == torch.float16
        assert (a.float() - b.float()).abs().max() <= 0.5 / DESCRIPTOR_SCALE + 1e-3
        assert torch.equal(loaded["frames"][key]["keypoints"], full["frames"][key]["keypoints"])
    assert not (tmp_path / "two" / "val.pt").exists()
    # a generous budget keeps everything
    counts = pack_cache(cache_dir, tmp_path / "all", max_mib=1.0)
    assert (counts["frames"], counts["pairs"]) == (3, 3)
    with pytest.raises(ValueError, match="cannot pack"):
        pack_cache(cache_dir, tmp_path / "none", max_mib=frame_bytes / 2**20)


def test_device_train_script_trains_on_a_packed_cache_and_exports(cache_dir, tmp_path):
    """scripts/device_train.py, dry run on the CPU: packed cache with photos -> training steps
    of both kinds -> an exported SuperGlue file that loads."""
    import importlib.util

    from superglue_ros.models.weights import load_model
    from superglue_ros.training.real_cache import pack_cache

    (tmp_path / "photos").mkdir()
    photos = write_photos(tmp_path / "photos", ("astronaut", "coffee"))
    counts = pack_cache(cache_dir, tmp_path / "pack", max_mib=2.0, images=[photos])
    assert counts["photos"] == 2 and counts["mib"] < 2.0
    spec = importlib.util.spec_from_file_location(
        "device_train", default_weights_path("superglue").parents[2] / "scripts/device_train.py"
    )
    device_train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(device_train)
    out = tmp_path / "out"
    argv = ["--cache", str(tmp_path / "pack"), "--out", str(out), "--device", "cpu"]
    argv += ["--steps", "2", "--batch-size", "1", "--init", "identity", "--"]
    argv += ["--size", "128", "96", "--num-keypoints", "32", "--real-keypoints", "64"]
    argv += ["--layers", "1", "--sinkhorn-iterations", "20", "--threads", "1", "--log-every", "1"]
    assert device_train.main(argv) == 0
    rows = [r for r in read_log(out / "log.csv") if r["loss"]]
    assert [r["kind"] for r in rows] == ["real", "homography"]
    model = load_model("superglue", out / "superglue.pth")
    assert model.meta["steps"] == 2 and "device_train.py on cpu" in model.meta["notes"]


@needs_shipped_superpoint
def test_cosine_schedule_and_weight_average_resume_bit_exact_and_export(cache_dir, tmp_path):
    """--lr-schedule cosine ends at --lr-min; --weight-average keeps a moving average that the
    checkpoint holds, resumes bit for bit, validation scores and export ships."""
    from superglue_ros.models.weights import load_model
    from superglue_ros.training.export import export

    common = mixed_run_args(cache_dir, tmp_path) + [
        "--lr", "1e-3", "--lr-min", "1e-5", "--warmup", "1",
        "--lr-schedule", "cosine", "--decay-steps", "5", "--weight-average", "0.5",
    ]  # fmt: skip
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert tsg.main(common + ["--out", str(straight), "--steps", "5"]) == 0
    assert tsg.main(common + ["--out", str(resumed), "--steps", "3"]) == 0
    assert tsg.main(common + ["--out", str(resumed), "--steps", "5", "--resume"]) == 0
    a = torch.load(straight / "checkpoint.pth", weights_only=True)
    b = torch.load(resumed / "checkpoint.pth", weights_only=True)
    for key in ("model", "average_model"):
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), (key, k)
    moved = [k for k in a["model"] if not torch.equal(a["model"][k], a["average_model"][k])]
    assert moved, "the average should lag the trained weights"
    lrs = [float(r["lr"]) for r in read_log(straight / "log.csv") if r["loss"]]
    # warm-up step 0 at the full rate, then the cosine from 1e-3 at step 1 to 1e-5 at step 5
    assert lrs[0] == pytest.approx(1e-3) and lrs[1] == pytest.approx(1e-3)
    assert lrs[-1] == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * 3 / 4)))
    assert all(x > y for x, y in zip(lrs[1:], lrs[2:]))
    out = tmp_path / "sg.pth"
    export("superglue", straight / "checkpoint.pth", out)
    shipped = load_model("superglue", out)
    assert shipped.meta["weights"] == "average_model"
    for k, v in shipped.state_dict().items():
        assert torch.equal(v, a["average_model"][k]), k
