"""awsio itself, as its README shows it.

* ``objects``: :meth:`awsio.s3.client.S3Client.get_many` over every URL, ``ordered=False`` (results
  as they complete), ``max_connections`` = the job's connections (32 by default);
* ``tar``: :class:`awsio.S3IterableDataset` over the shard URLs, ``.batched(batch_size)`` in the
  pipeline, through ``DataLoader(batch_size=None)`` (batches of consecutive samples read by byte
  range; units of a batch split across workers);
  with ``raw``: whole shards from ``get_many`` instead, no tar parsing (the reader's ceiling on the
  same bytes, through the same DataLoader);
* ``images``: ``S3IterableDataset(urls).dataproc(batch_size=B, shuffle=False).decode("pil")
  .transform_fn(image=T)`` with the same transform ``T`` as every loader, batches made in the
  dataset (``DataLoader(batch_size=None)``); with the ``imagenet`` transform,
  ``.decode("bytes").transform_fn(image=RandomResizedCrop(...))`` instead: the same model input
  (crop box sampling, bilinear resize, flip, normalisation), decoded from the JPEG bytes by
  :class:`awsio.decode.RandomResizedCrop`, which decodes only the crop (option ``fast_decode``,
  default on; off: a full PIL decode, as the other loaders).

``backend`` selects the native (libcurl) or the Python (botocore) reader.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Iterator

from awsio.bench.peers.common import MEAN, STD, ImageTransform, loader, my_share

if TYPE_CHECKING:
    from awsio.bench.engine import Job

IMPORTS = ("awsio.s3.client", "awsio.dataset", "awsio.pipeline", "awsio.decode")


def _config(job: Job) -> Any:
    from awsio.config import S3Config

    return S3Config(endpoint_url=job.endpoint, region=job.region, backend=job.options["backend"],
                    max_connections=job.connections)


def expected(job: Job) -> int | None:
    """Whole shards (raw) or the data set's samples."""
    return len(job.urls) if job.options.get("raw") else job.items


class _GetMany:
    """One pass = ``get_many`` over the URLs (this worker's share of them in a DataLoader)."""

    def __init__(self, job: Job) -> None:
        self.urls, self.config = list(job.urls), _config(job)
        self.client: Any = None

    def __iter__(self) -> Iterator[bytes]:
        if self.client is None:  # made once per process: later passes reuse its connections
            from awsio.s3.client import S3Client

            self.client = S3Client(self.config)
        for _url, data in self.client.get_many(my_share(self.urls), ordered=False):
            yield data


def make(job: Job) -> Iterable[Any]:
    if job.kind == "objects":
        return _GetMany(job)
    from awsio.dataset import S3IterableDataset
    from awsio.pipeline import Pipeline

    if job.kind == "tar":
        if job.options.get("raw"):
            return loader(_GetMany(job), job)
        # batches made in the pipeline, one per unit (the README's way with DataLoader workers)
        return loader(Pipeline(S3IterableDataset(job.urls, config=_config(job))).batched(job.batch_size), job)

    pipe = Pipeline(S3IterableDataset(job.urls, config=_config(job))).dataproc(batch_size=job.batch_size,
                                                                            shuffle=False)
    if job.decode and job.transform == "imagenet":
        from awsio.decode import RandomResizedCrop

        crop = RandomResizedCrop(job.image_size, mean=MEAN, std=STD, seed=0,
                                 fast_decode=job.options.get("fast_decode", True))
        pipe = pipe.decode("bytes").transform_fn(image=crop)
    elif job.decode:
        pipe = pipe.decode("pil").transform_fn(image=ImageTransform(job.image_size, job.transform))
    else:
        pipe = pipe.decode("bytes").to_tuple("jpg", "cls")  # the class as an int, as every loader's
    return loader(pipe, job)
