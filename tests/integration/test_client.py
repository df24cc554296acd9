"""S3Client against a real S3 server (SeaweedFS), over both backends."""

from __future__ import annotations

import io
import multiprocessing as mp
import os
import pickle
import random
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from awsio import S3Client, file_exists, get_file_size, list_files
from awsio.config import S3Config
from awsio.errors import (AccessDeniedError, EndpointConnectionError, NoSuchBucketError, NoSuchKeyError,
                          S3Error)
from awsio.testing.local_s3 import free_port

pytestmark = pytest.mark.integration

ODD_KEYS = ["plain.bin", "with space/file name.txt", "sym+bols=and&more~tilde%25.dat",
            "ünïcödé/日本語.bin", "trailing.space "]
BIG = 64 << 20


@pytest.fixture(scope="module")
def data_bucket(s3_server: Any) -> dict[str, Any]:
    """One bucket for the read-only tests: odd keys, an empty object, a 64 MiB object."""
    bucket = "t-data-" + uuid.uuid4().hex[:12]
    s3_server.create_bucket(bucket)
    boto = s3_server.boto_client()
    rng = random.Random(7)
    objects = {k: rng.randbytes(rng.randint(1, 300_000)) for k in ODD_KEYS}
    objects["empty"] = b""
    objects["big.bin"] = rng.randbytes(BIG)
    for key, body in objects.items():
        if body:
            boto.put_object(Bucket=bucket, Key=key, Body=body)
    # SeaweedFS 4.48 leaves a keep-alive connection hanging (until the 60 s read timeout) for the
    # request that follows an empty PUT on it: put the empty object last, on its own client.
    s3_server.boto_client().put_object(Bucket=bucket, Key="empty", Body=b"")
    return {"bucket": bucket, "objects": objects}


def client_for(s3_server: Any, backend: str, **kw: Any) -> S3Client:
    return S3Client(s3_server.config(backend=backend, **kw))


def test_whole_objects_and_odd_keys(s3_server: Any, data_bucket: dict, backend: str) -> None:
    c = client_for(s3_server, backend)
    assert c.backend_name == backend
    for key, body in data_bucket["objects"].items():
        data = c.get(f"s3://{data_bucket['bucket']}/{key}")
        assert type(data) is bytes and data == body, key


def test_ranges(s3_server: Any, data_bucket: dict, backend: str) -> None:
    c = client_for(s3_server, backend)
    url = f"s3://{data_bucket['bucket']}/big.bin"
    body = data_bucket["objects"]["big.bin"]
    for start, end in [(0, 1), (0, 1000), (12345, 6_000_000), (BIG - 10, BIG), (BIG - 10, BIG + 100),
                       (BIG, BIG + 5), (BIG + 100, None), (100, None), (5, 5)]:
        assert c.get_range(url, start, end) == body[start:end], (start, end)
    assert int(c.get_range(f"s3://{data_bucket['bucket']}/plain.bin", 0, 3) != b"") == 1
    with pytest.raises(ValueError):
        c.get_range(url, 10, 5)


def test_head_list_and_helpers(s3_server: Any, data_bucket: dict, backend: str) -> None:
    c = client_for(s3_server, backend)
    b = data_bucket["bucket"]
    info = c.head(f"s3://{b}/big.bin")
    assert info.size == BIG and info.etag and info.last_modified and info.last_modified > 1e9
    assert c.head(f"s3://{b}/empty").size == 0
    listed = {i.url: i.size for i in c.list(f"s3://{b}/")}
    assert listed == {f"s3://{b}/{k}": len(v) for k, v in data_bucket["objects"].items()}
    assert [i.url for i in c.list(f"s3://{b}/with space/")] == [f"s3://{b}/with space/file name.txt"]
    assert c.exists(f"s3://{b}/plain.bin") and not c.exists(f"s3://{b}/nope")
    assert not c.exists(f"s3://t-no-such-bucket-{uuid.uuid4().hex[:8]}/x")


def test_module_helpers_use_environment(s3_server: Any, data_bucket: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    b = data_bucket["bucket"]
    assert len(list_files(f"s3://{b}/")) == len(data_bucket["objects"])
    assert file_exists(f"s3://{b}/big.bin") and not file_exists(f"s3://{b}/missing")
    assert get_file_size(f"s3://{b}/big.bin") == BIG
    with pytest.raises(FileNotFoundError):
        get_file_size(f"s3://{b}/missing")


def test_get_many_ordered_and_unordered(s3_server: Any, data_bucket: dict, backend: str) -> None:
    c = client_for(s3_server, backend, max_connections=4)
    b = data_bucket["bucket"]
    objs = data_bucket["objects"]
    items: list[Any] = [f"s3://{b}/{k}" for k in objs] * 3 + [(f"s3://{b}/big.bin", 10, 20)]
    got = list(c.get_many(iter(items), ordered=True))
    assert [u for u, _ in got] == [i if isinstance(i, str) else i[0] for i in items]
    assert got[-1][1] == objs["big.bin"][10:20]
    for (url, data), item in zip(got, items):
        if isinstance(item, str):
            assert data == objs[url.split("/", 3)[3]]
    unordered = list(c.get_many(items, ordered=False))
    assert sorted(u for u, _ in unordered) == sorted(u for u, _ in got)
    assert list(c.get_many([])) == []


def test_get_many_raises_on_missing(s3_server: Any, data_bucket: dict, backend: str) -> None:
    c = client_for(s3_server, backend)
    b = data_bucket["bucket"]
    with pytest.raises(NoSuchKeyError) as info:
        list(c.get_many([f"s3://{b}/plain.bin", f"s3://{b}/missing-key"]))
    assert info.value.url == f"s3://{b}/missing-key"


def test_errors(s3_server: Any, data_bucket: dict, backend: str) -> None:
    b = data_bucket["bucket"]
    c = client_for(s3_server, backend)
    with pytest.raises(NoSuchKeyError) as e1:
        c.get(f"s3://{b}/no/such key")
    assert e1.value.url == f"s3://{b}/no/such key" and e1.value.code == "NoSuchKey"
    with pytest.raises(NoSuchKeyError):
        c.head(f"s3://{b}/no/such key")
    with pytest.raises(NoSuchBucketError) as e2:
        c.get(f"s3://t-missing-{uuid.uuid4().hex[:10]}/k")
    assert isinstance(e2.value, FileNotFoundError)
    missing = f"s3://t-missing-{uuid.uuid4().hex[:10]}/k"
    with pytest.raises(NoSuchBucketError) as e4:  # a HEAD 404 alone cannot tell: the client asks
        c.head(missing)
    assert e4.value.url.startswith(missing.rsplit("/", 1)[0])
    assert c.exists(missing) is False
    bad = client_for(s3_server, backend, static_credentials=(s3_server.access_key, "wrong-secret", None))
    with pytest.raises(AccessDeniedError) as e3:
        bad.get(f"s3://{b}/plain.bin")
    assert isinstance(e3.value, PermissionError) and e3.value.status == 403
    assert "wrong-secret" not in str(e3.value) and "Signature=" not in str(e3.value)
    unknown = client_for(s3_server, backend, static_credentials=("nobody", "x", None))
    with pytest.raises(AccessDeniedError):
        unknown.get(f"s3://{b}/plain.bin")


def test_unreachable_endpoint_fails_fast(backend: str) -> None:
    port = free_port()  # nothing listens there
    c = S3Client(S3Config(endpoint_url=f"http://127.0.0.1:{port}", backend=backend, max_attempts=2,
                          connect_timeout=2, static_credentials=("a", "b", None)))
    t0 = time.monotonic()
    with pytest.raises(EndpointConnectionError) as info:
        c.get("s3://bucket/key")
    assert time.monotonic() - t0 < 10
    assert isinstance(info.value, ConnectionError) and info.value.url == "s3://bucket/key"
    assert str(port) in str(info.value)


def test_backend_parity_byte_for_byte(s3_server: Any, data_bucket: dict) -> None:
    from awsio.s3.native_backend import native_available

    if not native_available():
        pytest.skip("awsio._native is not built")
    py, nat = client_for(s3_server, "python"), client_for(s3_server, "native")
    b = data_bucket["bucket"]
    for key in data_bucket["objects"]:
        url = f"s3://{b}/{key}"
        assert py.get(url) == nat.get(url)
        assert py.get_range(url, 3, 70_000) == nat.get_range(url, 3, 70_000)
        assert py.head(url).size == nat.head(url).size and py.head(url).etag == nat.head(url).etag
    for c in (py, nat):
        with pytest.raises(NoSuchKeyError):
            c.get(f"s3://{b}/missing")


def test_reader_streams_with_bounded_buffer(s3_server: Any, data_bucket: dict, backend: str) -> None:
    c = client_for(s3_server, backend)
    url = f"s3://{data_bucket['bucket']}/big.bin"
    body = data_bucket["objects"]["big.bin"]
    with c.open(url, chunk_size=1 << 20, prefetch=3) as r:
        parts, pos = [], 0
        sizes = [1, 511, 4096, 3 << 20, 100_000]
        while True:
            chunk = r.read(sizes[len(parts) % len(sizes)])
            if not chunk:
                break
            assert len(r._pending) <= 4  # bounded read-ahead
            parts.append(chunk)
            pos += len(chunk)
            assert r.tell() == pos
        assert b"".join(parts) == body
    with c.open(url, start=1000, end=3000, prefetch=0) as r:
        assert r.read() == body[1000:3000]
    buffered = io.BufferedReader(c.open(f"s3://{data_bucket['bucket']}/plain.bin", chunk_size=7919))
    assert buffered.read() == data_bucket["objects"]["plain.bin"]
    with pytest.raises(NoSuchKeyError):
        c.open(f"s3://{data_bucket['bucket']}/missing")


def test_put_small_multipart_and_stream(s3_server: Any, s3_bucket: str, backend: str) -> None:
    c = client_for(s3_server, backend)
    c.put(f"s3://{s3_bucket}/small", b"abc")
    assert c.get(f"s3://{s3_bucket}/small") == b"abc"
    body = os.urandom(12 << 20)
    c.put(f"s3://{s3_bucket}/multi", io.BytesIO(body), part_size=5 << 20)
    assert c.head(f"s3://{s3_bucket}/multi").size == len(body)
    assert c.get(f"s3://{s3_bucket}/multi") == body
    c.delete(f"s3://{s3_bucket}/small")
    assert not c.exists(f"s3://{s3_bucket}/small")


def test_pagination_past_1000_keys(s3_server: Any, s3_bucket: str, backend: str) -> None:
    boto = s3_server.boto_client()
    keys = [f"many/{i:05d}" for i in range(1105)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: boto.put_object(Bucket=s3_bucket, Key=k, Body=k.encode()), keys))
    c = client_for(s3_server, backend)
    listed = [i.url for i in c.list(f"s3://{s3_bucket}/many/")]
    assert listed == [f"s3://{s3_bucket}/{k}" for k in keys]
    got = dict(c.get_many(listed, ordered=False))
    assert len(got) == len(keys) and all(got[f"s3://{s3_bucket}/{k}"] == k.encode() for k in keys)


def _child_read(payload: bytes) -> None:
    client, url, expected = pickle.loads(payload)
    data = client.get(url)
    os._exit(0 if data == expected else 3)


def test_fork_child_rebuilds_backend(s3_server: Any, data_bucket: dict, backend: str) -> None:
    c = client_for(s3_server, backend)
    url = f"s3://{data_bucket['bucket']}/plain.bin"
    expected = data_bucket["objects"]["plain.bin"]
    assert c.get(url) == expected  # the parent's backend exists before the fork
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            ok = c.get(url) == expected and c._pid == os.getpid()
        except BaseException:
            ok = False
        os._exit(0 if ok else 3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert c.get(url) == expected  # the parent's connections still work


def test_spawn_worker_gets_pickled_client(s3_server: Any, data_bucket: dict, backend: str) -> None:
    c = client_for(s3_server, backend)
    url = f"s3://{data_bucket['bucket']}/with space/file name.txt"
    c.get(url)
    payload = pickle.dumps((c, url, data_bucket["objects"]["with space/file name.txt"]))
    proc = mp.get_context("spawn").Process(target=_child_read, args=(payload,))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0
