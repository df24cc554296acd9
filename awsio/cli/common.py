"""Shared pieces of the train and bench jobs: Hydra config location, S3Config from a config group,
value validation with clear messages, and the image-classification input pipeline."""

from __future__ import annotations

import io
import os
import sys
from typing import Any, Sequence

from awsio.config import S3Config, setting_names

__all__ = ["CONF_DIR", "ConfigValueError", "ImageToTensor", "build_image_dataset", "check", "image_pipeline",
           "as_pipeline", "die", "s3_config", "url_list"]


def _conf_dir() -> str:
    """Where the Hydra configs live: ``$AWSIO_CONF_DIR``, the source tree's ``conf/``, or ``./conf``."""
    env = os.environ.get("AWSIO_CONF_DIR")
    if env:
        return os.path.abspath(env)
    # The source tree (editable installs); else ./conf (a non-editable install run from a checkout).
    here = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "conf")
    if os.path.isfile(os.path.join(here, "train.yaml")):
        return here
    return os.path.abspath("conf")


CONF_DIR = _conf_dir()


class ConfigValueError(ValueError):
    """A config value out of range; the message names the key, the value and what is expected."""


def check(ok: bool, key: str, value: Any, expected: str) -> None:
    if not ok:
        from awsio.logsafe import redact

        raise ConfigValueError(redact(f"{key}={value!r} is invalid: {expected} "  # (a presigned URL...)
                                      f"(fix it with the override {key}=...)"))


def die(prog: str, message: str, code: int = 2) -> None:
    """Print one clear error line and exit (used instead of a traceback for config mistakes)."""
    print(f"{prog}: error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_positive_int(key: str, value: Any, minimum: int = 1) -> None:
    check(_is_int(value) and value >= minimum, key, value, f"expected an integer >= {minimum}")


def url_list(urls: Any) -> list[str]:
    """``data.urls`` as a list of strings (a string, a comma-free list, or a ListConfig)."""
    if isinstance(urls, str):
        items = [urls]
    else:
        try:
            items = [str(u) for u in urls]
        except TypeError:
            items = []
    items = [u for u in items if u]
    check(bool(items), "data.urls", urls, "expected an s3:// URL, brace pattern or list of them")
    for u in items:
        check(u.startswith("s3://"), "data.urls", u, "every URL must start with s3://")
    return items


def s3_config(section: Any) -> S3Config:
    """An :class:`S3Config` from the ``s3`` config group (None values fall back to the environment)."""
    values = {k: v for k, v in dict(section or {}).items() if v is not None and v != ""}
    known = setting_names()
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigValueError(f"s3: unknown setting(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return S3Config(**values)


class ImageToTensor:
    """PIL image (or raw image bytes) -> normalised float CHW tensor of ``size`` x ``size``.

    Plain numpy + PIL so that it works without torchvision; picklable for DataLoader workers.
    """

    def __init__(self, size: int) -> None:
        self.size = int(size)

    def __call__(self, image: Any) -> Any:
        import numpy as np
        import torch
        from PIL import Image

        if isinstance(image, (bytes, bytearray, memoryview)):
            image = Image.open(io.BytesIO(bytes(image)))
        image = image.convert("RGB")
        if image.size != (self.size, self.size):
            image = image.resize((self.size, self.size), Image.Resampling.BILINEAR)
        arr = np.asarray(image, dtype=np.float32) / 255.0
        t = torch.from_numpy(arr.transpose(2, 0, 1).copy())
        return (t - 0.5) / 0.25


class ToLabel:
    """Class field -> int (decoded int, or the ``.cls`` bytes)."""

    def __call__(self, value: Any) -> int:
        if isinstance(value, (bytes, bytearray)):
            return int(bytes(value).decode().strip())
        return int(value)


def build_image_dataset(urls: Sequence[str], *, config: S3Config, image_key: str = "jpg;jpeg;png",
                        label_key: str = "cls", image_size: int = 32, shuffle_urls: bool = True,
                        shuffle_window: int = 8, equal_work: str | None = "drop", seed: int = 0,
                        batch_size: int | None = None) -> Any:
    """(image tensor, int label) samples from tar shards: ``S3IterableDataset`` + the pipeline
    (:func:`image_pipeline`).

    ``shuffle_urls`` shuffles the epoch's order (shards, then samples within windows of
    ``shuffle_window`` shards); ``equal_work``: None, ``"drop"`` or ``"repeat"`` (every rank
    yields the same number of samples).
    """
    from awsio.dataset import S3IterableDataset

    ds = S3IterableDataset(list(urls), shuffle_urls=shuffle_urls, seed=seed, config=config,
                           equal_work=equal_work, window=shuffle_window)
    return image_pipeline(ds, image_key=image_key, label_key=label_key, image_size=image_size,
                          batch_size=batch_size)


def image_pipeline(source: Any, *, image_key: str = "jpg;jpeg;png", label_key: str = "cls",
                   image_size: int = 32, batch_size: int | None = None) -> Any:
    """Decode, to (tensor, label), and batch in the pipeline when ``batch_size`` is given (use the
    DataLoader with ``batch_size=None``): one batch per unit is what makes a saved state exact.
    The returned pipeline has ``set_epoch``, ``state_dict`` and ``load_state_dict``."""
    pipe = (as_pipeline(source).decode("pil")
            .to_tuple(image_key, label_key)
            .map(_TupleTransform(ImageToTensor(image_size), ToLabel())))
    if batch_size is not None:
        pipe = pipe.batched(batch_size)
    return pipe


def as_pipeline(ds: Any) -> Any:
    """``ds`` itself when it has the fluent methods, else a :class:`awsio.pipeline.Pipeline` over it."""
    if hasattr(ds, "decode"):
        return ds
    from awsio.pipeline import Pipeline

    return Pipeline(ds)


class _TupleTransform:
    def __init__(self, *fns: Any) -> None:
        self.fns = fns

    def __call__(self, sample: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(fn(v) for fn, v in zip(self.fns, sample))
