"""The in-memory ceiling of the image pipeline: the same stages as awsio's (group, decode, the
shared transform, batches) over records already in RAM (:class:`awsio.pipeline.MemorySource`).

The records are read from S3 in :func:`setup`, before the clock starts; what is timed is the decode
and transform work alone, the best any loader can do on this machine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

from awsio.bench.peers.common import ImageTransform, loader

if TYPE_CHECKING:
    from awsio.bench.engine import Job

IMPORTS = ("awsio.dataset", "awsio.pipeline", "PIL.Image")


def setup(job: Job) -> Any:
    from awsio.config import S3Config
    from awsio.dataset import S3IterableDataset

    return list(S3IterableDataset(job.urls, config=S3Config(endpoint_url=job.endpoint, region=job.region)).iter_records())


def make(job: Job) -> Iterable[Any]:
    from awsio.pipeline import MemorySource, Pipeline

    pipe = Pipeline(MemorySource(job.state)).dataproc(batch_size=job.batch_size, shuffle=False)
    if job.decode:
        pipe = pipe.decode("pil").transform_fn(image=ImageTransform(job.image_size, job.transform))
    else:
        pipe = pipe.decode("bytes").to_tuple("jpg", "cls")  # the class as an int, as every loader's
    return loader(pipe, job)
