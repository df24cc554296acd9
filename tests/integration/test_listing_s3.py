"""Listings against a real S3 server (SeaweedFS): keys with braces, folder markers, and the
original plugin's listing rules on its import path next to the main API's."""

from __future__ import annotations

from typing import Any

import pytest
from test_dataset_s3 import _tar

from awsio.dataset import S3Dataset, S3IterableDataset
from awsio.s3.client import S3Client, list_files

pytestmark = pytest.mark.integration


def test_keys_with_braces_listed_and_read(s3_server: Any, s3_bucket: str, backend: str) -> None:
    client = S3Client(s3_server.config(backend=backend))
    base = f"s3://{s3_bucket}/braces/"
    members = [("k{0}.cls", b"0"), ("k{0}.jpg", b"jpeg")]
    objs = {f"{base}a{{1}}.txt": b"one", f"{base}{{000..009}}.bin": b"range", f"{base}x}}{{y": b"odd",
            f"{base}s{{1,2}}.tar": _tar(members)}
    boto = s3_server.boto_client()
    for url, data in objs.items():
        boto.put_object(Bucket=s3_bucket, Key=url.split("/", 3)[3], Body=data)
    plain = sorted((u, d) for u, d in objs.items() if not u.endswith(".tar"))
    got = list(S3IterableDataset(base, client=client))
    assert sorted(x for x in got if x[0].startswith("s3://")) == plain
    assert [x for x in got if not x[0].startswith("s3://")] == members
    listed = list_files(base, client.config)
    assert listed == sorted(objs)
    ds = S3Dataset([u for u in listed if not u.endswith(".tar")], client=client)
    assert [ds[i] for i in range(len(ds))] == plain
    client.close()
