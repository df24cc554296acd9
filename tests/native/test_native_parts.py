"""The native reader's large-object path: split GETs, the in-flight budget, recycled buffers.

Against the scriptable stub (tests/native/conftest.py), which answers like S3 (Range,
Content-Range, If-Match, ETag) and can change an object between parts or fail one part.
"""

from __future__ import annotations

import gc
import os
import threading
import time

import pytest

from awsio.config import S3Config
from awsio.errors import S3Error
from awsio.s3.native_backend import NativeBackend, native_client

from .conftest import Reply, native, object_reply

pytestmark = pytest.mark.native

PART = 64 * 1024


def make(stub, **kw) -> NativeBackend:
    kw.setdefault("static_credentials", ("AKIDTEST", "secret", None))
    kw.setdefault("max_attempts", 3)
    return NativeBackend(S3Config(endpoint_url=stub.endpoint, **kw))


def ranges(stub) -> list[str | None]:
    return [s.headers.get("range") for s in stub.seen]


def test_large_get_is_split_into_parts_pinned_to_the_first_etag(stub):
    body = os.urandom(5 * PART + 123)
    stub.script = lambda n, seen: object_reply(body, seen)
    b = make(stub, part_size=PART)
    assert b.get("bkt", "k") == body
    got = ranges(stub)
    assert got[0] == f"bytes=0-{PART - 1}"  # the first part tells the size
    assert sorted(got[1:]) == sorted(f"bytes={o}-{min(o + PART, len(body)) - 1}"
                                     for o in range(PART, len(body), PART))
    assert "if-match" not in stub.seen[0].headers
    assert all(s.headers["if-match"] == '"e1"' for s in stub.seen[1:])
    b.close()


def test_split_range_and_small_and_empty_objects(stub):
    body = os.urandom(10 * PART)
    stub.script = lambda n, seen: object_reply(body, seen)
    b = make(stub, part_size=PART)
    assert b.get("bkt", "k", 1000, 1000 + 4 * PART + 7) == body[1000:1000 + 4 * PART + 7]
    assert b.get("bkt", "k", 3 * PART + 5) == body[3 * PART + 5:]  # open-ended from an offset
    assert b.get("bkt", "k", len(body) - 10, len(body) + 10 * PART) == body[-10:]  # clipped by the size
    assert b.get("bkt", "k", 100, 200) == body[100:200]  # short range: one request
    stub.seen.clear()
    small = b"tiny"
    stub.script = lambda n, seen: object_reply(small, seen)
    assert b.get("bkt", "small") == small
    assert len(stub.seen) == 1  # smaller than a part: nothing more to fetch
    stub.script = lambda n, seen: object_reply(b"", seen)
    assert b.get("bkt", "empty") == b""  # S3 answers 416 to a range on an empty object
    b.close()


def test_object_replaced_between_parts_fails_clearly(stub):
    old, new = os.urandom(4 * PART), os.urandom(4 * PART)

    def script(n, seen):
        if n == 0:
            return object_reply(old, seen, etag='"old"')
        return object_reply(new, seen, etag='"new"')

    stub.script = script
    b = make(stub, part_size=PART)
    with pytest.raises(S3Error) as info:
        b.get("bkt", "k")
    assert info.value.code == "PreconditionFailed"
    assert "s3://bkt/k" in str(info.value)
    b.close()


def test_a_failing_part_is_retried_and_the_body_is_whole(stub):
    body = os.urandom(6 * PART)
    failed: list[int] = []

    def script(n, seen):
        rng = seen.headers.get("range", "")
        if rng.startswith(f"bytes={2 * PART}-") and len(failed) < 1:
            failed.append(n)
            return Reply(503, b"<Error><Code>SlowDown</Code></Error>")
        if rng.startswith(f"bytes={4 * PART}-") and len(failed) < 2 and len(failed) >= 1:
            failed.append(n)
            return object_reply(body, seen, truncate_at=100)  # connection drops mid-part
        return object_reply(body, seen)

    stub.script = script
    b = make(stub, part_size=PART)
    assert b.get("bkt", "k") == body
    assert len(failed) == 2
    b.close()


def test_a_part_failing_for_good_fails_the_get_and_cancels_the_rest(stub):
    body = os.urandom(8 * PART)

    def script(n, seen):
        if seen.headers.get("range", "").startswith(f"bytes={3 * PART}-"):
            return Reply(403, b"<Error><Code>AccessDenied</Code><Message>no</Message></Error>")
        return object_reply(body, seen)

    stub.script = script
    b = make(stub, part_size=PART)
    with pytest.raises(PermissionError):
        b.get("bkt", "k")
    # The client is still usable afterwards.
    stub.script = lambda n, seen: object_reply(body, seen)
    assert b.get("bkt", "k") == body
    b.close()


def test_get_many_mixes_split_and_whole_objects_in_order(stub):
    objs = {f"o{i}": os.urandom(i * PART // 2 + i) for i in range(12)}
    stub.script = lambda n, seen: object_reply(objs[seen.path.rsplit("/", 1)[1]], seen)
    b = make(stub, part_size=PART, max_connections=6)
    reqs = [("bkt", k, 0, None) for k in objs]
    assert [d for _i, d in b.get_many(reqs)] == list(objs.values())
    got = dict(b.get_many(reqs, ordered=False))
    assert [got[i] for i in range(len(objs))] == list(objs.values())
    b.close()


# ---------------------------------------------------------------- in-flight budget


def _client(stub, budget: int, pool_limit: int = 0, part_size: int = 0):
    c = native_client(S3Config(endpoint_url=stub.endpoint, unsigned=True, max_connections=16, connect_timeout=5.0,
                               read_timeout=10.0, max_attempts=2, max_inflight_bytes=max(budget, 1),
                               part_size=part_size),
                      pool=native.BufferPool(pool_limit), deadline=30.0, max_inflight_bytes=budget)
    return c


@pytest.mark.parametrize("part_size", [0, PART])
def test_bodies_held_never_exceed_the_budget(stub, part_size):
    size = 3 * PART
    objs = {f"o{i}": os.urandom(size) for i in range(10)}
    stub.script = lambda n, seen: object_reply(objs[seen.path.rsplit("/", 1)[1]], seen)
    budget = 2 * size + 1
    c = _client(stub, budget, part_size=part_size)
    for i, k in enumerate(objs):
        c.submit(i, "bkt", k)
    got: dict[int, bytes] = {}
    max_held = max_paused = 0
    while len(got) < len(objs):
        for r in c.wait(5.0):
            assert r.kind == "ok", (r.kind, r.reason)
            got[r.tag] = r.data
        held, paused = c.budget()
        max_held, max_paused = max(max_held, held), max(max_paused, paused)
        time.sleep(0.05)  # a slow consumer: responses wait, paused, for budget
    assert [got[i] for i in range(len(objs))] == list(objs.values())
    assert max_held <= budget
    assert max_paused > 0  # the budget did hold responses back
    assert c.budget() == (0, 0)


def test_a_body_larger_than_the_budget_is_read_alone(stub):
    body = os.urandom(4 * PART)
    stub.script = lambda n, seen: object_reply(body, seen)
    b = make(stub, max_inflight_bytes=PART)
    assert [d for _i, d in b.get_many([("bkt", "k", 0, None)] * 3)] == [body] * 3
    b.close()


def test_paused_responses_survive_a_slow_consumer(stub):
    # Responses paused for budget longer than read_timeout must not be timed out and retried.
    objs = {f"o{i}": os.urandom(2 * PART) for i in range(4)}
    stub.script = lambda n, seen: object_reply(objs[seen.path.rsplit("/", 1)[1]], seen)
    b = make(stub, max_inflight_bytes=2 * PART, read_timeout=1.0, max_attempts=1)
    out = []
    for _i, data in b.get_many([("bkt", k, 0, None) for k in objs]):
        out.append(data)
        time.sleep(1.6)
    assert out == list(objs.values())
    assert len(stub.seen) == len(objs)  # nothing was fetched twice
    b.close()


# ---------------------------------------------------------------- recycled buffers


def test_freed_large_bodies_are_reused_and_never_while_held(stub):
    a, bb = os.urandom(2 << 20), os.urandom(2 << 20)
    stub.script = lambda n, seen: object_reply(a if seen.path.endswith("/a") else bb, seen)
    b = make(stub)
    first = b.get("bkt", "a")
    second = b.get("bkt", "b")  # `first` is still held: it must not be written over
    assert first == a and second == bb
    h = hash(second)
    del second
    gc.collect()
    third = b.get("bkt", "a")  # reuses the buffer `second` had
    assert third == a and hash(third) == hash(a) and hash(third) != h
    assert first == a
    assert third[-1:] == a[-1:] and len(third) == len(a)
    stats = b._pool.stats()
    assert stats["reused"] >= 1 and stats["fresh"] == 2
    view = memoryview(third)  # a buffer export holds a reference too
    del third
    again = b.get("bkt", "b")
    assert bytes(view) == a and again == bb
    b.close()


def test_recycled_buffer_of_a_different_size_is_sized_exactly(stub):
    sizes = [(2 << 20) + 17, (2 << 20) + 4000, (2 << 20) + 1]  # same size class
    bodies = [os.urandom(n) for n in sizes]
    stub.script = lambda n, seen: object_reply(bodies[int(seen.path[-1])], seen)
    b = make(stub)
    for i in (0, 1, 2, 1, 0):
        data = b.get("bkt", f"k{i}")
        assert data == bodies[i] and len(data) == sizes[i]
        assert data + b"!" == bodies[i] + b"!"
        del data
    assert b._pool.stats()["fresh"] == 1
    b.close()


def test_pool_is_bounded_and_can_be_turned_off(stub):
    body = os.urandom(2 << 20)
    stub.script = lambda n, seen: object_reply(body, seen)
    cap = native.BufferPool.capacity_for(len(body))
    b = make(stub, buffer_pool_bytes=2 * cap)
    held = [b.get("bkt", "k") for _ in range(4)]  # two tracked, two beyond the limit
    stats = b._pool.stats()
    assert stats["bytes"] <= 2 * cap and stats["untracked"] == 2
    assert all(h == body for h in held)
    del held
    b.close()
    off = make(stub, buffer_pool_bytes=0)
    assert off.get("bkt", "k") == body
    assert off._pool.stats()["buffers"] == 0
    off.close()


def test_pool_buffers_are_safe_across_threads(stub):
    bodies = {f"k{i}": os.urandom((1 << 20) + i * 4096) for i in range(6)}
    stub.script = lambda n, seen: object_reply(bodies[seen.path.rsplit("/", 1)[1]], seen)
    b = make(stub, buffer_pool_bytes=4 << 20)
    errors: list[str] = []

    def worker() -> None:
        for _ in range(15):
            for k, v in bodies.items():
                if b.get("bkt", k) != v:
                    errors.append(k)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    b.close()
