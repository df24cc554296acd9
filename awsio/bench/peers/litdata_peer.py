"""litdata (Lightning AI), in the two ways its README leads with.

* ``tar`` / ``images``: the data ``optimize()``d first (the conversion, once per data set, timed
  apart): every sample written as litdata chunks of ``chunk_bytes="64MB"`` (the size its docs use
  for streaming from cloud storage), image bytes stored as they are (no re-encoding), by as many
  workers as there are shards or cores. Read with ``StreamingDataset(url, cache_dir=<fresh folder
  per run>)`` and, for image batches, ``StreamingDataLoader`` (litdata's DataLoader); tar members go
  out in lists of ``batch_size`` through a plain ``DataLoader(collate_fn=list)`` like every loader's
  (the StreamingDataLoader would collate the bytes); the default ``max_pre_download=2``. Chunks land in the local
  cache, so the second pass of a run reads local files: that is litdata's "second epoch".
* ``objects`` (``raw``): ``StreamingRawDataset(prefix)`` over the objects as they are, no
  conversion, through a plain ``DataLoader(batch_size=B)`` as its docs show (a batch's objects are
  fetched concurrently by ``__getitems__``; default ``max_concurrent_downloads``).

The S3-compatible endpoint goes in ``storage_options={"endpoint_url": ...}`` as litdata documents
for MinIO-style servers (credentials from the environment); obstore, litdata's chunk downloader,
takes the same endpoint from its boto3 client (plus ``allow_http`` for a plain-http server, see
:func:`_allow_http`). The raw dataset lists the prefix with s3fs. Images are decoded by the shared transform
(``StreamingDataset(transform=...)``), batches made by the DataLoader.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from awsio.bench.peers.common import Labelled, loader

if TYPE_CHECKING:
    from awsio.bench.engine import Conversion, Job

IMPORTS = ("boto3", "litdata")


def _storage_options(endpoint: str | None) -> dict[str, Any]:
    # Only the endpoint: the same dict goes to boto3 (chunk downloads) and, for the raw dataset, to
    # s3fs (listing), which name the keys differently; both read them from the environment.
    return {"endpoint_url": endpoint} if endpoint else {}


def _allow_http(endpoint: str | None) -> None:
    """litdata's obstore client options lack ``allow_http``, so obstore refuses an ``http://``
    endpoint (``BadScheme``); for a plain-http server (the local one) the option is added, the only
    change to litdata's defaults. Over https (AWS) nothing changes."""
    if endpoint and endpoint.startswith("http://"):
        from litdata.streaming import downloader

        downloader._OBSTORE_CLIENT_OPTIONS = {**downloader._OBSTORE_CLIENT_OPTIONS, "allow_http": "true"}


def _samples(kind: str, endpoint: str | None, region: str, urls: list[str], index: int) -> Iterator[dict[str, Any]]:
    import boto3

    from awsio.bench.peers.convert import source_samples

    # Shard indices, not URLs, are optimize()'s inputs: it would take URL strings for files to
    # download itself and hand the function local paths.
    client = boto3.client("s3", endpoint_url=endpoint, region_name=region)
    yield from source_samples(kind, urls[index], client)


def prepare(manifest: Any, endpoint: Any, options: dict[str, Any]) -> Conversion | None:
    """``optimize()`` the data set to litdata chunks (not for ``raw``, which reads the objects)."""
    if options.get("raw"):
        return None
    from awsio.bench.peers.convert import converted

    def write(url: str) -> None:
        from litdata import optimize

        _allow_http(endpoint.url)
        optimize(fn=functools.partial(_samples, manifest.kind, endpoint.url, endpoint.region, manifest.urls),
                 inputs=list(range(len(manifest.urls))),
                 output_dir=url, chunk_bytes="64MB", num_workers=max(1, min(len(manifest.urls), os.cpu_count() or 1)),
                 storage_options=_storage_options(endpoint.url), verbose=False)

    return converted("litdata", manifest, endpoint, write)


def _member(sample: dict[str, Any]) -> tuple[str, bytes]:
    # litdata hands out a memoryview of its chunk; the DataLoader would turn that into a list of
    # ints (a memoryview is a Sequence), so it becomes bytes, which every other loader yields.
    return sample["name"], bytes(sample["data"])


def _prefix(urls: list[str]) -> str:
    return os.path.commonprefix(urls).rsplit("/", 1)[0] + "/"


def make(job: Job) -> Iterable[Any]:
    import litdata

    opts = _storage_options(job.endpoint)
    _allow_http(job.endpoint)
    if job.options.get("raw"):
        from torch.utils.data import DataLoader

        raw = litdata.StreamingRawDataset(_prefix(job.urls), cache_dir=job.cache_dir, storage_options=opts)
        return DataLoader(raw, batch_size=job.batch_size, num_workers=job.workers)
    if job.converted is None:
        raise RuntimeError("litdata needs its optimize()d copy of the data set (no conversion was made)")
    images = job.kind == "images"
    ds = litdata.StreamingDataset(job.converted, cache_dir=job.cache_dir, storage_options=opts,
                                  transform=Labelled(job) if images else _member)
    if images:
        return litdata.StreamingDataLoader(ds, batch_size=job.batch_size, num_workers=job.workers)
    # tar members go out in lists of batch_size, as from every loader, through a plain DataLoader
    # (which litdata's StreamingDataset also supports; StreamingDataLoader would collate bytes).
    return loader(ds, job, batch_size=job.batch_size, collate_fn=list)
