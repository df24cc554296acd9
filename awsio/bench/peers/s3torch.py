"""Amazon's s3torchconnector (the CRT client of Mountpoint), as its README configures it.

* ``objects``, ``reader=sequential``: ``S3IterableDataset.from_objects(urls)``, each object read
  whole with ``.read()`` (the sequential reader streams the object in parallel parts: its default
  for datasets);
* ``objects``, ``reader=range_based``: ``S3MapDataset.from_objects(urls, reader_constructor=
  S3ReaderConstructor.range_based())`` indexed in order: the range-based reader the connector
  recommends for random access (its default 8 MiB buffer);
* ``tar`` / ``images``: ``S3IterableDataset.from_objects(shards, enable_sharding=True)`` (shards
  split across DataLoader workers by the connector itself) with the sequential reader, expanded by
  stdlib ``tarfile`` in stream mode.

Client: ``S3ClientConfig(force_path_style=True)`` for the local endpoint; the default
``throughput_target_gbps`` (10) and ``part_size`` (8 MiB).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Iterator

from awsio.bench.peers.common import samples_loader, shard_samples

if TYPE_CHECKING:
    from awsio.bench.engine import Job

IMPORTS = ("s3torchconnector",)


def _client_config() -> Any:
    from s3torchconnector import S3ClientConfig

    return S3ClientConfig(force_path_style=True)


class _Objects:
    def __init__(self, job: Job) -> None:
        from s3torchconnector import S3IterableDataset, S3MapDataset, S3ReaderConstructor

        if job.options["reader"] == "range_based":
            self.ds: Any = S3MapDataset.from_objects(
                job.urls, region=job.region, endpoint=job.endpoint, s3client_config=_client_config(),
                reader_constructor=S3ReaderConstructor.range_based())
            self.indexed = True
        else:
            self.ds = S3IterableDataset.from_objects(job.urls, region=job.region, endpoint=job.endpoint,
                                                     s3client_config=_client_config())
            self.indexed = False

    def __iter__(self) -> Iterator[bytes]:
        if self.indexed:
            for i in range(len(self.ds)):
                yield self.ds[i].read()
        else:
            for reader in self.ds:
                yield reader.read()


class _Shards:
    def __init__(self, job: Job) -> None:
        from s3torchconnector import S3IterableDataset

        self.job = job
        self.ds = S3IterableDataset.from_objects(job.urls, region=job.region, endpoint=job.endpoint,
                                                 s3client_config=_client_config(), enable_sharding=True)

    def __iter__(self) -> Iterator[Any]:
        for reader in self.ds:
            yield from shard_samples(reader, self.job)


def make(job: Job) -> Iterable[Any]:
    if job.kind == "objects":
        return _Objects(job)
    return samples_loader(_Shards(job), job)
