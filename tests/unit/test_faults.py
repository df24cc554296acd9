"""Both backends against a misbehaving S3: the same faults retried, the same attempt counting,
the same typed errors, and never a wrong byte.

The scriptable stub (``tests/http_stub.py``) plays S3 and breaks on purpose: resets, stalls,
short and over-long bodies, lying Content-Length / Content-Range, servers that ignore Range,
5xx and 429, a 3 s outage, wrong checksums. Runs on "python" and (when built) "native".
"""

from __future__ import annotations

import os
import pickle
import time
from typing import Any

import pytest
from http_stub import Reply, Seen, error_xml, object_reply

from awsio import S3Client
from awsio.config import S3Config
from awsio.errors import AccessDeniedError, EndpointConnectionError, IntegrityError, ServerError, ThrottledError
from awsio.s3.backend import ObjectInfo, Request
from awsio.s3.integrity import checksum_b64

BODY = os.urandom(300_000)
N = len(BODY)
URL = "s3://bkt/obj"


def make(stub: Any, backend: str, **kw: Any) -> S3Client:
    kw.setdefault("static_credentials", ("AKIDTEST", "secret", None))
    kw.setdefault("max_attempts", 3)
    kw.setdefault("read_timeout", 2.0)
    return S3Client(S3Config(endpoint_url=stub.endpoint, region="us-east-1", backend=backend, **kw))


def get(client: S3Client, start: int = 0, end: int | None = None, size: int | None = None) -> bytes:
    """``Backend.get`` of the test object (``size``: the object size the caller knows)."""
    return client.backend.get("bkt", "obj", start, end, size)


def first_fails(fault: Reply) -> Any:
    """A script: the first request gets ``fault``, the rest are answered like S3 would."""
    def script(n: int, seen: Seen) -> Reply:
        return fault if n == 0 else object_reply(BODY, seen)
    return script


# -- transfer failures mid-body: retried, then EndpointConnectionError -------------------------

MID_BODY_FAULTS = {
    "closed": Reply(200, BODY, truncate_at=100_000),
    "reset": Reply(200, BODY, truncate_at=100_000, reset=True),
    "stalled": Reply(200, BODY, stall=6.0, stall_at=100_000),  # past read_timeout (2 s)
}


@pytest.mark.parametrize("fault", sorted(MID_BODY_FAULTS))
def test_a_body_cut_mid_way_is_retried(stub, backend, fault):
    stub.script = first_fails(MID_BODY_FAULTS[fault])
    client = make(stub, backend, max_attempts=5)
    assert get(client) == BODY
    assert len(stub.seen) == 2


@pytest.mark.parametrize("fault", sorted(MID_BODY_FAULTS))
def test_a_body_cut_on_every_attempt_fails_after_max_attempts(stub, backend, fault):
    stub.script = lambda n, seen: MID_BODY_FAULTS[fault]
    client = make(stub, backend, max_attempts=2, read_timeout=1.0)
    with pytest.raises(EndpointConnectionError) as info:
        get(client)
    assert len(stub.seen) == 2
    err = info.value
    assert err.url == URL and err.endpoint == stub.endpoint
    assert "after 2 attempt(s)" in str(err)
    assert isinstance(pickle.loads(pickle.dumps(err)), EndpointConnectionError)


def test_a_short_body_names_the_byte_counts(stub, backend):
    stub.script = lambda n, seen: Reply(200, BODY, truncate_at=123)
    with pytest.raises(EndpointConnectionError) as info:
        get(make(stub, backend, max_attempts=1))
    assert f"123 of {N}" in (info.value.reason or "")


def test_a_3s_outage_mid_body_is_ridden_out(stub, backend):
    stub.script = first_fails(Reply(200, BODY, truncate_at=100_000, outage=3.0))
    client = make(stub, backend, max_attempts=20)
    t0 = time.monotonic()
    assert get(client) == BODY
    assert time.monotonic() - t0 >= 2.5  # the server really was gone
    assert len(stub.seen) == 2  # refused connections reach no handler


def test_ranges_and_get_many_are_retried_too(stub, backend):
    cut = {"bytes=1000-1999", "bytes=5000-5999"}
    failed: set[str] = set()

    def script(n: int, seen: Seen) -> Reply:
        reply = object_reply(BODY, seen)
        rng = seen.headers.get("range", "")
        if rng in cut and rng not in failed:
            failed.add(rng)
            reply.truncate_at, reply.reset = 10, True
        return reply

    stub.script = script
    client = make(stub, backend)
    items = [(URL, o, o + 1000) for o in range(0, 10_000, 1000)]
    assert [d for _, d in client.get_many(items)] == [BODY[o:o + 1000] for o in range(0, 10_000, 1000)]
    assert failed == cut


# -- HTTP errors --------------------------------------------------------------------------------

@pytest.mark.parametrize("status,code", [(500, "InternalError"), (503, "SlowDown"), (429, "TooManyRequests")])
def test_5xx_and_429_are_retried(stub, backend, status, code):
    stub.script = first_fails(Reply(status, error_xml(code)))
    assert get(make(stub, backend)) == BODY
    assert len(stub.seen) == 2


@pytest.mark.parametrize("status,code,cls", [(500, "InternalError", ServerError), (503, "SlowDown", ThrottledError)])
def test_5xx_on_every_attempt_raises_after_max_attempts(stub, backend, status, code, cls):
    stub.script = lambda n, seen: Reply(status, error_xml(code, "no", "RID9"), {"x-amz-request-id": "RID9"})
    with pytest.raises(cls) as info:
        get(make(stub, backend, max_attempts=4))
    assert len(stub.seen) == 4
    assert (info.value.url, info.value.status, info.value.code) == (URL, status, code)


def test_other_4xx_are_not_retried(stub, backend):
    stub.script = lambda n, seen: Reply(403, error_xml("AccessDenied", "no"))
    with pytest.raises(AccessDeniedError):
        get(make(stub, backend, max_attempts=5))
    assert len(stub.seen) == 1


# -- lengths and ranges: never a wrong byte -----------------------------------------------------

def _partial(start: int, end: int, *, body: bytes | None = None, total: int | str = N) -> Reply:
    data = BODY[start:end] if body is None else body
    return Reply(206, data, {"Content-Range": f"bytes {start}-{end - 1}/{total}"})


def test_a_lying_content_length_is_caught_when_the_size_is_known(stub, backend):
    # Content-Length smaller than the object and the body cut to match: a clean-looking reply.
    stub.script = first_fails(Reply(200, BODY[:N - 1000]))
    client = make(stub, backend)
    assert get(client, size=N) == BODY
    assert len(stub.seen) == 2

    stub.script = lambda n, seen: Reply(200, BODY[:N - 1000])
    stub.seen.clear()
    with pytest.raises(IntegrityError) as info:
        get(client, size=N)
    err = info.value
    assert (err.code, err.url, err.expected, err.got) == ("SizeMismatch", URL, N, N - 1000)
    assert len(stub.seen) == 3
    assert isinstance(err, OSError) and isinstance(pickle.loads(pickle.dumps(err)), IntegrityError)


def test_a_server_ignoring_range_gives_the_range_not_the_whole_body(stub, backend):
    stub.script = lambda n, seen: Reply(200, BODY)  # 200 and the whole object, whatever the Range
    client = make(stub, backend)
    assert get(client, 10, 20) == BODY[10:20]
    assert get(client, N - 5, None, N) == BODY[-5:]
    assert get(client, N - 5, N + 100) == BODY[-5:]
    got = [d for _, d in client.backend.get_many([Request("bkt", "obj", 0, 100, N), Request("bkt", "obj", 100, 250),
                                                  Request("bkt", "obj")])]
    assert got == [BODY[:100], BODY[100:250], BODY]
    with client.open(URL, size=N, chunk_size=64 * 1024) as r:  # a tar split by ranges: no duplicates
        assert r.read() == BODY


def test_a_server_ignoring_range_with_a_cut_body_fails(stub, backend):
    stub.script = lambda n, seen: Reply(200, BODY[:N - 7])
    with pytest.raises(IntegrityError) as info:
        get(make(stub, backend), 10, 20, N)
    assert info.value.code == "SizeMismatch"
    assert len(stub.seen) == 3


def test_a_short_206_is_retried(stub, backend):
    # Content-Range promises 1000 bytes, Content-Length (and the body) has 900.
    stub.script = first_fails(_partial(1000, 2000, body=BODY[1000:1900]))
    client = make(stub, backend)
    assert get(client, 1000, 2000) == BODY[1000:2000]
    assert len(stub.seen) == 2

    stub.script = lambda n, seen: _partial(1000, 2000, body=BODY[1000:1900])
    stub.seen.clear()
    with pytest.raises(IntegrityError) as info:
        get(client, 1000, 2000)
    assert (info.value.code, info.value.expected, info.value.got) == ("SizeMismatch", 1000, 900)
    assert len(stub.seen) == 3


@pytest.mark.parametrize("wrong", [(0, 1000), (1000, 1500), (1001, 2001)])
def test_a_206_for_another_range_is_retried_then_fails(stub, backend, wrong):
    stub.script = first_fails(_partial(*wrong))
    client = make(stub, backend)
    assert get(client, 1000, 2000) == BODY[1000:2000]
    stub.script = lambda n, seen: _partial(*wrong)
    with pytest.raises(IntegrityError) as info:
        get(client, 1000, 2000)
    assert info.value.code == "RangeMismatch"


def test_a_206_without_content_range_fails(stub, backend):
    stub.script = lambda n, seen: Reply(206, BODY[1000:2000])
    with pytest.raises(IntegrityError) as info:
        get(make(stub, backend), 1000, 2000)
    assert info.value.code == "RangeMismatch"


def test_a_clipped_range_must_end_at_the_object_end(stub, backend):
    stub.script = lambda n, seen: object_reply(BODY, seen)
    client = make(stub, backend)
    assert get(client, N - 10, N + 10, N) == BODY[-10:]
    # The server clips at N - 5 although the object has N bytes.
    stub.script = lambda n, seen: _partial(N - 10, N - 5)
    with pytest.raises(IntegrityError) as info:
        get(client, N - 10, N + 10)
    assert info.value.code == "RangeMismatch"


def test_content_range_total_must_match_the_known_size(stub, backend):
    stub.script = lambda n, seen: _partial(0, 1000, total=N + 1)  # the object was replaced
    client = make(stub, backend)
    assert get(client, 0, 1000) == BODY[:1000]  # size unknown: nothing to compare
    with pytest.raises(IntegrityError) as info:
        get(client, 0, 1000, N)
    assert (info.value.code, info.value.expected, info.value.got) == ("SizeMismatch", N, N + 1)
    stub.seen.clear()
    with pytest.raises(IntegrityError):
        list(make(stub, backend).backend.get_many([Request("bkt", "obj", 0, 1000, N)]))
    assert len(stub.seen) == 3


def test_get_many_items_carry_the_object_size(stub, backend):
    stub.script = lambda n, seen: Reply(200, BODY[:N - 1])  # the object is one byte short
    client = make(stub, backend, max_attempts=1)
    info = ObjectInfo(URL, N)
    for item in (info, (URL, 0, None, N), (URL, 5, 10, N)):
        with pytest.raises(IntegrityError):
            list(client.get_many([item]))
    assert [d for _, d in client.get_many([URL, (URL, 5, 10), (URL, 0, 3, None)])] == [BODY[:N - 1], BODY[5:10], BODY[:3]]


def test_an_over_long_body_does_not_leak_into_the_next_reply(stub, backend):
    # More bytes than Content-Length on a keep-alive connection: they are not the next reply.
    def script(n: int, seen: Seen) -> Reply:
        return Reply(200, BODY[:1000], extra=b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nBAD" * 50)

    stub.script = script
    client = make(stub, backend, max_connections=1)
    for _ in range(3):
        assert get(client, size=1000) == BODY[:1000]


def test_a_body_longer_than_the_known_size_fails(stub, backend):
    stub.script = lambda n, seen: Reply(200, BODY + b"junk")
    with pytest.raises(IntegrityError) as info:
        get(make(stub, backend), size=N)
    assert (info.value.code, info.value.expected, info.value.got) == ("SizeMismatch", N, N + 4)


def test_the_reader_checks_every_chunk_against_the_size(stub, backend):
    # The object shrank after it was listed: every chunk's Content-Range total says so.
    small = BODY[:N - 1]
    stub.script = lambda n, seen: object_reply(small, seen)
    client = make(stub, backend, max_attempts=1)
    with pytest.raises(IntegrityError) as info:
        with client.open(URL, size=N, chunk_size=64 * 1024) as r:
            r.read()
    assert info.value.code == "SizeMismatch"


# -- checksums ----------------------------------------------------------------------------------

ALGORITHMS = ["crc32", "crc32c", "crc64nvme", "sha1", "sha256"]


def _with_checksum(algorithm: str, value: str, **headers: str):
    def script(n: int, seen: Seen) -> Reply:
        reply = object_reply(BODY, seen)
        if reply.status == 200 and seen.headers.get("x-amz-checksum-mode") == "ENABLED":
            reply.headers[f"x-amz-checksum-{algorithm}"] = value
            reply.headers.update(headers)
        return reply
    return script


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_whole_object_checksums_are_verified(stub, backend, algorithm):
    stub.script = _with_checksum(algorithm, checksum_b64(algorithm, BODY))
    client = make(stub, backend)
    assert get(client) == BODY
    assert get(client, 5, 10) == BODY[5:10]
    assert [s.headers.get("x-amz-checksum-mode") for s in stub.seen] == ["ENABLED", None]

    stub.script = _with_checksum(algorithm, checksum_b64(algorithm, BODY[::-1]))
    stub.seen.clear()
    with pytest.raises(IntegrityError) as info:
        get(client)
    err = info.value
    assert (err.code, err.url, err.expected) == ("ChecksumMismatch", URL, checksum_b64(algorithm, BODY[::-1]))
    assert err.got == checksum_b64(algorithm, BODY)
    assert len(stub.seen) == 3


def test_a_corrupted_body_is_retried_until_its_checksum_matches(stub, backend):
    good = checksum_b64("crc32c", BODY)

    def script(n: int, seen: Seen) -> Reply:
        body = BODY if n else BODY[:-1] + bytes([BODY[-1] ^ 1])  # one flipped bit, then the real bytes
        return Reply(200, body, {"x-amz-checksum-crc32c": good})

    stub.script = script
    assert get(make(stub, backend)) == BODY
    assert len(stub.seen) == 2


@pytest.mark.parametrize("headers", [{"value": "AAAAAA==-3"}, {"value": "AAAAAA==", "x-amz-checksum-type": "COMPOSITE"}])
def test_composite_checksums_are_not_checked(stub, backend, headers):
    headers = dict(headers)  # the parameter is shared by both backends' runs
    value = headers.pop("value")
    stub.script = _with_checksum("crc32", value, **headers)
    assert get(make(stub, backend)) == BODY
    assert len(stub.seen) == 1


def test_a_416_inside_the_known_size_is_a_size_mismatch(stub, backend):
    """The object shrank since it was listed: a range inside the listed size answered 416 is not
    "nothing there" but a changed object, on both backends."""
    stub.script = lambda n, seen: Reply(416, error_xml("InvalidRange"), {"Content-Range": f"bytes */{N - 100}"})
    client = make(stub, backend, max_attempts=2)
    assert get(client, N - 50, N) == b""  # size unknown: S3's "past the end" means nothing there
    with pytest.raises(IntegrityError) as info:
        get(client, N - 50, N, N)
    assert info.value.code == "SizeMismatch" and info.value.expected == N


@pytest.mark.parametrize("how", ["field", "env"])
def test_verify_checksums_off_skips_only_the_checksum(stub, backend, how, monkeypatch):
    stub.script = _with_checksum("crc32", checksum_b64("crc32", BODY[::-1]))  # wrong on purpose
    if how == "env":
        monkeypatch.setenv("AWSIO_VERIFY_CHECKSUMS", "0")
        client = make(stub, backend)
    else:
        client = make(stub, backend, verify_checksums=False)
    assert client.config.verify_checksums is False
    assert get(client) == BODY
    assert len(stub.seen) == 1 and stub.seen[0].headers.get("x-amz-checksum-mode") == "ENABLED"
    with pytest.raises(IntegrityError, match="SizeMismatch|known size"):  # lengths are still checked
        get(client, size=N + 1)


# -- listings that cannot be trusted: a typed error, never fewer (or repeated) keys -------------

def _list_page(keys: list[str], truncated: bool | None, token: str | None = None, size: bool = True) -> bytes:
    from urllib.parse import quote_plus

    contents = "".join(f"<Contents><Key>{quote_plus(k)}</Key><LastModified>2026-01-02T03:04:05.000Z</LastModified>"
                       f"<ETag>&quot;e&quot;</ETag>{'<Size>10</Size>' if size else ''}</Contents>" for k in keys)
    more = "" if truncated is None else f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>"
    more += f"<NextContinuationToken>{token}</NextContinuationToken>" if token else ""
    return (f'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<Name>bkt</Name><Prefix>p/</Prefix><EncodingType>url</EncodingType>{more}{contents}</ListBucketResult>").encode()


LISTING_FAULTS = {
    "truncated without a token": lambda n: _list_page(["p/a", "p/b"], True),
    "the same token again": lambda n: _list_page([f"p/{n}"], True, "t1"),
    "no IsTruncated": lambda n: _list_page(["p/a"], None),
    "an Error document": lambda n: b"<?xml version='1.0'?><Error><Code>InternalError</Code><Message>x</Message></Error>",
    "an HTML page": lambda n: b"<html><body>login</body></html>",
    "an entry without a size": lambda n: _list_page(["p/a"], False, size=False),
    "page 2 an HTML page": lambda n: _list_page(["p/a"], True, "t1") if n == 0 else b"<html></html>",
}


@pytest.mark.parametrize("fault", sorted(LISTING_FAULTS))
def test_a_listing_that_cannot_be_trusted_is_a_typed_error(stub, backend, fault):
    """A page that is not a ListObjectsV2 result, says it is truncated without a way on, or asks
    for the page it came from again: MalformedListing naming the prefix, on both backends (the
    listing would otherwise end early, repeat keys or never end)."""
    from awsio.errors import S3Error

    stub.script = lambda n, seen: Reply(200, LISTING_FAULTS[fault](n), {"Content-Type": "application/xml"})
    client = make(stub, backend)
    with pytest.raises(S3Error) as err:
        for i, _ in enumerate(client.list("s3://bkt/p/")):
            assert i < 10, "the listing does not end"
    # (a 200 carrying an S3 <Error>: botocore raises the error it names, the native parser refuses it)
    codes = {"MalformedListing", "InternalError"} if fault == "an Error document" else {"MalformedListing"}
    assert err.value.code in codes and err.value.url == "s3://bkt/p/"
    client.close()


def test_a_stream_that_failed_keeps_failing(stub, backend):
    """S3Reader: once a chunk failed for good, every later read raises it again: a caller that
    catches the error and reads on must never get the next chunk's bytes as if they followed."""
    from awsio.errors import ServerError

    body = bytes(i % 251 for i in range(3000))
    failed: list[int] = []

    def script(n: int, seen: Seen) -> Reply:
        if seen.headers.get("range") == "bytes=1000-1999" and not failed:
            failed.append(n)
            return Reply(500, error_xml("InternalError"))
        return object_reply(body, seen)

    stub.script = script
    client = make(stub, backend, max_attempts=1)
    reader = client.open("s3://bkt/obj", chunk_size=1000, prefetch=0, size=len(body))
    assert reader.read(1000) == body[:1000]
    for _ in range(3):
        with pytest.raises(ServerError):
            reader.read(1000)
    assert reader.tell() == 1000
    reader.close()
    client.close()


# -- one read, one version: If-Match on the ETag the read started with --------------------------

def test_reads_of_one_object_stay_on_one_version(stub, backend):
    """A range asked with ``if_match`` carries If-Match; an object replaced since is
    IntegrityError(PreconditionFailed) at once (not retried: it will not change back); a stream
    opened without a size takes the HEAD's ETag and asks every chunk for that version."""
    body = bytes(i % 251 for i in range(3000))
    version = ['"v1"']
    stub.script = lambda n, seen: object_reply(body, seen, etag=version[0])
    client = make(stub, backend)
    assert client.get_range(URL, 0, 100, if_match='"v1"') == body[:100]
    assert stub.seen[-1].headers.get("if-match") == '"v1"'
    [(_, got)] = list(client.get_many([(URL, 100, 200, len(body), None, '"v1"')]))
    assert got == body[100:200] and stub.seen[-1].headers.get("if-match") == '"v1"'
    reader = client.open(URL, chunk_size=1000, prefetch=0)  # (no size: HEAD, which gives "v1")
    assert reader.read(1000) == body[:1000]
    version[0] = '"v2"'  # replaced while it is read
    seen = len(stub.seen)
    with pytest.raises(IntegrityError) as err:
        reader.read(1000)
    assert err.value.code == "PreconditionFailed" and err.value.url == URL
    assert len(stub.seen) == seen + 1  # not retried
    assert all(s.headers.get("if-match") == '"v1"' for s in stub.seen[seen:])
    with pytest.raises(IntegrityError):
        client.get_range(URL, 0, 100, if_match='"v1"')
    reader.close()
    client.close()
