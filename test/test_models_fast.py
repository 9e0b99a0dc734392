"""Fast path (OpenVINO / ONNX Runtime, bf16, cv2 NMS, keyframe cache) vs the reference path.

Tolerances are stated per test. Random weights are seeded and sharpened so that heatmap peaks
and match scores are well separated, like those of trained models (untrained SuperPoint
heatmaps are nearly flat, so any rounding would reorder them and prove nothing)."""

import logging
import sys

import numpy as np
import pytest
import torch
from skimage import data

from superglue_ros.models import backends
from superglue_ros.models.superglue import SuperGlue, pad_batch
from superglue_ros.models.superpoint import SuperPoint

torch.set_num_threads(2)
SMALL_SG = dict(
    descriptor_dim=64,
    keypoint_encoder=[16, 32],
    gnn_layers=["self", "cross"] * 2,
    num_heads=4,
    sinkhorn_iterations=50,
    match_threshold=0.05,
)


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("SUPERGLUE_ROS_CACHE", str(tmp_path_factory.getbasetemp() / "ov_cache"))


def peaked_superpoint_state():
    torch.manual_seed(0)
    model = SuperPoint()
    with torch.no_grad():  # detector logits with a trained-like spread (std 3) -> real peaks
        std = model.forward_dense(photo())["logits"].std()
        model.convPb.weight.mul_(3.0 / std)
        model.convPb.bias.mul_(3.0 / std)
    return model.state_dict()


def superpoint(state, **conf):
    model = SuperPoint({"max_keypoints": 400, **conf})
    model.load_state_dict(state)
    return model.eval()


def sharpened_superglue(**conf):
    torch.manual_seed(0)
    model = SuperGlue({**SMALL_SG, **conf}).eval()
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm1d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
        model.final_proj.weight.mul_(10.0)
        model.final_proj.bias.zero_()
        model.bin_score.fill_(20.0)
    return model


def photo():
    return torch.from_numpy(data.astronaut()[:240, :320, 1].astype(np.float32) / 255)[None, None]


def related_pair(seed=0, m=120, n=100, dim=64):
    """Side 1 = a noisy, shifted, permuted subset of side 0 plus new points."""
    g = torch.Generator().manual_seed(seed)
    k0 = torch.rand(m, 2, generator=g) * torch.tensor([639.0, 479.0])
    s0 = torch.rand(m, generator=g)
    d0 = torch.nn.functional.normalize(torch.randn(m, dim, generator=g), dim=1)
    common = torch.randperm(m, generator=g)[: n // 2]
    k1 = torch.cat([k0[common] + 3.0, torch.rand(n - len(common), 2, generator=g) * 400])
    s1 = torch.cat([s0[common], torch.rand(n - len(common), generator=g)])
    d1 = torch.nn.functional.normalize(
        torch.cat(
            [
                d0[common] + 0.1 * torch.randn(len(common), dim, generator=g),
                torch.randn(n - len(common), dim, generator=g),
            ]
        ),
        dim=1,
    )
    size = torch.tensor([[640, 480]])
    return dict(
        keypoints0=k0[None],
        scores0=s0[None],
        descriptors0=d0[None],
        image_size0=size,
        keypoints1=k1[None],
        scores1=s1[None],
        descriptors1=d1[None],
        image_size1=size,
    )


def keypoint_agreement(ref, fast, tol=1.0):
    """Fraction of reference keypoints with a fast keypoint within tol px, and their indices."""
    if len(ref) == 0:
        return 1.0, None
    dist = torch.cdist(ref, fast)
    best, idx = dist.min(dim=1)
    return float((best <= tol).float().mean()), (best <= tol, idx)


def test_precision_resolution(monkeypatch):
    assert backends.resolve_precision("auto", "cuda") == "fp16"
    assert backends.resolve_precision("fp32", "cpu") == "fp32"
    monkeypatch.setattr(backends, "cpu_has_native_bf16", lambda: False)
    assert backends.resolve_precision("auto", "cpu") == "fp32"
    assert backends.resolve_precision("bf16", "cpu") == "fp32"  # emulated bf16 is refused
    monkeypatch.setattr(backends, "cpu_has_native_bf16", lambda: True)
    assert backends.resolve_precision("auto", "cpu") == "bf16"
    with pytest.raises(ValueError, match="unknown precision"):
        backends.resolve_precision("int4", "cpu")


def test_native_bf16_detection_follows_cpu_flags(monkeypatch):
    monkeypatch.setattr(backends, "cpu_flags", lambda: {"avx2", "avx512f"})
    assert not backends.cpu_has_native_bf16()
    monkeypatch.setattr(backends, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    assert backends.cpu_has_native_bf16()


def test_missing_backend_falls_back_to_torch_with_one_log_line(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    state = peaked_superpoint_state()
    fast = superpoint(state, backend="openvino", precision="fp32", nms="cv2")
    ref = superpoint(state)
    with caplog.at_level(logging.WARNING, logger="superglue_ros.models.backends"), torch.no_grad():
        out = fast(photo())
        fast(photo())  # second call: no second log line
    assert isinstance(fast.dense_runner(), backends.TorchRunner)
    lines = [r for r in caplog.records if "falling back to torch" in r.getMessage()]
    assert len(lines) == 1 and "openvino is not installed" in lines[0].getMessage()
    with torch.no_grad():
        want = ref(photo())
    assert torch.equal(out["keypoints"][0], want["keypoints"][0])


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="unknown backend"):
        SuperPoint(dict(backend="tensorrt")).eval()(photo())


@pytest.mark.parametrize(
    "backend,precision,static",
    [
        ("openvino", "fp32", False),
        ("openvino", "fp32", True),
        ("onnxruntime", "fp32", False),
        ("torch", "fp32", False),
    ],
)
def test_superpoint_backends_fp32_match_reference(backend, precision, static):
    """fp32 backends: >= 99 % of the keypoints at the same pixel (float rounding may swap
    near-equal scores at the top-k cut), descriptors of those within 1e-4, scores within 1e-5.
    Static shapes: a second image size compiles its own model and agrees too."""
    pytest.importorskip(backend if backend != "torch" else "torch")
    state = peaked_superpoint_state()
    ref = superpoint(state)
    fast = superpoint(
        state,
        backend=backend,
        precision=precision,
        nms="cv2",
        channels_last=backend == "torch",
        static_shapes=static,
    )
    for image in (photo(), photo()[..., 8:, :296]):
        with torch.no_grad():
            a, b = ref(image), fast(image)
        assert fast.dense_runner().name == backend
        frac, (ok, idx) = keypoint_agreement(a["keypoints"][0], b["keypoints"][0], tol=0.0)
        assert frac >= 0.99, frac
        assert torch.allclose(a["scores"][0][ok], b["scores"][0][idx[ok]], atol=1e-5)
        assert torch.allclose(a["descriptors"][0][ok], b["descriptors"][0][idx[ok]], atol=1e-4)
    if static:  # the example shape (480x640) + the two image sizes
        assert len(fast.dense_runner()._compiled) == 3


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime", "torch"])
def test_backend_outputs_belong_to_the_caller(backend):
    """A runner's outputs survive its next call (the OpenVINO runner reads its inputs in place
    and hands back the arrays its request returned, without a second copy); strided inputs,
    such as one query expanded against a batch, give what their contiguous copies give."""
    pytest.importorskip(backend)
    model = sharpened_superglue(backend=backend, precision="fp32")
    runner = model.score_runner()
    assert runner.name == backend
    enc = torch.randn(2, 64, 128)
    masks = torch.ones(2, 128, dtype=torch.bool), torch.ones(2, 128, dtype=torch.bool)
    (first,) = runner(enc[:1].expand(2, -1, -1), enc, *masks)
    kept = first.clone()
    (second,) = runner(enc.flip(0), enc, *masks)
    assert torch.equal(first, kept) and not torch.equal(first, second)
    (contiguous,) = runner(enc[:1].expand(2, -1, -1).contiguous(), enc, *masks)
    assert torch.equal(first, contiguous)


def test_superglue_compile_shapes_covers_every_keypoint_count():
    """compile_shapes(300) compiles the static shapes of 128, 256 and 384 padded keypoints
    up front; later pairs of any size up to 300 compile nothing new and give what a model
    without the warm-up gives. The least recently used shape is the one evicted when the
    runner holds its maximum, so the shapes in use stay compiled."""
    pytest.importorskip("openvino")
    cold = sharpened_superglue(backend="openvino", precision="fp32", static_shapes=True)
    warm = sharpened_superglue(backend="openvino", precision="fp32", static_shapes=True)
    assert warm.compile_shapes(300) == 3
    compiled = warm.score_runner()._compiled
    assert sorted(key[0][2] for key in compiled) == [128, 256, 384, 512]  # 512: the example
    pair = related_pair(m=320, n=300)
    for m, n in ((300, 290), (100, 250), (30, 100)):
        sub = dict(pair)
        for side, count in (("0", m), ("1", n)):
            for key in ("keypoints", "scores", "descriptors"):
                sub[key + side] = pair[key + side][:, :count]
        with torch.no_grad():
            a, b = cold(sub), warm(sub)
        assert torch.equal(a["matches0"], b["matches0"])
    assert len(compiled) == 4
    assert len(cold.score_runner()._compiled) == 4  # 512 + the three it met, while matching
    assert sharpened_superglue().compile_shapes(300) == 0  # the reference path compiles none
    runner = warm.score_runner()
    runner.MAX_STATIC_SHAPES = 4
    enc = torch.randn(1, 64, 512)
    warm.match_scores(enc, enc)  # 512, compiled first, is now the most recent; 384 the least
    warm.match_scores(torch.randn(2, 64, 128), torch.randn(2, 64, 128))  # a 5th shape
    kept = sorted((key[0][0], key[0][2]) for key in compiled)
    assert kept == [(1, 128), (1, 256), (1, 512), (2, 128)]


@pytest.mark.skipif(not backends.cpu_has_native_bf16(), reason="CPU has no native bf16")
@pytest.mark.parametrize("backend", ["openvino", "torch"])
def test_superpoint_bf16_agrees_with_fp32(backend):
    """bf16 (8 mantissa bits): >= 98 % of the reference keypoints (NMS + threshold, no top-k)
    at the same pixel, their scores within 0.01 (of ~0.3), descriptors cosine >= 0.99. No top-k:
    random-weight scores are too compressed for a stable cut; trained ones spread far more."""
    if backend == "openvino":
        pytest.importorskip("openvino")
    state = peaked_superpoint_state()
    ref = superpoint(state, max_keypoints=-1)
    fast = superpoint(state, backend=backend, precision="bf16", nms="cv2", max_keypoints=-1)
    with torch.no_grad():
        a, b = ref(photo()), fast(photo())
    assert fast.dense_runner().precision == "bf16"
    assert len(a["keypoints"][0]) > 500
    frac, (ok, idx) = keypoint_agreement(a["keypoints"][0], b["keypoints"][0], tol=0.0)
    assert frac >= 0.98, frac
    sa, sb = a["scores"][0][ok], b["scores"][0][idx[ok]]
    assert (sa - sb).abs().max() <= 0.01
    cos = (a["descriptors"][0][ok] * b["descriptors"][0][idx[ok]]).sum(1)
    assert cos.min() >= 0.99


@pytest.mark.parametrize(
    "backend,static", [("openvino", False), ("openvino", True), ("onnxruntime", False)]
)
def test_superglue_backend_fp32_matches_reference(backend, static):
    """fp32 GNN backend: log assignment within 1e-3, identical matches (with and without
    padding masks; static shapes pad keypoints to buckets of 128 and mask them)."""
    pytest.importorskip(backend)
    ref = sharpened_superglue()
    fast = sharpened_superglue(backend=backend, precision="fp32", static_shapes=static)
    pair = related_pair()
    with torch.no_grad():
        a, b = ref(pair), fast(pair)
    assert fast.score_runner().name == backend
    assert (a["matches0"] >= 0).sum() >= 20
    assert torch.allclose(a["log_assignment"], b["log_assignment"], atol=1e-3)
    assert torch.equal(a["matches0"], b["matches0"])
    # padded one-vs-many batch through the backend == reference singles
    refs = [related_pair(seed) for seed in (1, 2, 3)]
    b1 = pad_batch(
        [r["keypoints1"][0][: 60 + 10 * i] for i, r in enumerate(refs)],
        [r["scores1"][0][: 60 + 10 * i] for i, r in enumerate(refs)],
        [r["descriptors1"][0][: 60 + 10 * i] for i, r in enumerate(refs)],
    )
    batch = dict(
        pair,
        keypoints1=b1["keypoints"],
        scores1=b1["scores"],
        descriptors1=b1["descriptors"],
        mask1=b1["mask"],
        image_size1=pair["image_size1"].expand(3, 2),
    )
    with torch.no_grad():
        got = fast(batch)
        for i in range(3):
            n = 60 + 10 * i
            single = ref(
                dict(
                    pair,
                    keypoints1=b1["keypoints"][i : i + 1, :n],
                    scores1=b1["scores"][i : i + 1, :n],
                    descriptors1=b1["descriptors"][i : i + 1, :n],
                )
            )
            assert torch.equal(got["matches0"][i], single["matches0"][0])


@pytest.mark.skipif(not backends.cpu_has_native_bf16(), reason="CPU has no native bf16")
def test_superglue_bf16_agrees_with_fp32():
    """bf16 GNN (OpenVINO if installed, else torch autocast): >= 90 % of the fp32 matches kept
    and >= 90 % of the bf16 matches are fp32 matches; match scores within 0.05."""
    backend = "openvino" if backends._has_module("openvino") else "torch"
    ref = sharpened_superglue()
    fast = sharpened_superglue(backend=backend, precision="bf16")
    pair = related_pair(seed=5)
    with torch.no_grad():
        a, b = ref(pair), fast(pair)
    assert fast.score_runner().precision == "bf16"
    ma, mb = a["matches0"][0], b["matches0"][0]
    both = (ma >= 0) & (mb == ma)
    assert (ma >= 0).sum() >= 20
    assert both.sum() >= 0.9 * (ma >= 0).sum() and both.sum() >= 0.9 * (mb >= 0).sum()
    sa, sb = a["matching_scores0"][0][both], b["matching_scores0"][0][both]
    assert (sa - sb).abs().max() <= 0.05


def test_keyframe_cache_reuses_encoding_and_gives_same_result():
    model = sharpened_superglue(cache_keyframes=True)
    ref = sharpened_superglue()
    pair = related_pair(seed=7)
    cache1 = {}
    with torch.no_grad():
        first = model(dict(pair, cache1=cache1))
        assert "superglue_encoding" in cache1
        stored = cache1["superglue_encoding"][1]
        # a poisoned cached encoding must be used (proves reuse), then restore it
        cache1["superglue_encoding"] = (cache1["superglue_encoding"][0], torch.zeros_like(stored))
        poisoned = model(dict(pair, cache1=cache1))
        cache1["superglue_encoding"] = (cache1["superglue_encoding"][0], stored)
        again = model(dict(pair, cache1=cache1))
        want = ref(pair)
    assert not torch.equal(poisoned["log_assignment"], first["log_assignment"])
    assert torch.equal(first["matches0"], want["matches0"])
    assert torch.allclose(again["log_assignment"], want["log_assignment"], atol=1e-5)
    # new weights invalidate every cache
    model.load_state_dict(model.state_dict())
    with torch.no_grad():
        model(dict(pair, cache1=cache1))
    assert torch.equal(cache1["superglue_encoding"][1], stored)


def test_cached_batch_of_candidates_equals_uncached():
    model = sharpened_superglue(cache_keyframes=True)
    pair = related_pair(seed=8)
    refs = [related_pair(seed) for seed in (11, 12)]
    feats = [
        (r["keypoints1"][0][:n], r["scores1"][0][:n], r["descriptors1"][0][:n])
        for r, n in zip(refs, (70, 90))
    ]
    b1 = pad_batch(*[list(x) for x in zip(*feats)])
    batch = dict(
        pair,
        keypoints1=b1["keypoints"],
        scores1=b1["scores"],
        descriptors1=b1["descriptors"],
        mask1=b1["mask"],
        image_size1=pair["image_size1"].expand(2, 2),
    )
    caches = [{}, {}]
    with torch.no_grad():
        plain = model(batch)
        model(dict(batch, cache1=caches))
        cached = model(dict(batch, cache1=caches))
    assert [c["superglue_encoding"][1].shape[-1] for c in caches] == [70, 90]
    assert torch.equal(plain["matches0"], cached["matches0"])
    assert torch.allclose(plain["log_assignment"], cached["log_assignment"], atol=1e-5)


def test_gpu_path_uses_torch_fp16_autocast():
    """On CUDA the CPU backends are bypassed: torch runner under fp16 autocast (logic only;
    no GPU on this machine)."""
    module = torch.nn.Conv2d(1, 2, 3)
    runner = backends.build_runner(
        "openvino",
        module,
        "cuda",
        "auto",
        example_inputs=(),
        input_names=[],
        output_names=[],
        dynamic_axes={},
    )
    assert isinstance(runner, backends.TorchRunner) and runner.precision == "fp16"
    ctx = runner.autocast("cuda")
    assert isinstance(ctx, torch.autocast) and ctx.fast_dtype == torch.float16
    assert isinstance(
        backends.TorchRunner(module, "fp32").autocast("cpu"),
        type(__import__("contextlib").nullcontext()),
    )


def test_limited_threads_restores_the_thread_count():
    before = torch.get_num_threads()
    with backends.limited_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with backends.limited_threads(None):
        assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError):
        with backends.limited_threads(1):
            raise RuntimeError("boom")
    assert torch.get_num_threads() == before


def test_backend_cache_key_tracks_weights_and_architecture_only():
    a = sharpened_superglue()
    b = sharpened_superglue(precision="bf16", match_threshold=0.5)  # runtime settings only
    c = sharpened_superglue(gnn_layers=["cross", "self"] * 2)  # same shapes, other graph
    fp = [backends.model_fingerprint(m) for m in (a, b, c)]
    assert fp[0] == fp[1] and fp[0] != fp[2]
    with torch.no_grad():
        b.bin_score.add_(1.0)
    assert backends.model_fingerprint(b) != fp[0]


def test_published_9x9_superglue_through_the_fast_runtime(tmp_path):
    """The standard 9 self + 9 cross layers in the published layout (a seeded random file, raw
    state dict) through the fast runtime (OpenVINO export of all 18 layers, static shapes,
    keypoint buckets, scaling Sinkhorn) in fp32: the same matches as the reference runtime,
    matching scores within 1e-3. A random 18-layer GNN maps every keypoint close to one common
    descriptor, so the final projection is centred on this pair and sharpened (x20) to give
    the spread of a trained model's scores."""
    pytest.importorskip("openvino")
    from test_models_weights import published_superglue_state_dict

    from superglue_ros.models.weights import load_model

    sd = published_superglue_state_dict()
    pair = related_pair(dim=256, m=300, n=250)
    torch.save(sd, tmp_path / "superglue_indoor.pth")
    probe = load_model("superglue", tmp_path / "superglue_indoor.pth")
    with torch.no_grad():
        enc = [
            probe.encode(
                pair[f"keypoints{i}"],
                pair[f"scores{i}"],
                pair[f"descriptors{i}"],
                pair[f"image_size{i}"],
            )
            for i in (0, 1)
        ]
        common = torch.cat(probe.gnn(*enc), dim=2).mean(dim=(0, 2))  # [D]
    weight = sd["final_proj.weight"] * 20
    sd.update(
        {
            "final_proj.weight": weight,
            "final_proj.bias": -weight[:, :, 0] @ common,
            "bin_score": torch.tensor(10.0),
        }
    )
    torch.save(sd, tmp_path / "superglue_indoor.pth")
    ref = load_model(
        "superglue", tmp_path / "superglue_indoor.pth", conf=backends.REFERENCE_SUPERGLUE
    )
    fast = load_model(
        "superglue",
        tmp_path / "superglue_indoor.pth",
        conf=dict(backends.FAST_SUPERGLUE, precision="fp32"),
    )
    assert len(fast.gnn.layers) == 18 and fast.conf["gnn_layers"] == ["self", "cross"] * 9
    with torch.no_grad():
        a, b = ref(pair), fast(dict(pair, cache1={}))
    assert fast.score_runner().name == "openvino" and fast.score_runner().static_shapes
    matched = a["matches0"][0] >= 0
    assert matched.sum() >= 20
    assert torch.equal(a["matches0"], b["matches0"])
    assert (a["matching_scores0"] - b["matching_scores0"]).abs().max() <= 1e-3
