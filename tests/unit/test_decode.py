"""awsio.decode: every decoder, user decoders, errors, safety defaults, lazy imports."""

from __future__ import annotations

import io
import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from awsio.decode import IMAGE_SPECS, Decoder, ImageDecoder
from awsio.errors import DecodeError

FORMATS = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "ppm": "PPM", "pgm": "PPM", "pbm": "PPM",
           "webp": "WEBP", "bmp": "BMP", "gif": "GIF", "tif": "TIFF", "tiff": "TIFF"}
MODES = {"pgm": "L", "pbm": "1"}


def image_bytes(ext: str, size: tuple[int, int] = (12, 8)) -> bytes:
    img = Image.new("RGB", size)
    img.putdata([((x * 20) % 256, (y * 30) % 256, 90) for y in range(size[1]) for x in range(size[0])])
    img = img.convert(MODES.get(ext, "RGB"))
    buf = io.BytesIO()
    img.save(buf, FORMATS[ext], **({"lossless": True} if ext == "webp" else {}))
    return buf.getvalue()


@pytest.mark.parametrize("ext", sorted(FORMATS))
def test_every_image_extension_decodes_to_pil_by_default(ext: str) -> None:
    out = Decoder()({"__key__": "k", "__url__": "u", ext: image_bytes(ext)})
    img = out[ext]
    assert isinstance(img, Image.Image) and img.mode == "RGB" and img.size == (12, 8)


@pytest.mark.parametrize("spec", sorted(IMAGE_SPECS))
def test_every_image_spec_type_dtype_and_shape(spec: str) -> None:
    data = image_bytes("png")
    atype, etype, mode = IMAGE_SPECS[spec]
    value = Decoder(spec).decode_field("png", data)
    ref = np.asarray(Image.open(io.BytesIO(data)).convert((mode or "rgb").upper()))
    if atype == "pil":
        assert isinstance(value, Image.Image)
        assert value.mode == (mode.upper() if mode else "RGB")
        return
    arr = value.numpy() if atype == "torch" else value
    assert isinstance(value, torch.Tensor if atype == "torch" else np.ndarray)
    assert arr.dtype == (np.uint8 if etype == "uint8" else np.float32)
    channels = {"l": None, "rgb": 3, "rgba": 4}[mode]
    if channels is None:
        assert arr.shape == (8, 12)
    elif atype == "torch":
        assert arr.shape == (channels, 8, 12)
        arr = arr.transpose(1, 2, 0)
    else:
        assert arr.shape == (8, 12, channels)
    scale = 255.0 if etype == "float" else 1
    np.testing.assert_allclose(arr * scale, ref, atol=1e-3)


def test_unknown_image_spec_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown image spec"):
        Decoder("rgb16")


def test_bytes_spec_leaves_images_alone_and_uppercase_extensions_decode() -> None:
    data = image_bytes("jpg")
    assert Decoder("bytes").decode_field("jpg", data) == data
    assert isinstance(Decoder().decode_field("JPG", data), Image.Image)


@pytest.mark.parametrize("ext", ["txt", "text"])
def test_text(ext: str) -> None:
    assert Decoder().decode_field(ext, "héllo".encode()) == "héllo"


@pytest.mark.parametrize("ext", ["cls", "cls2", "index", "label", "id"])
def test_integer_classes(ext: str) -> None:
    value = Decoder().decode_field(ext, b" 17\n")
    assert value == 17 and isinstance(value, int)


def test_json() -> None:
    doc = {"a": [1, 2], "b": "c"}
    assert Decoder().decode_field("json", json.dumps(doc).encode()) == doc


def test_npy_and_npz() -> None:
    arr = np.arange(12, dtype=np.int16).reshape(3, 4)
    buf = io.BytesIO()
    np.save(buf, arr)
    np.testing.assert_array_equal(Decoder().decode_field("npy", buf.getvalue()), arr)
    buf = io.BytesIO()
    np.savez(buf, x=arr, y=arr * 2)
    out = Decoder().decode_field("npz", buf.getvalue())
    assert sorted(out) == ["x", "y"]
    np.testing.assert_array_equal(out["y"], arr * 2)


def test_npy_object_arrays_need_pickle_and_are_refused() -> None:
    buf = io.BytesIO()
    np.save(buf, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DecodeError) as info:
        Decoder()({"__key__": "k", "__url__": "s3://b/s.tar", "npy": buf.getvalue()})
    assert isinstance(info.value.__cause__, ValueError)


class Custom:  # a class torch.load(weights_only=True) must refuse to rebuild
    pass


def test_pth_loads_tensors_with_weights_only() -> None:
    buf = io.BytesIO()
    torch.save({"w": torch.arange(4.0)}, buf)
    out = Decoder().decode_field("pth", buf.getvalue())
    assert torch.equal(out["w"], torch.arange(4.0))
    buf = io.BytesIO()
    torch.save(Custom(), buf)
    with pytest.raises(DecodeError, match="pth|Unpickl|weights"):
        Decoder()({"__key__": "k", "__url__": "u", "pth": buf.getvalue()})


@pytest.mark.parametrize("ext", ["pkl", "pickle"])
def test_pickle_only_with_opt_in(ext: str) -> None:
    data = pickle.dumps({"x": 1})
    assert Decoder().decode_field(ext, data) == data  # stays bytes by default
    assert Decoder(allow_pickle=True).decode_field(ext, data) == {"x": 1}


def test_unknown_extensions_stay_bytes() -> None:
    sample = {"__key__": "k", "__url__": "u", "bin": b"\x00\x01", "data": b"raw"}
    assert Decoder()(sample) == sample


def test_user_decoders_by_extension_and_callable_come_first() -> None:
    seg = image_bytes("png")
    dec = Decoder({"seg.png": lambda b: "segmentation", "cls": lambda b: -int(b)},
                  lambda field, data: "custom" if field == "weird" else None, "rgb8")
    out = dec({"__key__": "k", "__url__": "u", "seg.png": seg, "png": seg, "cls": b"3",
               "weird": b"?", "txt": b"t"})
    assert out["seg.png"] == "segmentation"
    assert isinstance(out["png"], np.ndarray) and out["png"].dtype == np.uint8
    assert out["cls"] == -3 and out["weird"] == "custom" and out["txt"] == "t"


def test_decode_error_names_url_key_field_and_chains_the_cause() -> None:
    sample = {"__key__": "dir/k1", "__url__": "s3://b/train-0.tar", "cls": b"x", "jpg": b"not a jpeg"}
    with pytest.raises(DecodeError) as info:
        Decoder()(sample)
    err = info.value
    assert (err.url, err.key) == ("s3://b/train-0.tar", "dir/k1")
    assert err.field in ("cls", "jpg") and err.__cause__ is not None
    assert isinstance(err, ValueError)
    back = pickle.loads(pickle.dumps(err))
    assert (back.url, back.key, back.field) == (err.url, err.key, err.field)


def test_already_decoded_and_dunder_fields_are_left_alone() -> None:
    sample = {"__key__": "k", "__url__": "u", "cls": 3, "__meta__": b"1"}
    assert Decoder()(sample) == sample


def test_decoder_pickles() -> None:
    dec = Decoder("torchrgb8", {"cls": int}, allow_pickle=True)
    back = pickle.loads(pickle.dumps(dec))
    assert back.allow_pickle and isinstance(back.chain[0][1], ImageDecoder)
    out = back({"__key__": "k", "__url__": "u", "jpg": image_bytes("jpg"), "cls": b"2"})
    assert out["jpg"].shape == (3, 8, 12) and out["cls"] == 2


def test_import_and_basic_decoding_need_neither_torch_nor_pil() -> None:
    code = ("import sys; from awsio.decode import Decoder; "
            "d = Decoder()({'__key__': 'k', '__url__': 'u', 'cls': b'1', 'txt': b'a', 'json': b'{}'}); "
            "assert d['cls'] == 1; "
            "print(sorted(m for m in ('torch', 'PIL') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_an_image_decoder_loads_pil_where_it_is_made() -> None:
    """PIL and its common format plugins are imported when the decoder is made (in the main
    process), so that forked DataLoader workers, started afresh every epoch, do not each import
    them before their first sample."""
    for make in ("Pipeline(MemorySource([])).decode('pil')", "RandomResizedCrop(224)"):
        code = ("import sys\nfrom awsio.pipeline import MemorySource, Pipeline\n"
                f"from awsio.decode import RandomResizedCrop\n{make}\n"
                "print(all(m in sys.modules for m in ('PIL.Image', 'PIL.JpegImagePlugin', 'PIL.PngImagePlugin')))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "True", make
