"""Malformed shards on a real S3 server (SeaweedFS), over both backends: zero-byte objects, a zip
whose entry points past its directory, a stale index that points past the shard's end, and a tar
hardlink read again by range. Each gets an ArchiveError naming the object, under the handler."""

from __future__ import annotations

import io
import struct
import tarfile
import zlib
from typing import Any

import pytest
from test_dataset_s3 import _tar

import awsio.source as srcmod
from awsio.archives.index import ShardIndex, build_index, index_url
from awsio.dataset import S3IterableDataset
from awsio.errors import ArchiveError, IntegrityError
from awsio.world import World

pytestmark = pytest.mark.integration


def _with_hardlink(members: list[tuple[str, bytes]], name: str, target: str) -> bytes:
    """A tar of ``members`` then a hardlink ``name`` -> ``target``."""
    members_end = sum(512 + -(-len(data) // 512) * 512 for _, data in members)
    link = tarfile.TarInfo(name)
    link.type, link.linkname = tarfile.LNKTYPE, target
    return _tar(members)[:members_end] + link.tobuf(tarfile.USTAR_FORMAT) + bytes(1024)


def _zip_offset_past_directory() -> bytes:
    """One stored member whose directory entry says it starts 10000 bytes in (past the directory)."""
    name, data = b"a.txt", b"alpha"
    crc = zlib.crc32(data)
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, crc, 5, 5, 5, 0) + name + data
    cen = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, crc, 5, 5, 5, 0, 0, 0, 0, 0,
                      10_000) + name
    return local + cen + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 1, 1, len(cen), len(local), 0)


@pytest.fixture()
def client(s3_server: Any, backend: str) -> Any:
    from awsio.s3.client import S3Client

    c = S3Client(s3_server.config(backend=backend))
    yield c
    c.close()


def test_bad_shards_raise_or_are_counted(s3_bucket: str, client: Any) -> None:
    base = f"s3://{s3_bucket}/bad/"
    good = [("k0.cls", b"0"), ("k0.jpg", b"jpeg" * 100)]
    objects = {"a-good.tar": _tar(good), "b-empty.tar": b"", "c-empty.tgz": b"", "d-empty.zip": b"",
               "e-past.zip": _zip_offset_past_directory()}
    for key, data in objects.items():
        client.put(base + key, data)
    for key in objects:
        if key == "a-good.tar":
            continue
        for url in (base + key, base + "{" + key + "}"):  # listed size, and none (a brace pattern)
            with pytest.raises(ArchiveError) as err:
                list(S3IterableDataset(url, client=client))
            assert err.value.url == base + key
    ds = S3IterableDataset(base, client=client, handler="skip")
    assert [(n, bytes(d)) for n, d in ds] == good
    assert ds.stats.total == len(objects) - 1  # each bad shard counted once (index or read)
    assert set(ds.stats.by_stage()) <= {"index", "read"}


def test_stale_index_past_the_shard_end(s3_bucket: str, client: Any,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A sidecar written for a longer shard: with the listed size it is refused up front (naming
    the sidecar); with no size known, the reads check the size the index gives and fail (naming
    the shard). Never fewer samples without a word."""
    members = [(f"k{i}.bin", bytes([i]) * 3000) for i in range(8)]
    longer = _tar(members)
    index = build_index(io.BytesIO(longer))
    shard = f"s3://{s3_bucket}/stale/only.tar"
    client.put(shard, _tar(members[:4]))
    client.put(index_url(shard), index.to_json().encode())
    monkeypatch.setattr(srcmod, "current_world", lambda: World(1, 2))  # the second half of the shard
    with pytest.raises(ArchiveError, match="disagrees") as err:
        list(S3IterableDataset(f"s3://{s3_bucket}/stale/", client=client))
    assert err.value.url == index_url(shard)
    with pytest.raises((ArchiveError, IntegrityError)) as err:  # (the size the index gives is checked)
        list(S3IterableDataset(f"s3://{s3_bucket}/stale/{{only.tar}}", client=client))
    assert err.value.url == shard
    assert ShardIndex.from_json(client.get(index_url(shard))) == index


def test_hardlink_is_read_again_by_range(s3_bucket: str, client: Any) -> None:
    shard = f"s3://{s3_bucket}/links/x.tar"
    client.put(shard, _with_hardlink([("a.jpg", b"A" * 70000), ("b.jpg", b"B")], "c.jpg", "a.jpg"))
    ds = S3IterableDataset(shard, client=client)  # one ranged read holds link and target
    assert [(n, len(d)) for n, d in ds] == [("a.jpg", 70000), ("b.jpg", 1), ("c.jpg", 70000)]
    assert ds.stats.total == 0
    # in ranges of their own (small chunks), the link cannot see its target: counted, not lost
    ds = S3IterableDataset(shard, client=client, chunk_size=8192)
    assert [(n, len(d)) for n, d in ds] == [("a.jpg", 70000), ("b.jpg", 1)]
    assert ds.stats.counts == {("read", "hardlink"): 1}
