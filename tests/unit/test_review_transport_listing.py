"""Review of the listing cache and the map-style dataset: a cached listing is used only for the
endpoint it was made on, an unusable entry is listed again (never a bare error or garbage URLs),
writers racing on one entry do not fail, and S3Dataset never delivers an object other than the
one it listed."""

from __future__ import annotations

import json
import os
from typing import Any

import botocore.session
import pytest
from botocore.config import Config
from http_stub import Reply, Seen, Stub, object_reply

from awsio import listing_cache
from awsio.config import S3Config
from awsio.dataset import S3Dataset, S3IterableDataset
from awsio.errors import IntegrityError
from awsio.listing_cache import cached_listing
from awsio.testing.local_s3 import REGION


def _boto(endpoint: str) -> Any:
    return botocore.session.Session().create_client(
        "s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id="testing",
        aws_secret_access_key="testing", config=Config(s3={"addressing_style": "path"}))


def _bucket(objects: dict[str, bytes]) -> Any:
    """A stub script: S3 holding ``objects`` (key -> bytes) in bucket ``bkt``."""

    def script(n: int, seen: Seen) -> Reply:
        if "list-type=2" in seen.path:
            items = "".join(f"<Contents><Key>{k}</Key><ETag>&quot;e1&quot;</ETag><Size>{len(b)}</Size>"
                            "</Contents>" for k, b in sorted(objects.items()))
            return Reply(200, (f"<ListBucketResult><Name>bkt</Name><KeyCount>{len(objects)}</KeyCount>"
                               f"<IsTruncated>false</IsTruncated>{items}</ListBucketResult>").encode(),
                         {"Content-Type": "application/xml"})
        key = seen.path.split("?")[0].removeprefix("/bkt/")
        if key in objects:
            return object_reply(objects[key], seen)
        return Reply(404, b"<Error><Code>NoSuchKey</Code><Message>no</Message></Error>")

    return script


def test_a_cached_listing_is_not_used_for_another_endpoint(stub: Stub, tmp_path: Any) -> None:
    # the same bucket name on two servers (AWS and a local MinIO, two sites' MinIOs) is two data
    # sets: the second read the first one's listing, and its other objects were silently unread
    other = Stub()
    try:
        stub.script = _bucket({"d/0.bin": b"a0"})
        other.script = _bucket({"d/0.bin": b"b0", "d/1.bin": b"b1", "d/2.bin": b"b2"})
        cache = str(tmp_path / "listings")

        def dataset(endpoint: str) -> S3IterableDataset:
            return S3IterableDataset("s3://bkt/d/", listing_cache=cache, config=S3Config(
                endpoint_url=endpoint, backend="python", static_credentials=("a", "b", None)))

        assert dataset(stub.endpoint).urls == ["s3://bkt/d/0.bin"]
        ds = dataset(other.endpoint)
        assert ds.urls == [f"s3://bkt/d/{i}.bin" for i in range(3)]
        assert sorted(d for _, d in ds) == [b"b0", b"b1", b"b2"]
        assert dataset(other.endpoint).urls == ds.urls  # and each endpoint's entry is still kept
        assert sum("list-type=2" in s.path for s in other.seen) == 1
        assert dataset(stub.endpoint).urls == ["s3://bkt/d/0.bin"]
        assert sum("list-type=2" in s.path for s in stub.seen) == 1
    finally:
        other.close()


URLS = ["s3://bkt/data/"]
GOOD = [("s3://bkt/data/a.bin", 3, "e1"), ("s3://bkt/data/b.bin", None, None)]


@pytest.mark.parametrize("raw", [
    b"[]",                                                          # valid JSON, not an entry
    b"null",
    b'"text"',
    json.dumps({"urls": URLS, "items": [[1, 3, "e"]]}).encode(),     # a URL that is not a string
    json.dumps({"urls": URLS, "items": [["bkt/data/a.bin", 3, "e"]]}).encode(),  # not an s3:// URL
    json.dumps({"urls": URLS, "items": [["s3://bkt/data/a.bin", "3", "e"]]}).encode(),  # size a string
    json.dumps({"urls": URLS, "items": [["s3://bkt/data/a.bin", -1, "e"]]}).encode(),
    json.dumps({"urls": URLS, "items": [["s3://bkt/data/a.bin", 3, 7]]}).encode(),  # etag a number
    json.dumps({"urls": URLS, "items": None}).encode(),
    json.dumps({"urls": URLS}).encode(),
    json.dumps({"urls": URLS, "items": [["s3://bkt/data/a.bin", 3, "e"]]})[:-7].encode(),  # cut short
])
def test_an_unusable_cache_entry_is_listed_again(tmp_path: Any, raw: bytes) -> None:
    location = str(tmp_path)
    calls = []

    def resolve() -> list[Any]:
        calls.append(1)
        return list(GOOD)

    first = cached_listing(location, URLS, {}, None, resolve)
    assert first == GOOD and len(calls) == 1
    (entry,) = tmp_path.glob("*.json")
    entry.write_bytes(raw)
    assert cached_listing(location, URLS, {}, None, resolve) == GOOD
    assert len(calls) == 2  # listed again, and the entry replaced by a good one
    assert cached_listing(location, URLS, {}, None, resolve) == GOOD and len(calls) == 2


def test_writers_racing_on_one_entry_do_not_fail(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # two writers of one entry with the same pid (jobs in containers sharing an EFS/NFS cache,
    # threads of one process): the first to finish renamed the shared temporary file away, so the
    # other's os.replace raised FileNotFoundError and its dataset failed to build
    location = str(tmp_path)
    real_replace = os.replace
    raced = [False]

    def replace(src: Any, dst: Any) -> None:
        if not raced[0]:
            raced[0] = True
            cached_listing(location, URLS, {}, None, lambda: list(GOOD), refresh=True)  # the other writer
        real_replace(src, dst)

    monkeypatch.setattr(listing_cache.os, "replace", replace)
    assert cached_listing(location, URLS, {}, None, lambda: list(GOOD)) == GOOD
    assert raced[0]
    monkeypatch.setattr(listing_cache.os, "replace", real_replace)
    assert cached_listing(location, URLS, {}, None, lambda: pytest.fail("listed again")) == GOOD
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_map_style_dataset_refuses_an_object_replaced_since_it_was_listed(moto_config: S3Config,
                                                                         moto_bucket: str) -> None:
    # S3IterableDataset reads with If-Match on the listed ETag; S3Dataset delivered whatever the
    # key holds now: an object rewritten with the same size came back as other bytes, silently
    client = _boto(moto_config.endpoint_url)
    for i in range(3):
        client.put_object(Bucket=moto_bucket, Key=f"m/{i}", Body=b"old%d" % i)
    ds = S3Dataset(f"s3://{moto_bucket}/m/", config=moto_config)
    assert ds[1] == (f"s3://{moto_bucket}/m/1", b"old1")
    client.put_object(Bucket=moto_bucket, Key="m/1", Body=b"new1")  # same size, other bytes
    with pytest.raises(IntegrityError, match="m/1"):
        ds[1]
    with pytest.raises(IntegrityError, match="m/1"):
        ds.__getitems__([0, 1])
    assert ds.__getitems__([2, 0]) == [(f"s3://{moto_bucket}/m/2", b"old2"), (f"s3://{moto_bucket}/m/0", b"old0")]


def test_the_file_system_sharing_strategy_keeps_batches_in_the_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under torch's file_system strategy, blocks of batches in flight when an iterator is dropped
    stay in /dev/shm until the process ends: the transport is not used there."""
    import torch.multiprocessing

    from awsio import transport

    monkeypatch.setattr(torch.multiprocessing, "get_sharing_strategy", lambda: "file_system")
    assert transport.use_shared_memory() is False
    monkeypatch.setattr(torch.multiprocessing, "get_sharing_strategy", lambda: "file_descriptor")
    assert transport.use_shared_memory() is True


def test_turning_the_transport_off_holds_after_it_was_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reducer, once registered, stayed registered (forked workers inherit it), so
    AWSIO_SHARED_MEMORY_BATCHES=0 set after a first use was ignored: it is asked for each batch."""
    from torch.utils.data import DataLoader

    from awsio import transport
    from awsio.grouping import Record
    from awsio.pipeline import MemorySource, Pipeline

    assert transport.use_shared_memory()
    monkeypatch.setenv("AWSIO_SHARED_MEMORY_BATCHES", "0")
    recs = [Record("s3://b/t.tar", f"k{i:03d}.bin", os.urandom(20_000)) for i in range(32)]
    before = transport.received[0]
    loader = DataLoader(Pipeline(MemorySource(recs)).batched(8), batch_size=None, num_workers=1,
                        multiprocessing_context="fork")
    assert sum(len(b["bin"]) for b in loader) == 32
    assert transport.received[0] == before
