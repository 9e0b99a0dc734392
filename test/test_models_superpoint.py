"""SuperPoint: NMS, coordinate conventions, padding, determinism on a shipped photo."""

import numpy as np
import pytest
import torch
from skimage import data

from superglue_ros.models.superpoint import SuperPoint, nms_cv2, nms_torch, sample_descriptors

torch.set_num_threads(2)


def seeded_model(**conf):
    torch.manual_seed(0)
    return SuperPoint(conf).eval()


def image_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img.astype(np.float32) / 255.0)[None, None]


def test_state_dict_keys_match_published_layout():
    sd = SuperPoint().state_dict()
    expected = {}
    chans = dict(conv1a=(64, 1, 3), conv1b=(64, 64, 3), conv2a=(64, 64, 3), conv2b=(64, 64, 3),
                 conv3a=(128, 64, 3), conv3b=(128, 128, 3), conv4a=(128, 128, 3),
                 conv4b=(128, 128, 3), convPa=(256, 128, 3), convPb=(65, 256, 1),
                 convDa=(256, 128, 3), convDb=(256, 256, 1))
    for name, (co, ci, k) in chans.items():
        expected[f"{name}.weight"] = (co, ci, k, k)
        expected[f"{name}.bias"] = (co,)
    assert {k: tuple(v.shape) for k, v in sd.items()} == expected


@pytest.mark.parametrize("nms", [nms_torch, nms_cv2])
def test_nms_keeps_only_local_maxima(nms):
    heat = torch.zeros(1, 20, 20)
    heat[0, 5, 5] = 0.9     # global max: kept
    heat[0, 7, 6] = 0.5     # within radius 4 of (5,5): suppressed
    heat[0, 15, 15] = 0.3   # isolated: kept
    heat[0, 5, 15] = 0.2    # 10 px from (5,5): kept
    heat[0, 18, 12] = 0.25  # within 4 of (15,15) in both axes but smaller: suppressed
    heat[0, 0, 0] = 0.1     # corner, isolated: kept
    out = nms(heat, 4)
    kept = {tuple(p) for p in torch.nonzero(out[0]).tolist()}
    assert kept == {(5, 5), (15, 15), (5, 15), (0, 0)}
    assert out[0, 5, 5] == pytest.approx(0.9) and out[0, 15, 15] == pytest.approx(0.3)


def test_nms_torch_and_cv2_agree_on_a_real_heatmap():
    model = seeded_model()
    with torch.no_grad():
        img = image_tensor(data.camera()[:256, :256])
        heat = model.logits_to_heatmap(model.forward_dense(img)["logits"])
    assert torch.equal(nms_torch(heat, 4), nms_cv2(heat, 4))


def test_extract_keypoints_threshold_border_topk():
    model = SuperPoint(dict(nms_radius=2, keypoint_threshold=0.1, remove_borders=3, max_keypoints=2))
    heat = torch.zeros(1, 16, 24)
    heat[0, 8, 10] = 0.9
    heat[0, 8, 18] = 0.5
    heat[0, 2, 10] = 0.95   # inside the 3 px border: removed
    heat[0, 12, 4] = 0.3    # third best: cut by top-k
    heat[0, 12, 14] = 0.05  # below threshold
    heat[0, 8, 22] = 0.8    # x=22 >= width-border for width 24 -> removed
    kpts, scores = model.extract_keypoints(heat, 16, 24)
    assert kpts[0].tolist() == [[10.0, 8.0], [18.0, 8.0]]
    assert scores[0].tolist() == pytest.approx([0.9, 0.5])


def test_descriptor_sampling_at_cell_centres_returns_cell_descriptor():
    torch.manual_seed(1)
    dense = torch.nn.functional.normalize(torch.randn(8, 3, 5), dim=0)  # D=8, Hc=3, Wc=5
    cells = [(0, 0), (2, 4), (1, 3)]  # (row, col)
    kpts = torch.tensor([[8 * c + 3.5, 8 * r + 3.5] for r, c in cells])
    got = sample_descriptors(kpts, dense)
    want = torch.stack([dense[:, r, c] for r, c in cells])
    assert torch.allclose(got, want, atol=1e-6)
    # halfway between two horizontally adjacent cell centres -> normalised mean of both
    mid = sample_descriptors(torch.tensor([[8 * 1 + 7.5, 8 * 2 + 3.5]]), dense)
    want_mid = torch.nn.functional.normalize(dense[:, 2, 1] + dense[:, 2, 2], dim=0)
    assert torch.allclose(mid[0], want_mid, atol=1e-6)


def test_deterministic_keypoints_on_shipped_photo():
    img = image_tensor(data.camera())
    runs = []
    for _ in range(2):
        model = seeded_model(max_keypoints=500)
        with torch.no_grad():
            runs.append(model(img))
    a, b = runs
    assert a["keypoints"][0].shape == (500, 2)
    assert a["descriptors"][0].shape == (500, 256)
    assert torch.equal(a["keypoints"][0], b["keypoints"][0])
    assert torch.equal(a["scores"][0], b["scores"][0])
    assert torch.equal(a["descriptors"][0], b["descriptors"][0])
    norms = a["descriptors"][0].norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)
    assert bool((a["scores"][0][:-1] >= a["scores"][0][1:]).all())


def test_odd_size_image_keypoints_stay_inside_and_equal_explicit_padding():
    gray = data.camera()[:477, :503]
    model = seeded_model()
    with torch.no_grad():
        out = model(image_tensor(gray))
        padded = np.pad(gray, ((0, 3), (0, 1)), mode="edge")  # what forward does internally
        out_pad = SuperPoint(dict(model.conf, remove_borders=0)).eval()
        out_pad.load_state_dict(model.state_dict())
        ref = out_pad(image_tensor(padded))
    k = out["keypoints"][0]
    b = model.conf["remove_borders"]
    assert len(k) > 0
    assert bool((k[:, 0] >= b).all() and (k[:, 0] < 503 - b).all())
    assert bool((k[:, 1] >= b).all() and (k[:, 1] < 477 - b).all())
    # the same keypoints are found on the explicitly padded image, minus those in pad/border
    kr, sr, dr = ref["keypoints"][0], ref["scores"][0], ref["descriptors"][0]
    inside = (kr[:, 0] >= b) & (kr[:, 0] < 503 - b) & (kr[:, 1] >= b) & (kr[:, 1] < 477 - b)
    assert torch.equal(k, kr[inside])
    assert torch.equal(out["scores"][0], sr[inside])
    assert torch.allclose(out["descriptors"][0], dr[inside], atol=1e-6)


def test_keypoints_follow_a_crop_by_whole_cells():
    """Shifting the image by a multiple of 8 shifts interior keypoints by the same amount."""
    gray = data.astronaut()[..., 1]
    model = seeded_model(keypoint_threshold=0.0, nms_radius=4)
    dx, dy = 16, 24
    with torch.no_grad():
        full = model(image_tensor(gray[:320, :320]))
        crop = model(image_tensor(gray[dy:320, dx:320]))
    margin = 72  # beyond the conv receptive-field influence of the borders
    def interior(k, s, d, w, h, ox, oy):
        keep = (k[:, 0] + ox >= margin + dx) & (k[:, 0] + ox < 320 - margin) \
            & (k[:, 1] + oy >= margin + dy) & (k[:, 1] + oy < 320 - margin)
        kk = k[keep] + torch.tensor([ox, oy], dtype=k.dtype)
        order = torch.argsort(kk[:, 1] * 1000 + kk[:, 0])
        return kk[order], s[keep][order], d[keep][order]
    k0, s0, d0 = interior(full["keypoints"][0], full["scores"][0], full["descriptors"][0], 320, 320, 0, 0)
    k1, s1, d1 = interior(crop["keypoints"][0], crop["scores"][0], crop["descriptors"][0], 0, 0, dx, dy)
    assert len(k0) > 20
    assert torch.equal(k0, k1)
    assert torch.allclose(s0, s1, atol=1e-5)
    assert torch.allclose(d0, d1, atol=1e-4)


def test_batched_equals_single():
    model = seeded_model(max_keypoints=300)
    imgs = torch.cat([image_tensor(data.camera()[:240, :320]),
                      image_tensor(data.astronaut()[:240, :320, 0])])
    with torch.no_grad():
        batch = model(imgs)
        singles = [model(imgs[i:i + 1]) for i in range(2)]
    for i in range(2):
        assert torch.equal(batch["keypoints"][i], singles[i]["keypoints"][0])
        assert torch.allclose(batch["descriptors"][i], singles[i]["descriptors"][0], atol=1e-5)


def test_rgb_input_is_converted_and_bad_channels_rejected():
    model = seeded_model(max_keypoints=50)
    rgb = torch.from_numpy(data.astronaut()[:64, :64].astype(np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        out = model(rgb)
    assert out["keypoints"][0].shape[1] == 2
    with pytest.raises(ValueError, match="expects"):
        model(torch.zeros(1, 2, 16, 16))
