"""RandomResizedCrop that decodes only what the crop needs.

:class:`RandomResizedCrop` takes JPEG bytes (or a PIL image) and returns the float32 C x H x W
tensor of torchvision's training recipe: a random box of the image (torchvision's
``RandomResizedCrop.get_params``: 10 tries, then the centre-crop fallback), resized bilinearly to
``size`` x ``size``, flipped left-right with probability ``flip``, scaled to [0, 1] and normalised
with ``mean`` / ``std`` when given. torchvision is not needed.

With ``fast_decode`` (the default) a JPEG is not decoded whole: the native decoder
(:func:`awsio._native.jpeg_decode_crop`, libjpeg-turbo) entropy-decodes the rows down to the
box's bottom and does the rest (IDCT, upsampling, colour conversion) only for the box (widened to
whole iMCUs, then cut), at the smallest DCT scale N/8 that keeps the box at least ``size`` pixels
on each side; PIL then resizes that region (its exact, fractional place in the scaled image) to
``size`` x ``size``. The output is not bit-identical to a full decode (the DCT scaling and the
fast IDCT differ slightly): tests/unit/test_crop.py holds it to >= 35 dB PSNR against the full
path. ``fast_decode=False``, a non-JPEG input, a PIL image, a CMYK JPEG, or a build without libjpeg
(``awsio._native.HAVE_JPEG``) take the full path: PIL decode, crop, resize (what torchvision does
with a PIL image). For a given random state both paths use the same box and flip.
"""

from __future__ import annotations

import io
import math
import os
from typing import Any, Sequence

from awsio.decode.image import check_8bit, load_pil
from awsio.errors import DecodeError

__all__ = ["RandomResizedCrop", "native_jpeg"]

_JPEG_MAGIC = b"\xff\xd8\xff"


def _native_module() -> Any:
    """The native module (its hwc_to_chw is in every build), or None."""
    try:
        from awsio import _native
    except ImportError:
        return None
    return _native


def native_jpeg() -> Any:
    """The native module when it can decode JPEG, else None."""
    native = _native_module()
    return native if getattr(native, "HAVE_JPEG", False) else None


def _ends(data: Any) -> bool:
    """Whether a JPEG's end of image marker (FF D9) follows its first scan. The native decoder
    reads only the rows down to a box's bottom, so a file cut short below the box decodes; PIL's
    full decode raises. Entropy-coded data never holds FF D9 (an FF there is followed by 00 or a
    restart marker) and the markers before the scan are walked by their lengths (an EXIF
    thumbnail is a whole JPEG inside one of them)."""
    data = bytes(data)
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:  # extraneous bytes, which libjpeg skips too
            i = data.find(b"\xff", i)
            if i < 0:
                return False
            continue
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD7:  # no length
            i += 2
        elif marker == 0xDA:  # start of scan
            return data.find(b"\xff\xd9", i) >= 0
        else:
            i += 2 + (data[i + 2] << 8 | data[i + 3])
    return False


class RandomResizedCrop:
    """JPEG bytes or PIL image -> float32 tensor (3, size, size); picklable (see the module doc).

    Args:
        size: output side in pixels.
        scale, ratio: the box's area fraction and aspect ratio ranges (torchvision's).
        flip: probability of a left-right flip.
        mean, std: per-channel normalisation of the [0, 1] values (both or neither).
        fast_decode: decode only the box at reduced DCT scale when the input is a JPEG.
        seed: the random generator's seed (mixed with the process id, so that DataLoader workers
            differ); None: fresh entropy.
    Raises:
        DecodeError: for bytes that are not a readable image (corrupt, truncated), naming the cause.
    """

    # The native decoder's settings on the fast path. JDCT_IFAST keeps the output >= 45 dB PSNR
    # against the full path on the benchmark's images; plain chroma upsampling would drop that to
    # 35-40 dB for no gain measurable here, so upsampling stays fancy.
    fast_idct = True
    fancy_upsampling = True

    def __init__(self, size: int, scale: tuple[float, float] = (0.08, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3), flip: float = 0.5,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 fast_decode: bool = True, seed: int | None = None) -> None:
        if size <= 0:
            raise ValueError(f"size must be positive, got {size}")
        if (mean is None) != (std is None):
            raise ValueError("mean and std go together")
        if scale[0] > scale[1] or ratio[0] > ratio[1]:
            raise ValueError("scale and ratio must be (min, max)")
        self.size, self.scale, self.ratio, self.flip = int(size), tuple(scale), tuple(ratio), float(flip)
        self.mean = None if mean is None else tuple(float(m) for m in mean)
        self.std = None if std is None else tuple(float(s) for s in std)
        self.fast_decode, self.seed = bool(fast_decode), seed
        self._rng: Any = None
        self._pid = -1
        self._lut: Any = None
        load_pil()  # here, not in each forked DataLoader worker

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_rng": None, "_pid": -1, "_lut": None}

    def __repr__(self) -> str:
        return (f"RandomResizedCrop(size={self.size}, scale={self.scale}, ratio={self.ratio}, flip={self.flip}, "
                f"mean={self.mean}, std={self.std}, fast_decode={self.fast_decode}, seed={self.seed})")

    @property
    def rng(self) -> Any:
        """This process's generator (made afresh in a forked child, so that workers differ)."""
        if self._rng is None or self._pid != os.getpid():
            import numpy as np

            self._pid = os.getpid()
            self._rng = np.random.default_rng(None if self.seed is None else [self.seed, self._pid])
        return self._rng

    def get_params(self, width: int, height: int, rng: Any = None) -> tuple[int, int, int, int]:
        """(x, y, w, h) of a random box of a width x height image: torchvision's
        ``RandomResizedCrop.get_params`` with numpy's generator."""
        rng = self.rng if rng is None else rng
        area = width * height
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target_area = area * rng.uniform(self.scale[0], self.scale[1])
            aspect = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
            w = int(round(math.sqrt(target_area * aspect)))
            h = int(round(math.sqrt(target_area / aspect)))
            if 0 < w <= width and 0 < h <= height:
                y = int(rng.integers(0, height - h + 1))
                x = int(rng.integers(0, width - w + 1))
                return x, y, w, h
        in_ratio = width / height  # fallback: the central crop of the nearest allowed ratio
        if in_ratio < min(self.ratio):
            w, h = width, int(round(width / min(self.ratio)))
        elif in_ratio > max(self.ratio):
            w, h = int(round(height * max(self.ratio))), height
        else:
            w, h = width, height
        return (width - w) // 2, (height - h) // 2, w, h

    def __call__(self, image: Any) -> Any:
        native = native_jpeg() if self.fast_decode else None
        if native is not None and isinstance(image, (bytes, bytearray, memoryview)) and \
                bytes(image[:3]) == _JPEG_MAGIC:
            try:
                resized = self._fast(native, image)
            except NotImplementedError:  # a colour space the native decoder refuses: PIL's
                resized = None
            if resized is not None:
                return self._finish(resized)
        return self._finish(self._full(image))

    def _fast(self, native: Any, data: Any) -> Any:
        """The resized PIL image from the native decoder's crop at reduced scale (None: not a
        JPEG the native decoder converts to RGB)."""
        from PIL import Image

        try:
            width, height, components, _ = native.jpeg_header(data)
            if components not in (1, 3):  # CMYK / YCCK: PIL's, before a box is drawn
                return None
            limit = Image.MAX_IMAGE_PIXELS
            if limit is not None and width * height > 2 * limit:  # PIL's full path refuses the bomb
                return None
            x, y, w, h = self.get_params(width, height)
            pixels, x0, y0, n = native.jpeg_decode_crop(data, x, y, w, h, self.size, self.size,
                                                              fast_idct=self.fast_idct,
                                                              fancy_upsampling=self.fancy_upsampling)
        except NotImplementedError:
            raise
        except RuntimeError as exc:
            raise DecodeError(f"cannot decode JPEG: {exc}") from exc
        if not _ends(data):  # the rows below the box were never read: the file must still end
            raise DecodeError("cannot decode JPEG: truncated JPEG: no end of image marker after its scan")
        f = n / 8  # the box's exact place in the decoded region (fractional below scale 8/8)
        box = (x * f - x0, y * f - y0, (x + w) * f - x0, (y + h) * f - y0)
        return Image.fromarray(pixels).resize((self.size, self.size), Image.Resampling.BILINEAR, box=box)

    def _full(self, image: Any) -> Any:
        """The resized PIL image from a full PIL decode, cropped."""
        from PIL import Image

        if isinstance(image, (bytes, bytearray, memoryview)):
            try:
                with Image.open(io.BytesIO(image)) as opened:
                    opened.load()
                    check_8bit(opened)
                    image = opened.convert("RGB")
            except (OSError, ValueError, Image.DecompressionBombError) as exc:
                raise DecodeError(f"cannot decode image: {type(exc).__name__}: {exc}") from exc
        else:
            try:
                check_8bit(image)
            except ValueError as exc:
                raise DecodeError(f"cannot decode image: {exc}") from exc
            image = image.convert("RGB")
        x, y, w, h = self.get_params(*image.size)
        return image.crop((x, y, x + w, y + h)).resize((self.size, self.size), Image.Resampling.BILINEAR)

    def _finish(self, image: Any) -> Any:
        """Flip (drawn after the box, as torchvision's recipe does), [0, 1], normalise, C x H x W:
        one pass through a table whose entries are exactly ``(v / 255 - mean) / std`` in float32."""
        import numpy as np
        import torch

        flip = bool(self.rng.random() < self.flip)
        arr = np.asarray(image)
        lut = self._table()
        native = _native_module()
        if native is not None:
            return torch.from_numpy(native.hwc_to_chw(arr, lut, flip))
        if flip:
            arr = arr[:, ::-1]
        out = np.empty((3,) + arr.shape[:2], np.float32)
        for c in range(3):
            np.take(lut[c], arr[:, :, c], out=out[c])
        return torch.from_numpy(out)

    def _table(self) -> Any:
        """3 x 256 float32: channel c's value for byte v, computed as the per-pixel arithmetic would be."""
        if self._lut is None:
            import numpy as np

            v = np.arange(256, dtype=np.float32)[None, :].repeat(3, axis=0) / 255.0
            if self.mean is not None and self.std is not None:
                v = (v - np.array(self.mean, np.float32)[:, None]) / np.array(self.std, np.float32)[:, None]
            self._lut = np.ascontiguousarray(v, dtype=np.float32)
        return self._lut
