"""Decoders of sample fields, chosen by extension.

:class:`Decoder` turns a sample dict ``{"__key__": ..., "jpg": b"...", "cls": b"3"}`` into
``{"__key__": ..., "jpg": <PIL.Image>, "cls": 3}``. Specs, tried in the order given:

* a string naming an image spec (``"pil"``, ``"rgb8"``, ``"torchrgb"``... see
  :mod:`awsio.decode.image`) for every image extension (jpg, jpeg, png, ppm, pgm, pbm, webp,
  bmp, gif, tif, tiff...); ``"bytes"`` leaves images undecoded. Without an image spec images are
  decoded as ``"pil"``;
* a mapping ``{extension: fn(bytes) -> value}``; the extension may have dots (``"seg.png"``)
  and matches the whole field or its tail;
* a callable ``fn(field, bytes) -> value | None`` (webdataset's convention: None = not mine).

After these come the built-in decoders (:data:`awsio.decode.basic.BASIC_DECODERS`: txt/text,
cls/cls2/index/label/id -> int, json, npy/npz without pickle, pth with ``weights_only=True``), and
pickle (pkl/pickle/pyd) only with ``allow_pickle=True``. Any other field stays bytes.
``Decoder()`` with no specs therefore gives PIL images, ints, strings, json and arrays.

A field that fails raises :class:`awsio.errors.DecodeError` naming url, key and field, raised
from the original exception. PIL, numpy and torch are imported only by decoders that need them.

:class:`~awsio.decode.crop.RandomResizedCrop` is a transform for ``transform_fn(image=...)`` on
undecoded JPEG bytes: it decodes only the crop it draws, at reduced scale (see its module).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Union

from awsio.decode.basic import BASIC_DECODERS, PICKLE_DECODERS
from awsio.decode.crop import RandomResizedCrop
from awsio.decode.image import IMAGE_EXTENSIONS, IMAGE_SPECS, ImageDecoder, load_pil
from awsio.decode.roles import ROLES, find_field
from awsio.errors import DecodeError

__all__ = [
    "BASIC_DECODERS",
    "DEFAULT_IMAGE_SPEC",
    "IMAGE_EXTENSIONS",
    "IMAGE_SPECS",
    "PICKLE_DECODERS",
    "ROLES",
    "RandomResizedCrop",
    "Decoder",
    "DecoderSpec",
    "ImageDecoder",
    "find_field",
]

DEFAULT_IMAGE_SPEC = "pil"
DecoderSpec = Union[str, Mapping[str, Callable[[bytes], Any]], Callable[[str, bytes], Any]]


def _tails(field: str) -> list[str]:
    """``"seg.png"`` -> ``["seg.png", "png"]``: the whole field, then shorter dotted tails."""
    parts = field.lower().split(".")
    return [".".join(parts[i:]) for i in range(len(parts))]


class Decoder:
    """Decode the byte fields of sample dicts; picklable when the user's decoders are.

    Args:
        specs: image spec strings, ``{extension: fn}`` mappings, ``fn(field, data)`` callables.
        allow_pickle: also unpickle ``pkl``/``pickle``/``pyd`` fields (runs code from the shard).
        basic: use the built-in non-image decoders (default True).
    Raises:
        ValueError: for an unknown spec string (at construction).
    """

    def __init__(self, *specs: DecoderSpec | Decoder, allow_pickle: bool = False,
                 basic: bool = True) -> None:
        chain: list[tuple[str, Any]] = []
        image_set = False
        for spec in specs:
            if isinstance(spec, Decoder):
                chain.extend(spec.chain)
                image_set = True
                allow_pickle = allow_pickle or spec.allow_pickle
            elif isinstance(spec, str):
                if spec.lower() in ("bytes", "raw"):
                    chain.append(("skip_images", None))
                else:
                    chain.append(("image", ImageDecoder(spec)))
                    load_pil()
                image_set = True
            elif isinstance(spec, Mapping):
                table = {str(k).lower(): v for k, v in spec.items()}
                for ext, fn in table.items():
                    if not callable(fn):
                        raise TypeError(f"decoder for {ext!r} is not callable: {fn!r}")
                chain.append(("ext", table))
            elif callable(spec):
                chain.append(("fn", spec))
            else:
                raise TypeError(f"not a decoder spec: {spec!r}")
        if not image_set:
            chain.append(("image", ImageDecoder(DEFAULT_IMAGE_SPEC)))
        self.chain: tuple[tuple[str, Any], ...] = tuple(chain)
        self.allow_pickle: bool = allow_pickle
        self.basic = basic

    def __repr__(self) -> str:
        return f"Decoder({list(self.chain)!r}, allow_pickle={self.allow_pickle})"

    def decode_field(self, field: str, data: bytes) -> Any:
        """The decoded value of one field (``data`` itself when no decoder claims it)."""
        tails = _tails(field)
        ext = tails[-1]
        for kind, h in self.chain:
            if kind == "ext":
                for tail in tails:
                    if tail in h:
                        return h[tail](data)
            elif kind == "fn":
                value = h(field, data)
                if value is not None:
                    return value
            elif ext in IMAGE_EXTENSIONS:
                return data if kind == "skip_images" else h(data)
        if self.basic and ext in BASIC_DECODERS:
            return BASIC_DECODERS[ext](data)
        if self.allow_pickle and ext in PICKLE_DECODERS:
            return PICKLE_DECODERS[ext](data)
        return data

    def __call__(self, sample: Mapping[str, Any]) -> dict[str, Any]:
        """A new sample with every byte field decoded (``__...__`` fields are left as they are).

        Raises:
            DecodeError: naming ``url``, ``key`` and ``field``, from the decoder's exception.
        """
        out = dict(sample)
        for field, value in sample.items():
            if field.startswith("__") or not isinstance(value, (bytes, bytearray, memoryview)):
                continue
            try:
                out[field] = self.decode_field(field, bytes(value))
            except Exception as exc:
                raise DecodeError(f"cannot decode field: {type(exc).__name__}: {exc}",
                                  url=sample.get("__url__"), key=sample.get("__key__"),
                                  field=field) from exc
        return out
