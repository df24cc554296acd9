"""The native client against a scriptable HTTP stub: requests it sends, retries, errors, GIL.

No S3 server needed: the stub (tests/native/conftest.py) plays S3, including its failures.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import threading
import time

import pytest

from awsio.config import S3Config
from awsio.errors import (AccessDeniedError, EndpointConnectionError, NoSuchBucketError, NoSuchKeyError,
                          RedirectError, ServerError, ThrottledError)
from awsio.s3.native_backend import NativeBackend

from .conftest import Reply, error_xml

pytestmark = pytest.mark.native

KEY = "dir/a b+c=&~%é/../x"
ENCODED = "/bkt/dir/a%20b%2Bc%3D%26~%25%C3%A9/../x"


def make(stub, **kw) -> NativeBackend:
    kw.setdefault("static_credentials", ("AKIDTEST", "secret/with+chars", None))
    kw.setdefault("max_attempts", 3)
    return NativeBackend(S3Config(endpoint_url=stub.endpoint, region="eu-west-3", **kw))


def test_request_is_signed_ranged_and_key_encoded(stub):
    stub.script = lambda n, seen: Reply(206, b"0123", {"Content-Range": "bytes 10-13/100"})
    b = make(stub, static_credentials=("AKIDTEST", "sk", "SESSIONTOKEN"))
    assert b.get("bkt", KEY, 10, 14) == b"0123"
    seen = stub.seen[0]
    assert seen.path == ENCODED  # '/' kept, dot segments kept, everything else %-encoded
    assert seen.headers["range"] == "bytes=10-13"  # half-open [10, 14)
    assert seen.headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
    assert seen.headers["x-amz-security-token"] == "SESSIONTOKEN"
    auth = seen.headers["authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDTEST/")
    assert "/eu-west-3/s3/aws4_request" in auth
    signed = auth.split("SignedHeaders=")[1].split(",")[0].split(";")
    assert {"host", "range", "x-amz-content-sha256", "x-amz-date", "x-amz-security-token"} <= set(signed)
    assert "sk" not in auth
    b.close()


def test_open_ended_range_and_empty_range(stub):
    stub.script = lambda n, seen: Reply(206, b"tail", {"Content-Range": "bytes 5-8/9"})
    b = make(stub, part_size=0)  # one request per GET: the range goes out as asked
    assert b.get("bkt", "k", 5, None) == b"tail"
    assert stub.seen[0].headers["range"] == "bytes=5-"
    assert b.get("bkt", "k", 7, 7) == b""  # nothing to fetch: no request at all
    assert len(stub.seen) == 1


def test_range_past_end_is_empty(stub):
    stub.script = lambda n, seen: Reply(416, error_xml("InvalidRange"))
    assert make(stub).get("bkt", "k", 100, 200) == b""


def test_unsigned_requests_carry_no_authorization(stub):
    stub.script = lambda n, seen: Reply(200, b"public")
    b = make(stub, unsigned=True, static_credentials=None)
    assert b.get("bkt", "k") == b"public"
    assert "authorization" not in stub.seen[0].headers


def test_virtual_hosted_url():
    b = NativeBackend(S3Config(endpoint_url="http://example.test:9000", path_style=False,
                               static_credentials=("a", "b", None)))
    client = b._acquire().client
    assert client.object_url("bkt", "a b/c") == "http://bkt.example.test:9000/a%20b/c"


def test_slowdown_is_retried_then_succeeds(stub):
    def script(n, seen):
        if n < 2:
            return Reply(503, error_xml("SlowDown", "Please reduce your request rate."))
        return Reply(200, b"finally")

    stub.script = script
    assert make(stub, max_attempts=5).get("bkt", "k") == b"finally"
    assert len(stub.seen) == 3


def test_server_error_after_max_attempts(stub):
    stub.script = lambda n, seen: Reply(500, error_xml("InternalError", "boom", "RID500"),
                                        {"x-amz-request-id": "RID500"})
    with pytest.raises(ServerError) as info:
        make(stub, max_attempts=4).get("bkt", "some/key")
    assert len(stub.seen) == 4
    err = info.value
    assert (err.url, err.status, err.code, err.request_id) == ("s3://bkt/some/key", 500, "InternalError", "RID500")
    assert isinstance(pickle.loads(pickle.dumps(err)), ServerError)


def test_throttled_after_max_attempts(stub):
    stub.script = lambda n, seen: Reply(503, error_xml("SlowDown"))
    with pytest.raises(ThrottledError):
        make(stub, max_attempts=2).get("bkt", "k")
    assert len(stub.seen) == 2


def test_client_errors_are_not_retried(stub):
    stub.script = lambda n, seen: Reply(403, error_xml("SignatureDoesNotMatch", "bad sig"))
    with pytest.raises(AccessDeniedError) as info:
        make(stub).get("bkt", "k")
    assert info.value.code == "SignatureDoesNotMatch"
    assert len(stub.seen) == 1


def test_missing_key_bucket_and_head_404(stub):
    stub.script = lambda n, seen: Reply(404, error_xml("NoSuchBucket" if "nob" in seen.path else "NoSuchKey"))
    b = make(stub)
    with pytest.raises(NoSuchKeyError):
        b.get("bkt", "k")
    with pytest.raises(NoSuchBucketError):
        b.get("nob", "k")
    stub.script = lambda n, seen: Reply(404)  # HEAD responses have no body
    with pytest.raises(NoSuchKeyError) as info:
        b.head("bkt", "gone")
    assert info.value.url == "s3://bkt/gone"


def test_redirect_names_the_region(stub):
    stub.script = lambda n, seen: Reply(301, error_xml("PermanentRedirect"), {"x-amz-bucket-region": "ap-south-1"})
    with pytest.raises(RedirectError) as info:
        make(stub).get("bkt", "k")
    assert info.value.region == "ap-south-1"
    assert "ap-south-1" in str(info.value)


def test_truncated_body_is_retried(stub):
    body = os.urandom(300_000)

    def script(n, seen):
        return Reply(200, body, truncate_at=100_000 if n == 0 else None)

    stub.script = script
    assert make(stub).get("bkt", "k") == body
    assert len(stub.seen) == 2


def test_head(stub):
    stub.script = lambda n, seen: Reply(200, b"x" * 1234, {"ETag": '"abc"',
                                                         "Last-Modified": "Tue, 24 Nov 2026 10:00:00 GMT"})
    info = make(stub).head("bkt", "k")
    assert (info.url, info.size, info.etag) == ("s3://bkt/k", 1234, '"abc"')
    assert info.last_modified == 1795514400.0
    assert stub.seen[0].method == "HEAD"


def test_unreachable_endpoint_fails_fast():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    b = NativeBackend(S3Config(endpoint_url=f"http://127.0.0.1:{port}", max_attempts=3,
                               static_credentials=("a", "b", None)))
    t0 = time.monotonic()
    with pytest.raises(EndpointConnectionError) as info:
        b.get("bkt", "k")
    assert time.monotonic() - t0 < 5
    assert info.value.url == "s3://bkt/k"
    assert info.value.endpoint == f"http://127.0.0.1:{port}"


def test_get_many_orders_windows_and_cancels(stub):
    def script(n, seen):
        name = seen.path.rsplit("/", 1)[1]
        if name == "bad":
            return Reply(404, error_xml("NoSuchKey"))
        delay = 0.02 if name == "0" else 0.0  # the first one finishes last
        return Reply(200, name.encode() * 3, chunk_delay=delay)

    stub.script = script
    b = make(stub, max_connections=4)
    consumed = []

    def requests():
        for i in range(40):
            consumed.append(i)
            yield ("bkt", str(i), 0, None)

    it = b.get_many(requests(), ordered=True)
    first = next(it)
    assert first == (0, b"000")
    assert len(consumed) <= 2 * 4 + 1  # lazy: the window bounds how far the iterator is read
    rest = list(it)
    assert [i for i, _ in rest] == list(range(1, 40))
    assert all(data == str(i).encode() * 3 for i, data in rest)

    unordered = dict(b.get_many((("bkt", str(i), 0, None) for i in range(20)), ordered=False))
    assert unordered == {i: str(i).encode() * 3 for i in range(20)}

    with pytest.raises(NoSuchKeyError):
        list(b.get_many([("bkt", "1", 0, None), ("bkt", "bad", 0, None), ("bkt", "2", 0, None)]))
    assert b.get("bkt", "7") == b"777"  # the backend is still usable after a failed batch


def test_gil_is_released_during_transfers(stub):
    body = os.urandom(2 << 20)
    stub.script = lambda n, seen: Reply(200, body, chunk_delay=0.01)  # ~0.3 s transfer
    b = make(stub)
    ticks = 0
    stop = threading.Event()

    def spin():
        nonlocal ticks
        while not stop.is_set():
            ticks += 1

    t = threading.Thread(target=spin)
    t.start()
    try:
        time.sleep(0.05)
        before = ticks
        assert b.get("bkt", "big") == body
        during = ticks - before
    finally:
        stop.set()
        t.join()
    assert during > 10_000, during


def _child_get(endpoint: str, backend: NativeBackend | None, queue) -> None:
    try:
        b = backend or NativeBackend(S3Config(endpoint_url=endpoint, static_credentials=("a", "b", None)))
        queue.put(b.get("bkt", "child"))
    except BaseException as exc:  # report, never hang the parent
        queue.put(repr(exc))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_fork_and_spawn(stub, method):
    stub.script = lambda n, seen: Reply(200, seen.path.encode())
    b = make(stub)
    assert b.get("bkt", "parent") == b"/bkt/parent"  # the parent has live connections now
    ctx = multiprocessing.get_context(method)
    queue = ctx.Queue()
    # fork: the child inherits the backend (and abandons its connections); spawn: it is pickled.
    p = ctx.Process(target=_child_get, args=(stub.endpoint, b, queue))
    p.start()
    got = queue.get(timeout=60)
    p.join(30)
    assert got == b"/bkt/child"
    assert p.exitcode == 0
    assert b.get("bkt", "again") == b"/bkt/again"  # the parent's pool is intact
    b.close()


def test_refreshed_credentials_are_pushed(stub):
    from awsio.config import Credentials

    stub.script = lambda n, seen: Reply(200, b"ok")
    b = make(stub)
    key = ["AKIDFIRST"]
    b._creds = lambda: Credentials(key[0], "sk", None)  # a provider that rotates once
    for i in range(3):
        key[0] = "AKIDSECOND" if i == 2 else "AKIDFIRST"
        assert b.get("bkt", "k") == b"ok"
    used = [s.headers["authorization"].split("Credential=")[1].split("/")[0] for s in stub.seen]
    assert used == ["AKIDFIRST", "AKIDFIRST", "AKIDSECOND"]


def test_stalled_transfer_times_out(stub):
    stub.script = lambda n, seen: Reply(200, b"x" * 1000, stall=4.0)
    b = make(stub, read_timeout=1.0, max_attempts=1)
    t0 = time.monotonic()
    with pytest.raises(EndpointConnectionError) as info:
        b.get("bkt", "slow")
    assert time.monotonic() - t0 < 4.5
    assert "read timed out after 0 of 1000 body bytes" in (info.value.reason or "")  # same words as the Python backend


def test_tls_is_verified_by_default(tls_stub):
    stub, cert = tls_stub
    stub.script = lambda n, seen: Reply(200, b"secure")
    with pytest.raises(EndpointConnectionError) as info:
        make(stub).get("bkt", "k")  # self-signed: rejected, and not retried
    assert "certificate" in (info.value.reason or "").lower()
    assert make(stub, ca_bundle=cert).get("bkt", "k") == b"secure"
    assert make(stub, verify=False).get("bkt", "k") == b"secure"


def test_threads_share_one_backend(stub):
    from concurrent.futures import ThreadPoolExecutor

    stub.script = lambda n, seen: Reply(200, seen.path.encode())
    b = make(stub)

    def work(t: int) -> bool:
        ok = all(b.get("bkt", f"t{t}/{i}") == f"/bkt/t{t}/{i}".encode() for i in range(10))
        many = dict(b.get_many((("bkt", f"m{t}/{i}", 0, None) for i in range(10)), ordered=False))
        return ok and many == {i: f"/bkt/m{t}/{i}".encode() for i in range(10)}

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(work, range(4)))


def test_invalid_ranges_are_value_errors(stub):
    b = make(stub)
    with pytest.raises(ValueError):
        b.get("bkt", "k", -1, None)
    with pytest.raises(ValueError):
        b.get("bkt", "k", 5, 3)
    with pytest.raises(ValueError):
        list(b.get_many([("bkt", "k", 5, 3)]))
    assert stub.seen == []


def test_fork_while_a_batch_is_in_flight(stub):
    stub.script = lambda n, seen: Reply(200, seen.path.encode())
    b = make(stub, max_connections=2)
    it = b.get_many((("bkt", f"p{i}", 0, None) for i in range(10)), ordered=True)
    assert next(it) == (0, b"/bkt/p0")  # the parent holds a client with transfers in flight
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    p = ctx.Process(target=_child_get, args=(stub.endpoint, b, queue))
    p.start()
    assert queue.get(timeout=60) == b"/bkt/child"
    p.join(30)
    assert p.exitcode == 0
    assert [i for i, _ in it] == list(range(1, 10))  # the parent's batch is unharmed


def test_server_ignoring_range_still_gives_the_range(stub):
    stub.script = lambda n, seen: Reply(200, b"0123456789")  # 200 + whole body despite Range
    b = make(stub)
    assert b.get("bkt", "k", 2, 5) == b"234"
    assert b.get("bkt", "k", 7, None) == b"789"
    assert list(b.get_many([("bkt", "k", 1, 3), ("bkt", "k", 0, None)])) == [(0, b"12"), (1, b"0123456789")]


def test_reused_connection_handles_carry_nothing_between_requests(stub):
    # Easy handles are reused without a reset: a HEAD, a ranged GET, an error, a token, must not
    # leak into the next request made on the same handle.
    body = bytes(range(256)) * 4

    def script(n, seen):
        if seen.path.endswith("/missing"):
            return Reply(404, error_xml("NoSuchKey", "gone"))
        if "range" in seen.headers:
            return Reply(206, body[10:20], {"Content-Range": f"bytes 10-19/{len(body)}"})
        return Reply(200, body, {"ETag": '"e"'})

    stub.script = script
    b = make(stub, max_connections=1, part_size=0)  # whole GETs carry no Range
    assert b.head("bkt", "k").size == len(body)
    assert b.get("bkt", "k", 10, 20) == body[10:20]
    assert b.get("bkt", "k") == body
    with pytest.raises(NoSuchKeyError):
        b.get("bkt", "missing")
    assert b.get("bkt", "k") == body
    assert [(s.method, "range" in s.headers) for s in stub.seen] == [
        ("HEAD", False), ("GET", True), ("GET", False), ("GET", False), ("GET", False)]
    assert all(s.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDTEST/") for s in stub.seen)
    assert all("x-amz-security-token" not in s.headers for s in stub.seen)
    b.close()
