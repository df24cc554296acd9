"""webdataset, reaching S3 the way s3torchconnector's documentation shows it: the connector's
``S3IterableDataset`` yields one stream per shard (``transform`` turns each into webdataset's
``{"url", "stream"}``), and webdataset's own ``tar_file_expander`` and ``group_by_keys`` turn the
streams into samples. (webdataset's other documented route, ``pipe:aws s3 cp ... -``, needs the AWS
CLI and a process per shard.) Shards are split across DataLoader workers with the connector's
``enable_sharding=True``; images are decoded by the shared transform and batched by the DataLoader.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable, Iterator

from awsio.bench.peers.common import Labelled, samples_loader

if TYPE_CHECKING:
    from awsio.bench.engine import Job

IMPORTS = ("s3torchconnector", "webdataset.tariterators")


def _as_shard(reader: Any) -> dict[str, Any]:
    return {"url": reader.key, "stream": reader}


class _Samples:
    def __init__(self, job: Job) -> None:
        from s3torchconnector import S3ClientConfig, S3IterableDataset

        self.ds = S3IterableDataset.from_objects(job.urls, region=job.region, endpoint=job.endpoint,
                                                 s3client_config=S3ClientConfig(force_path_style=True),
                                                 transform=_as_shard, enable_sharding=True)
        self.finish = Labelled(job) if job.kind == "images" else None

    def __iter__(self) -> Iterator[Any]:
        from webdataset.tariterators import group_by_keys, tar_file_expander

        if self.finish is None:
            for m in tar_file_expander(iter(self.ds), eof_value=None):
                yield m["fname"], m["data"]
            return
        for s in group_by_keys(tar_file_expander(iter(self.ds))):
            yield self.finish(s)


def make(job: Job) -> Iterable[Any]:
    return samples_loader(_Samples(job), job)
