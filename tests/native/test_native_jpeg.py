"""The native JPEG decoder (csrc/jpeg.cpp): header, crop boxes at every scale, errors.

Skipped when the build has no libjpeg (``HAVE_JPEG`` false) unless libjpeg's headers are here,
in which case the build should have found them and the tests fail."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest

from .conftest import native

PIL = pytest.importorskip("PIL.Image")


def _jpeg_headers_here() -> bool:
    return any(os.path.exists(os.path.join(d, "jpeglib.h")) for d in ("/usr/include", "/usr/local/include"))


@pytest.fixture(autouse=True)
def _needs_jpeg() -> None:
    if not native.HAVE_JPEG:
        if _jpeg_headers_here():
            pytest.fail("awsio._native was built without libjpeg although jpeglib.h is installed")
        pytest.skip("awsio._native built without libjpeg")


def _photo(width: int = 400, height: int = 350, *, mode: str = "RGB", seed: int = 0, **save: object) -> bytes:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    arr = np.stack([(xx * 0.6 + yy * 0.3 + 40 * c) % 256 for c in range(3)], axis=2)
    arr = np.clip(arr + rng.normal(0, 10, arr.shape), 0, 255).astype(np.uint8)
    img = PIL.fromarray(arr).convert(mode)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, **save)
    return buf.getvalue()


def _pil(data: bytes) -> np.ndarray:
    with PIL.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB")).astype(np.int16)


def test_header():
    assert native.jpeg_header(_photo(400, 350)) == (400, 350, 3, False)
    assert native.jpeg_header(_photo(37, 21, mode="L")) == (37, 21, 1, False)
    assert native.jpeg_header(_photo(64, 48, progressive=True))[3] is True


@pytest.mark.parametrize("save", [{}, {"progressive": True}, {"subsampling": 0}, {"subsampling": 1}])
@pytest.mark.parametrize("box", [(0, 0, 400, 350), (10, 20, 200, 150), (17, 33, 101, 57), (399, 349, 1, 1),
                                 (0, 100, 400, 1), (123, 0, 1, 350)])
def test_crop_at_full_scale_is_the_full_decode_cut(box, save):
    data = _photo(**save)
    x, y, w, h = box
    pixels, x0, y0, n = native.jpeg_decode_crop(data, x, y, w, h, scale_num=8)
    assert (x0, y0, n) == (x, y, 8) and pixels.shape == (h, w, 3) and pixels.dtype == np.uint8
    assert np.array_equal(pixels, _pil(data)[y:y + h, x:x + w])


def test_grayscale_comes_out_rgb():
    data = _photo(64, 48, mode="L")
    pixels, *_ = native.jpeg_decode_crop(data, 0, 0, 64, 48, scale_num=8)
    assert pixels.shape == (48, 64, 3)
    assert np.array_equal(pixels, _pil(data))


def test_scale_is_the_smallest_power_of_two_eighth_keeping_the_minimum():
    data = _photo(800, 700)
    assert native.jpeg_decode_crop(data, 0, 0, 800, 700, 80, 87)[3] == 1
    assert native.jpeg_decode_crop(data, 0, 0, 800, 700, 101, 80)[3] == 2
    assert native.jpeg_decode_crop(data, 0, 0, 800, 700, 224, 224)[3] == 4  # 3/8 would do; 4 is faster
    assert native.jpeg_decode_crop(data, 0, 0, 800, 700, 401, 10)[3] == 8
    assert native.jpeg_decode_crop(data, 0, 0, 100, 100, 224, 224)[3] == 8  # never upscaled


@pytest.mark.parametrize("n", [1, 2, 4])
def test_reduced_scale_covers_the_scaled_box(n):
    data = _photo(400, 350)
    x, y, w, h = 33, 41, 250, 199
    pixels, x0, y0, got = native.jpeg_decode_crop(data, x, y, w, h, scale_num=n)
    assert got == n and (x0, y0) == (x * n // 8, y * n // 8)
    x1, y1 = -(-(x + w) * n // 8), -(-(y + h) * n // 8)
    assert pixels.shape == (y1 - y0, x1 - x0, 3)
    whole, *_ = native.jpeg_decode_crop(data, 0, 0, 400, 350, scale_num=n)
    assert np.array_equal(pixels, whole[y0:y1, x0:x1])
    full = _pil(data)  # the scaled pixels are area averages of the full decode, near enough
    ref = full[y0 * 8 // n:y1 * 8 // n, x0 * 8 // n:x1 * 8 // n]
    ref = ref.reshape(y1 - y0, 8 // n, x1 - x0, 8 // n, 3).mean(axis=(1, 3))
    assert np.abs(pixels - ref).mean() < 3


@pytest.mark.parametrize("data, cause", [
    (b"", "Empty input"),
    (b"GIF89a not a jpeg", "Not a JPEG"),
    (b"\xff\xd8\xff\xe0" + b"\x00" * 40, None),
])
def test_not_a_jpeg_raises_with_libjpegs_reason(data, cause):
    with pytest.raises(RuntimeError, match=cause):
        native.jpeg_header(data)
    with pytest.raises(RuntimeError, match=cause):
        native.jpeg_decode_crop(data, 0, 0, 1, 1)


def test_truncated_jpeg_raises():
    data = _photo()
    with pytest.raises(RuntimeError, match="truncated"):
        native.jpeg_decode_crop(data[:len(data) // 2], 0, 0, 400, 350)


def test_rows_above_the_truncation_still_decode():
    """Only the rows down to the box's bottom are read: the box's data is all there."""
    data = _photo()
    pixels, *_ = native.jpeg_decode_crop(data[:len(data) // 2], 0, 0, 400, 32, scale_num=8)
    assert np.array_equal(pixels, _pil(data)[:32])


def test_corrupt_scan_data_never_crashes():
    data = bytearray(_photo())
    rng = np.random.default_rng(1)
    for i in rng.integers(700, len(data) - 2, 200):
        data[i] = int(rng.integers(0, 256))
    try:
        pixels, *_ = native.jpeg_decode_crop(bytes(data), 0, 0, 400, 350, scale_num=8)
    except RuntimeError:
        return
    assert pixels.shape == (350, 400, 3)  # libjpeg's warnings (bad Huffman codes) are not errors, as in PIL


def test_cmyk_is_refused():
    data = _photo(64, 48, mode="CMYK")
    with pytest.raises(NotImplementedError, match="CMYK"):
        native.jpeg_decode_crop(data, 0, 0, 64, 48)


@pytest.mark.parametrize("box", [(0, 0, 401, 350), (-1, 0, 10, 10), (0, 0, 0, 5), (395, 0, 10, 10)])
def test_box_outside_the_image_is_a_value_error(box):
    with pytest.raises(ValueError, match="outside"):
        native.jpeg_decode_crop(_photo(), *box)


def test_hwc_to_chw_through_the_table():
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    lut = rng.random((3, 256), dtype=np.float32)
    out = native.hwc_to_chw(arr, lut)
    assert out.shape == (3, 5, 7) and out.dtype == np.float32
    expect = np.stack([lut[c][arr[:, :, c]] for c in range(3)])
    assert np.array_equal(out, expect)
    assert np.array_equal(native.hwc_to_chw(arr, lut, True), expect[:, :, ::-1])
