"""Review probes of Client.submit(allocate=True) (RequestSpec::body / Transfer::prebody).

Each test follows one path a prepared body can take and checks that it is used or released
exactly once (the pool's buffers in use go back to zero) and that the bytes are right.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time

import pytest

from awsio import S3Client
from awsio.config import S3Config
from awsio.s3.native_backend import native_client

from .conftest import Reply, error_xml, native, object_reply

MiB = 1 << 20


def _client(stub, pool, **kw):
    opts = dict(max_connections=4, connect_timeout=5.0, read_timeout=10.0, max_attempts=3)
    eng = {k: kw.pop(k) for k in list(kw) if k in ("part_size", "max_inflight_bytes")}
    opts.update(kw)
    return native_client(S3Config(endpoint_url=stub.endpoint, unsigned=True, **opts), pool=pool,
                         deadline=30.0, backoff_base=0.01, **eng)


def _in_use(pool):
    s = pool.stats()
    return s["buffers"] - s["free_buffers"]


def _one(c):
    while True:
        for r in c.wait(10.0):
            return r


def _blocked(stub, body):
    gate = threading.Event()

    def script(n, seen):
        gate.wait(10)
        return object_reply(body, seen)

    stub.script = script
    return gate


def test_destroying_a_client_releases_a_prepared_body(stub):
    gate = _blocked(stub, os.urandom(4 * MiB))
    pool = native.BufferPool(64 * MiB)
    c = _client(stub, pool)
    c.submit(0, "bkt", "k", 0, 2 * MiB, False, 4 * MiB, allocate=True)
    assert _in_use(pool) == 1
    del c
    gc.collect()
    assert _in_use(pool) == 0
    gate.set()


def test_cancel_all_releases_a_prepared_body(stub):
    gate = _blocked(stub, os.urandom(4 * MiB))
    pool = native.BufferPool(64 * MiB)
    c = _client(stub, pool)
    c.submit(0, "bkt", "k", 0, 2 * MiB, False, 4 * MiB, allocate=True)
    c.wait(0.2)  # sent, no reply yet
    assert _in_use(pool) == 1
    c.cancel_all()
    assert _in_use(pool) == 0
    gate.set()


@pytest.mark.parametrize("status", [404, 403])
def test_an_error_reply_releases_a_prepared_body(stub, status):
    stub.script = lambda n, seen: Reply(status, error_xml("NoSuchKey" if status == 404 else "AccessDenied"))
    pool = native.BufferPool(64 * MiB)
    c = _client(stub, pool)
    c.submit(0, "bkt", "k", 0, 2 * MiB, False, 4 * MiB, allocate=True)
    assert _in_use(pool) == 1
    r = _one(c)
    assert r.kind == "http" and r.status == status
    assert _in_use(pool) == 0


def test_a_416_releases_a_prepared_body(stub):
    body = os.urandom(MiB)
    stub.script = lambda n, seen: object_reply(body, seen)
    pool = native.BufferPool(64 * MiB)
    c = _client(stub, pool)
    c.submit(0, "bkt", "k", 2 * MiB, 4 * MiB, False, 8 * MiB, allocate=True)  # a stale size: past the end
    assert _in_use(pool) == 1
    r = _one(c)
    assert (r.kind, r.code) == ("integrity", "SizeMismatch")
    assert _in_use(pool) == 0


def test_a_503_then_the_range_uses_the_prepared_body(stub):
    body = os.urandom(4 * MiB)
    stub.script = lambda n, seen: Reply(503, error_xml("SlowDown")) if n == 0 else object_reply(body, seen)
    pool = native.BufferPool(64 * MiB)
    c = _client(stub, pool)
    c.submit(0, "bkt", "k", MiB, 3 * MiB, False, len(body), allocate=True)
    r = _one(c)
    assert r.kind == "ok" and r.data == body[MiB:3 * MiB]
    assert pool.stats()["fresh"] == 1
    data = r.data
    del r
    assert sys.getrefcount(data) == 3  # the pool's, data's, getrefcount's argument
    assert _in_use(pool) == 1
    del data
    assert _in_use(pool) == 0


def _split_read(stub, script, size):
    """The result of a GET of a whole object of ``size`` bytes split into 1 MiB parts, its body
    prepared at submit, and the pool."""
    stub.script = script
    pool = native.BufferPool(64 * MiB)
    c = _client(stub, pool, part_size=MiB)
    c.submit(0, "bkt", "k", 0, -1, False, size, allocate=True)
    return pool, _one(c)


def test_a_split_get_whose_first_part_is_retried_while_parts_are_out(stub):
    body = os.urandom(4 * MiB)

    def script(n, seen):
        reply = object_reply(body, seen)
        if n == 0:  # the first part: cut short slowly, after the parts went out
            reply.truncate_at = len(reply.body) // 2
            reply.chunk_delay = 0.02
        return reply

    pool, r = _split_read(stub, script, len(body))
    assert r.kind == "ok" and r.data == body, (r.kind, r.reason)
    assert r.requests >= 5  # first part twice, three parts
    assert pool.stats()["fresh"] == 1  # the prepared body was the parent's
    del r
    assert _in_use(pool) == 0


def test_a_split_get_without_etag_read_again_in_one_request(stub):
    body = os.urandom(4 * MiB)

    def script(n, seen):
        reply = object_reply(body, seen)
        reply.headers.pop("ETag", None)
        return reply

    pool, r = _split_read(stub, script, len(body))
    assert r.kind == "ok" and r.data == body, (r.kind, r.reason)
    assert pool.stats()["fresh"] == 1
    del r
    assert _in_use(pool) == 0


def test_cuts_past_a_known_size_that_clips_the_range(stub):
    body = os.urandom(2 * MiB)
    stub.script = lambda n, seen: object_reply(body, seen)
    pool = native.BufferPool(64 * MiB)
    c = _client(stub, pool)
    # the known size ends the range at 2 MiB, inside the cut at 2.5 MiB: the prepared pieces
    # would not be non-decreasing (nothing is prepared; the reply is one piece)
    c.submit(0, "bkt", "k", 0, 3 * MiB, False, len(body), [MiB, 2 * MiB + MiB // 2], allocate=True)
    r = _one(c)
    assert r.kind == "ok" and r.data == body


def test_a_held_result_is_never_a_later_prepared_body(stub):
    a = os.urandom(2 * MiB)
    stub.script = lambda n, seen: object_reply(a, seen)
    pool = native.BufferPool(64 * MiB)
    c = _client(stub, pool)
    c.submit(0, "bkt", "k", 0, len(a), False, len(a), allocate=True)
    first = _one(c).data
    c.submit(1, "bkt", "k", 0, len(a), False, len(a), allocate=True)
    assert _in_use(pool) == 2
    second = _one(c).data
    assert first == a and second == a and first is not second


def test_get_many_prepared_bodies_stay_within_max_inflight_bytes(stub):
    objs = {f"o{i}": os.urandom(2 * MiB) for i in range(16)}
    gate = threading.Event()

    def script(n, seen):
        gate.wait(10)
        return object_reply(objs[seen.path.rsplit("/", 1)[1]], seen)

    stub.script = script
    s3 = S3Client(S3Config(endpoint_url=stub.endpoint, backend="native", unsigned=True, max_connections=16,
                           max_inflight_bytes=8 * MiB))
    got, peak = _peak_of_get_many(s3, [(f"s3://bkt/{k}", 0, None, len(v)) for k, v in objs.items()], gate, 0.5)
    assert [d for _u, d in got] == list(objs.values())
    assert peak <= 4, peak  # 8 MiB of 2 MiB bodies
    s3.close()


@pytest.mark.parametrize("allocate", [False, True])
def test_a_range_past_the_end_of_an_object_of_unknown_size_leaves_the_pool_alone(stub, allocate):
    # no body is made at submit without the object's size: "to 1 GiB" of a 2 MiB object took
    # a 1 GiB body (and emptied the pool to make room for it)
    body = os.urandom(2 * MiB)
    gate = threading.Event()
    gate.set()

    def script(n, seen):
        gate.wait(10)
        return object_reply(body, seen)

    stub.script = script
    pool = native.BufferPool(64 * MiB)
    c = _client(stub, pool)
    for tag in (0, 1):  # two free 2 MiB buffers in the pool
        c.submit(tag, "bkt", "k", 0, -1, False, -1)
    while len([r for r in c.wait(10.0)]) == 0:
        pass
    while c.pending():
        c.wait(1.0)
    gc.collect()
    before = pool.stats()
    gate.clear()
    c.submit(2, "bkt", "k", 0, 1 << 30, False, -1, allocate=allocate)  # "to 1 GiB": the object is 2 MiB
    during = pool.stats()
    gate.set()
    r = _one(c)
    assert r.kind == "ok" and r.data == body
    assert (during["free_buffers"], during["untracked"]) == (before["free_buffers"], before["untracked"])


def test_a_body_larger_than_the_pool_does_not_empty_it(stub):
    small, large = os.urandom(2 * MiB), os.urandom(8 * MiB)
    stub.script = lambda n, seen: object_reply(large if seen.path.endswith("/large") else small, seen)
    pool = native.BufferPool(5 * MiB)
    c = _client(stub, pool)
    for tag in (0, 1):
        c.submit(tag, "bkt", "small", 0, -1, False, len(small), allocate=True)
    got = {}
    while len(got) < 2:
        for r in c.wait(10.0):
            got[r.tag] = r.data
    del got, r
    gc.collect()
    before = pool.stats()
    assert before["free_buffers"] == 2
    c.submit(2, "bkt", "large", 0, -1, False, len(large), allocate=True)  # its class is over the limit
    during = pool.stats()
    assert (during["free_buffers"], during["untracked"]) == (2, before["untracked"] + 1)
    assert _one(c).data == large


def _peak_of_get_many(s3, items, gate, settle):
    """Everything ``s3.get_many(items)`` yields, and the pool's buffers in use ``settle`` seconds
    after it started (the replies held back by ``gate`` until then)."""
    it = iter(s3.get_many(items))
    got = []
    t = threading.Thread(target=lambda: got.append(next(it)))
    t.start()
    time.sleep(settle)
    peak = _in_use(s3.backend._pool)
    gate.set()
    t.join()
    return got + list(it), peak


class _NoAllocate:
    """A client proxy that submits as before the commit (allocate=False)."""

    def __init__(self, c):
        self._c = c

    def submit(self, *a):
        self._c.submit(*a[:10], False)

    def __getattr__(self, name):
        return getattr(self._c, name)


@pytest.mark.parametrize("allocate", [False, True])
def test_mixed_get_many_bodies_held_against_max_inflight_bytes(stub, allocate):
    objs = {f"{p}{i}": os.urandom(2 * MiB) for i in range(8) for p in "ku"}
    gate = threading.Event()

    def script(n, seen):
        name = seen.path.rsplit("/", 1)[1]
        if name.startswith("k"):  # known size: no reply yet
            gate.wait(10)
            return object_reply(objs[name], seen)
        return object_reply(objs[name], seen, stall=3.0, stall_at=64 * 1024)  # unknown: being received

    stub.script = script
    s3 = S3Client(S3Config(endpoint_url=stub.endpoint, backend="native", unsigned=True, max_connections=16,
                           max_inflight_bytes=8 * MiB, buffer_pool_bytes=128 * MiB, read_timeout=10.0))
    b = s3.backend
    if not allocate:
        new = b._new_client
        b._new_client = lambda: _NoAllocate(new())
    items = []
    for i in range(8):
        items += [(f"s3://bkt/k{i}", 0, None, 2 * MiB), f"s3://bkt/u{i}"]
    got, peak = _peak_of_get_many(s3, items, gate, 1.0)
    assert [d for _u, d in got] == [objs[k] for i in range(8) for k in (f"k{i}", f"u{i}")]
    print(f"\nallocate={allocate}: {peak} bodies of 2 MiB allocated with max_inflight_bytes = 8 MiB")
    assert peak <= 4, peak
    s3.close()


def test_a_206_for_another_range_of_the_same_length_never_fills_the_prepared_body(stub):
    body = os.urandom(4 * MiB)

    def script(n, seen):
        r = object_reply(body, seen)
        r.body = body[:2 * MiB]  # always the first 2 MiB, whatever was asked
        r.headers["Content-Range"] = f"bytes 0-{2 * MiB - 1}/{len(body)}"
        return r

    stub.script = script
    pool = native.BufferPool(64 * MiB)
    c = _client(stub, pool)
    c.submit(0, "bkt", "k", MiB, 3 * MiB, False, len(body), allocate=True)
    r = _one(c)
    assert r.kind == "integrity" and r.code == "RangeMismatch" and r.attempts == 3
    assert _in_use(pool) == 0


def test_a_retry_that_finds_a_shorter_object_gets_a_body_of_its_size(stub):
    old, new = os.urandom(8 * MiB), os.urandom(3 * MiB)

    def script(n, seen):
        if n == 0:
            r = object_reply(old, seen)
            r.truncate_at = MiB
            return r
        return object_reply(new, seen)

    stub.script = script
    pool = native.BufferPool(64 * MiB)
    c = _client(stub, pool)
    c.submit(0, "bkt", "k", 0, 4 * MiB, False, -1, allocate=True)  # (size unknown: no body made at submit)
    r = _one(c)
    assert r.kind == "ok" and r.data == new
    data = r.data
    del r
    assert _in_use(pool) == 1  # the result's (size unknown: nothing was made at submit)
    del data
    assert _in_use(pool) == 0


def test_a_forked_child_reads_into_a_pool_of_its_own(stub):
    # the parent's prepared bodies stay referenced by its abandoned clients in the child: they
    # would count against the child's pool limit for good
    body = os.urandom(4 * MiB)
    gate = threading.Event()

    def script(n, seen):
        if seen.path.endswith("/k"):  # the parent's GETs: no reply until the child is done
            gate.wait(10)
        return object_reply(body, seen)

    stub.script = script
    s3 = S3Client(S3Config(endpoint_url=stub.endpoint, backend="native", unsigned=True, max_connections=8,
                           buffer_pool_bytes=64 * MiB, read_timeout=10.0))
    b = s3.backend
    it = iter(s3.get_many([("s3://bkt/k", 0, 2 * MiB, len(body))] * 4))
    t = threading.Thread(target=lambda: next(it, None))
    t.start()
    deadline = time.monotonic() + 10
    while _in_use(b._pool) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _in_use(b._pool) == 4  # the four prepared bodies
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            gc.collect()
            if _in_use(b._pool) == 0:
                code = 0 if b.get("bkt", "k2", 0, 2 * MiB, size=len(body)) == body[:2 * MiB] else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    gate.set()
    t.join()
    assert os.waitstatus_to_exitcode(status) == 0
    it.close()
    s3.close()


def test_an_object_of_unknown_size_larger_than_the_budget_is_not_held_back_by_small_known_ones(stub):
    # A body larger than max_inflight_bytes is received alone (when nothing else is held). Bodies
    # prepared at submit count from submit on, so a stream of small objects of known size, each
    # taken and replaced before the engine looked again, kept something held at every look: the
    # large object of unknown size waited, paused at its first byte, until the stream ended.
    large = os.urandom(12 * MiB)
    small = {f"k{i}": os.urandom(1024) for i in range(300)}
    stub.script = lambda n, seen: object_reply(large if seen.path.endswith("/u") else small[seen.path.rsplit("/", 1)[1]], seen)
    s3 = S3Client(S3Config(endpoint_url=stub.endpoint, backend="native", unsigned=True, max_connections=16,
                           max_inflight_bytes=8 * MiB, read_timeout=10.0))
    items = ["s3://bkt/u"] + [(f"s3://bkt/{k}", 0, None, len(v)) for k, v in small.items()]
    got = [(u, d) for u, d in s3.get_many(items, ordered=False)]
    assert len(got) == len(items)
    assert all(d == (large if u.endswith("/u") else small[u.rsplit("/", 1)[1]]) for u, d in got)
    at = [u for u, _ in got].index("s3://bkt/u")
    assert at < len(items) // 2, f"the object of unknown size came {at + 1}th of {len(got)}"
    s3.close()
