"""mosaicml-streaming, in the configuration its docs give: the data converted once to MDS shards
(``MDSWriter``, default ``size_limit`` of 64 MiB per shard, no compression; columns ``name: str,
data: bytes`` for tar members, ``jpg: bytes, cls: int`` for images, the JPEG bytes kept as they
are) and read with ``StreamingDataset(remote=<url>, local=<fresh folder per run>, batch_size=B,
shuffle=False)`` through a plain ``DataLoader`` with the same ``batch_size`` (the docs ask for the
same value in both so that the sample partition matches the batches; tar members go out in lists of
``batch_size``, ``collate_fn=list``, as from every loader); ``predownload`` is left at
its default (8 x batch_size). Shards are downloaded to the local folder, so a second pass reads
local files. S3-compatible endpoints are reached through the ``S3_ENDPOINT_URL`` environment
variable, the one the library reads (its boto3 client takes credentials from the environment).
"""

from __future__ import annotations

import os
import sys
import tempfile
from typing import TYPE_CHECKING, Any, Iterable

from awsio.bench.peers.common import Labelled

if TYPE_CHECKING:
    from awsio.bench.engine import Conversion, Job

_KEEP: list[Any] = []


def _streaming() -> Any:
    """``import streaming``. The package imports torchvision, and PyPI's torchvision build does not
    load its compiled ops against a CPU-only torch (``operator torchvision::nms does not exist``);
    streaming uses none of them, so their two schemas are declared and the import retried."""
    try:
        import streaming
    except RuntimeError as e:
        if "torchvision::" not in str(e):
            raise
        import torch

        for name in [m for m in sys.modules if m.split(".")[0] in ("torchvision", "streaming")]:
            del sys.modules[name]
        lib = torch.library.Library("torchvision", "FRAGMENT")
        lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _KEEP.append(lib)  # dropping the Library object would undefine the ops
        import streaming
    return streaming


_COLUMNS = {"images": {"jpg": "bytes", "cls": "int"}}
_DEFAULT_COLUMNS = {"name": "str", "data": "bytes"}


def prepare(manifest: Any, endpoint: Any, options: dict[str, Any]) -> Conversion:
    """Write the data set as MDS shards to S3 (boto3 reads the source; MDSWriter uploads)."""
    from awsio.bench.peers.convert import converted, source_samples

    def write(url: str) -> None:
        MDSWriter = _streaming().MDSWriter
        os.environ["S3_ENDPOINT_URL"] = endpoint.url or ""
        client = endpoint.boto3()
        with tempfile.TemporaryDirectory(prefix="awsio-bench-mds-") as local:
            with MDSWriter(out=(local, url), columns=_COLUMNS.get(manifest.kind, _DEFAULT_COLUMNS)) as writer:
                for src in manifest.urls:
                    for sample in source_samples(manifest.kind, src, client):
                        writer.write(sample)

    return converted("mosaic", manifest, endpoint, write)


def _dataset_class() -> type:
    StreamingDataset = _streaming().StreamingDataset

    class Dataset(StreamingDataset):  # type: ignore[misc,valid-type]
        """StreamingDataset with the shared image transform applied per sample (its documented
        extension point: override ``__getitem__``)."""

        finish: Any = None

        def __getitem__(self, index: int) -> Any:
            sample = super().__getitem__(index)
            if self.finish is None:
                return sample["name"], sample["data"]
            return self.finish(sample)

    return Dataset


def setup(job: Job) -> None:
    _streaming()  # imported before the clock starts, like every loader's library


def make(job: Job) -> Iterable[Any]:
    from torch.utils.data import DataLoader

    if job.converted is None:
        raise RuntimeError("mosaicml-streaming needs its MDS copy of the data set (no conversion was made)")
    os.environ["S3_ENDPOINT_URL"] = job.endpoint or ""
    images = job.kind == "images"
    ds = _dataset_class()(remote=job.converted, local=job.cache_dir, batch_size=job.batch_size, shuffle=False)
    ds.finish = Labelled(job) if images else None
    return DataLoader(ds, batch_size=job.batch_size, num_workers=job.workers, **({} if images else {"collate_fn": list}))
