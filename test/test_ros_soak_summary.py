"""The soak benchmark's memory figures (superglue_ros.ros.soak.summarize) on constructed
samples: growth after the keyframe cache's bound, by single samples and by minute medians."""

from superglue_ros.ros.soak import summarize

MIB = 2**20


def samples(rss_mib_of_t, seconds=300, full_at=30):
    return [
        dict(t_s=float(t), rss_bytes=int(rss_mib_of_t(t) * MIB), cache_full=t >= full_at)
        for t in range(5, seconds + 1, 5)
    ]


def test_an_oscillating_flat_heap_has_no_median_growth():
    # a trim every 10 s: 700 and 730 MiB in turn; the bound sample lands in a trough
    s = samples(lambda t: 700 if (t // 5) % 2 == 0 else 730, seconds=295)
    out = summarize(s, [], [], 0.0, {})
    assert out["cache_full_at_s"] == 30.0
    assert out["rss_growth_after_cache_full_bytes"] == 30 * MIB
    assert out["rss_growth_median_bytes"] == 0


def test_a_steady_leak_shows_in_both_figures():
    s = samples(lambda t: 700 + 0.1 * t)  # 6 MiB per minute
    out = summarize(s, [], [], 0.0, {})
    assert out["rss_growth_after_cache_full_bytes"] == int((730 - 703) * MIB)
    # medians of 30-85 s (57.5 s) and 245-300 s (272.5 s): 21.5 MiB apart
    assert abs(out["rss_growth_median_bytes"] - 21.5 * MIB) < 0.01 * MIB


def test_a_short_run_has_no_median_growth():
    out = summarize(samples(lambda t: 700, seconds=120), [], [], 0.0, {})
    assert out["rss_growth_median_bytes"] is None
