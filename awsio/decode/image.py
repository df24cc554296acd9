"""Image decoding through PIL, to PIL images, numpy arrays or torch tensors.

The specs follow webdataset's ``imagehandler`` so that the two give the same values:

==============  =======  ======  =====  ============================================
spec            type     dtype   mode   shape
==============  =======  ======  =====  ============================================
``pil``         PIL      -       RGB    (``pilrgb`` too; ``pill`` L, ``pilrgba`` RGBA)
``rgb8``        numpy    uint8   RGB    H x W x 3 (``numpy`` is the same)
``rgb``         numpy    float32 RGB    H x W x 3 in [0, 1]
``l8``, ``l``   numpy    u8/f32  L      H x W
``rgba8/rgba``  numpy    u8/f32  RGBA   H x W x 4
``torchrgb8``   torch    uint8   RGB    3 x H x W
``torchrgb``    torch    float32 RGB    3 x H x W in [0, 1] (``torch`` is the same)
``torchl8/l``   torch    u8/f32  L      H x W
``torchrgba8/a``torch    u8/f32  RGBA   4 x H x W
``pilraw``      PIL      -       as stored (no conversion)
==============  =======  ======  =====  ============================================

PIL, numpy and torch are imported on first use.
"""

from __future__ import annotations

import io
from typing import Any

__all__ = ["IMAGE_EXTENSIONS", "IMAGE_SPECS", "ImageDecoder", "check_8bit", "load_pil"]

IMAGE_EXTENSIONS = frozenset(
    "jpg jpeg jpe jfif png apng ppm pgm pbm pnm webp bmp dib gif tif tiff tga ico".split())

# spec -> (array type, element type, mode)
IMAGE_SPECS: dict[str, tuple[str, str | None, str | None]] = {
    "l8": ("numpy", "uint8", "l"),
    "rgb8": ("numpy", "uint8", "rgb"),
    "numpy": ("numpy", "uint8", "rgb"),
    "rgba8": ("numpy", "uint8", "rgba"),
    "l": ("numpy", "float", "l"),
    "rgb": ("numpy", "float", "rgb"),
    "rgba": ("numpy", "float", "rgba"),
    "torchl8": ("torch", "uint8", "l"),
    "torchrgb8": ("torch", "uint8", "rgb"),
    "torchrgba8": ("torch", "uint8", "rgba"),
    "torchl": ("torch", "float", "l"),
    "torchrgb": ("torch", "float", "rgb"),
    "torch": ("torch", "float", "rgb"),
    "torchrgba": ("torch", "float", "rgba"),
    "pill": ("pil", None, "l"),
    "pil": ("pil", None, "rgb"),
    "pilrgb": ("pil", None, "rgb"),
    "pilrgba": ("pil", None, "rgba"),
    "pilraw": ("pil", None, None),
}


class ImageDecoder:
    """Decode image bytes according to one spec of :data:`IMAGE_SPECS`; picklable.

    Raises:
        ValueError: for an unknown spec (at construction); at call, for a 16-bit, 32-bit or float
            image whose values do not fit the spec's 8 bits (see :func:`check_8bit`).
        PIL.UnidentifiedImageError / OSError: for bytes PIL cannot read (at call).
    """

    __slots__ = ("spec",)

    def __init__(self, spec: str) -> None:
        spec = spec.lower()
        if spec not in IMAGE_SPECS:
            raise ValueError(f"unknown image spec {spec!r}; one of {sorted(IMAGE_SPECS)}")
        self.spec = spec

    def __getstate__(self) -> str:
        return self.spec

    def __setstate__(self, state: str) -> None:
        self.spec = state

    def __repr__(self) -> str:
        return f"ImageDecoder({self.spec!r})"

    def __call__(self, data: bytes) -> Any:
        import PIL.Image

        atype, etype, mode = IMAGE_SPECS[self.spec]
        with io.BytesIO(data) as stream:
            img: PIL.Image.Image = PIL.Image.open(stream)
            img.load()
        if mode is None:
            return img
        if img.mode != mode.upper():  # (convert() to the same mode would copy the image)
            check_8bit(img)
            img = img.convert(mode.upper())
        if atype == "pil":
            return img
        import numpy as np

        arr = np.array(img)  # a writable copy: users (and torch.from_numpy) may write to it
        if etype == "float":
            arr = arr.astype(np.float32) / 255.0
        if atype == "numpy":
            return arr
        import torch

        if arr.ndim == 3:
            arr = arr.transpose(2, 0, 1)
        return torch.from_numpy(np.ascontiguousarray(arr))


def check_8bit(img: Any) -> None:
    """Raise ValueError when converting ``img`` to an 8-bit mode would change its values: PIL's
    ``convert`` clips a 16/32-bit integer image (a 16-bit PNG: mode ``I;16``) to 0..255 and
    truncates a float one, silently. Such images decode with ``pilraw`` (or a mapping decoder)."""
    if img.mode != "F" and not img.mode.startswith("I"):
        return
    lo, hi = img.getextrema()
    whole = True
    if img.mode == "F":
        import numpy as np

        whole = bool((np.asarray(img) % 1 == 0).all())
    if lo < 0 or hi > 255 or not whole:
        raise ValueError(f"a mode {img.mode} image with values {lo}..{hi} does not fit 8 bits (converting "
                         f"would clip or truncate them): decode it with 'pilraw'")


def load_pil() -> None:
    """Import PIL and its common format plugins now (where a pipeline that decodes images is
    made): a forked DataLoader worker (started afresh every epoch) then has them, instead of
    importing them before its first sample. Without Pillow, decoding an image raises ImportError
    when called."""
    try:
        import PIL.Image
    except ImportError:
        return
    PIL.Image.preinit()
