"""The datasets against a real S3 server (SeaweedFS): user snippets, DataLoader workers under
fork and spawn, archives of every kind, and a 2-rank gloo run with equal work."""

from __future__ import annotations

import gzip
import io
import os
import socket
import tarfile
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch

from awsio.config import S3Config
from awsio.dataset import S3IterableDataset

pytestmark = pytest.mark.integration


def _tar(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _samples(prefix: str, n: int) -> list[tuple[str, bytes]]:
    out = []
    for i in range(n):
        out.append((f"{prefix}_{i:05d}.cls", str(i % 10).encode()))
        out.append((f"{prefix}_{i:05d}.jpg", os.urandom(1000 + i)))
    return out


@pytest.fixture()
def client(s3_config: S3Config) -> Any:
    from awsio.s3.client import S3Client

    c = S3Client(s3_config)
    yield c
    c.close()


def test_user_snippets_from_environment(s3_server: Any, s3_bucket: str, client: Any,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    for i in range(5):
        client.put(f"s3://{s3_bucket}/integration_tests/files/f{i}.txt", f"file {i}".encode())
    client.put(f"s3://{s3_bucket}/integration_tests/files_other.txt", b"not in the folder")
    client.put(f"s3://{s3_bucket}/integration_tests/imagenet-train-000000.tar",
               _tar(_samples("n01440764", 3)))
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    from awsio.python.lib.io.s3.s3dataset import S3IterableDataset as Old

    dataset = Old([f"s3://{s3_bucket}/integration_tests/files"])
    got = [(fname, fobj) for fname, fobj in dataset]
    folder = [(f"s3://{s3_bucket}/integration_tests/files/f{i}.txt", f"file {i}".encode()) for i in range(5)]
    # the original lists the raw prefix; the main API lists the "folder"
    assert got == folder + [(f"s3://{s3_bucket}/integration_tests/files_other.txt", b"not in the folder")]
    assert list(S3IterableDataset(f"s3://{s3_bucket}/integration_tests/files")) == folder
    dataset = Old([f"s3://{s3_bucket}/integration_tests/imagenet-train-000000.tar"])
    it = iter(dataset)
    label_fname, label_fobj = next(it)
    image_fname, _ = next(it)
    assert (label_fname, int(label_fobj)) == ("n01440764_00000.cls", 0)
    assert image_fname == "n01440764_00000.jpg"


@pytest.fixture()
def mixed(s3_bucket: str, client: Any) -> tuple[str, Counter[tuple[str, bytes]]]:
    """Uneven tar, tar.gz and zip shards plus plain objects under one prefix."""
    expected: Counter[tuple[str, bytes]] = Counter()
    base = f"s3://{s3_bucket}/mixed/"
    for i, n in enumerate([7, 2, 5]):
        members = _samples(f"t{i}/k", n)
        client.put(f"{base}shard-{i}.tar", _tar(members))
        expected.update(members)
    members = _samples("gz/k", 4)
    client.put(f"{base}shard-gz.TGZ", gzip.compress(_tar(members)))
    expected.update(members)
    zbuf = io.BytesIO()
    members = _samples("zip/k", 3)
    with zipfile.ZipFile(zbuf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            zf.writestr(name, data)
    client.put(f"{base}shard-z.zip", zbuf.getvalue())
    expected.update(members)
    for i in range(6):
        url = f"{base}plain/{i}.bin"
        client.put(url, bytes([i]) * 100)
        expected[(url, bytes([i]) * 100)] += 1
    return base, expected


@pytest.mark.parametrize("context,workers", [("fork", 0), ("fork", 2), ("fork", 4), ("spawn", 2), ("spawn", 4)])
def test_dataloader_workers(mixed: tuple[str, Counter[tuple[str, bytes]]], s3_config: S3Config,
                            context: str, workers: int) -> None:
    base, expected = mixed
    ds = S3IterableDataset(base, config=s3_config, shuffle_urls=True, seed=1)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers,
                                         multiprocessing_context=context if workers else None)
    assert Counter((n, bytes(d)) for n, d in loader) == expected


class _TagWorker(torch.utils.data.IterableDataset):  # type: ignore[type-arg]
    def __init__(self, inner: S3IterableDataset) -> None:
        self.inner = inner

    def __iter__(self) -> Any:
        info = torch.utils.data.get_worker_info()
        for name, data in self.inner:
            yield info.id if info else 0, name, data


def test_one_shard_many_workers_reads_ranges(s3_bucket: str, client: Any, s3_config: S3Config) -> None:
    members = _samples("one/k", 40)
    client.put(f"s3://{s3_bucket}/one/only.tar", _tar(members))
    ds = S3IterableDataset(f"s3://{s3_bucket}/one/", config=s3_config)
    loader = torch.utils.data.DataLoader(_TagWorker(ds), batch_size=None, num_workers=4,
                                         multiprocessing_context="fork")
    got = [(int(w), n, bytes(d)) for w, n, d in loader]
    assert Counter((n, d) for _, n, d in got) == Counter(members)
    for worker in range(4):  # every worker had work, and its samples came whole and in order
        names = [n for w, n, _ in got if w == worker]
        assert len(names) == 20
        assert all(a[:-4] == b[:-4] and a.endswith(".cls") for a, b in zip(names[::2], names[1::2]))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank_main(rank: int, world: int, port: int, base: str, config: S3Config, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        ds = S3IterableDataset(base, config=config, equal_work="drop", shuffle_urls=True)
        loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2, collate_fn=list,
                                             multiprocessing_context="fork")
        names: list[str] = []
        for batch in loader:
            names.extend(n for n, _ in batch)
            t = torch.ones(1)
            dist.all_reduce(t)  # would hang if one rank had more batches than the other
        Path(out, f"rank{rank}.txt").write_text("\n".join(names))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_two_rank_gloo_equal_work(s3_bucket: str, client: Any, s3_config: S3Config, tmp_path: Path) -> None:
    base = f"s3://{s3_bucket}/ddp/"
    total = 0
    for i, n in enumerate([9, 1, 4]):  # 14 samples, uneven shards, over 2 ranks x 2 workers
        client.put(f"{base}s{i}.tar", _tar(_samples(f"s{i}/k", n)))
        total += n
    import torch.multiprocessing as mp

    mp.spawn(_rank_main, args=(2, _free_port(), base, s3_config, str(tmp_path)), nprocs=2, join=True)
    ranks = [(tmp_path / f"rank{r}.txt").read_text().split("\n") for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == 2 * (total // 2)  # members = 2 per sample
    assert not set(ranks[0]) & set(ranks[1])
