"""Native vs Python backend against a real S3 server (SeaweedFS): same bytes, same errors."""

from __future__ import annotations

import hashlib
import os

import pytest

from awsio.config import S3Config, credentials_provider
from awsio.errors import EndpointConnectionError, S3Error

pytestmark = [pytest.mark.integration, pytest.mark.native]

native_backend = pytest.importorskip("awsio.s3.native_backend")
if not native_backend.native_available():
    pytest.skip("awsio._native is not built", allow_module_level=True)
python_backend = pytest.importorskip("awsio.s3.python_backend")

ODD_KEYS = [
    "plain.bin",
    "with space/and more spaces.txt",
    "sym+bols=a&b~c%41d.dat",
    "unicodé/ključ/鍵.bin",
    "double//slash",
    "trailing-",
    "q?uery#hash;semi:colon,comma!bang'quote(paren)*star$@",
]


def _put(config: S3Config, bucket: str, objects: dict[str, bytes], **put_args: str) -> None:
    import boto3
    from botocore.config import Config

    creds = credentials_provider(config)()
    client = boto3.client(
        "s3", endpoint_url=config.endpoint, region_name=config.region,
        aws_access_key_id=creds.access_key, aws_secret_access_key=creds.secret_key,
        aws_session_token=creds.token, config=Config(s3={"addressing_style": "path"}),
    )
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda kv: client.put_object(Bucket=bucket, Key=kv[0], Body=kv[1], **put_args),
                      [kv for kv in objects.items() if kv[1]]))
    # Empty bodies last: SeaweedFS 4.48 leaves a keep-alive connection hanging after an empty
    # PUT, so the next request on it would wait for botocore's read timeout.
    for key, data in objects.items():
        if not data:
            client.put_object(Bucket=bucket, Key=key, Body=data)


@pytest.fixture
def pair(s3_config):
    native = native_backend.NativeBackend(s3_config)
    python = python_backend.PythonBackend(s3_config)
    yield native, python
    native.close()
    python.close()


def test_whole_ranges_empty_and_odd_keys(s3_config, s3_bucket, pair):
    objects = {k: os.urandom(1000 + 37 * i) for i, k in enumerate(ODD_KEYS)}
    objects["empty"] = b""
    _put(s3_config, s3_bucket, objects)
    native, python = pair
    ranges = [(0, None), (0, 1), (5, 17), (999, None), (10, 10), (990, 5000), (5000, 6000), (0, 1000)]
    for key, data in objects.items():
        for start, end in ranges:
            got_n = native.get(s3_bucket, key, start, end)
            got_p = python.get(s3_bucket, key, start, end)
            assert type(got_n) is bytes
            assert got_n == got_p == data[start:end], (key, start, end)
        hn, hp = native.head(s3_bucket, key), python.head(s3_bucket, key)
        assert (hn.url, hn.size, hn.etag) == (hp.url, hp.size, hp.etag)
        assert hn.size == len(data)
        assert hn.last_modified is not None and abs(hn.last_modified - hp.last_modified) < 2


def test_listing_parity(s3_config, s3_bucket, pair):
    # the native backend's own ListObjectsV2 (signed by libcurl, keys URL-encoded) against botocore's
    objects = {f"lst/{k}": b"x" * i for i, k in enumerate(ODD_KEYS)}
    objects["lst-other/k"] = b"y"
    _put(s3_config, s3_bucket, objects)
    native, python = pair
    for prefix in ("lst/", "lst", "lst/unicodé/", "lst/nothing-here", ""):
        got_n, got_p = list(native.list(s3_bucket, prefix)), list(python.list(s3_bucket, prefix))
        assert got_n == got_p, prefix
    assert len(list(native.list(s3_bucket, "lst/"))) == len(ODD_KEYS)  # (SeaweedFS stores "a//b" as "a/b")


def test_get_many_parity(s3_config, s3_bucket, pair):
    objects = {f"many/{i:04d}": os.urandom(i * 97) for i in range(60)}  # many/0000 is empty
    _put(s3_config, s3_bucket, objects)
    native, python = pair
    reqs = ([(s3_bucket, k, 0, None) for k in objects] * 3 + [(s3_bucket, "many/0050", 3, 40)]
            + [(s3_bucket, "many/0059", 9, 5000, None, (0, 512, 513, 4000, 4991)),  # pieces
               (s3_bucket, "many/0059", 9, 9000, None, (100, 5000, 8991))])  # past the end: clipped pieces
    got_n = list(native.get_many(iter(reqs), ordered=True))
    got_p = list(python.get_many(iter(reqs), ordered=True))
    assert got_n == got_p
    assert [i for i, _ in got_n] == list(range(len(reqs)))
    unordered = dict(native.get_many(iter(reqs), ordered=False))
    assert unordered == dict(got_p)


@pytest.mark.slow
def test_big_object(s3_config, s3_bucket, pair):
    data = os.urandom(64 * 1024 * 1024 + 123)
    _put(s3_config, s3_bucket, {"big.bin": data})
    native, python = pair
    got = native.get(s3_bucket, "big.bin")
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    mid = len(data) // 2
    assert native.get(s3_bucket, "big.bin", mid, mid + (8 << 20)) == python.get(s3_bucket, "big.bin", mid, mid + (8 << 20))


@pytest.mark.parametrize("part_size", [1 << 20, 8 << 20])
def test_parts_against_a_real_server(s3_config, s3_bucket, pair, part_size):
    # Split GETs (first part, Content-Range, parts with If-Match) against SeaweedFS's own
    # Range and If-Match handling, under a budget that pauses responses.
    objects = {f"parts/{i}.bin": os.urandom(n) for i, n in enumerate(
        [0, 1, part_size - 1, part_size, part_size + 1, 3 * part_size + 77, 20 * (1 << 20) + 5])}
    _put(s3_config, s3_bucket, objects)
    native = native_backend.NativeBackend(s3_config.replace(part_size=part_size, max_inflight_bytes=8 << 20))
    _, python = pair
    try:
        for key, data in objects.items():
            assert native.get(s3_bucket, key) == data, key
        big = objects["parts/6.bin"]
        assert native.get(s3_bucket, "parts/6.bin", 12345, 12345 + 3 * part_size) == big[12345:12345 + 3 * part_size]
        assert native.get(s3_bucket, "parts/6.bin", 5 << 20) == python.get(s3_bucket, "parts/6.bin", 5 << 20)
        reqs = [(s3_bucket, k, 0, None) for k in objects] * 2
        assert [d for _i, d in native.get_many(reqs)] == list(objects.values()) * 2
    finally:
        native.close()


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"])
def test_stored_checksums_come_back_and_match(s3_config, s3_bucket, pair, algorithm):
    # The server keeps the checksum sent at upload and returns it to a whole-object GET that asks
    # (x-amz-checksum-mode, signed by libcurl): the body is checked against it, without a false alarm.
    objects = {f"sum/{i}": os.urandom(n) for i, n in enumerate([1, 1000, 300_000])}
    _put(s3_config, s3_bucket, objects, ChecksumAlgorithm=algorithm)
    native, python = pair
    for key, data in objects.items():
        assert native.get(s3_bucket, key, size=len(data)) == data  # a plain GET: the checksum comes back
        assert native.get(s3_bucket, key) == python.get(s3_bucket, key) == data
    assert [d for _i, d in native.get_many([(s3_bucket, k, 0, None, len(v)) for k, v in objects.items()])] == list(
        objects.values())


def _error(fn, *args):
    with pytest.raises(S3Error) as info:
        fn(*args)
    return info.value


def test_same_errors(s3_config, s3_bucket, pair):
    _put(s3_config, s3_bucket, {"exists": b"x"})
    native, python = pair
    cases = [
        ("get", (s3_bucket, "missing")),
        ("head", (s3_bucket, "missing")),
        ("get", ("awsio-no-such-bucket-xyz", "k")),
    ]
    for method, args in cases:
        en, ep = _error(getattr(native, method), *args), _error(getattr(python, method), *args)
        assert type(en) is type(ep), (method, args, en, ep)
        assert isinstance(en, FileNotFoundError)
        assert en.url == ep.url == f"s3://{args[0]}/{args[1]}"
        assert (en.status, en.code) == (ep.status, ep.code)

    creds = credentials_provider(s3_config)()
    wrong = s3_config.replace(static_credentials=(creds.access_key, "definitely-wrong-secret", creds.token))
    bn, bp = native_backend.NativeBackend(wrong), python_backend.PythonBackend(wrong)
    en, ep = _error(bn.get, s3_bucket, "exists"), _error(bp.get, s3_bucket, "exists")
    assert type(en) is type(ep) and isinstance(en, PermissionError)
    assert en.code == ep.code


def test_unreachable_endpoint_same_error(s3_config):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = s3_config.replace(endpoint_url=f"http://127.0.0.1:{port}", max_attempts=2, connect_timeout=2.0)
    en = _error(native_backend.NativeBackend(config).get, "bkt", "k")
    ep = _error(python_backend.PythonBackend(config).get, "bkt", "k")
    assert type(en) is type(ep) is EndpointConnectionError
    assert en.url == ep.url == "s3://bkt/k"
