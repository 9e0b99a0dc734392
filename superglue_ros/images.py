"""Images in the core: camera bytes -> arrays, dtype/range handling and input checks, no ROS.

Raw images arrive as bytes plus a few header fields (encoding, size, row stride), the way
sensor_msgs/Image and rosbag readers give them; compressed ones as a PNG/JPEG payload.
Everything here works on those plain values, so the node (``ros/conversions.py`` unpacks the
messages), ``superglue-offline`` (rosbags) and the benchmark share one decoder.

Output images are what ``Extractor.extract`` takes: uint8 HxW gray or HxWx3 BGR, a fresh
C-contiguous copy that owns its memory (safe to keep after the message is released, and after
a caller reuses its buffer). The input is read through a zero-copy view of the message's data;
the one copy left costs 0.04 ms for a VGA mono8 frame and 0.1 ms for bgr8 (measured on a
2-core Xeon), so a view is not worth giving up ownership. Channel reordering runs in OpenCV
(rgb8 VGA: 0.2 ms instead of 3.6 ms for numpy's reversed-stride copy).

16 bit -> 8 bit at full scale is one function, ``uint16_to_uint8``: it rounds to the nearest
8-bit level, round(v / 257), so 0 -> 0, 65535 -> 255, an 8-bit image stored as v * 257
comes back exactly, and the error is at most half a level with no bias (flooring would
darken every image by half a level on average and map 65534 to 254).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

DEFAULT_MAX_PIXELS = 4096 * 4096

# How an image is brought to the working size (W, H) the extractor sees; all keep the original
# for geometry (features are mapped back to original pixels).
#   'pixels': keep the aspect ratio, W*H pixels (rounded), never upscale. The extractor's cost
#             follows the pixel count, so every camera costs what VGA costs: a 1241x376 KITTI
#             frame is seen at 1007x305 instead of 640x194, which lifted the learned pair's
#             pose AUC@5 on KITTI 07 from 71.8 to 84.8 (README, "Validation on real motion").
#   'fit':    keep the aspect ratio inside W x H, never upscale (wide frames lose height).
#   'stretch': exactly W x H (sx != sy).
RESIZE_MODES = ("pixels", "fit", "stretch")


def working_size(width: int, height: int, target: tuple[int, int], mode: str) -> tuple[int, int]:
    """(w, h) the extractor sees for a width x height image; target (W, H), 0 in either = keep
    the image; mode one of RESIZE_MODES."""
    target_width, target_height = int(target[0]), int(target[1])
    if target_width <= 0 or target_height <= 0:
        return width, height
    if mode == "stretch":
        return target_width, target_height
    if mode == "pixels":
        scale = min(((target_width * target_height) / (width * height)) ** 0.5, 1.0)
    elif mode == "fit":
        scale = min(target_width / width, target_height / height, 1.0)
    else:
        raise ValueError(f"resize mode must be one of {list(RESIZE_MODES)}, got {mode!r}")
    return max(1, round(width * scale)), max(1, round(height * scale))


# encoding -> (numpy dtype, channels, conversion to the output layout)
_LAYOUTS = {
    "mono8": ("u1", 1, "gray"),
    "8UC1": ("u1", 1, "gray"),
    "mono16": ("u2", 1, "gray16"),
    "16UC1": ("u2", 1, "gray16"),
    "bgr8": ("u1", 3, "bgr"),
    "8UC3": ("u1", 3, "bgr"),
    "rgb8": ("u1", 3, "rgb"),
    "bgra8": ("u1", 4, "bgra"),
    "8UC4": ("u1", 4, "bgra"),
    "rgba8": ("u1", 4, "rgba"),
    "32FC1": ("f4", 1, "float"),
}
SUPPORTED_ENCODINGS = tuple(_LAYOUTS)
MONO16_SCALINGS = ("range", "full")


class ImageConversionError(ValueError):
    """A camera message that cannot become an image; the message says why."""


def _check_size(height: int, width: int, max_pixels: int) -> None:
    if height <= 0 or width <= 0:
        raise ImageConversionError(f"zero-size image ({width}x{height})")
    if height * width > max_pixels:
        raise ImageConversionError(
            f"image too large: {width}x{height} = {width * height} pixels > "
            f"max_image_pixels {max_pixels}"
        )


def _scale_to_uint8(values: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Linearly map the [min, max] of the valid values to [0, 255]; invalid -> 0.

    Used for 16-bit and float images, whose useful range is camera specific (12-bit
    sensors in mono16, depth in metres in 32FC1): a fixed scale would leave them dark.
    """
    vals = values[valid] if valid is not None else values
    out = np.zeros(values.shape, np.uint8)
    if vals.size == 0:
        return out
    lo, hi = float(vals.min()), float(vals.max())
    if hi <= lo:
        scaled = np.zeros(values.shape, np.float64)
    else:
        scaled = (values.astype(np.float64) - lo) * (255.0 / (hi - lo))
    scaled = np.rint(np.clip(scaled, 0, 255))
    if valid is None:
        out[...] = scaled
    else:
        out[valid] = scaled[valid]
    return out


def image_to_array(
    encoding: str,
    height: int,
    width: int,
    step: int,
    data,
    is_bigendian: bool = False,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    mono16_scaling: str = "range",
    warn: Callable[[str], None] | None = None,
) -> np.ndarray:
    """Decode raw image bytes (as in sensor_msgs/Image) to uint8 gray [H,W] or BGR [H,W,3].

    step is the row stride in bytes (rows may be padded). mono16 is scaled to 8 bit by the
    image's own range ('range') or by 1/257 ('full'). 32FC1 is range-scaled over its finite
    values; NaN/inf pixels become 0 and are reported through `warn`.
    Raises ImageConversionError naming the problem for anything it cannot convert.
    """
    layout = _LAYOUTS.get(encoding)
    if layout is None:
        raise ImageConversionError(
            f"unsupported encoding '{encoding}' (supported: {', '.join(SUPPORTED_ENCODINGS)})"
        )
    dtype_code, channels, kind = layout
    height, width, step = int(height), int(width), int(step)
    _check_size(height, width, max_pixels)
    dtype = np.dtype(dtype_code).newbyteorder(">" if is_bigendian else "<")
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageConversionError(
            f"step {step} < width*channels*bytes {row_bytes} for {encoding} {width}x{height}"
        )
    if step % dtype.itemsize:
        raise ImageConversionError(
            f"step {step} is not a multiple of the {dtype.itemsize}-byte pixel element of {encoding}"
        )
    buf = np.frombuffer(data, np.uint8)
    # Standard size is step*height; also accept a last row without its padding.
    if buf.size != step * height and buf.size != step * (height - 1) + row_bytes:
        raise ImageConversionError(
            f"data size {buf.size} does not match step*height = {step}*{height} = {step * height} "
            f"({encoding} {width}x{height})"
        )
    rows = np.lib.stride_tricks.as_strided(buf, shape=(height, row_bytes), strides=(step, 1))
    pixels = np.ascontiguousarray(rows).view(dtype).reshape(height, width, channels)

    if kind == "gray":
        return pixels[:, :, 0].copy()
    if kind == "bgr":
        return pixels.copy()
    if kind in ("rgb", "bgra", "rgba"):
        code = {"rgb": cv2.COLOR_RGB2BGR, "bgra": cv2.COLOR_BGRA2BGR, "rgba": cv2.COLOR_RGBA2BGR}[
            kind
        ]
        return cv2.cvtColor(pixels, code)
    if kind == "gray16":
        return mono16_to_uint8(pixels[:, :, 0], mono16_scaling)
    # float
    values = pixels[:, :, 0].astype(np.float32)
    finite = np.isfinite(values)
    n_bad = int(values.size - np.count_nonzero(finite))
    if n_bad == values.size:
        raise ImageConversionError(
            f"{encoding} image {width}x{height} has no finite pixel (all NaN/inf)"
        )
    if n_bad and warn is not None:
        warn(f"{encoding} image {width}x{height}: {n_bad} NaN/inf pixels set to 0")
    return _scale_to_uint8(values, finite if n_bad else None)


def uint16_to_uint8(values: np.ndarray) -> np.ndarray:
    """uint16 -> uint8 at full scale: round(v / 257), exactly, in integers (no ties occur:
    257 is odd), so an 8-bit image stored as v * 257 comes back unchanged."""
    return ((np.asarray(values, np.uint32) + 128) // 257).astype(np.uint8)


def mono16_to_uint8(values: np.ndarray, scaling: str = "range") -> np.ndarray:
    """uint16 [H,W] -> uint8 [H,W]: 'range' stretches min..max, 'full' is uint16_to_uint8."""
    if scaling == "full":
        return uint16_to_uint8(values)
    if scaling == "range":
        return _scale_to_uint8(values)
    raise ImageConversionError(f"unknown mono16 scaling '{scaling}' (use one of {MONO16_SCALINGS})")


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}  # IHDR colour type -> decoded channels
# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic); C4, C8 and CC
# share the range but are DHT, JPG and DAC
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM, RST0-7: markers without a length


@dataclass(frozen=True)
class CompressedHeader:
    """What a PNG/JPEG header promises, read without decoding anything."""

    format: str  # 'png' | 'jpeg'
    width: int
    height: int
    channels: int  # as decoded (PNG palette -> 3)
    bit_depth: int  # bits per channel sample


def _png_header(buf: memoryview) -> CompressedHeader:
    """PNG: the IHDR chunk must come first, right after the 8-byte signature (PNG spec 5.2)."""
    if len(buf) < 33 or bytes(buf[12:16]) != b"IHDR" or int.from_bytes(buf[8:12], "big") != 13:
        raise ImageConversionError(f"PNG without a valid IHDR chunk ({len(buf)} bytes)")
    width, height = int.from_bytes(buf[16:20], "big"), int.from_bytes(buf[20:24], "big")
    depth, colour = buf[24], buf[25]
    if colour not in _PNG_CHANNELS or depth not in (1, 2, 4, 8, 16):
        raise ImageConversionError(f"PNG with invalid colour type {colour} / bit depth {depth}")
    return CompressedHeader("png", width, height, _PNG_CHANNELS[colour], depth)


def _jpeg_header(buf: memoryview) -> CompressedHeader:
    """JPEG: walk the marker segments after SOI up to the first SOFn (ITU-T T.81, B.1-B.2)."""
    pos = 2
    while pos + 4 <= len(buf):
        if buf[pos] != 0xFF:
            raise ImageConversionError(
                f"JPEG marker expected at byte {pos}, found 0x{buf[pos]:02X}"
            )
        marker = buf[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # EOI or start of scan before any frame header
            break
        length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
        if length < 2:
            raise ImageConversionError(f"JPEG segment 0x{marker:02X} with length {length}")
        if marker in _JPEG_SOF:
            if length < 8 or pos + 10 > len(buf):
                raise ImageConversionError("JPEG frame header truncated")
            depth = buf[pos + 4]
            height = int.from_bytes(buf[pos + 5 : pos + 7], "big")
            width = int.from_bytes(buf[pos + 7 : pos + 9], "big")
            if height == 0:
                raise ImageConversionError(
                    "JPEG whose height is given later (DNL marker): unsupported"
                )
            return CompressedHeader("jpeg", width, height, buf[pos + 9], depth)
        pos += 2 + length
    raise ImageConversionError(f"JPEG without a frame header (SOF marker) ({len(buf)} bytes)")


def compressed_header(data) -> CompressedHeader:
    """Size and channels of a PNG or JPEG payload from its header alone (no decoding, so a
    "decompression bomb" costs nothing); ImageConversionError for anything else.
    data: bytes-like (bytes, array.array, numpy uint8), read in place."""
    buf = memoryview(data).cast("B")
    if bytes(buf[:8]) == PNG_SIGNATURE:
        return _png_header(buf)
    if bytes(buf[:2]) == b"\xff\xd8":
        return _jpeg_header(buf)
    raise ImageConversionError(
        f"compressed payload is neither PNG nor JPEG (starts with {bytes(buf[:8])!r})"
    )


def check_compressed(fmt: str, data, max_pixels: int = DEFAULT_MAX_PIXELS) -> CompressedHeader:
    """Everything about a compressed payload that can be checked before decoding it: not
    empty, not compressedDepth, a PNG/JPEG header within ``max_pixels``."""
    if len(data) == 0:
        raise ImageConversionError(f"empty compressed image (format '{fmt}')")
    if "compresseddepth" in fmt.lower().replace(" ", ""):
        raise ImageConversionError(f"unsupported compressed format '{fmt}' (compressedDepth)")
    try:
        header = compressed_header(data)
    except ImageConversionError as error:
        raise ImageConversionError(
            f"could not decode compressed image (format '{fmt}', {len(data)} bytes): {error}"
        ) from None
    try:
        _check_size(header.height, header.width, max_pixels)
    except ImageConversionError as error:
        raise ImageConversionError(f"{header.format} header: {error} (not decoded)") from None
    return header


def compressed_to_array(
    fmt: str, data, *, max_pixels: int = DEFAULT_MAX_PIXELS, mono16_scaling: str = "range"
) -> np.ndarray:
    """Decode a jpeg/png payload (as in sensor_msgs/CompressedImage) to uint8 gray or BGR.
    The header is checked against ``max_pixels`` first (``check_compressed``), so decoding
    never allocates more than max_pixels x channels x 2 bytes."""
    header = check_compressed(fmt, data, max_pixels)
    buf = np.frombuffer(data, np.uint8)
    image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageConversionError(
            f"could not decode compressed image (format '{fmt}', {buf.size} bytes)"
        )
    if (image.shape[1], image.shape[0]) != (header.width, header.height):
        raise ImageConversionError(
            f"decoded {header.format} is {image.shape[1]}x{image.shape[0]}, "
            f"its header says {header.width}x{header.height}"
        )
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    if image.dtype == np.uint16:
        if image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        image = mono16_to_uint8(image, mono16_scaling)
    if image.dtype != np.uint8:
        raise ImageConversionError(
            f"unsupported compressed pixel type {image.dtype} (format '{fmt}')"
        )
    return np.ascontiguousarray(image)


# ------------------------------------------------------------------------------------------
# arrays given to the front-end and the extractors
# ------------------------------------------------------------------------------------------


def to_gray(image: np.ndarray) -> np.ndarray:
    """uint8 HxW gray from uint8 HxW gray, HxWx1, HxWx3 BGR or HxWx4 BGRA (what extractors
    take; other dtypes are refused here, ``as_uint8_gray`` converts them first)."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 3 and image.shape[2] in (3, 4):
        code = cv2.COLOR_BGR2GRAY if image.shape[2] == 3 else cv2.COLOR_BGRA2GRAY
        image = cv2.cvtColor(np.ascontiguousarray(image), code)
    if image.ndim != 2:
        raise ImageConversionError(
            f"image must be HxW, HxWx3 (BGR) or HxWx4 (BGRA), got shape {image.shape}"
        )
    if image.dtype != np.uint8:
        raise ImageConversionError(f"expected a uint8 image, got dtype {image.dtype}")
    return image


def as_uint8_gray(image, min_side: int = 1, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Check a caller's array and make it uint8 HxW gray (C-contiguous) for the front-end.

    image: HxW, HxWx1, HxWx3 BGR or HxWx4 BGRA; uint8, uint16 (``uint16_to_uint8``) or float
    in [0, 1] (rounded to the nearest level). ImageConversionError says what is wrong: not an
    array, shape, empty, smaller than min_side, more than max_pixels, NaN/inf, range, dtype.
    """
    if not isinstance(image, np.ndarray):
        raise ImageConversionError(f"image must be a numpy array, got {type(image).__name__}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise ImageConversionError(
            f"image must be HxW, HxWx3 (BGR) or HxWx4 (BGRA), got shape {image.shape}"
        )
    h, w = image.shape[:2]
    if h == 0 or w == 0:
        raise ImageConversionError(f"empty image ({w}x{h})")
    if min(h, w) < min_side:
        raise ImageConversionError(f"image {w}x{h} is smaller than min_image_side={min_side}")
    if h * w > max_pixels:
        raise ImageConversionError(f"image {w}x{h} exceeds max_image_pixels={max_pixels}")
    if image.dtype == np.uint16:
        image = uint16_to_uint8(image)
    elif image.dtype in (np.float32, np.float64):
        if not np.all(np.isfinite(image)):
            raise ImageConversionError(f"float image {w}x{h} contains NaN or inf")
        if image.min() < 0 or image.max() > 1:
            raise ImageConversionError(
                f"float image {w}x{h} must be in [0, 1], got "
                f"[{float(image.min())}, {float(image.max())}]"
            )
        image = np.rint(image * 255.0).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageConversionError(
            f"unsupported image dtype {image.dtype} (expected uint8, uint16 or float in [0, 1])"
        )
    return np.ascontiguousarray(to_gray(image))
