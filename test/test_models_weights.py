"""Weight files: published layouts load, our format round-trips, broken files fail clearly."""

import pathlib

import numpy as np

import pytest
import torch

from superglue_ros.models.superglue import SuperGlue
from superglue_ros.models.superpoint import SuperPoint
from superglue_ros.models.weights import WeightsError, default_weights_path, load_model, save_model

torch.set_num_threads(2)


def published_superpoint_state_dict():
    """Built by hand from the published key names/shapes (not from our model)."""
    g = torch.Generator().manual_seed(0)
    layers = [
        ("conv1a", 1, 64, 3),
        ("conv1b", 64, 64, 3),
        ("conv2a", 64, 64, 3),
        ("conv2b", 64, 64, 3),
        ("conv3a", 64, 128, 3),
        ("conv3b", 128, 128, 3),
        ("conv4a", 128, 128, 3),
        ("conv4b", 128, 128, 3),
        ("convPa", 128, 256, 3),
        ("convPb", 256, 65, 1),
        ("convDa", 128, 256, 3),
        ("convDb", 256, 256, 1),
    ]
    sd = {}
    for name, cin, cout, k in layers:
        sd[f"{name}.weight"] = torch.randn(cout, cin, k, k, generator=g) * 0.05
        sd[f"{name}.bias"] = torch.randn(cout, generator=g) * 0.01
    return sd


def published_superglue_state_dict(layers=18, dim=256, enc=(32, 64, 128, 256)):
    g = torch.Generator().manual_seed(1)
    sd = {}
    chans = [3, *enc, dim]

    def bn(prefix, c):
        sd[f"{prefix}.weight"] = torch.rand(c, generator=g) + 0.5
        sd[f"{prefix}.bias"] = torch.randn(c, generator=g) * 0.1
        sd[f"{prefix}.running_mean"] = torch.randn(c, generator=g) * 0.1
        sd[f"{prefix}.running_var"] = torch.rand(c, generator=g) + 0.5
        sd[f"{prefix}.num_batches_tracked"] = torch.tensor(1000)

    for i in range(len(chans) - 1):
        sd[f"kenc.encoder.{3 * i}.weight"] = (
            torch.randn(chans[i + 1], chans[i], 1, generator=g) * 0.1
        )
        sd[f"kenc.encoder.{3 * i}.bias"] = torch.zeros(chans[i + 1])
        if i < len(chans) - 2:
            bn(f"kenc.encoder.{3 * i + 1}", chans[i + 1])
    for layer in range(layers):
        p = f"gnn.layers.{layer}"
        for name in ("attn.proj.0", "attn.proj.1", "attn.proj.2", "attn.merge"):
            sd[f"{p}.{name}.weight"] = torch.randn(dim, dim, 1, generator=g) * 0.05
            sd[f"{p}.{name}.bias"] = torch.zeros(dim)
        sd[f"{p}.mlp.0.weight"] = torch.randn(2 * dim, 2 * dim, 1, generator=g) * 0.03
        sd[f"{p}.mlp.0.bias"] = torch.zeros(2 * dim)
        bn(f"{p}.mlp.1", 2 * dim)
        sd[f"{p}.mlp.3.weight"] = torch.randn(dim, 2 * dim, 1, generator=g) * 0.03
        sd[f"{p}.mlp.3.bias"] = torch.zeros(dim)
    sd["final_proj.weight"] = torch.randn(dim, dim, 1, generator=g) * 0.05
    sd["final_proj.bias"] = torch.zeros(dim)
    sd["bin_score"] = torch.tensor(2.3)
    return sd


def test_published_superpoint_layout_loads_and_computes_with_those_weights(tmp_path):
    sd = published_superpoint_state_dict()
    path = tmp_path / "superpoint_v1.pth"
    torch.save(sd, path)
    model = load_model("superpoint", path, conf=dict(max_keypoints=100))
    assert not model.training and model.conf["max_keypoints"] == 100
    assert torch.equal(model.state_dict()["convDb.weight"], sd["convDb.weight"])
    # the function really uses those weights: first conv by hand
    img = torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        want = torch.nn.functional.conv2d(img, sd["conv1a.weight"], sd["conv1a.bias"], padding=1)
        assert torch.allclose(model.conv1a(img), want, atol=1e-6)


def test_published_superglue_layout_loads_indoor_and_smaller_variant(tmp_path):
    sd = published_superglue_state_dict()
    path = tmp_path / "superglue_indoor.pth"
    torch.save(sd, path)
    model = load_model("superglue", path, conf=dict(sinkhorn_iterations=20))
    assert model.bin_score.item() == pytest.approx(2.3)
    assert model.conf["sinkhorn_iterations"] == 20 and len(model.gnn.layers) == 18
    # architecture is read from the shapes: 6 layers, 128-d
    small = published_superglue_state_dict(layers=6, dim=128, enc=(32, 64))
    torch.save(small, tmp_path / "small.pth")
    m2 = load_model("superglue", tmp_path / "small.pth")
    assert m2.conf["descriptor_dim"] == 128 and m2.conf["keypoint_encoder"] == [32, 64]
    assert m2.conf["gnn_layers"] == ["self", "cross"] * 3


def test_our_format_round_trips_with_config_and_meta(tmp_path):
    torch.manual_seed(0)
    conf = dict(descriptor_dim=64, keypoint_encoder=[16], gnn_layers=["self", "cross"], num_heads=2)
    model = SuperGlue(conf)
    path = tmp_path / "sub" / "superglue.pth"
    save_model(model, path, meta=dict(data="bsds500 train", steps=1234))
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "superglue_ros/1" and raw["kind"] == "superglue"
    assert raw["meta"]["steps"] == 1234 and "date" in raw["meta"] and "torch" in raw["meta"]
    loaded = load_model("superglue", path, conf=dict(match_threshold=0.5))
    assert loaded.conf["descriptor_dim"] == 64 and loaded.conf["match_threshold"] == 0.5
    assert loaded.meta["data"] == "bsds500 train"
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    sp = SuperPoint(dict(descriptor_dim=128))
    save_model(sp, tmp_path / "sp.pth", meta={})
    assert load_model("superpoint", tmp_path / "sp.pth").convDb.weight.shape[0] == 128
    with pytest.raises(WeightsError, match="holds a 'superpoint' model, not 'superglue'"):
        load_model("superglue", tmp_path / "sp.pth")


def test_truncated_file_fails_naming_the_file(tmp_path):
    path = tmp_path / "superpoint_trunc.pth"
    torch.save(published_superpoint_state_dict(), path)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(WeightsError, match=r"cannot read weights file .*superpoint_trunc\.pth"):
        load_model("superpoint", path)


def test_missing_key_fails_naming_file_and_key(tmp_path):
    sd = published_superpoint_state_dict()
    del sd["convDa.bias"]
    path = tmp_path / "missing.pth"
    torch.save(sd, path)
    with pytest.raises(WeightsError) as err:
        load_model("superpoint", path)
    msg = str(err.value)
    assert str(path) in msg and "missing keys (1): convDa.bias" in msg


def test_wrong_shape_and_unexpected_key_fail_naming_them(tmp_path):
    sd = published_superglue_state_dict(layers=2)
    sd["gnn.layers.1.attn.merge.weight"] = torch.zeros(256, 128, 1)
    sd["extra.thing"] = torch.zeros(3)
    path = tmp_path / "wrong.pth"
    torch.save(sd, path)
    with pytest.raises(WeightsError) as err:
        load_model("superglue", path)
    msg = str(err.value)
    assert str(path) in msg
    assert "gnn.layers.1.attn.merge.weight: expected (256, 256, 1), got (256, 128, 1)" in msg
    assert "unexpected keys (1): extra.thing" in msg


def test_missing_files_and_wrong_kinds(tmp_path):
    with pytest.raises(WeightsError, match="weights file not found: .*nope.pth"):
        load_model("superglue", tmp_path / "nope.pth")
    torch.save(published_superpoint_state_dict(), tmp_path / "sp.pth")
    with pytest.raises(WeightsError, match="holds a superpoint state dict, not superglue"):
        load_model("superglue", tmp_path / "sp.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(WeightsError, match="holds a list"):
        load_model("superpoint", tmp_path / "list.pth")
    with pytest.raises(ValueError, match="unknown model kind"):
        default_weights_path("orb")


def test_default_path_is_inside_the_package_and_absence_is_explained():
    path = default_weights_path("superglue")
    assert path.name == "superglue.pth" and path.parent.name == "weights"
    assert path.parent.parent == pathlib.Path(__import__("superglue_ros").__file__).resolve().parent
    if not path.exists():
        with pytest.raises(WeightsError, match="no trained superglue weights .* yet"):
            load_model("superglue")
    else:
        assert isinstance(load_model("superglue"), SuperGlue)


def test_pickled_code_is_refused(tmp_path):
    """weights_only=True: a file that needs arbitrary objects to unpickle is rejected."""
    path = tmp_path / "evil.pth"
    torch.save({"conv1a.weight": pathlib.Path("/etc/passwd")}, path)
    with pytest.raises(WeightsError, match="cannot read weights file"):
        load_model("superpoint", path)


# ---------------------------------------------------------------------------------------------
# Decoding convention per file: published raw state dicts decode as the reference does; our
# files say which convention they were trained with (absent keys: the one of superglue_ros/1).
# ---------------------------------------------------------------------------------------------


def test_published_file_gets_reference_decoding_and_ours_keep_theirs(tmp_path):
    torch.save(published_superpoint_state_dict(), tmp_path / "superpoint_v1.pth")
    published = load_model("superpoint", tmp_path / "superpoint_v1.pth")
    assert published.conf["nms_suppression_rounds"] == 2
    assert published.conf["descriptor_sampling"] == "reference"
    # an older file of ours (config without the keys): the sampling it was trained with (and
    # measured better with), the reference NMS (measured as good)
    old = torch.load(default_weights_path("superpoint"), weights_only=True)
    config = {
        k: v
        for k, v in old["config"].items()
        if k not in ("nms_suppression_rounds", "descriptor_sampling")
    }
    torch.save(dict(old, config=config), tmp_path / "ours_v1.pth")
    ours = load_model("superpoint", tmp_path / "ours_v1.pth")
    assert ours.conf["nms_suppression_rounds"] == 2
    assert ours.conf["descriptor_sampling"] == "pixel_centre"
    shipped = load_model("superpoint")
    assert (shipped.conf["nms_suppression_rounds"], shipped.conf["descriptor_sampling"]) == (
        2,
        "pixel_centre",
    )
    # files saved now record the convention, and a recorded one wins
    save_model(SuperPoint(), tmp_path / "new.pth", meta={})
    raw = torch.load(tmp_path / "new.pth", weights_only=True)
    assert raw["config"]["nms_suppression_rounds"] == 2
    assert raw["config"]["descriptor_sampling"] == "reference"
    save_model(SuperPoint(dict(descriptor_sampling="pixel_centre")), tmp_path / "pc.pth", meta={})
    assert (
        load_model("superpoint", tmp_path / "pc.pth").conf["descriptor_sampling"] == "pixel_centre"
    )
    # a caller may still override it explicitly
    forced = load_model(
        "superpoint", tmp_path / "ours_v1.pth", conf=dict(descriptor_sampling="reference")
    )
    assert forced.conf["descriptor_sampling"] == "reference"
    torch.save(dict(old, config=dict(config, descriptor_sampling="nearest")), tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match="unknown descriptor_sampling 'nearest'"):
        load_model("superpoint", tmp_path / "bad.pth")


def reference_decoding(
    logits: torch.Tensor,
    desc: torch.Tensor,
    nms_radius=4,
    threshold=0.005,
    border=4,
    max_keypoints=512,
):
    """The published SuperPoint decoding, written here independently of the package (numpy +
    scipy filters) from its description: logits [65,Hc,Wc], dense descriptors [D,Hc,Wc] ->
    keypoints [N,2] (x, y), scores [N] (decreasing), descriptors [N,D]."""
    from scipy.ndimage import maximum_filter

    prob = torch.softmax(logits.float(), dim=0)[:64].numpy()  # [64,Hc,Wc], bin = 8*row + col
    _, hc, wc = prob.shape
    heat = prob.reshape(8, 8, hc, wc).transpose(2, 0, 3, 1).reshape(8 * hc, 8 * wc)
    size = 2 * nms_radius + 1

    def window_max(a):
        return maximum_filter(a, size=size, mode="constant", cval=-np.inf)

    def near_kept(mask):
        return maximum_filter(mask.astype(np.float32), size=size, mode="constant", cval=0) > 0

    kept = heat == window_max(heat)
    for _ in range(2):
        suppressed = near_kept(kept)
        rest = np.where(suppressed, 0, heat).astype(np.float32)
        kept = kept | ((rest == window_max(rest)) & ~suppressed)
    heat = np.where(kept, heat, 0)
    ys, xs = np.nonzero(heat > threshold)
    inside = (ys >= border) & (ys < 8 * hc - border) & (xs >= border) & (xs < 8 * wc - border)
    ys, xs = ys[inside], xs[inside]
    scores = heat[ys, xs]
    order = np.argsort(-scores, kind="stable")[:max_keypoints]
    ys, xs, scores = ys[order], xs[order], scores[order]
    # bilinear sampling, align_corners=True at (x - 3.5) / (8 W - 4.5) * 2 - 1: cell coordinate
    # u = (x - 3.5) * (W - 1) / (8 W - 4.5); outside the map counts as zero
    dense = desc.numpy()
    u = (xs - 3.5) * (wc - 1) / (8 * wc - 4.5)
    v = (ys - 3.5) * (hc - 1) / (8 * hc - 4.5)
    out = np.zeros((len(xs), dense.shape[0]))
    for du in (0, 1):
        for dv in (0, 1):
            cu, cv = np.floor(u).astype(int) + du, np.floor(v).astype(int) + dv
            w = (1 - np.abs(u - cu)) * (1 - np.abs(v - cv))
            ok = (cu >= 0) & (cu < wc) & (cv >= 0) & (cv < hc)
            out[ok] += w[ok, None] * dense[:, cv[ok], cu[ok]].T
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return np.stack([xs, ys], 1).astype(np.float32), scores, out


def shipped_state_dict():
    return torch.load(default_weights_path("superpoint"), weights_only=True)["state_dict"]


def peaked_random_state_dict():
    """The hand-built random published layout, detector sharpened so the scores spread."""
    sd = published_superpoint_state_dict()
    sd["convPb.weight"] = sd["convPb.weight"] * 60
    sd["convPb.bias"] = sd["convPb.bias"] * 60
    return sd


def vga_frame() -> np.ndarray:
    import cv2
    from skimage import data

    return cv2.resize(data.astronaut()[..., 1], (640, 480), interpolation=cv2.INTER_AREA)


@pytest.mark.parametrize("source", ["shipped", "random"])
def test_published_layout_round_trip_decodes_as_the_reference(tmp_path, monkeypatch, source):
    """A raw published-layout file (the shipped weights re-saved raw: smooth trained heatmaps
    where the suppression rounds matter; a seeded random network) through the package's
    extractor. Reference runtime: the same keypoints as the independent decoding above, scores
    within 1e-6, descriptors within 1e-4. Fast runtime (OpenVINO fp32, cv2 NMS): >= 99 % of the
    keypoints, descriptors of those within 1e-4."""
    from superglue_ros.learned import SuperPointExtractor

    monkeypatch.setenv("SUPERGLUE_ROS_CACHE", str(tmp_path / "ov_cache"))
    sd = shipped_state_dict() if source == "shipped" else peaked_random_state_dict()
    path = tmp_path / "superpoint_v1.pth"
    torch.save(sd, path)
    frame = vga_frame()
    ref = SuperPointExtractor(weights=str(path), runtime="reference", max_keypoints=512)
    got = ref.extract(frame)
    with torch.no_grad():
        dense = ref.model.forward_dense(torch.from_numpy(frame).float()[None, None] / 255.0)
    want_k, want_s, want_d = reference_decoding(dense["logits"][0], dense["descriptors"][0])
    assert len(want_k) == 512
    assert np.array_equal(got.keypoints, want_k)
    assert np.allclose(got.scores, want_s, atol=1e-6)
    assert np.abs(got.descriptors - want_d).max() <= 1e-4
    if source == "shipped":  # the suppression rounds change the result on trained heatmaps
        single = load_model(
            "superpoint", path, conf=dict(nms_suppression_rounds=0, max_keypoints=-1)
        )
        everything = load_model("superpoint", path, conf=dict(max_keypoints=-1))
        image = torch.from_numpy(frame).float()[None, None] / 255.0
        with torch.no_grad():
            n_single = len(single(image)["keypoints"][0])
            n_reference = len(everything(image)["keypoints"][0])
        assert n_reference > 1.2 * n_single
    fast = SuperPointExtractor(
        weights=str(path), runtime="fast", precision="fp32", max_keypoints=512
    ).extract(frame)
    same = (got.keypoints[:, None, :] == fast.keypoints[None, :, :]).all(-1)  # [N_ref,N_fast]
    assert same.any(1).mean() >= 0.99
    i_ref, i_fast = np.nonzero(same)
    assert np.abs(got.descriptors[i_ref] - fast.descriptors[i_fast]).max() <= 1e-4
