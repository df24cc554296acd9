"""Shard maker straight to S3 (SeaweedFS): same bytes as a local write, index next to each shard."""

from __future__ import annotations

import os

import pytest

from awsio.tools import makeshards as ms
from awsio.tools.storage import Storage

pytestmark = pytest.mark.integration


def test_s3_shards_equal_local_shards_and_have_indexes(tmp_path, s3_bucket, s3_config):
    from awsio.archives.index import load_index
    from awsio.s3.client import S3Client

    local = str(tmp_path / "local")
    ms.write_shards(ms.synthetic_samples(45, classes=3, size=16, seed=5), local, prefix="t", maxcount=20,
                    progress=False)
    summary = ms.write_shards(ms.synthetic_samples(45, classes=3, size=16, seed=5), f"s3://{s3_bucket}/ds/",
                              prefix="t", maxcount=20, storage=Storage(s3_config), progress=False)
    assert summary["shards"] == 3 and summary["samples"] == 45
    client = S3Client(s3_config)
    try:
        keys = sorted(o.url for o in client.list(f"s3://{s3_bucket}/ds/"))
        assert keys == sorted([f"s3://{s3_bucket}/ds/t-{i:06d}.tar" for i in range(3)] +
                              [f"s3://{s3_bucket}/ds/t-{i:06d}.tar.idx.json" for i in range(3)])
        for i in range(3):
            url = f"s3://{s3_bucket}/ds/t-{i:06d}.tar"
            with open(os.path.join(local, f"t-{i:06d}.tar"), "rb") as f:
                assert client.get(url) == f.read()
            index = load_index(client, url, scan=False)
            assert index is not None and index.sample_count == (20 if i < 2 else 5)
    finally:
        client.close()


def test_cli_to_s3_and_dataset_reads_it(s3_server, s3_bucket, s3_config, monkeypatch, capsys):
    from awsio.dataset import S3IterableDataset

    for k, v in s3_server.env().items():
        monkeypatch.setenv(k, v)
    assert ms.main(["--synthetic", "12", "--output", f"s3://{s3_bucket}/cli", "--maxcount", "5", "-q"]) == 0
    assert "3 shards, 12 samples" in capsys.readouterr().out
    ds = S3IterableDataset(f"s3://{s3_bucket}/cli/train-{{000000..000002}}.tar", config=s3_config)
    names = [n for n, _ in ds]
    assert len(names) == 24 and names[0] == "00000000.cls" and names[1] == "00000000.jpg"
