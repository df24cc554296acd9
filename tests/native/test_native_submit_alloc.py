"""Bodies allocated at submit (``Client.submit(allocate=True)``, what ``get_many`` does).

The engine's own allocation happens at a reply's first byte, inside ``wait()``, and takes the
GIL: while a Python thread parses or decodes, every transfer stood still until it had it. A GET
whose body size is known at submit (a range, or the object's size) now has its body made there,
under the GIL the submitting thread holds anyway; it is used only when the reply is exactly
what was asked for, and released otherwise (the bytes are the same either way).
"""

from __future__ import annotations

import os
import threading

import pytest

from awsio import S3Client
from awsio.config import S3Config
from awsio.s3.native_backend import native_client

from .conftest import Reply, native, object_reply

MiB = 1 << 20


def _client(stub, pool):
    return native_client(S3Config(endpoint_url=stub.endpoint, unsigned=True, max_connections=4,
                                  connect_timeout=5.0, read_timeout=10.0, max_attempts=2),
                         pool=pool, deadline=30.0)


def _results(c, n):
    got = {}
    while len(got) < n:
        for r in c.wait(10.0):
            assert r.kind == "ok", (r.kind, r.status, r.reason)
            got[r.tag] = r.data
    return got


@pytest.mark.parametrize("allocate", [True, False])
def test_a_body_of_known_size_is_allocated_at_submit_when_asked(stub, allocate):
    body = os.urandom(2 * MiB)
    release = threading.Event()

    def script(n, seen):
        release.wait(10)  # no reply until the test has looked at the pool
        return object_reply(body, seen)

    stub.script = script
    pool = native.BufferPool(64 * MiB)
    c = _client(stub, pool)
    c.submit(0, "bkt", "k", 0, MiB, False, len(body), allocate=allocate)
    stats = pool.stats()
    assert (stats["buffers"], stats["free_buffers"]) == ((1, 0) if allocate else (0, 0))
    release.set()
    assert _results(c, 1)[0] == body[:MiB]
    assert pool.stats()["fresh"] == 1  # the engine made none of its own when given one


def test_pieces_allocated_at_submit_hold_exactly_their_members(stub):
    body = os.urandom(3 * MiB)
    stub.script = lambda n, seen: object_reply(body, seen)
    c = _client(stub, native.BufferPool(64 * MiB))
    cuts = [0, 1000, 1000, 700_000, MiB]
    c.submit(0, "bkt", "k", 5, 5 + 2 * MiB, False, len(body), cuts, allocate=True)
    data = _results(c, 1)[0]
    starts, ends = [0] + cuts, cuts + [2 * MiB]  # piece i: [cuts[i-1], cuts[i])
    assert isinstance(data, tuple) and len(data) == len(cuts) + 1
    assert list(data) == [body[5 + a:5 + b] for a, b in zip(starts, ends)]


@pytest.mark.parametrize("cuts", [(), (0, 300, 4000)])
def test_a_whole_object_reply_to_a_range_is_read_into_a_body_of_its_own(stub, cuts):
    body = os.urandom(10_000)
    stub.script = lambda n, seen: Reply(200, body)  # the whole object, Range ignored
    c = _client(stub, native.BufferPool(64 * MiB))
    c.submit(0, "bkt", "k", 100, 5100, False, len(body), list(cuts), allocate=True)
    r = None
    while r is None:
        for res in c.wait(10.0):
            r = res
    assert (r.kind, r.data) == ("whole", body)  # the caller cuts the range (the prepared body was not used)


def test_a_retried_range_whose_first_reply_was_cut_short_comes_back_whole(stub):
    body = os.urandom(4 * MiB)

    def script(n, seen):
        reply = object_reply(body, seen)
        if n == 0:
            reply.truncate_at = len(reply.body) // 3  # the prepared body gets part of it, then the retry
        return reply

    stub.script = script
    c = _client(stub, native.BufferPool(64 * MiB))
    c.submit(0, "bkt", "k", MiB, 3 * MiB, False, len(body), allocate=True)
    assert _results(c, 1)[0] == body[MiB:3 * MiB]


def test_get_many_of_known_sizes_gives_every_range_its_bytes(stub):
    objs = {f"o{i}": os.urandom(MiB + 17 * i) for i in range(12)}
    stub.script = lambda n, seen: object_reply(objs[seen.path.rsplit("/", 1)[1]], seen)
    s3 = S3Client(S3Config(endpoint_url=stub.endpoint, backend="native", region="us-east-1",
                           static_credentials=("AKIDTEST", "secret", None), max_connections=4))
    reqs = [(f"s3://bkt/{k}", 3, len(v) - 5, len(v)) for k, v in objs.items()]
    got = [d for _u, d in s3.get_many(reqs)]
    assert got == [v[3:len(v) - 5] for v in objs.values()]
    s3.close()
