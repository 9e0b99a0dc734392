"""Side-by-side drawing of matches (superglue-match --viz, the node's debug image)."""

from __future__ import annotations

import cv2
import numpy as np

GREEN = (0, 200, 0)
RED = (0, 0, 255)
GAP_PX = 10


def _to_bgr(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"draw_matches expects uint8 images, got {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 1:
        return cv2.cvtColor(image[..., 0], cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image.copy()


def draw_matches(
    image0, image1, kpts0, kpts1, inliers=None, text=None, radius=2, thickness=1
) -> np.ndarray:
    """uint8 BGR canvas [max(h0,h1), w0+GAP+w1, 3] with image0 left, image1 right.

    kpts0, kpts1: matched points [K,2] (row k of each is one match), pixels of each image.
    inliers: bool [K] (green = inlier, red = outlier); None draws every match green.
    text: optional lines (str or list of str) written in the top-left corner.
    """
    image0, image1 = _to_bgr(image0), _to_bgr(image1)
    kpts0 = np.asarray(kpts0, np.float64).reshape(-1, 2)
    kpts1 = np.asarray(kpts1, np.float64).reshape(-1, 2)
    if len(kpts0) != len(kpts1):
        raise ValueError(
            f"draw_matches: {len(kpts0)} points in image0 but {len(kpts1)} in "
            "image1 (pass the matched pairs)"
        )
    inliers = (
        np.ones(len(kpts0), bool) if inliers is None else np.asarray(inliers, bool).reshape(-1)
    )
    if len(inliers) != len(kpts0):
        raise ValueError(f"draw_matches: {len(inliers)} inlier flags for {len(kpts0)} matches")
    h0, w0 = image0.shape[:2]
    h1, w1 = image1.shape[:2]
    canvas = np.full((max(h0, h1), w0 + GAP_PX + w1, 3), 255, np.uint8)
    canvas[:h0, :w0] = image0
    canvas[:h1, w0 + GAP_PX :] = image1
    offset = np.array([w0 + GAP_PX, 0.0])
    order = np.argsort(inliers, kind="stable")  # outliers first, inliers drawn on top
    for k in order:
        color = GREEN if inliers[k] else RED
        p0 = tuple(int(round(v)) for v in kpts0[k])
        p1 = tuple(int(round(v)) for v in kpts1[k] + offset)
        cv2.line(canvas, p0, p1, color, thickness, cv2.LINE_AA)
        cv2.circle(canvas, p0, radius, color, -1, cv2.LINE_AA)
        cv2.circle(canvas, p1, radius, color, -1, cv2.LINE_AA)
    if text:
        lines = [text] if isinstance(text, str) else list(text)
        for i, line in enumerate(lines):
            origin = (8, 20 + 20 * i)
            cv2.putText(
                canvas, line, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA
            )
            cv2.putText(
                canvas, line, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA
            )
    return canvas


def shrink(image: np.ndarray, scale: float) -> np.ndarray:
    """``image`` resized by ``scale`` (<= 1; larger scales return it unchanged)."""
    if scale >= 1.0:
        return image
    h, w = image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


class DebugView:
    """The node's debug image of one camera: a correspondence drawn on small copies of its query
    and reference images.

    Why here: the FrontEnd keeps only a thumbnail per keyframe (or none), so the view keeps its
    own small copy of each live keyframe's image at the debug width; it knows nothing of ROS.
    """

    def __init__(self):
        self.images: dict[int, tuple[np.ndarray, float]] = {}  # keyframe id -> (image, scale)

    def clear(self) -> None:
        self.images.clear()

    def add_frame(self, image: np.ndarray, keyframe_id: int | None, live_ids, width: int):
        """Small copy of a processed frame (kept when it became keyframe ``keyframe_id``);
        forgets keyframes no longer in ``live_ids``. Returns (small image, scale)."""
        scale = min(1.0, width / image.shape[1])
        small = shrink(image, scale)
        if keyframe_id is not None:
            self.images[keyframe_id] = (small, scale)
        live = set(live_ids)
        for kid in [k for k in self.images if k not in live]:
            del self.images[kid]
        return small, scale

    def keyframe_image(self, keyframe_id: int):
        """(small image, scale) of a kept keyframe, or (None, 1.0)."""
        return self.images.get(keyframe_id, (None, 1.0))

    def draw(self, corr, query_image, query_scale: float, cache) -> np.ndarray | None:
        """BGR canvas of ``corr`` (a frontend Correspondence; points in original pixels) with its
        reference keyframe's image from this view, else its thumbnail in ``cache``; None when
        neither exists."""
        ref_image, ref_scale = self.keyframe_image(corr.reference_id)
        if ref_image is None:
            ref = cache.get(corr.reference_id)
            if ref is None or ref.thumbnail is None:
                return None
            ref_image, ref_scale = ref.thumbnail, ref.thumbnail.shape[1] / ref.image_size[0]
        query = "keyframe" if corr.query_is_keyframe else "frame"
        text = [
            f"{corr.kind} {query} {corr.query_id} vs keyframe {corr.reference_id}",
            f"{len(corr.scores)} matches, {int(np.count_nonzero(corr.inliers))} inliers",
        ]
        return draw_matches(
            query_image,
            ref_image,
            np.asarray(corr.query_points) * query_scale,
            np.asarray(corr.reference_points) * ref_scale,
            corr.inliers if len(corr.inliers) else None,
            text=text,
        )
