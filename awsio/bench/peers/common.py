"""What the peer modules share: one boto3 client recipe, the DataLoader as users build it, tar
member iteration, sample grouping, and the one image transform every loader applies.

The transform is shared so that every loader does exactly the same work per image; only how the
bytes arrive differs.
"""

from __future__ import annotations

import io
import os
import sys
import tarfile
from typing import TYPE_CHECKING, Any, BinaryIO, Iterable, Iterator, Sequence

if TYPE_CHECKING:
    from awsio.bench.engine import Job

__all__ = ["MEAN", "STD", "ImageTransform", "Labelled", "boto3_client", "group_samples", "loader", "my_share", "samples_loader",
           "shard_samples", "split_url", "tar_members"]

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def split_url(url: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key)."""
    bucket, _, key = url[5:].partition("/")
    return bucket, key


def boto3_client(job: Job, pool: int = 32) -> Any:
    """boto3's S3 client as its users make one for a custom endpoint (path-style addressing)."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=job.endpoint, region_name=job.region,
                        config=Config(max_pool_connections=pool, s3={"addressing_style": "path"},
                                      retries={"max_attempts": 5, "mode": "standard"}))


def my_share(items: Sequence[Any]) -> Sequence[Any]:
    """This DataLoader worker's share of ``items`` (all of them outside a worker). torch is not
    imported for this: a process without it is in no DataLoader worker."""
    data = sys.modules.get("torch.utils.data")
    info = data.get_worker_info() if data is not None else None
    return items if info is None else items[info.id::info.num_workers]


def tar_members(stream: BinaryIO) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of every file in a tar read sequentially from ``stream`` (stdlib tarfile)."""
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for m in tar:
            if m.isfile():
                f = tar.extractfile(m)
                yield m.name, f.read() if f is not None else b""


def group_samples(members: Iterable[tuple[str, bytes]]) -> Iterator[dict[str, Any]]:
    """Consecutive members sharing a key (the name up to the first dot of its basename) -> one
    sample dict ``{"__key__": key, ext: bytes, ...}`` (webdataset's convention)."""
    current: dict[str, Any] = {}
    for name, data in members:
        folder, _, base = name.rpartition("/")
        stem, _, ext = base.partition(".")
        key = f"{folder}/{stem}" if folder else stem
        if current and current["__key__"] != key:
            yield current
            current = {}
        current["__key__"] = key
        current[ext] = data
    if current:
        yield current


class ImageTransform:
    """JPEG bytes (or a PIL image) -> float tensor, the same for every loader. Picklable.

    ``resize``: decode, RGB, bilinear resize to ``size`` x ``size``, to a C x H x W tensor in [0, 1].
    ``imagenet``: decode, RandomResizedCrop to ``size`` (scale 0.08-1, ratio 3/4-4/3, bilinear),
    horizontal flip with p=0.5, normalised with ImageNet's mean and std (what torchvision's training
    recipe does, in PIL and numpy so that it needs no torchvision).
    """

    def __init__(self, size: int, kind: str = "resize", seed: int = 0) -> None:
        if kind not in ("resize", "imagenet"):
            raise ValueError(f"unknown image transform {kind!r} (resize or imagenet)")
        self.size, self.kind, self.seed = size, kind, seed
        self._rng: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_rng": None}

    def __call__(self, image: Any) -> Any:
        import numpy as np
        import torch
        from PIL import Image

        if isinstance(image, (bytes, bytearray, memoryview)):
            image = Image.open(io.BytesIO(image))
        image = image.convert("RGB")
        if self.kind == "resize":
            image = image.resize((self.size, self.size), Image.Resampling.BILINEAR)
            arr = np.asarray(image, dtype=np.float32) / 255.0
        else:
            if self._rng is None:
                self._rng = np.random.default_rng([self.seed, os.getpid()])
            image = self._crop(image, self._rng).resize((self.size, self.size), Image.Resampling.BILINEAR)
            if self._rng.random() < 0.5:
                image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            arr = (np.asarray(image, dtype=np.float32) / 255.0 - np.array(MEAN, np.float32)) / np.array(STD, np.float32)
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))

    @staticmethod
    def _crop(image: Any, rng: Any) -> Any:
        import math

        w, h = image.size
        area = w * h
        for _ in range(10):
            target = area * rng.uniform(0.08, 1.0)
            ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
            cw, ch = int(round(math.sqrt(target * ratio))), int(round(math.sqrt(target / ratio)))
            if 0 < cw <= w and 0 < ch <= h:
                x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
                return image.crop((x, y, x + cw, y + ch))
        side = min(w, h)  # fallback: the central square
        return image.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side))


class Labelled:
    """(image bytes, class bytes or int) -> (transformed image, or the bytes untouched; int label).
    Called with one sample dict (``jpg``, ``cls``) it does the same to that dict's fields."""

    def __init__(self, job: Job) -> None:
        self.transform = ImageTransform(job.image_size, job.transform) if job.decode else None

    def __call__(self, image: Any, label: Any = None) -> tuple[Any, int]:
        if isinstance(image, dict):
            image, label = image["jpg"], image["cls"]
        if isinstance(label, (bytes, bytearray)):
            label = int(bytes(label).decode().strip())
        return (self.transform(image) if self.transform is not None else bytes(image)), int(label)


def shard_samples(stream: BinaryIO, job: Job) -> Iterator[Any]:
    """The samples of one tar shard read from ``stream``: ``(name, bytes)`` members for the tar
    workload, labelled images (shared transform) for the images workload."""
    members = tar_members(stream)
    if job.kind != "images":
        yield from members
        return
    finish = Labelled(job)
    for s in group_samples(members):
        yield finish(s)


def samples_loader(source: Any, job: Job) -> Any:
    """The DataLoader over a source of samples, batches of ``job.batch_size`` made in the workers
    (what users of these libraries write): collated images, or lists of tar members."""
    return loader(source, job, batch_size=job.batch_size, **({} if job.kind == "images" else {"collate_fn": list}))


def loader(dataset: Any, job: Job, *, batch_size: int | None = None, **kw: Any) -> Any:
    """The DataLoader a user of that library would write (pinned memory when the batches go to a
    GPU; no persistent workers, so every pass starts its workers afresh). A plain iterable is
    wrapped into an IterableDataset; its ``__iter__`` runs in each worker."""
    from torch.utils.data import DataLoader, Dataset

    if not isinstance(dataset, Dataset):
        dataset = _source_class()(dataset)
    return DataLoader(dataset, batch_size=batch_size, num_workers=job.workers,
                      pin_memory=job.device.startswith("cuda"), **kw)


def _source_class() -> type:
    """A torch IterableDataset over any re-iterable object (torch is imported only when a
    DataLoader is made; DataLoader workers are forked, so this local class is never pickled)."""
    from torch.utils.data import IterableDataset

    class Source(IterableDataset):  # type: ignore[type-arg]
        """Any re-iterable object as a torch IterableDataset."""

        def __init__(self, source: Iterable[Any]) -> None:
            self.source = source

        def __iter__(self) -> Iterator[Any]:
            return iter(self.source)

    return Source

