"""torchdata 0.11's ``nodes``, the successor of DataPipes, in the pattern its docs give for I/O-bound
work: ``IterableWrapper(urls) -> ParallelMapper(get, num_workers=16, method="thread",
in_order=False) -> Loader``, the map function a boto3 ``get_object`` + ``read()`` on one shared
client (``max_pool_connections`` = the thread count). torchdata has no S3 client of its own any
more (the S3 DataPipes went with DataPipes), so boto3 is what its users plug in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

from awsio.bench.peers.common import boto3_client, split_url

if TYPE_CHECKING:
    from awsio.bench.engine import Job

IMPORTS = ("boto3", "torchdata.nodes")


def make(job: Job) -> Iterable[Any]:
    from torchdata.nodes import IterableWrapper, Loader, ParallelMapper

    threads = int(job.options.get("threads", 16))
    client = boto3_client(job, pool=threads)

    def get(url: str) -> bytes:
        bucket, key = split_url(url)
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()  # type: ignore[no-any-return]

    node = ParallelMapper(IterableWrapper(job.urls), map_fn=get, num_workers=threads, method="thread",
                          in_order=False)
    return Loader(node)
