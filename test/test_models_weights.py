"""Weight files: published layouts load, our format round-trips, broken files fail clearly."""

import pathlib

import pytest
import torch

from superglue_ros.models.superglue import SuperGlue
from superglue_ros.models.superpoint import SuperPoint
from superglue_ros.models.weights import (
    WeightsError, default_weights_path, load_model, save_model)

torch.set_num_threads(2)


def published_superpoint_state_dict():
    """Built by hand from the published key names/shapes (not from our model)."""
    g = torch.Generator().manual_seed(0)
    layers = [("conv1a", 1, 64, 3), ("conv1b", 64, 64, 3), ("conv2a", 64, 64, 3),
              ("conv2b", 64, 64, 3), ("conv3a", 64, 128, 3), ("conv3b", 128, 128, 3),
              ("conv4a", 128, 128, 3), ("conv4b", 128, 128, 3), ("convPa", 128, 256, 3),
              ("convPb", 256, 65, 1), ("convDa", 128, 256, 3), ("convDb", 256, 256, 1)]
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
        sd[f"kenc.encoder.{3 * i}.weight"] = torch.randn(chans[i + 1], chans[i], 1, generator=g) * 0.1
        sd[f"kenc.encoder.{3 * i}.bias"] = torch.zeros(chans[i + 1])
        if i < len(chans) - 2:
            bn(f"kenc.encoder.{3 * i + 1}", chans[i + 1])
    for l in range(layers):
        p = f"gnn.layers.{l}"
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
