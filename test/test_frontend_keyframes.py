"""Keyframe cache bounds, eviction order, pinning and evicted-vs-unknown; keyframe policy;
global descriptor retrieval on real photos."""

import threading

import numpy as np
import pytest

from superglue_ros.feature_types import Features
from superglue_ros.frontend.global_descriptor import GlobalDescriptor, rank_by_similarity
from superglue_ros.frontend.keyframes import Keyframe, KeyframeCache
from superglue_ros.frontend.policy import KeyframePolicy
from superglue_ros.frontend.synthetic import make_sequence


def make_kf(kid, n=100, dim=256):
    rng = np.random.default_rng(kid)
    feats = Features(
        rng.uniform(0, 600, (n, 2)),
        rng.uniform(0, 1, n),
        rng.standard_normal((n, dim)).astype(np.float32),
        (640, 480),
    )
    return Keyframe(
        id=kid,
        stamp_ns=kid * 100,
        frame_id="cam",
        image_size=(640, 480),
        features=feats,
        global_descriptor=np.ones(64, np.float32) / 8,
        thumbnail=np.zeros((12, 16), np.uint8),
    )


def test_keyframe_nbytes_counts_features_descriptor_thumbnail():
    kf = make_kf(0, n=100)
    expected = 100 * 2 * 4 + 100 * 4 + 100 * 256 * 4 + 64 * 4 + 12 * 16
    assert kf.nbytes() == expected


def test_cache_bounded_by_count_evicts_oldest_first():
    cache = KeyframeCache(max_keyframes=3, max_bytes=10**9)
    evicted = []
    for i in range(6):
        evicted += cache.add(make_kf(i))
    assert cache.ids() == [3, 4, 5]
    assert evicted == [0, 1, 2]
    assert len(cache) == 3 and cache.latest().id == 5
    assert cache.nbytes() == sum(make_kf(i).nbytes() for i in (3, 4, 5))


def test_cache_bounded_by_bytes():
    size = make_kf(0).nbytes()
    cache = KeyframeCache(max_keyframes=100, max_bytes=int(2.5 * size))
    for i in range(5):
        cache.add(make_kf(i))
    assert cache.ids() == [3, 4]
    assert cache.nbytes() <= 2.5 * size
    # A single keyframe larger than the whole budget is still kept (VO needs a reference).
    tiny = KeyframeCache(max_keyframes=10, max_bytes=10)
    assert tiny.add(make_kf(0)) == []
    assert tiny.add(make_kf(1)) == [0]
    assert tiny.ids() == [1]


def test_new_bounds_evict_at_once_but_not_pinned_or_newest():
    cache = KeyframeCache(max_keyframes=10, max_bytes=10**9)
    for i in range(5):
        cache.add(make_kf(i))
    cache.pin([1])
    assert cache.set_bounds(2, 10**9) == [0, 2, 3]  # 1 pinned, 4 the newest
    assert cache.ids() == [1, 4] and cache.was_evicted(2)
    assert cache.unpin([1]) == []  # 2 keyframes: within the new bound
    assert cache.set_bounds(1, 10**9) == [1]
    assert cache.set_bounds(1, 1) == [] and cache.ids() == [4]  # the newest always stays
    with pytest.raises(ValueError):
        cache.set_bounds(0, 10)


def test_pinned_keyframes_survive_eviction_and_go_when_released():
    cache = KeyframeCache(max_keyframes=2, max_bytes=10**9)
    cache.add(make_kf(0))
    cache.add(make_kf(1))
    with cache.pinned([0, 99]) as present:
        assert present == [0]  # unknown ids are not pinned
        assert cache.add(make_kf(2)) == [1]  # oldest unpinned goes
        assert cache.add(make_kf(3)) == [2]
        assert cache.ids() == [0, 3]
        with cache.pinned([0]):  # pins are counted
            pass
        assert cache.is_pinned(0)
    assert not cache.is_pinned(0)
    assert cache.ids() == [0, 3]  # within bounds: nothing to evict
    cache.add(make_kf(4))
    assert cache.ids() == [3, 4]


def test_pinned_overflow_is_evicted_on_unpin():
    cache = KeyframeCache(max_keyframes=2, max_bytes=10**9)
    for i in range(2):
        cache.add(make_kf(i))
    ids = cache.pin([0, 1])
    cache.add(make_kf(2))
    assert cache.ids() == [0, 1, 2]  # over the bound while pinned
    assert cache.unpin(ids) == [0]
    assert cache.ids() == [1, 2]


def test_evicted_vs_unknown():
    cache = KeyframeCache(max_keyframes=2, max_bytes=10**9, max_remembered_evictions=3)
    for i in range(8):
        cache.add(make_kf(i))
    assert cache.get(0) is None and cache.get(7) is not None
    for kid in range(6):
        assert cache.was_evicted(kid), kid  # 0..2 were trimmed from the set but are below its floor
    for kid in (6, 7, 8, 1000, -1):
        assert not cache.was_evicted(kid), kid
    assert cache.num_evicted == 6


def test_ids_must_increase_and_older_than():
    cache = KeyframeCache(max_keyframes=10, max_bytes=10**9)
    for i in range(6):
        cache.add(make_kf(i))
    with pytest.raises(ValueError, match="increase"):
        cache.add(make_kf(3))
    assert [k.id for k in cache.older_than(3)] == [0, 1, 2]
    assert [k.id for k in cache.older_than(2, ref_id=3)] == [0, 1]
    with pytest.raises(ValueError):
        KeyframeCache(0, 10)


def test_cache_concurrent_add_and_pin():
    cache = KeyframeCache(max_keyframes=5, max_bytes=10**9)
    cache.add(make_kf(0))
    errors = []

    def pinner():
        try:
            for _ in range(300):
                with cache.pinned([0]):
                    assert cache.get(0) is not None
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    t = threading.Thread(target=pinner)
    t.start()
    for i in range(1, 200):
        cache.add(make_kf(i, n=4))
    t.join()
    assert not errors
    assert len(cache) <= 6


@pytest.mark.parametrize(
    "args, expected",
    [
        ((None, 0.0, 0, 0), (True, "first")),
        ((1, 0.1, 0, 500), (False, "min_gap")),  # lost, but too soon after the last keyframe
        ((2, 0.2, 10, 500), (True, "min_inliers")),
        ((2, 0.2, 100, 500), (True, "inlier_ratio")),  # 100 < 0.25 * 500
        ((2, 0.2, 200, 500), (False, "tracking")),
        ((30, 0.2, 200, 500), (True, "max_frames")),
        ((5, 2.5, 200, 500), (True, "max_interval")),
    ],
)
def test_policy_cases(args, expected):
    d = KeyframePolicy().decide(*args)
    assert (d.is_keyframe, d.reason) == expected


def test_policy_disabled_limits_and_validation():
    p = KeyframePolicy(dict(max_frames=0, max_interval_s=0, min_inliers=0, min_inlier_ratio=0))
    assert not p.decide(10_000, 1e6, 0, 500).is_keyframe
    for bad in (
        dict(min_gap_frames=0),
        dict(min_inlier_ratio=1.5),
        dict(nope=1),
        dict(min_inliers=-1),
    ):
        with pytest.raises(ValueError):
            KeyframePolicy(bad)


def test_global_descriptor_ranks_the_same_place_first():
    """Real photos: the revisit of the start must rank the start keyframe above far-away views."""
    from superglue_ros.features import build_extractor

    seq = make_sequence(num_frames=80)
    gd = GlobalDescriptor()
    for name in ("orb", "sift"):
        ext = build_extractor(name)
        descs = {i: gd(ext.extract(seq.frame(i))) for i in (0, 20, 35, 50, 70)}
        for d in descs.values():
            assert d.shape == (gd.dim,) and abs(np.linalg.norm(d) - 1) < 1e-5
        ranked = rank_by_similarity(descs[70], [descs[i] for i in (20, 35, 50, 0)], top_k=4)
        assert ranked[0][0] == 3, (name, ranked)  # index of frame 0
    thumb = GlobalDescriptor(dict(method="thumbnail"))
    t0, t1 = thumb.thumbnail(seq.frame(0)), thumb.thumbnail(seq.frame(70))
    assert float(t0 @ t1) > 0.9 and float(t0 @ thumb.thumbnail(seq.frame(35))) < 0.5
    with pytest.raises(ValueError):
        GlobalDescriptor(dict(method="vlad"))


def test_global_descriptor_is_deterministic_across_instances():
    rng = np.random.default_rng(0)
    desc = rng.standard_normal((50, 256)).astype(np.float32)
    f = Features(np.zeros((50, 2)), np.ones(50), desc, (10, 10))
    a, b = GlobalDescriptor()(f), GlobalDescriptor()(f)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, GlobalDescriptor(dict(seed=1))(f))
    orb = Features(
        np.zeros((5, 2)), np.ones(5), rng.integers(0, 256, (5, 32), dtype=np.uint8), (10, 10)
    )
    assert GlobalDescriptor()(orb).shape == (GlobalDescriptor().dim,)
    empty = Features.empty((10, 10))
    assert not np.any(GlobalDescriptor()(empty))
