"""SuperPoint: NMS, coordinate conventions, padding, determinism on a shipped photo."""

import numpy as np
import pytest
import torch
from skimage import data

from superglue_ros.models.superpoint import SuperPoint, nms_cv2, nms_torch, sample_descriptors
from superglue_ros.models.weights import load_model

torch.set_num_threads(2)


def seeded_model(**conf):
    torch.manual_seed(0)
    return SuperPoint(conf).eval()


def image_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(img.astype(np.float32) / 255.0)[None, None]


def test_state_dict_keys_match_published_layout():
    sd = SuperPoint().state_dict()
    expected = {}
    chans = dict(
        conv1a=(64, 1, 3),
        conv1b=(64, 64, 3),
        conv2a=(64, 64, 3),
        conv2b=(64, 64, 3),
        conv3a=(128, 64, 3),
        conv3b=(128, 128, 3),
        conv4a=(128, 128, 3),
        conv4b=(128, 128, 3),
        convPa=(256, 128, 3),
        convPb=(65, 256, 1),
        convDa=(256, 128, 3),
        convDb=(256, 256, 1),
    )
    for name, (co, ci, k) in chans.items():
        expected[f"{name}.weight"] = (co, ci, k, k)
        expected[f"{name}.bias"] = (co,)
    assert {k: tuple(v.shape) for k, v in sd.items()} == expected


@pytest.mark.parametrize("rounds", [0, 2])
@pytest.mark.parametrize("nms", [nms_torch, nms_cv2])
def test_nms_keeps_only_local_maxima(nms, rounds):
    heat = torch.zeros(1, 20, 20)
    heat[0, 5, 5] = 0.9  # global max: kept
    heat[0, 7, 6] = 0.5  # within radius 4 of (5,5): suppressed
    heat[0, 15, 15] = 0.3  # isolated: kept
    heat[0, 5, 15] = 0.2  # 10 px from (5,5): kept
    heat[0, 18, 12] = 0.25  # within 4 of (15,15) in both axes but smaller: suppressed
    heat[0, 0, 0] = 0.1  # corner, isolated: kept
    out = nms(heat, 4, rounds)  # isolated peaks: the suppression rounds add nothing
    kept = {tuple(p) for p in torch.nonzero(out[0]).tolist()}
    assert kept == {(5, 5), (15, 15), (5, 15), (0, 0)}
    assert out[0, 5, 5] == pytest.approx(0.9) and out[0, 15, 15] == pytest.approx(0.3)


def kept_pixels(out: torch.Tensor) -> set:
    return {tuple(p) for p in torch.nonzero(out[0]).tolist()}


# Reference NMS by hand, radius r: pass 0 keeps the window maxima; each suppression round zeroes
# every pixel within r (Chebyshev) of a kept pixel and adds the window maxima of what is left.


@pytest.mark.parametrize("radius", [2, 4])
@pytest.mark.parametrize("nms", [nms_torch, nms_cv2])
def test_nms_chain_of_near_equal_peaks(nms, radius):
    """Seven peaks r apart on one row, each 1e-4 below its left neighbour. Pass 0 keeps only
    the first (every other one sees a larger left neighbour); round 1 suppresses the second and
    adds the third (its larger neighbour is gone); round 2 adds the fifth. The seventh would
    need a third round: the reference stops after two."""
    heat = torch.zeros(1, 12, 8 + 7 * radius)
    xs = [2 + radius * i for i in range(7)]
    for i, x in enumerate(xs):
        heat[0, 5, x] = 0.5 - 1e-4 * i
    expected = {0: [xs[0]], 1: [xs[0], xs[2]], 2: [xs[0], xs[2], xs[4]], 3: xs[0::2]}
    for rounds, cols in expected.items():
        out = nms(heat, radius, rounds)
        assert kept_pixels(out) == {(5, x) for x in cols}, rounds
        assert out[0, 5, xs[0]] == heat[0, 5, xs[0]]
    # the same chain on a diagonal: Chebyshev distance r between neighbours
    diag = torch.zeros(1, 8 + 7 * radius, 8 + 7 * radius)
    for i, x in enumerate(xs):
        diag[0, x, x] = 0.5 - 1e-4 * i
    assert kept_pixels(nms(diag, radius, 2)) == {(x, x) for x in (xs[0], xs[2], xs[4])}


@pytest.mark.parametrize("nms", [nms_torch, nms_cv2])
def test_nms_plateau_and_its_neighbours(nms):
    """Radius 2. A plateau of two equal pixels: both are window maxima and both kept. A pixel 2
    px right of the plateau is suppressed for good; one 4 px right (0.55) is hidden in pass 0
    by the 0.6 next to it, then found in round 1 once that one is suppressed."""
    heat = torch.zeros(1, 10, 32)
    heat[0, 5, 20] = heat[0, 5, 21] = 0.7
    heat[0, 5, 23] = 0.6
    heat[0, 5, 25] = 0.55
    assert kept_pixels(nms(heat, 2, 0)) == {(5, 20), (5, 21)}
    assert kept_pixels(nms(heat, 2, 2)) == {(5, 20), (5, 21), (5, 25)}
    # a flat 3x3 plateau is kept whole
    flat = torch.zeros(1, 9, 9)
    flat[0, 3:6, 3:6] = 0.4
    assert kept_pixels(nms(flat, 2, 2)) == {(y, x) for y in range(3, 6) for x in range(3, 6)}


@pytest.mark.parametrize("nms", [nms_torch, nms_cv2])
def test_nms_at_image_borders(nms):
    """Radius 2; outside the image counts as -inf (no implicit zeros or mirrored values).
    Top-left: the corner (0.4) lies 2 px from a larger pixel (0.45) and stays suppressed.
    Bottom-right: the corner (0.2) and a pixel 3 px left of it (0.3) are both kept. Right edge:
    0.35 at the last column is hidden by 0.5 two rows up, which is hidden by 0.6 two rows further
    up; round 1 suppresses 0.5 and adds 0.35."""
    heat = torch.zeros(1, 12, 14)
    heat[0, 0, 0], heat[0, 0, 2] = 0.4, 0.45
    heat[0, 11, 13], heat[0, 11, 10] = 0.2, 0.3
    heat[0, 2, 13], heat[0, 4, 13], heat[0, 6, 13] = 0.6, 0.5, 0.35
    assert kept_pixels(nms(heat, 2, 0)) == {(0, 2), (11, 13), (11, 10), (2, 13)}
    assert kept_pixels(nms(heat, 2, 2)) == {(0, 2), (11, 13), (11, 10), (2, 13), (6, 13)}


def test_nms_torch_and_cv2_agree_on_real_heatmaps():
    """A random network's heatmap (dense speckle) and the shipped network's (smooth peaks, where
    the suppression rounds find extra keypoints): identical results."""
    model = seeded_model()
    with torch.no_grad():
        img = image_tensor(data.camera()[:256, :256])
        heats = [model.logits_to_heatmap(model.forward_dense(img)["logits"])]
        trained = load_model("superpoint")
        heats.append(trained.logits_to_heatmap(trained.forward_dense(img)["logits"]))
    for heat in heats:
        for rounds in (0, 2):
            assert torch.equal(nms_torch(heat, 4, rounds), nms_cv2(heat, 4, rounds))
    single, reference = ((nms_torch(heats[1], 4, r) > 0.005).sum() for r in (0, 2))
    assert reference > 1.2 * single


def test_extract_keypoints_threshold_border_topk():
    model = SuperPoint(
        dict(nms_radius=2, keypoint_threshold=0.1, remove_borders=3, max_keypoints=2)
    )
    heat = torch.zeros(1, 16, 24)
    heat[0, 8, 10] = 0.9
    heat[0, 8, 18] = 0.5
    heat[0, 2, 10] = 0.95  # inside the 3 px border: removed
    heat[0, 12, 4] = 0.3  # third best: cut by top-k
    heat[0, 12, 14] = 0.05  # below threshold
    heat[0, 8, 22] = 0.8  # x=22 >= width-border for width 24 -> removed
    kpts, scores = model.extract_keypoints(heat, 16, 24)
    assert kpts[0].tolist() == [[10.0, 8.0], [18.0, 8.0]]
    assert scores[0].tolist() == pytest.approx([0.9, 0.5])


def test_pixel_centre_sampling_at_cell_centres_returns_cell_descriptor():
    torch.manual_seed(1)
    dense = torch.nn.functional.normalize(torch.randn(8, 3, 5), dim=0)  # D=8, Hc=3, Wc=5
    cells = [(0, 0), (2, 4), (1, 3)]  # (row, col)
    kpts = torch.tensor([[8 * c + 3.5, 8 * r + 3.5] for r, c in cells])
    got = sample_descriptors(kpts, dense, convention="pixel_centre")
    want = torch.stack([dense[:, r, c] for r, c in cells])
    assert torch.allclose(got, want, atol=1e-6)
    # halfway between two horizontally adjacent cell centres -> normalised mean of both
    mid = sample_descriptors(
        torch.tensor([[8 * 1 + 7.5, 8 * 2 + 3.5]]), dense, convention="pixel_centre"
    )
    want_mid = torch.nn.functional.normalize(dense[:, 2, 1] + dense[:, 2, 2], dim=0)
    assert torch.allclose(mid[0], want_mid, atol=1e-6)


def one_hot_map(hc: int, wc: int) -> torch.Tensor:
    """[hc*wc, hc, wc]: cell (r, c) holds basis vector r * wc + c, so a sampled descriptor
    (before normalisation) is the bilinear weight of each cell."""
    return torch.eye(hc * wc).reshape(hc * wc, hc, wc)


def weights_vector(hc, wc, entries):
    """L2-normalised [hc*wc] vector with the given {(row, col): weight}."""
    v = torch.zeros(hc * wc)
    for (r, c), w in entries.items():
        v[r * wc + c] = w
    return v / v.norm()


def test_reference_sampling_at_known_positions():
    """Reference convention, W = 5, H = 3 cells (40 x 24 px): x' = (x - 3.5) / 35.5 * 2 - 1 with
    align_corners=True, i.e. cell column u = (x - 3.5) * 4 / 35.5; rows v = (y - 3.5) * 2 / 19.5."""
    hc, wc = 3, 5
    dense = one_hot_map(hc, wc)
    kpts = torch.tensor(
        [
            [3.5, 3.5],  # top-left corner of the grid: exactly cell (0, 0)
            [39.0, 23.0],  # x = W s - 1, y = H s - 1: exactly the last cell (2, 4)
            [21.25, 13.25],  # 3.5 + 2 * 35.5 / 4, 3.5 + 19.5 / 2: exactly cell (1, 2)
            [
                19.5,
                11.5,
            ],  # pixel-centre convention's centre of cell (1, 2): u = 1.80282, v = 0.82051
            [0.0, 3.5],  # left of the first column (u < 0): zeros outside, so only cell (0, 0)
            [39.0, 0.0],  # above the top row at the last column: only cell (0, 4)
        ]
    )
    got = sample_descriptors(kpts, dense)
    u, v = 16 * 4 / 35.5, 8 * 2 / 19.5
    want = torch.stack(
        [
            weights_vector(hc, wc, {(0, 0): 1.0}),
            weights_vector(hc, wc, {(2, 4): 1.0}),
            weights_vector(hc, wc, {(1, 2): 1.0}),
            weights_vector(
                hc,
                wc,
                {
                    (0, 1): (1 - v) * (2 - u),
                    (0, 2): (1 - v) * (u - 1),
                    (1, 1): v * (2 - u),
                    (1, 2): v * (u - 1),
                },
            ),
            weights_vector(hc, wc, {(0, 0): 1.0}),
            weights_vector(hc, wc, {(0, 4): 1.0}),
        ]
    )
    assert torch.allclose(got, want, atol=1e-6)
    # the two conventions differ away from the top-left corner (the reference grid is
    # stretched by (W - 1) / (W - 9/16) cells): same descriptor only at (3.5, 3.5)
    other = sample_descriptors(kpts, dense, convention="pixel_centre")
    assert torch.allclose(other[0], want[0], atol=1e-6)
    assert not torch.allclose(other[2], want[2], atol=1e-2)
    with pytest.raises(ValueError, match="unknown descriptor_sampling"):
        sample_descriptors(kpts, dense, convention="nearest")


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


@pytest.mark.parametrize("sampling", ["reference", "pixel_centre"])
def test_keypoints_follow_a_crop_by_whole_cells(sampling):
    """Shifting the image by a multiple of 8 shifts interior keypoints by the same amount (both
    NMS conventions). Descriptors follow too with pixel-centre sampling; the reference
    convention stretches the cell grid by (W - 1) / (W - 9/16), which depends on the image
    width, so its descriptors move with the crop (the published behaviour, kept as it is)."""
    gray = data.astronaut()[..., 1]
    rounds = 2 if sampling == "reference" else 0
    model = seeded_model(
        keypoint_threshold=0.0,
        nms_radius=4,
        descriptor_sampling=sampling,
        nms_suppression_rounds=rounds,
    )
    dx, dy = 16, 24
    with torch.no_grad():
        full = model(image_tensor(gray[:320, :320]))
        crop = model(image_tensor(gray[dy:320, dx:320]))
    margin = 72  # beyond the conv receptive-field influence of the borders

    def interior(k, s, d, w, h, ox, oy):
        keep = (
            (k[:, 0] + ox >= margin + dx)
            & (k[:, 0] + ox < 320 - margin)
            & (k[:, 1] + oy >= margin + dy)
            & (k[:, 1] + oy < 320 - margin)
        )
        kk = k[keep] + torch.tensor([ox, oy], dtype=k.dtype)
        order = torch.argsort(kk[:, 1] * 1000 + kk[:, 0])
        return kk[order], s[keep][order], d[keep][order]

    k0, s0, d0 = interior(
        full["keypoints"][0], full["scores"][0], full["descriptors"][0], 320, 320, 0, 0
    )
    k1, s1, d1 = interior(
        crop["keypoints"][0], crop["scores"][0], crop["descriptors"][0], 0, 0, dx, dy
    )
    assert len(k0) > 20
    assert torch.equal(k0, k1)
    assert torch.allclose(s0, s1, atol=1e-5)
    if sampling == "pixel_centre":
        assert torch.allclose(d0, d1, atol=1e-4)


def test_batched_equals_single():
    model = seeded_model(max_keypoints=300)
    imgs = torch.cat(
        [image_tensor(data.camera()[:240, :320]), image_tensor(data.astronaut()[:240, :320, 0])]
    )
    with torch.no_grad():
        batch = model(imgs)
        singles = [model(imgs[i : i + 1]) for i in range(2)]
    for i in range(2):
        assert torch.equal(batch["keypoints"][i], singles[i]["keypoints"][0])
        assert torch.allclose(batch["descriptors"][i], singles[i]["descriptors"][0], atol=1e-5)


def test_rgb_input_is_converted_and_bad_channels_rejected():
    model = seeded_model(max_keypoints=50)
    rgb = torch.from_numpy(data.astronaut()[:64, :64].astype(np.float32) / 255).permute(2, 0, 1)[
        None
    ]
    with torch.no_grad():
        out = model(rgb)
    assert out["keypoints"][0].shape[1] == 2
    with pytest.raises(ValueError, match="expects"):
        model(torch.zeros(1, 2, 16, 16))


def test_subpixel_refinement_finds_a_gaussian_peak_exactly():
    """subpixel 'quadratic': a Gaussian peak is a parabola in log, so its vertex is exact; the
    integer NMS maximum moves by the true offset, borders and flat axes stay put."""
    from superglue_ros.models.superpoint import refine_subpixel

    ys, xs = torch.meshgrid(torch.arange(40.0), torch.arange(60.0), indexing="ij")
    heat = torch.zeros(40, 60)
    for cx, cy in ((20.3, 15.7), (41.55, 30.45)):  # offsets within +-0.5 of the integer maximum
        heat += 0.8 * torch.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * 1.2**2))
    heat[0, 10] = 0.9  # a maximum on the image border
    kpts = torch.tensor([[20.0, 16.0], [42.0, 30.0], [10.0, 0.0]])
    refined = refine_subpixel(kpts, heat)
    torch.testing.assert_close(
        refined[:2], torch.tensor([[20.3, 15.7], [41.55, 30.45]]), atol=2e-3, rtol=0
    )
    assert refined[2, 1] == 0.0  # y at the border: unchanged
    assert refined[2, 0] == 10.0  # x: no strict maximum (zeros around)
    assert refine_subpixel(torch.zeros(0, 2), heat).shape == (0, 2)


def test_subpixel_option_moves_keypoints_only_within_half_a_pixel():
    torch.manual_seed(0)
    plain = SuperPoint(dict(max_keypoints=200)).eval()
    refined = SuperPoint(dict(max_keypoints=200, subpixel="quadratic")).eval()
    refined.load_state_dict(plain.state_dict())
    image = torch.rand(1, 1, 96, 128)
    with torch.no_grad():
        a, b = plain(image), refined(image)
    assert torch.equal(a["keypoints"][0], a["keypoints"][0].round())  # published: integer pixels
    offset = b["keypoints"][0] - a["keypoints"][0]
    assert offset.abs().max() <= 0.5 and (offset != 0).any()
    assert torch.equal(a["scores"][0], b["scores"][0])
    with pytest.raises(ValueError, match="unknown subpixel"):
        SuperPoint(dict(subpixel="cubic"))


@pytest.mark.parametrize(
    "conf",
    [
        dict(max_keypoints=512, subpixel="quadratic"),
        dict(max_keypoints=-1, remove_borders=0),
        dict(max_keypoints=100, remove_borders=9, keypoint_threshold=0.02),
        dict(max_keypoints=50, keypoint_threshold=-1.0),  # border pixels pass as zeros
        dict(max_keypoints=300, nms_suppression_rounds=0),
    ],
)
def test_numpy_decoding_equals_the_torch_decoding(conf):
    """The CPU path (nms 'cv2': numpy NMS and selection) returns exactly the torch path's
    keypoints and scores, in the same order, on the shipped network's heatmap of a real image
    whose size is not a multiple of 8 (padded rows and columns are dropped)."""
    trained = load_model("superpoint")
    with torch.no_grad():
        img = trained.pad_to_cell(image_tensor(data.camera()[:203, :301]))
        heat = trained.logits_to_heatmap(trained.forward_dense(img)["logits"])
    results = []
    for nms in ("torch", "cv2"):
        model = SuperPoint(dict(conf, nms=nms))
        results.append(model.extract_keypoints(heat, 203, 301))
    (k_torch, s_torch), (k_np, s_np) = results
    assert k_np[0].shape[0] > 20
    assert torch.equal(k_torch[0], k_np[0])
    assert torch.equal(s_torch[0], s_np[0])
    assert k_np[0].dtype == k_torch[0].dtype and s_np[0].dtype == s_torch[0].dtype
