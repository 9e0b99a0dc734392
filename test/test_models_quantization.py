"""Int8 SuperPoint backbone (models/quantization.py): exact fake quantisation, cross-layer
equalisation that keeps the float function, the int8 variant's life in a weights file, and the
OpenVINO int8 kernels against the fake-quantised torch graph, with the shipped weights on real
photos."""

import copy
import logging

import numpy as np
import pytest
import torch
from skimage import data

from superglue_ros.models import backends, quantization
from superglue_ros.models.superpoint import SuperPoint
from superglue_ros.models.weights import WeightsError, load_model, save_model

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SUPERGLUE_ROS_CACHE", str(tmp_path_factory.getbasetemp() / "ov_cache"))


def photo_batch():
    """Two real 8-bit photos as [2,1,240,320] in [0,1]."""
    crops = [data.camera()[100:340, 100:420], data.coins()[:240, :320]]
    return torch.from_numpy(np.stack(crops).astype(np.float32) / 255.0)[:, None]


@pytest.fixture(scope="module")
def shipped():
    return load_model("superpoint").float().eval()


def cosine(a, b):
    """Mean cosine over the cells of two [B,D,H,W] descriptor maps."""
    return float((a * b).sum(1).mean())


def test_activation_quantisation_is_exact_on_its_grid_and_clips():
    scale = 0.1
    x = torch.tensor([0.0, 0.1, 0.14, 0.16, 25.5, 30.0])
    q = quantization.fake_quantize_activation(x, scale)
    assert torch.allclose(q, torch.tensor([0.0, 0.1, 0.1, 0.2, 25.5, 25.5]))
    image = torch.arange(256, dtype=torch.float32) / 255.0  # 8-bit pixels: lossless
    q = quantization.fake_quantize_activation(image, quantization.IMAGE_SCALE)
    assert torch.equal(torch.round(q * 255), torch.arange(256, dtype=torch.float32))
    assert torch.allclose(q, image, rtol=0, atol=1e-7)


def test_lsq_gradients_pass_through_inside_the_range_and_train_the_scale():
    x = torch.tensor([0.14, 0.16, 30.0], requires_grad=True)
    scale = torch.tensor(0.1, requires_grad=True)
    quantization.fake_quantize_activation(x, scale).sum().backward()
    assert torch.allclose(x.grad, torch.tensor([1.0, 1.0, 0.0]))  # clipped: no gradient
    # d/ds: round(x/s) - x/s inside (1 - 1.4, 2 - 1.6), the range's end (255) outside
    assert scale.grad.item() == pytest.approx(-0.4 + 0.4 + 255.0, abs=1e-4)


def test_weight_quantisation_is_per_output_channel_int8():
    w = torch.tensor([[1.0, 0.5, -0.25], [100.0, -3.0, 50.0]]).view(2, 3, 1, 1)
    q = quantization.fake_quantize_weight(w)
    steps = q.view(2, 3) / quantization.weight_scales(w)[:, None]
    assert torch.allclose(steps, steps.round(), atol=1e-4)
    assert steps.abs().max() == pytest.approx(127)
    assert torch.allclose(q[0], w[0], atol=1.0 / 127)  # channel 0 keeps its own small scale


def test_equalisation_keeps_the_float_network_and_balances_its_ranges(shipped):
    """The shipped weights have input channels ~100x larger than the rest of their output
    channel; equalising keeps every output (float) and brings int8 close to float."""
    batch = photo_batch()
    equalised = copy.deepcopy(shipped)
    quantization.equalize_ranges(equalised)
    with torch.no_grad():
        ref, out = shipped.forward_dense(batch), equalised.forward_dense(batch)
        assert torch.allclose(out["logits"], ref["logits"], atol=1e-3)
        assert cosine(out["descriptors"], ref["descriptors"]) > 0.99999

        def int8_cosine(model):
            scales = quantization.calibrate_scales(model, batch)
            _, desc = quantization.Int8Backbone(model, scales).eval()(batch)
            return cosine(desc, ref["descriptors"])

        before, after = int8_cosine(shipped), int8_cosine(equalised)
    assert before < 0.8 < 0.95 < after, (before, after)


def test_int8_precision_resolution(monkeypatch, caplog):
    monkeypatch.setattr(backends, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_vnni"})
    assert backends.resolve_precision("auto", "cpu", int8=True) == "int8"
    assert backends.resolve_precision("int8", "cpu", int8=True) == "int8"
    # no 8-bit dot products (AMD Zen 1, AVX2 only): int8 is no faster there, auto takes float
    monkeypatch.setattr(backends, "cpu_flags", lambda: {"avx2", "fma"})
    assert not backends.cpu_has_int8_dot()
    assert backends.resolve_precision("auto", "cpu", int8=True) == "fp32"
    assert backends.resolve_precision("int8", "cpu", int8=True) == "int8"  # asked for
    monkeypatch.setattr(backends, "cpu_flags", lambda: {"avx512f", "amx_int8"})
    assert backends.cpu_has_int8_dot()
    monkeypatch.setattr(backends, "cpu_flags", set)  # unreadable flags: as before, int8
    assert backends.resolve_precision("auto", "cpu", int8=True) == "int8"
    assert backends.resolve_precision("auto", "cuda", int8=True) == "fp16"
    monkeypatch.setattr(backends, "cpu_has_native_bf16", lambda: True)
    assert backends.resolve_precision("auto", "cpu") == "bf16"
    with caplog.at_level(logging.WARNING, logger="superglue_ros.models.backends"):
        assert backends.resolve_precision("int8", "cpu", int8=False) == "bf16"
    assert any("int8 runs SuperPoint's backbone only" in r.getMessage() for r in caplog.records)


def test_shipped_file_carries_an_int8_variant_that_survives_save_and_load(tmp_path, shipped):
    variant = shipped.int8_variant
    assert variant is not None, "the shipped superpoint.pth has no int8 entry"
    assert len(variant["activation_scales"]) == len(quantization.ACTIVATION_POINTS)
    assert variant["activation_scales"][0] == pytest.approx(quantization.IMAGE_SCALE)
    path = tmp_path / "sp.pth"
    save_model(shipped, path, dict(shipped.meta))
    again = load_model("superpoint", path)
    for key, value in shipped.state_dict().items():  # float weights unchanged
        assert torch.equal(again.state_dict()[key], value)
    for key, value in variant["state_dict"].items():
        assert torch.equal(again.int8_variant["state_dict"][key], value)
    assert again.int8_variant["activation_scales"] == variant["activation_scales"]
    assert again.meta["int8"]["trainer"] == "superglue_ros.training.quantize_superpoint"


def test_a_broken_int8_entry_is_a_clear_weights_error(tmp_path, shipped):
    obj = torch.load(shipped.weights_path, weights_only=True)
    obj["int8"]["activation_scales"] = obj["int8"]["activation_scales"][:3]
    path = tmp_path / "broken.pth"
    torch.save(obj, path)
    with pytest.raises(WeightsError, match="unusable 'int8' entry.*activation_scales"):
        load_model("superpoint", path)
    with pytest.raises(ValueError, match="has no int8 variant"):
        SuperPoint().int8_backbone()


def test_quantising_before_max_pooling_gives_the_values_of_quantising_after_it(shipped):
    """The int8 backbone quantises pool1-3 before pooling (so OpenVINO pools in uint8); as
    rounding is monotonic the outputs must equal, bit for bit, quantising each convolution's
    input after the pooling."""
    backbone = shipped.int8_backbone()

    def every_input_quantised(name, x):  # the order before the change
        point = quantization.CONV_INPUTS[name]
        x = quantization.fake_quantize_activation(x, backbone.scale_of(point))
        weight = quantization.fake_quantize_weight(getattr(backbone.model, name).weight)
        layer = getattr(backbone.model, name)
        return torch.nn.functional.conv2d(x, weight, layer.bias, padding=layer.padding)

    batch = photo_batch()
    with torch.no_grad():
        logits, desc = backbone(batch)
        after = backbone.model.forward_dense(batch, conv=every_input_quantised)
    assert torch.equal(logits, after["logits"]) and torch.equal(desc, after["descriptors"])


def test_openvino_int8_kernels_match_the_fake_quantised_graph_on_real_photos(shipped):
    """OpenVINO fuses the exported quantize/dequantize pairs into int8 convolutions; they must
    compute what training optimised (the torch fake-quantised graph): detector logits within
    rounding of one int8 step, descriptors cosine > 0.99 per cell on average."""
    pytest.importorskip("openvino")
    fast = load_model("superpoint", conf=dict(backend="openvino", precision="int8", nms="cv2"))
    batch = photo_batch()[:1]
    runner = fast.dense_runner()
    assert runner.name == "openvino" and runner.precision == "int8"
    logits, desc = runner(batch)
    with torch.no_grad():
        want_logits, want_desc = shipped.int8_backbone()(batch)
    assert cosine(desc, want_desc) > 0.99
    assert (logits - want_logits).abs().median() < 0.1
    # and the int8 network stays close to the float one it was fine-tuned to reproduce
    with torch.no_grad():
        ref = shipped.forward_dense(batch)
    assert cosine(desc, ref["descriptors"]) > 0.98


def test_int8_is_refused_without_an_int8_variant_and_falls_back_to_float(caplog):
    torch.manual_seed(0)
    model = SuperPoint(dict(backend="openvino", precision="int8", nms="cv2")).eval()
    with caplog.at_level(logging.WARNING, logger="superglue_ros.models.backends"):
        runner = model.dense_runner()
    assert runner.precision in ("bf16", "fp32")
    assert any("int8 runs SuperPoint's backbone only" in r.getMessage() for r in caplog.records)
