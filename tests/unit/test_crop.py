"""awsio.decode.RandomResizedCrop: the fast path (native crop decode at reduced scale) against the
full PIL path, the full path against PIL itself, the fallbacks, and decode errors."""

from __future__ import annotations

import io
import math
import pickle

import numpy as np
import pytest

from awsio.decode import RandomResizedCrop, crop
from awsio.errors import DecodeError

PIL = pytest.importorskip("PIL.Image")
torch = pytest.importorskip("torch")

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
needs_native_jpeg = pytest.mark.skipif(crop.native_jpeg() is None, reason="awsio._native without libjpeg")


@pytest.fixture(scope="module")
def photos() -> list[bytes]:
    """The image benchmark's JPEGs (awsio.bench.pipeline --profile imagenet): 400x350, quality 90."""
    from awsio.bench.data import jpegs

    return list(jpegs(50, 400, 350))


def _psnr(a: torch.Tensor, b: torch.Tensor, peak: float) -> float:
    mse = float(((a - b) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(peak * peak / mse)


def _reference(data: bytes, t: RandomResizedCrop, rng: np.random.Generator) -> torch.Tensor:
    """What torchvision's recipe does with a PIL image, in PIL and numpy."""
    img = PIL.open(io.BytesIO(data)).convert("RGB")
    x, y, w, h = t.get_params(*img.size, rng=rng)
    img = img.crop((x, y, x + w, y + h)).resize((t.size, t.size), PIL.Resampling.BILINEAR)
    if rng.random() < t.flip:
        img = img.transpose(PIL.Transpose.FLIP_LEFT_RIGHT)
    arr = np.asarray(img, dtype=np.float32) / 255.0
    if t.mean is not None:
        arr = (arr - np.array(t.mean, np.float32)) / np.array(t.std, np.float32)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


@needs_native_jpeg
def test_fast_path_psnr_against_full_decode(photos):
    """>= 35 dB (the issue's floor) for every image and box; measured: >= 45 dB."""
    worst = math.inf
    for seed in range(4):
        fast = RandomResizedCrop(224, seed=seed)
        full = RandomResizedCrop(224, seed=seed, fast_decode=False)
        for data in photos:
            a, b = fast(data), full(data)
            assert a.shape == b.shape == (3, 224, 224) and a.dtype == torch.float32
            worst = min(worst, _psnr(a, b, 1.0))
    assert worst >= 35, worst


@needs_native_jpeg
def test_fast_path_without_ifast_is_the_full_path(photos, monkeypatch):
    """Decoded exactly (JDCT_ISLOW), the crop at 8/8 is PIL's pixels: the outputs are equal."""
    monkeypatch.setattr(RandomResizedCrop, "fast_idct", False)
    fast, full = RandomResizedCrop(224, seed=3), RandomResizedCrop(224, seed=3, fast_decode=False)
    for data in photos[:20]:
        assert torch.equal(fast(data), full(data))


@pytest.mark.parametrize("mean, std", [(None, None), (MEAN, STD)])
def test_full_path_is_pils(photos, mean, std):
    t = RandomResizedCrop(224, mean=mean, std=std, fast_decode=False, seed=7)
    rng = np.random.default_rng([7, __import__("os").getpid()])
    for data in photos[:10]:
        assert torch.equal(t(data), _reference(data, t, rng))


def test_box_sampling_stays_inside_and_falls_back_to_the_centre():
    t = RandomResizedCrop(224, seed=0)
    rng = np.random.default_rng(0)
    for _ in range(500):
        x, y, w, h = t.get_params(400, 350, rng)
        assert 0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= 400 and y + h <= 350
        assert 0.08 * 140000 * 0.9 <= w * h <= 140000
    assert RandomResizedCrop(8, scale=(2.0, 3.0)).get_params(400, 350, rng) == (0, 0, 400, 350)  # ratio in range
    assert RandomResizedCrop(8, scale=(2.0, 3.0)).get_params(400, 100, rng) == (133, 0, 133, 100)  # too wide
    assert RandomResizedCrop(8, scale=(2.0, 3.0)).get_params(100, 400, rng) == (0, 133, 100, 133)  # too tall


def test_no_native_jpeg_falls_back_to_the_full_path(photos, monkeypatch):
    expect = [RandomResizedCrop(96, seed=1, fast_decode=False)(d) for d in photos[:5]]
    monkeypatch.setattr(crop, "native_jpeg", lambda: None)
    monkeypatch.setattr(crop, "_native_module", lambda: None)  # numpy normalisation too
    got = [RandomResizedCrop(96, seed=1)(d) for d in photos[:5]]
    assert all(torch.equal(a, b) for a, b in zip(got, expect))


def test_other_inputs_take_the_full_path():
    arr = (np.random.default_rng(0).random((60, 80, 3)) * 255).astype(np.uint8)
    img = PIL.fromarray(arr)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    cmyk = io.BytesIO()
    img.convert("CMYK").save(cmyk, "JPEG")
    for source in (img, buf.getvalue(), cmyk.getvalue()):
        fast, full = RandomResizedCrop(32, seed=2), RandomResizedCrop(32, seed=2, fast_decode=False)
        assert torch.equal(fast(source), full(source))


@pytest.mark.parametrize("fast_decode", [True, False])
def test_corrupt_or_truncated_jpeg_is_a_decode_error(photos, fast_decode):
    t = RandomResizedCrop(224, fast_decode=fast_decode, scale=(1.0, 1.0), ratio=(400 / 350, 400 / 350))
    with pytest.raises(DecodeError, match="(?i)truncated") as info:
        t(photos[0][:len(photos[0]) // 2])
    assert isinstance(info.value, ValueError)
    with pytest.raises(DecodeError, match="(?i)marker|cannot identify"):
        t(b"\xff\xd8\xff" + b"garbage" * 10)


def test_pickles_without_its_generator(photos):
    t = RandomResizedCrop(64, mean=MEAN, std=STD, seed=5)
    first = t(photos[0])
    u = pickle.loads(pickle.dumps(t))
    assert u._rng is None and repr(u) == repr(t)
    assert torch.equal(u(photos[0]), first)  # a fresh generator from the same seed


def test_invalid_arguments():
    with pytest.raises(ValueError):
        RandomResizedCrop(0)
    with pytest.raises(ValueError):
        RandomResizedCrop(8, mean=MEAN)
    with pytest.raises(ValueError):
        RandomResizedCrop(8, scale=(1.0, 0.5))
