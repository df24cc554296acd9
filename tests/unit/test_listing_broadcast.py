"""One listing per job: with torch.distributed initialised, rank 0 lists (and indexes the shards)
and the other ranks receive the result (a 2-rank gloo job makes one LIST request, not two, and
reads each shard's index once); a listing cache keeps the listing across runs."""

from __future__ import annotations

import io
import os
import sys
import tarfile
import tempfile

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp
from http_stub import Reply, Seen, object_reply

KEYS = [f"data/o{i}.bin" for i in range(5)]


def _listing_xml() -> bytes:
    items = "".join(f"<Contents><Key>{k}</Key><LastModified>2024-01-01T00:00:00.000Z</LastModified>"
                    f"<ETag>&quot;e1&quot;</ETag><Size>3</Size><StorageClass>STANDARD</StorageClass></Contents>"
                    for k in KEYS)
    return (f'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/'
            f'2006-03-01/"><Name>bkt</Name><Prefix>data/</Prefix><KeyCount>{len(KEYS)}</KeyCount>'
            f"<MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>{items}</ListBucketResult>").encode()


def _script(n: int, seen: Seen) -> Reply:
    """S3 with the KEYS under data/: ListObjectsV2 in one page, every object 3 bytes."""
    if "list-type=2" in seen.path:
        return Reply(200, _listing_xml(), {"Content-Type": "application/xml"})
    return object_reply(b"abc", seen)


def _rank(rank: int, world: int, init: str, endpoint: str, out: str, url: str) -> None:
    """One rank of a gloo job: builds the dataset over ``url``, then writes what it listed, its
    length, the LIST and GET requests its client made so far, and the names it yields."""
    from awsio.config import S3Config
    from awsio.dataset import S3IterableDataset

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        ds = S3IterableDataset(url, config=S3Config(
            endpoint_url=endpoint, backend="python", static_credentials=("a", "b", None)))
        m = ds.metrics()
        with open(f"{out}.{rank}", "w") as f:
            f.write(f"{','.join(ds.urls)}\n{m['list_requests']}\n{len(ds)}\n{m['get_requests']}\n"
                    f"{','.join(sorted(n for n, _ in ds))}")
    finally:
        dist.destroy_process_group()


def _two_rank_job(stub, tmp_path, url: str) -> list[list[str]]:
    """Run _rank on 2 gloo ranks over ``url``; each rank's lines."""
    init = f"file://{tempfile.mkdtemp(dir=tmp_path)}/rendezvous"
    out = str(tmp_path / "rank")
    mp.spawn(_rank, args=(2, init, stub.endpoint, out, url), nprocs=2, join=True)
    return [open(f"{out}.{r}").read().split("\n") for r in range(2)]


@pytest.mark.skipif(sys.platform != "linux", reason="spawns gloo ranks")
def test_a_two_rank_job_lists_once(stub, tmp_path):
    stub.script = _script
    results = _two_rank_job(stub, tmp_path, "s3://bkt/data/")
    lists = [s for s in stub.seen if "list-type=2" in s.path]
    assert len(lists) == 1
    assert results[0][0] == results[1][0] == ",".join(f"s3://bkt/{k}" for k in KEYS)
    assert [int(r[1]) for r in results] == [1, 0]  # rank 0's client made the request
    assert not os.path.exists(tmp_path / "rank.2")


def test_a_listing_cache_lists_once_across_runs(stub, tmp_path):
    from awsio.config import S3Config
    from awsio.dataset import S3IterableDataset

    stub.script = _script
    config = S3Config(endpoint_url=stub.endpoint, backend="python", static_credentials=("a", "b", None))
    cache = str(tmp_path / "listings")
    made = [S3IterableDataset("s3://bkt/data/", config=config, listing_cache=cache) for _ in range(2)]
    assert made[0].urls == made[1].urls == [f"s3://bkt/{k}" for k in KEYS]
    assert sum("list-type=2" in s.path for s in stub.seen) == 1  # the second run read the cache
    assert [m.metrics()["list_requests"] for m in made] == [1, 0]
    S3IterableDataset("s3://bkt/data/", config=config, listing_cache=cache, refresh_listing=True)
    assert sum("list-type=2" in s.path for s in stub.seen) == 2
    other = S3IterableDataset(["s3://bkt/data/"], config=config, listing_cache=cache, shuffle_urls=True)
    assert other.urls == made[0].urls and sum("list-type=2" in s.path for s in stub.seen) == 2
    (next((tmp_path / "listings").iterdir())).write_text("{not json")
    assert S3IterableDataset("s3://bkt/data/", config=config, listing_cache=cache).urls == made[0].urls
    assert sum("list-type=2" in s.path for s in stub.seen) == 3  # an unreadable entry: listed again


SHARDS = {f"tars/s{i}.tar": i for i in range(3)}


def _tar(i: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for j in range(4):
            for ext in ("cls", "bin"):
                data = f"{i}-{j}-{ext}".encode()
                info = tarfile.TarInfo(f"k{j}.{ext}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


TARS = {k: _tar(i) for k, i in SHARDS.items()}


def _tar_script(n: int, seen: Seen) -> Reply:
    """S3 with three tar shards (no sidecar indexes: each is indexed by a ranged header scan)."""
    if "list-type=2" in seen.path:
        items = "".join(f"<Contents><Key>{k}</Key><LastModified>2024-01-01T00:00:00.000Z</LastModified>"
                        f"<ETag>&quot;e1&quot;</ETag><Size>{len(b)}</Size></Contents>" for k, b in TARS.items())
        return Reply(200, (f'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>bkt</Name>'
                           f"<KeyCount>{len(TARS)}</KeyCount><IsTruncated>false</IsTruncated>{items}"
                           "</ListBucketResult>").encode(), {"Content-Type": "application/xml"})
    key = seen.path.split("?")[0].removeprefix("/bkt/")
    if key in TARS:
        return object_reply(TARS[key], seen)
    return Reply(404, b"<Error><Code>NoSuchKey</Code><Message>no</Message></Error>")


@pytest.mark.skipif(sys.platform != "linux", reason="spawns gloo ranks")
def test_a_two_rank_job_indexes_each_shard_once(stub, tmp_path):
    stub.script = _tar_script
    results = _two_rank_job(stub, tmp_path, "s3://bkt/tars/")
    assert [int(r[2]) for r in results] == [6, 6]               # 12 samples over 2 ranks
    names = sorted(results[0][4].split(",") + results[1][4].split(","))
    assert names == sorted(f"k{j}.{e}" for _ in SHARDS for j in range(4) for e in ("bin", "cls"))
    before_reading = [int(r[3]) for r in results]
    assert before_reading[1] == 0, "rank 1 read the shards' indexes itself"
    assert before_reading[0] >= len(SHARDS)  # rank 0: the sidecar probes and the header scans
