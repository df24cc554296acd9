"""The benchmarks' data sets: made once per endpoint, described by a manifest, reused by every run.

Three kinds, all written to ``s3://<bucket>/<kind>/<shape>/``:

* ``objects``: ``count`` objects of ``size`` random bytes (``000000.bin`` ...);
* ``tar``: ``count`` tar shards of about ``size`` bytes, members of ``member`` random bytes, one
  member per sample (written with the project's shard maker, :mod:`awsio.tools.makeshards`);
* ``images``: ``count`` photo-like JPEGs (``width`` x ``height``, quality 90, smooth gradients plus
  noise) with a class label, in ``shards`` tar shards of ``.jpg`` + ``.cls`` samples.

:func:`ensure` uploads a set unless its manifest (``s3://<bucket>/_manifests/<kind>/<shape>.json``,
outside the data prefix so that listing the data finds only data) says it is there already.
:func:`from_urls` describes a set someone else made (the Hydra bench job's ``urls``).
"""

from __future__ import annotations

import io
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Sequence

from awsio.bench.endpoint import Endpoint

__all__ = ["DataSet", "Manifest", "ensure", "from_urls", "jpegs"]

log = logging.getLogger("awsio.bench")
MiB = 1 << 20
KINDS = ("objects", "tar", "images")


@dataclass(frozen=True)
class DataSet:
    """The shape of a benchmark data set (see the module docstring for each kind's fields)."""

    kind: str
    count: int
    size: int = 0
    member: int = 0
    width: int = 128
    height: int = 128
    shards: int = 8
    classes: int = 10
    bucket: str = "awsio-bench"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"data set kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.count < 1:
            raise ValueError(f"a {self.kind} data set needs count >= 1, not {self.count}")

    @property
    def shape(self) -> str:
        if self.kind == "objects":
            return f"{self.count}x{self.size}"
        if self.kind == "tar":
            return f"{self.count}x{self.size}-m{self.member}"
        return f"{self.count}x{self.width}x{self.height}-s{self.shards}-c{self.classes}"

    @property
    def prefix(self) -> str:
        return f"{self.kind}/{self.shape}"

    def describe(self) -> str:
        if self.kind == "objects":
            return f"{self.count:,} x {_size(self.size)} objects"
        if self.kind == "tar":
            return f"{self.count} x {_size(self.size)} tar shards of {_size(self.member)} members"
        return f"{self.count:,} {self.width}x{self.height} JPEGs in {self.shards} tar shards"


@dataclass
class Manifest:
    """What a data set holds: its object URLs and sizes, samples and bytes per pass."""

    kind: str
    urls: list[str]
    sizes: list[int]
    items: int | None
    description: str
    build_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return sum(self.sizes)

    @property
    def bucket(self) -> str:
        return self.urls[0][5:].split("/", 1)[0]

    @property
    def prefix(self) -> str:
        """The common key prefix of the objects (ends with ``/``)."""
        keys = [u[5:].split("/", 1)[1] for u in self.urls]
        common = keys[0].rsplit("/", 1)[0] + "/" if "/" in keys[0] else ""
        return common if all(k.startswith(common) for k in keys) else ""


def _size(n: int) -> str:
    return f"{n / MiB:g} MiB" if n >= MiB else f"{n / 1024:g} KiB"


def _manifest_key(data: DataSet) -> str:
    return f"_manifests/{data.prefix}.json"


def ensure(data: DataSet, endpoint: Endpoint) -> Manifest:
    """The manifest of ``data`` on ``endpoint``, uploading the set first if it is not there."""
    endpoint.ensure_bucket(data.bucket)
    s3 = endpoint.boto3()
    try:
        body = s3.get_object(Bucket=data.bucket, Key=_manifest_key(data))["Body"].read()
        m = Manifest(**json.loads(body))
        m.build_s = None  # made by an earlier run
        return m
    except s3.exceptions.NoSuchKey:
        pass
    t0 = time.perf_counter()
    manifest = {"objects": _objects, "tar": _tar, "images": _images}[data.kind](data, endpoint)
    manifest.build_s = time.perf_counter() - t0
    s3.put_object(Bucket=data.bucket, Key=_manifest_key(data), Body=json.dumps(asdict(manifest)).encode())
    log.info("made %s in %.1f s", data.describe(), manifest.build_s)
    return manifest


def from_urls(urls: Sequence[str], endpoint: Endpoint) -> Manifest:
    """A manifest for existing objects (sizes from HEAD; sample count unknown until read)."""
    s3 = endpoint.boto3()
    sizes = []
    for url in urls:
        bucket, key = url[5:].split("/", 1)
        sizes.append(int(s3.head_object(Bucket=bucket, Key=key)["ContentLength"]))
    total = sum(sizes)
    return Manifest("images", list(urls), sizes, None, f"{len(urls)} shards, {_size(total)} in all")


def _payload_pool(nbytes: int) -> bytes:
    import numpy as np

    return np.random.default_rng(0).integers(0, 256, nbytes, dtype=np.uint8).tobytes()


def _objects(data: DataSet, endpoint: Endpoint) -> Manifest:
    pool = _payload_pool(max(4 * data.size, 16 * MiB))
    s3 = endpoint.boto3(pool=16)
    keys = [f"{data.prefix}/{i:06d}.bin" for i in range(data.count)]

    def put(i: int) -> None:
        start = (i * 7919) % (len(pool) - data.size + 1)
        s3.put_object(Bucket=data.bucket, Key=keys[i], Body=pool[start:start + data.size])

    with ThreadPoolExecutor(8) as ex:
        list(ex.map(put, range(data.count)))
    return Manifest("objects", [f"s3://{data.bucket}/{k}" for k in keys], [data.size] * data.count,
                    data.count, data.describe())


def _write_shards(samples: Iterator[Any], data: DataSet, endpoint: Endpoint, maxcount: int, maxsize: int,
                  kind: str) -> Manifest:
    from awsio.config import S3Config
    from awsio.tools.makeshards import write_shards
    from awsio.tools.storage import Storage

    env = endpoint.env
    config = S3Config(endpoint_url=endpoint.url, region=endpoint.region, static_credentials=(
        env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"], None) if "AWS_ACCESS_KEY_ID" in env else None)
    storage = Storage(config)
    try:
        out = write_shards(samples, f"s3://{data.bucket}/{data.prefix}/", prefix="shard", maxcount=maxcount,
                           maxsize=maxsize, storage=storage, progress=False, overwrite=True)
        sizes = [storage.size(u) for u in out["urls"]]
    finally:
        storage.close()
    return Manifest(kind, out["urls"], sizes, out["samples"], data.describe())


def _tar(data: DataSet, endpoint: Endpoint) -> Manifest:
    from awsio.tools.synthetic import Sample

    pool = _payload_pool(max(4 * data.member, 16 * MiB))
    per_shard = max(1, (data.size - 1024) // (data.member + 1024))

    def samples() -> Iterator[Sample]:
        for i in range(data.count * per_shard):
            start = (i * 7919) % (len(pool) - data.member + 1)
            yield Sample(f"{i // per_shard:04d}/{i:07d}", (("bin", pool[start:start + data.member]),))

    return _write_shards(samples(), data, endpoint, per_shard, data.size, "tar")


def jpegs(count: int, width: int, height: int, *, seed: int = 0, start: int = 0) -> Iterator[bytes]:
    """``count`` distinct photo-like JPEGs (smooth gradients plus noise, quality 90), deterministic."""
    import numpy as np
    from PIL import Image

    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    for i in range(start, start + count):
        rng = np.random.default_rng([seed, i])
        base = np.stack([(xx * rng.uniform(0.2, 1.0) + yy * rng.uniform(0.2, 1.0) + rng.uniform(0, 255)) % 256
                         for _ in range(3)], axis=2)
        arr = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, "JPEG", quality=90)
        yield buf.getvalue()


def _images(data: DataSet, endpoint: Endpoint) -> Manifest:
    from awsio.tools.synthetic import Sample

    def samples() -> Iterator[Sample]:
        for i, jpg in enumerate(jpegs(data.count, data.width, data.height)):
            yield Sample(f"{i:08d}", (("cls", str(i % data.classes).encode()), ("jpg", jpg)))

    per_shard = -(-data.count // data.shards)
    return _write_shards(samples(), data, endpoint, per_shard, 1 << 40, "images")
