"""DebugView: the node's debug drawing without ROS: it keeps small copies of live keyframes,
forgets evicted ones, draws a correspondence on them and falls back to the cache's thumbnail."""

from types import SimpleNamespace

import numpy as np

from superglue_ros.visualization import GAP_PX, DebugView, shrink


def _corr(reference_id, n=3):
    return SimpleNamespace(
        kind="odometry",
        query_is_keyframe=False,
        query_id=7,
        reference_id=reference_id,
        scores=np.ones(n, np.float32),
        inliers=np.array([True] * (n - 1) + [False]),
        query_points=np.array([[100.0, 50.0]] * n),
        reference_points=np.array([[200.0, 100.0]] * n),
    )


def test_shrink_never_enlarges():
    image = np.zeros((480, 640), np.uint8)
    assert shrink(image, 0.5).shape == (240, 320)
    assert shrink(image, 2.0) is image


def test_debug_view_keeps_live_keyframes_and_draws():
    view = DebugView()
    frame = np.full((480, 640), 90, np.uint8)
    small, scale = view.add_frame(frame, 0, [0], width=320)
    assert small.shape == (240, 320) and scale == 0.5
    assert view.keyframe_image(0)[1] == 0.5
    view.add_frame(frame, 1, [0, 1], width=320)
    view.add_frame(frame, None, [1], width=320)  # keyframe 0 evicted from the cache
    assert set(view.images) == {1}
    assert view.keyframe_image(0) == (None, 1.0)
    cache = SimpleNamespace(get=lambda kid: None)
    canvas = view.draw(_corr(1), small, scale, cache)
    assert canvas.shape == (240, 320 + GAP_PX + 320, 3) and canvas.dtype == np.uint8
    assert view.draw(_corr(0), small, scale, cache) is None  # neither kept nor cached


def test_debug_view_falls_back_to_the_cache_thumbnail():
    view = DebugView()
    thumb = np.zeros((60, 80, 3), np.uint8)
    keyframe = SimpleNamespace(thumbnail=thumb, image_size=(640, 480))
    cache = SimpleNamespace(get=lambda kid: keyframe if kid == 5 else None)
    query = np.zeros((240, 320), np.uint8)
    canvas = view.draw(_corr(5), query, 0.5, cache)
    assert canvas.shape == (240, 320 + GAP_PX + 80, 3)
    view.clear()
    assert view.images == {}
