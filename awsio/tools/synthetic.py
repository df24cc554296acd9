"""A small learnable image-classification set: real JPEGs whose class is visible in the pixels.

Each class is a (colour, stripe orientation) pair drawn under a random occluding square and strong
noise, so a small CNN needs a few hundred steps (not a handful) and accuracy visibly rises over
the first epochs. Deterministic: every image comes from a generator seeded by (seed, index).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Iterator

__all__ = ["Sample", "synthetic_image", "synthetic_samples"]

# Well separated colours; a class is (colour, stripe orientation), colours from the first five.
_PALETTE = [
    (220, 40, 40), (40, 180, 40), (40, 70, 220), (230, 200, 30), (200, 40, 200),
    (30, 200, 200), (240, 130, 20), (120, 60, 20), (150, 150, 150), (20, 20, 20),
]
_COLOURS = 5


@dataclass(frozen=True)
class Sample:
    """One sample: its key and its fields (extension without the dot -> bytes), written in order."""

    key: str
    fields: tuple[tuple[str, bytes], ...]

    @property
    def nbytes(self) -> int:
        return sum(len(v) for _, v in self.fields)


def synthetic_image(label: int, classes: int, size: int, rng: Any) -> Any:
    """A ``size`` x ``size`` RGB uint8 array showing its class as (colour, stripe orientation).

    Classes share colours (five of them) and differ by the stripes' angle too, under a random
    occluding square and strong noise: a CNN needs a few hundred steps, not a handful, so the
    accuracy visibly rises over the first epochs.
    """
    import numpy as np

    colours = min(classes, _COLOURS)
    orientations = -(-classes // colours)
    colour = np.array(_PALETTE[label % colours], dtype=np.float32)
    angle = np.pi * (label // colours) / orientations
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    period = size / 4.0
    phase = rng.uniform(0, 2 * np.pi)
    stripes = 0.5 + 0.5 * np.sin((np.cos(angle) * xx + np.sin(angle) * yy) * 2 * np.pi / period + phase)
    brightness = rng.uniform(0.5, 1.0)
    img = colour[None, None, :] * (0.35 + 0.65 * stripes[..., None]) * brightness
    s = int(rng.integers(size // 5, size // 2))
    y0, x0 = (int(v) for v in rng.integers(0, size - s, size=2))
    img[y0:y0 + s, x0:x0 + s, :] = rng.uniform(0, 255, size=3)
    img += rng.normal(0, 90, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def synthetic_samples(n: int, *, classes: int = 10, size: int = 32, seed: int = 0,
                      quality: int = 90) -> Iterator[Sample]:
    """``n`` synthetic JPEG samples (``.cls`` then ``.jpg``), labels balanced, order shuffled by seed."""
    import numpy as np
    from PIL import Image

    if n < 1 or classes < 1 or size < 8:
        raise ValueError("synthetic set needs n >= 1, classes >= 1 and size >= 8")
    labels = np.arange(n) % classes
    np.random.default_rng([seed, 0]).shuffle(labels)
    for i in range(n):
        rng = np.random.default_rng([seed, 1, i])
        label = int(labels[i])
        buf = io.BytesIO()
        Image.fromarray(synthetic_image(label, classes, size, rng)).save(buf, format="JPEG", quality=quality)
        yield Sample(f"{i:08d}", (("cls", str(label).encode()), ("jpg", buf.getvalue())))
