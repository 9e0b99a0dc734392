"""Camera bytes and caller arrays -> uint8 images (superglue_ros.images, camera fields ->
CameraModel): every supported encoding with exact pixel values, and every
malformed input rejected with an error that names the problem."""

import cv2
import numpy as np
import pytest

from superglue_ros.camera import camera_matrix, camera_model
from superglue_ros.images import (
    ImageConversionError,
    as_uint8_gray,
    compressed_to_array,
    image_to_array,
    to_gray,
    uint16_to_uint8,
)

RNG = np.random.default_rng(0)
H, W = 5, 7
BGR = RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)
GRAY = RNG.integers(0, 256, (H, W), dtype=np.uint8)


def padded(rows: np.ndarray, pad: int) -> tuple[int, bytes]:
    """Row-major bytes of `rows` [H, row_bytes] with `pad` junk bytes after each row."""
    rows = rows.reshape(rows.shape[0], -1).view(np.uint8)
    junk = np.full((rows.shape[0], pad), 0xAB, np.uint8)
    return rows.shape[1] + pad, np.hstack([rows, junk]).tobytes()


@pytest.mark.parametrize("pad", [0, 3])
@pytest.mark.parametrize(
    "encoding,source,expected",
    [
        ("mono8", GRAY, GRAY),
        ("8UC1", GRAY, GRAY),
        ("bgr8", BGR, BGR),
        ("8UC3", BGR, BGR),
        ("rgb8", BGR[:, :, ::-1], BGR),
        ("bgra8", np.dstack([BGR, np.full((H, W), 9, np.uint8)]), BGR),
        ("rgba8", np.dstack([BGR[:, :, ::-1], np.full((H, W), 9, np.uint8)]), BGR),
    ],
)
def test_8bit_encodings_exact(encoding, source, expected, pad):
    step, data = padded(np.ascontiguousarray(source), pad)
    out = image_to_array(encoding, H, W, step, data)
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, expected)


def test_last_row_without_padding_is_accepted():
    step, data = padded(GRAY, 4)
    out = image_to_array("mono8", H, W, step, data[:-4])
    np.testing.assert_array_equal(out, GRAY)


@pytest.mark.parametrize("bigendian", [False, True])
def test_mono16_range_and_full_scaling(bigendian):
    values = np.array([[1000, 2000, 3000], [1500, 2500, 1000]], np.uint16)
    raw = values.astype(">u2" if bigendian else "<u2")
    step, data = padded(raw, 2)
    ranged = image_to_array("mono16", 2, 3, step, data, is_bigendian=bigendian)
    np.testing.assert_array_equal(ranged, [[0, 128, 255], [64, 191, 0]])
    full = image_to_array("16UC1", 2, 3, step, data, is_bigendian=bigendian, mono16_scaling="full")
    np.testing.assert_array_equal(full, np.rint(values / 257.0).astype(np.uint8))


def test_32fc1_nan_inf_are_zeroed_and_reported():
    values = np.array([[0.5, np.nan, 1.5], [np.inf, 1.0, -np.inf]], np.float32)
    warnings = []
    out = image_to_array("32FC1", 2, 3, 12, values.tobytes(), warn=warnings.append)
    np.testing.assert_array_equal(out, [[0, 0, 255], [0, 128, 0]])
    assert len(warnings) == 1 and "3 NaN/inf" in warnings[0]


def test_32fc1_all_nan_is_an_error():
    values = np.full((2, 2), np.nan, np.float32)
    with pytest.raises(ImageConversionError, match="no finite pixel"):
        image_to_array("32FC1", 2, 2, 8, values.tobytes())


@pytest.mark.parametrize(
    "args,match",
    [
        (("yuv422", H, W, W * 2, bytes(H * W * 2)), "unsupported encoding 'yuv422'"),
        (("bgr8", H, W, W * 3, bytes(H * W * 3 - 5)), "data size"),
        (("bgr8", H, W, W * 3 + 1, bytes(H * W * 3 + H)), None),  # padded by one: valid
        (("bgr8", H, W, W * 2, bytes(H * W * 2)), "step 14 < width"),
        (("mono16", H, W, W * 2 + 1, bytes((W * 2 + 1) * H)), "not a multiple"),
        (("mono8", 0, W, W, b""), "zero-size"),
        (("mono8", H, 0, 0, b""), "zero-size"),
    ],
)
def test_malformed_raw_images(args, match):
    if match is None:
        assert image_to_array(*args).shape == (H, W, 3)
        return
    with pytest.raises(ImageConversionError, match=match):
        image_to_array(*args)


def test_huge_image_rejected_before_reading_data():
    with pytest.raises(ImageConversionError, match="too large.*max_image_pixels 1000"):
        image_to_array("mono8", 100, 100, 100, b"", max_pixels=1000)


def test_output_owns_its_memory():
    data = bytearray(GRAY.tobytes())
    out = image_to_array("mono8", H, W, W, data)
    data[:] = bytes(len(data))
    np.testing.assert_array_equal(out, GRAY)


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_compressed_color_and_gray(ext):
    image = cv2.resize(BGR, (64, 48), interpolation=cv2.INTER_NEAREST)
    ok, buf = cv2.imencode(ext, image)
    out = compressed_to_array(ext[1:], buf.tobytes())
    assert out.shape == (48, 64, 3) and out.dtype == np.uint8
    if ext == ".png":
        np.testing.assert_array_equal(out, image)
    ok, buf = cv2.imencode(ext, image[:, :, 0])
    gray = compressed_to_array(ext[1:], buf.tobytes())
    assert gray.shape == (48, 64)
    if ext == ".png":
        np.testing.assert_array_equal(gray, image[:, :, 0])


def test_compressed_png16_and_rgba():
    values = np.array([[100, 200], [300, 400]], np.uint16)
    ok, buf = cv2.imencode(".png", values)
    np.testing.assert_array_equal(compressed_to_array("png", buf.tobytes()), [[0, 85], [170, 255]])
    bgra = np.dstack([BGR, np.full((H, W), 7, np.uint8)])
    ok, buf = cv2.imencode(".png", bgra)
    np.testing.assert_array_equal(compressed_to_array("png", buf.tobytes()), BGR)


@pytest.mark.parametrize(
    "payload,match", [(b"", "empty compressed"), (b"not an image at all", "could not decode")]
)
def test_compressed_garbage(payload, match):
    with pytest.raises(ImageConversionError, match=match):
        compressed_to_array("jpeg", payload)


def test_compressed_huge_rejected():
    ok, buf = cv2.imencode(".png", np.zeros((40, 50), np.uint8))
    with pytest.raises(ImageConversionError, match="too large"):
        compressed_to_array("png", buf.tobytes(), max_pixels=1999)


def test_camera_matrix_validation():
    k = [500.0, 0, 320, 0, 510.0, 240, 0, 0, 1]
    np.testing.assert_array_equal(camera_matrix(k, 640, 480, (640, 480)), np.reshape(k, (3, 3)))
    warnings = []
    assert camera_matrix([0.0] * 9, warn=warnings.append) is None
    assert "zero or negative focal length" in warnings[-1]
    assert camera_matrix([np.nan] + k[1:], warn=warnings.append) is None
    assert "NaN" in warnings[-1]
    assert camera_matrix(k, 1280, 960, (640, 480), warn=warnings.append) is None
    assert "differs from image size" in warnings[-1]
    assert camera_matrix(k[:6], warn=warnings.append) is None and "6 values" in warnings[-1]


def test_camera_model_from_camera_info_fields():
    k = [500.0, 0, 320, 0, 510.0, 240, 0, 0, 1]
    p = [400.0, 0, 300, -40.0, 0, 405.0, 250, 0, 0, 0, 1, 0]  # rectified right camera of a pair
    d = [-0.28, 0.07, 0.0002, 0.00002]
    warnings = []
    camera = camera_model(k, d, p, "plumb_bob", 640, 480, (640, 480), warn=warnings.append)
    assert (
        camera.distortion_model == "plumb_bob"
        and camera.is_distorted
        and camera.image_size == (640, 480)
    )
    np.testing.assert_array_equal(camera.K, np.reshape(k, (3, 3)))
    np.testing.assert_array_equal(camera.D, d)
    assert camera_model(k, d, p, "equidistant", 640, 480).distortion_model == "equidistant"
    # all-zero or empty D: a pinhole camera whatever the model name
    for zeros, name in (([0.0] * 5, "plumb_bob"), ([], ""), ([0.0] * 4, "some_model")):
        assert not camera_model(k, zeros, p, name, 640, 480).is_distorted
    # rectified images: P[:, :3], no distortion, K not even read
    rect = camera_model([0.0] * 9, d, p, "plumb_bob", 640, 480, (640, 480), rectified=True)
    np.testing.assert_array_equal(rect.K, np.reshape(p, (3, 4))[:, :3])
    assert not rect.is_distorted and not warnings
    # unusable: each says why, and the caller matches without intrinsics
    assert camera_model(k, d, p, "kannala_brandt", 640, 480, warn=warnings.append) is None
    assert "unsupported distortion model 'kannala_brandt'" in warnings[-1]
    assert camera_model(k, d[:3], p, "plumb_bob", 640, 480, warn=warnings.append) is None
    assert "takes 4 or 5 coefficients, got 3" in warnings[-1]
    assert camera_model(k, d, p[:9], "plumb_bob", rectified=True, warn=warnings.append) is None
    assert "P has 9 values, expected 12" in warnings[-1]
    assert camera_model(k, d, [0.0] * 12, "plumb_bob", rectified=True, warn=warnings.append) is None
    assert warnings[-1].startswith("P: ") and "focal length" in warnings[-1]
    assert camera_model(k, d, p, "plumb_bob", 1280, 960, (640, 480), warn=warnings.append) is None
    assert "differs from image size" in warnings[-1]


def test_compressed_header_gives_size_and_channels_without_decoding():
    from superglue_ros.images import compressed_header

    for ext, params in ((".png", []), (".jpg", []), (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])):
        for image, channels in ((BGR, 3), (GRAY, 1)):
            data = cv2.imencode(ext, image, params)[1]
            header = compressed_header(data.tobytes())
            assert (header.width, header.height, header.channels) == (W, H, channels), ext
            assert header.format == ("png" if ext == ".png" else "jpeg") and header.bit_depth == 8
    deep = compressed_header(cv2.imencode(".png", GRAY.astype(np.uint16) * 257)[1])
    assert (deep.width, deep.height, deep.channels, deep.bit_depth) == (W, H, 1, 16)
    alpha = compressed_header(cv2.imencode(".png", np.dstack([BGR, GRAY]))[1])
    assert alpha.channels == 4


def test_decompression_bombs_are_rejected_from_their_header():
    """A 48 KB PNG that decodes to 20000x20000 (400 MB), and a JPEG whose frame header says
    20000x20000: rejected by max_pixels before cv2 allocates anything."""
    from image_helpers import png_bomb

    bomb = png_bomb(20000, 20000)
    assert len(bomb) < 100_000
    with pytest.raises(
        ImageConversionError,
        match=r"png header: image too large: 20000x20000 = 400000000 pixels > "
        r"max_image_pixels 16777216 \(not decoded\)",
    ):
        compressed_to_array("png", bomb)
    small = png_bomb(64, 48)
    assert compressed_to_array("png", small).shape == (48, 64)
    jpeg = bytearray(cv2.imencode(".jpg", BGR)[1].tobytes())
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5 : sof + 9] = (20000).to_bytes(2, "big") * 2
    with pytest.raises(ImageConversionError, match="jpeg header: image too large: 20000x20000"):
        compressed_to_array("jpeg", bytes(jpeg))


@pytest.mark.parametrize(
    "payload,expected",
    [
        (b"BM" + bytes(60), "neither PNG nor JPEG"),
        (b"\x89PNG\r\n\x1a\n" + bytes(30), "PNG without a valid IHDR chunk"),
        (b"\xff\xd8\xff\xe0\x00\x10" + bytes(14) + b"\xff\xd9", "JPEG without a frame header"),
        (b"\xff\xd8\xff\xe0\x00\x01" + bytes(10), "JPEG segment 0xE0 with length 1"),
    ],
)
def test_malformed_or_foreign_compressed_headers(payload, expected):
    with pytest.raises(ImageConversionError, match=expected):
        compressed_to_array("png", payload)


def test_uint16_to_uint8_rounds_to_the_nearest_level_for_every_value():
    """The one 16 -> 8 bit conversion (front-end arrays and mono16 'full'): round(v / 257)."""
    values = np.arange(65536, dtype=np.uint16)
    out = uint16_to_uint8(values)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.rint(values / 257.0).astype(np.uint8))
    assert [int(uint16_to_uint8(np.uint16(v))) for v in (0, 128, 129, 385, 386, 65534, 65535)] == [
        0,
        0,
        1,
        1,
        2,
        255,
        255,
    ]
    levels = np.arange(256, dtype=np.uint16)
    np.testing.assert_array_equal(uint16_to_uint8(levels * 257), levels)  # 8-bit data survives


def test_front_end_arrays_and_mono16_messages_convert_alike():
    values = np.array([[0, 128, 129, 1000], [30000, 65406, 65407, 65535]], np.uint16)
    expected = np.array([[0, 0, 1, 4], [117, 254, 255, 255]], np.uint8)
    np.testing.assert_array_equal(as_uint8_gray(values), expected)
    full = image_to_array("mono16", 2, 4, 8, values.astype("<u2").tobytes(), mono16_scaling="full")
    np.testing.assert_array_equal(full, expected)
    floats = np.array([[0.0, 0.5, 1.0, 0.002]], np.float32)
    np.testing.assert_array_equal(as_uint8_gray(floats), [[0, 128, 255, 1]])


@pytest.mark.parametrize(
    "image,message",
    [
        ([[1, 2]], "must be a numpy array, got list"),
        (np.zeros((4, 4, 2), np.uint8), r"got shape \(4, 4, 2\)"),
        (np.zeros((0, 5), np.uint8), r"empty image \(5x0\)"),
        (np.zeros((3, 40), np.uint8), "smaller than min_image_side=4"),
        (np.zeros((40, 40), np.uint8), "exceeds max_image_pixels=1000"),
        (np.full((8, 8), np.nan, np.float32), "contains NaN or inf"),
        (np.full((8, 8), 1.5), r"must be in \[0, 1\]"),
        (np.zeros((8, 8), np.int32), "unsupported image dtype int32"),
    ],
)
def test_front_end_array_checks_name_the_problem(image, message):
    with pytest.raises(ImageConversionError, match=message):
        as_uint8_gray(image, min_side=4, max_pixels=1000)


def test_gray_from_bgr_and_bgra_is_opencvs():
    bgra = np.dstack([BGR, GRAY])
    np.testing.assert_array_equal(to_gray(BGR), cv2.cvtColor(BGR, cv2.COLOR_BGR2GRAY))
    np.testing.assert_array_equal(as_uint8_gray(bgra), cv2.cvtColor(bgra, cv2.COLOR_BGRA2GRAY))
    np.testing.assert_array_equal(to_gray(GRAY[..., None]), GRAY)
    with pytest.raises(ImageConversionError, match="expected a uint8 image"):
        to_gray(GRAY.astype(np.float32))
