"""Review of awsio.decode (with the native JPEG crop decoder) and of the original plugin's compat
module: each test failed before its fix."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zipfile

import numpy as np
import pytest
from test_archives import MemoryClient, make_tar, samples

from awsio.decode import Decoder, ImageDecoder, RandomResizedCrop, crop
from awsio.errors import ArchiveError, DecodeError
from awsio.python.lib.io.s3 import s3dataset as old

PIL = pytest.importorskip("PIL.Image")
torch = pytest.importorskip("torch")
needs_native_jpeg = pytest.mark.skipif(crop.native_jpeg() is None, reason="awsio._native without libjpeg")
B = "s3://bkt/"


def _jpeg(width: int = 400, height: int = 350, **save: object) -> bytes:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    arr = np.stack([(xx * 0.6 + yy * 0.3 + 40 * c) % 256 for c in range(3)], axis=2)
    arr = np.clip(arr + rng.normal(0, 10, arr.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    PIL.fromarray(arr).save(buf, "JPEG", quality=90, **save)
    return buf.getvalue()


# -- decode ------------------------------------------------------------------------------------
@needs_native_jpeg
@pytest.mark.parametrize("save", [{}, {"progressive": True}])
def test_fast_path_refuses_a_jpeg_cut_short_below_the_box(save):
    """The fast path decoded only the rows down to the box: a file cut short below it was
    delivered (for some random boxes) where the full path raises."""
    cut = _jpeg(**save)
    cut = cut[:len(cut) * 6 // 10]
    with pytest.raises(DecodeError):
        RandomResizedCrop(64, seed=0, fast_decode=False)(cut)
    for seed in range(20):  # small boxes, most of them above the cut
        with pytest.raises(DecodeError, match="(?i)truncated"):
            RandomResizedCrop(64, seed=seed, scale=(0.08, 0.1))(cut)


@needs_native_jpeg
def test_fast_path_still_takes_whole_jpegs_with_trailing_data_or_a_thumbnail():
    data = _jpeg()
    exif = PIL.Exif()
    exif[0x010F] = "cam"
    thumb = _jpeg(40, 30)  # a whole JPEG (SOS ... EOI) inside APP1, before the image's own scan
    app1 = b"Exif\x00\x00" + exif.tobytes() + thumb
    with_thumb = data[:2] + b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1 + data[2:]
    for seed in range(5):
        with pytest.raises(DecodeError, match="(?i)truncated"):  # cut short, the thumbnail's EOI does not count
            RandomResizedCrop(64, seed=seed, scale=(0.08, 0.1))(with_thumb[:len(with_thumb) * 6 // 10])
    assert (RandomResizedCrop(64, seed=1)(with_thumb) - RandomResizedCrop(64, seed=1)(data)).abs().max() == 0
    for tail in (b"", b"\x00" * 100, b"trailer\xff\xd8junk"):
        for seed in range(5):
            t, u = RandomResizedCrop(64, seed=seed, scale=(0.08, 0.1)), RandomResizedCrop(64, seed=seed, scale=(0.08, 0.1))
            assert (t(data + tail) - u(data)).abs().max() == 0


@needs_native_jpeg
def test_fast_path_keeps_pils_decompression_bomb_limit(monkeypatch):
    """The full path raises PIL's DecompressionBombError past 2 x MAX_IMAGE_PIXELS; the fast path
    decoded such an image anyway (a small progressive file can claim 65500 x 65500 pixels and
    make libjpeg allocate gigabytes)."""
    monkeypatch.setattr(PIL, "MAX_IMAGE_PIXELS", 1000)
    for fast in (False, True):
        with pytest.raises(DecodeError, match="DecompressionBomb"):
            RandomResizedCrop(64, seed=0, fast_decode=fast)(_jpeg())


def _png16(values: np.ndarray) -> bytes:
    buf = io.BytesIO()
    PIL.fromarray(values.astype(np.uint16)).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize("spec", ["pil", "rgb8", "l8", "rgb", "torchrgb8"])
def test_16bit_image_is_not_clipped_silently(spec):
    """PIL's convert() clips a 16-bit PNG (mode I;16) to 0..255: 99.6% of this image came out 255."""
    data = _png16(np.arange(64 * 64).reshape(64, 64) * 16)
    with pytest.raises(DecodeError, match="8 bits") as info:
        Decoder(spec)({"__key__": "k", "x.png": data})
    assert info.value.key == "k" and info.value.field == "x.png"
    raw = np.asarray(Decoder("pilraw")({"__key__": "k", "png": data})["png"])
    assert raw.dtype == np.uint16 and raw.max() == 4095 * 16
    with pytest.raises(DecodeError, match="8 bits"):
        RandomResizedCrop(16, fast_decode=False)(data)


def test_16bit_image_within_8_bits_still_converts():
    values = np.arange(64 * 64).reshape(64, 64) % 256  # e.g. a label map stored as 16-bit
    got = ImageDecoder("l8")(_png16(values))
    assert got.dtype == np.uint8 and np.array_equal(got, values)
    floats = PIL.fromarray(np.full((4, 4), 0.5, np.float32))
    with pytest.raises(ValueError, match="8 bits"):
        crop.check_8bit(floats)


# -- compat ------------------------------------------------------------------------------------
def _zip_flagged(method: int | None = None, encrypted: bool = False) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.txt", b"hello")
    z = bytearray(buf.getvalue())
    central = z.find(b"PK\x01\x02")
    if encrypted:
        z[6] |= 1
        z[central + 8] |= 1
    if method is not None:
        z[8] = method
        z[central + 10] = method
    return bytes(z)


@pytest.mark.parametrize("data", [_zip_flagged(encrypted=True), _zip_flagged(method=9)], ids=["encrypted", "deflate64"])
def test_compat_zipdata_unreadable_entry_is_an_archive_error_through_the_handler(data):
    """An encrypted entry or an unsupported method raised a bare RuntimeError/NotImplementedError,
    past the handler."""
    with pytest.raises(ArchiveError):
        list(old.zipdata(data))
    seen: list[BaseException] = []
    assert list(old.zipdata(data, handler=seen.append)) == [] and len(seen) == 1


@pytest.mark.parametrize("compress", [bz2.compress, lzma.compress])
def test_compat_tardata_reads_bz2_and_xz_like_the_original(compress):
    """The original opened tars with tarfile's ``r|*``: gzip, bzip2 and xz."""
    members = samples(2)
    assert list(old.tardata(compress(make_tar(members)))) == members


def _original_tar() -> bytes:
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for name, data in [("__meta__.json", b"{}"), ("pkg/__init__.py", b"x = 1"), ("d/__key__.txt", b"k"),
                           ("a.jpg", b"img"), ("__meta__", b"m"), ("__dir__/x.txt", b"d")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("b.jpg")
        link.type, link.linkname = tarfile.LNKTYPE, "a.jpg"
        tf.addfile(link)
    return buf.getvalue()


def test_compat_dataset_yields_the_tar_members_the_original_yielded():
    """The original's S3IterableDataset ran tardata on each .tar: ``__meta__.json``,
    ``pkg/__init__.py``, ``d/__key__.txt`` were yielded, ``__dir__/x.txt`` (skip_meta) and
    hardlinks (not regular) were not; the compat dataset yielded ``a.jpg, __dir__/x.txt, b.jpg``."""
    raw = _original_tar()
    want = ["__meta__.json", "pkg/__init__.py", "d/__key__.txt", "a.jpg"]
    assert [n for n, _ in old.tardata(raw)] == want
    client = MemoryClient({f"{B}t/x.tar": raw, f"{B}t/y.bin": b"y"})
    assert [n for n, _ in old.S3IterableDataset(f"{B}t/", client=client)] == want + [f"{B}t/y.bin"]


def test_compat_dataset_reads_a_compressed_tar_key_like_the_original():
    """``r|*`` took a gzip (or bzip2, xz) stream under a ``.tar`` key; the compat dataset raised."""
    members = samples(2)
    raw = make_tar(members)
    client = MemoryClient({f"{B}g/x.tar": bz2.compress(raw), f"{B}g/y.tar": gzip.compress(raw)})
    assert list(old.S3IterableDataset(f"{B}g/", client=client)) == members * 2


def test_compat_dataset_upper_case_tar_is_one_object_like_the_original():
    """The original expanded keys ending in "tar" (case-sensitive): ``X.TAR`` was one object."""
    raw = make_tar(samples(1))
    client = MemoryClient({f"{B}u/X.TAR": raw})
    assert list(old.S3IterableDataset(f"{B}u/", client=client)) == [(f"{B}u/X.TAR", raw)]
