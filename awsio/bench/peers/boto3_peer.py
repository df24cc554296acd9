"""boto3, the way its documentation and most training scripts use it.

* ``objects``: ``get_object`` + ``Body.read()`` from a ``ThreadPoolExecutor`` of ``threads`` (16)
  threads sharing one client with ``max_pool_connections`` equal to the thread count (botocore's
  default pool of 10 would make threads wait for connections). One client per process, as boto3
  recommends for threads (clients are thread-safe, sessions are not).
* ``tar`` / ``images``: ``get_object`` streamed into ``tarfile`` (mode ``r|``), shards split across
  DataLoader workers; images decoded by the shared transform, batched by the DataLoader.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from awsio.bench.peers.common import boto3_client, my_share, samples_loader, shard_samples, split_url

if TYPE_CHECKING:
    from awsio.bench.engine import Job

IMPORTS = ("boto3",)


class _Threads:
    def __init__(self, job: Job) -> None:
        self.threads = int(job.options.get("threads", 16))
        self.client = boto3_client(job, pool=self.threads)
        self.pool = ThreadPoolExecutor(self.threads)
        self.urls = job.urls

    def _get(self, url: str) -> bytes:
        bucket, key = split_url(url)
        return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[bytes]:
        return self.pool.map(self._get, self.urls)


class _Shards:
    """Samples out of this worker's shards: (name, bytes) members, or labelled images."""

    def __init__(self, job: Job) -> None:
        self.job = job

    def __iter__(self) -> Iterator[Any]:
        client = boto3_client(self.job)
        for url in my_share(self.job.urls):
            bucket, key = split_url(url)
            yield from shard_samples(client.get_object(Bucket=bucket, Key=key)["Body"], self.job)


def make(job: Job) -> Iterable[Any]:
    if job.kind == "objects":
        return _Threads(job)
    return samples_loader(_Shards(job), job)
