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


def _put(s3_server: Any, bucket: str, objs: dict[str, bytes]) -> None:
    boto = s3_server.boto_client()
    for key, data in objs.items():
        boto.put_object(Bucket=bucket, Key=key, Body=data)


def test_markers_and_prefix_rules_compat_next_to_main(s3_server: Any, s3_bucket: str, backend: str) -> None:
    from awsio.python.lib.io.s3 import s3dataset as old

    config = s3_server.config(backend=backend)
    _put(s3_server, s3_bucket, {"p/": b"", "p/test/": b"", "p/test/a.jpg": b"a", "p/test_x.jpg": b"x",
                                "p/testing/c.jpg": b"c", "p/other.jpg": b"o", "p/only/": b""})
    url = f"s3://{s3_bucket}/p/"
    raw = [url + k for k in ("test/a.jpg", "test_x.jpg", "testing/c.jpg")]
    assert list_files(url, config) == [url + "other.jpg"] + raw
    assert list_files(url + "test", config) == raw
    assert old.S3IterableDataset(url + "test", config=config).urls_list == raw
    assert [u for u, _ in old.S3IterableDataset(url + "test", config=config)] == raw
    assert old.S3Dataset(url + "test", config=config).urls_list == raw
    assert list(S3IterableDataset(url + "test", config=config)) == [(raw[0], b"a")]
    assert S3Dataset(url + "test/", config=config).urls == raw[:1]
    with pytest.raises(AssertionError) as info:
        old.S3Dataset(url + "only/", config=config)
    assert str(info.value) == f"The directory {url}only/ does not contain any objects."
    with pytest.raises(FileNotFoundError, match=f"The directory {url}only/ does not contain any objects."):
        S3IterableDataset(url + "only/", config=config)
    assert list(S3IterableDataset(url + "only/", config=config, allow_empty=True)) == []


def test_missing_objects_and_zip_entries(s3_server: Any, s3_bucket: str) -> None:
    import io
    import zipfile

    from awsio.errors import NoSuchKeyError
    from awsio.python.lib.io.s3 import s3dataset as old

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in (("d/", b""), ("d/a.cls", b"1"), ("d/a.jpg", b"jpg"), ("__meta__.json", b"{}")):
            zf.writestr(name, data)
    _put(s3_server, s3_bucket, {"z/x.zip": buf.getvalue(), "z/y.txt": b"y"})
    config = s3_server.config()
    base = f"s3://{s3_bucket}/z/"
    every = [("d/", b""), ("d/a.cls", b"1"), ("d/a.jpg", b"jpg"), ("__meta__.json", b"{}")]
    assert list(old.S3IterableDataset(base + "x.zip", config=config)) == every
    assert list(S3IterableDataset(base + "x.zip", config=config)) == every[1:3]
    for missing in ("gone.jpg", "gone.tar", "gone.zip"):
        with pytest.raises(AssertionError, match=f"The directory {base}{missing} does not contain any objects."):
            old.S3IterableDataset([base + "y.txt", base + missing], config=config)
        with pytest.raises(NoSuchKeyError) as info:  # archives when indexed (made), objects when read
            list(S3IterableDataset([base + "y.txt", base + missing], config=config))
        assert isinstance(info.value, FileNotFoundError) and info.value.url == base + missing
