"""Cancelled native GETs are counted: every attempt that went out is a request in the metrics.

The Python backend counts a request when it sends it, whatever becomes of it; the native engine
reports what a cancelled request cost (``Client.cancel_all()``: a result of kind "cancelled"),
and the backend counts it when a GET is abandoned: an exception (Ctrl-C), an early-closed
``get_many`` stream, or a failed batch cancelling the rest.
"""

from __future__ import annotations

import threading
import time

import pytest

from awsio.config import S3Config
from awsio.errors import NoSuchKeyError
from awsio.metrics import CAUSES
from awsio.s3 import native_backend
from awsio.s3.native_backend import NativeBackend, native_client

from .conftest import Reply, error_xml

pytestmark = pytest.mark.native

BODY = b"x" * 1000


def make(stub, **kw) -> NativeBackend:
    kw.setdefault("static_credentials", ("AKIDTEST", "secret", None))
    kw.setdefault("max_attempts", 3)
    return NativeBackend(S3Config(endpoint_url=stub.endpoint, **kw))


def wait_until(cond, timeout: float = 5.0) -> None:
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, "timed out"
        time.sleep(0.01)


def name(seen) -> str:
    return seen.path.rsplit("/", 1)[1]


def stalled() -> Reply:
    return Reply(200, BODY, stall=2.0)  # headers, then silence until the test is over


def test_cancel_all_reports_the_attempts_and_retries_it_cancelled(stub):
    # One request throttled once and retried, the other not; both then stall and are cancelled.
    stub.script = lambda n, seen: Reply(503, error_xml("SlowDown")) if n == 0 else stalled()
    client = native_client(S3Config(endpoint_url=stub.endpoint, static_credentials=("AK", "SK", None)),
                           part_size=0)
    client.submit(1, "bkt", "a")
    client.submit(2, "bkt", "b")
    deadline = time.monotonic() + 5
    while len(stub.seen) < 3 and time.monotonic() < deadline:
        assert client.wait(0.05) == []
    assert len(stub.seen) == 3
    r = client.cancel_all()
    assert r.kind == "cancelled"
    assert r.requests == 3  # one of them twice (throttled, then its retry), the other once
    assert tuple(r.retries) == (1, 0, 0, 0, 0)
    assert client.pending() == 0
    assert client.cancel_all().requests == 0  # nothing left to cancel


def test_early_closed_stream_counts_the_requests_it_sent(stub):
    def script(n, seen):
        if name(seen) == "0":  # answers once every GET of the first window went out
            wait_until(lambda: len(stub.seen) >= 4)
            return Reply(200, BODY)
        return stalled()

    stub.script = script
    b = make(stub, max_connections=4, part_size=0)
    it = b.get_many([("bkt", str(i), 0, None) for i in range(8)])
    assert next(it) == (0, BODY)
    it.close()  # "1".."3" are on the wire; "4" may have gone out too (the pump refills the window)
    deadline = time.monotonic() + 5  # the pump thread cancels and counts, then ends
    while any(t.name == "awsio-get-many" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.01)
    snap = b.metrics.snapshot()
    assert 4 <= len(stub.seen) <= 5
    assert snap["get_requests"] == len(stub.seen)  # every GET that went out, and no other
    assert snap["get_bytes"] == len(BODY)
    assert snap["errors"] == 0  # abandoned, not failed
    b.close()


def test_interrupted_get_counts_its_attempts(stub, monkeypatch):
    # Ctrl-C while a GET waits (after one throttled attempt and its retry went out).
    stub.script = lambda n, seen: Reply(503, error_xml("SlowDown")) if n == 0 else stalled()
    real_wait = native_backend._wait

    def interrupted(client, url):
        if len(stub.seen) >= 2:
            raise KeyboardInterrupt
        return real_wait(client, url)

    monkeypatch.setattr(native_backend, "_wait", interrupted)
    monkeypatch.setattr(native_backend, "_TICK", 0.05)
    b = make(stub, part_size=0)
    with pytest.raises(KeyboardInterrupt):
        b.get("bkt", "k")
    snap = b.metrics.snapshot()
    assert snap["get_requests"] == 2
    assert snap[f"retries_{CAUSES[0]}"] == 1
    assert snap["errors"] == 0
    b.close()


def test_failed_batch_counts_every_request(stub):
    # Both answer at about the same time: whether they come back in one batch or two, and in
    # either order, both requests are counted when the error is raised.
    def script(n, seen):
        wait_until(lambda: len(stub.seen) >= 2)
        if name(seen) == "bad":
            return Reply(404, error_xml("NoSuchKey"))
        return Reply(200, BODY)

    stub.script = script
    b = make(stub, max_connections=4, part_size=0)
    with pytest.raises(NoSuchKeyError):
        list(b.get_many([("bkt", "bad", 0, None), ("bkt", "ok", 0, None)], ordered=False))
    snap = b.metrics.snapshot()
    assert snap["get_requests"] == 2
    assert snap["errors"] == 1
    b.close()
