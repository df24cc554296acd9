"""A range read in pieces (``Request.cuts``): the engine writes each byte straight into its piece.

Against the scriptable stub (tests/native/conftest.py): pieces across the parts of a split GET,
retried first parts and parts, a server that ignores Range (the pieces are then cut in Python),
empty pieces, and cuts that do not fit the range. Every piece must hold exactly its bytes.
"""

from __future__ import annotations

import os

import pytest

from awsio.s3.backend import Request, cut_body

from .conftest import Reply, object_reply
from .test_native_parts import PART, make

pytestmark = pytest.mark.native


def pieces_of(data: bytes, start: int, cuts: tuple[int, ...]) -> tuple[bytes, ...]:
    bounds = (0, *cuts, len(data))
    return tuple(data[start + bounds[i]:start + bounds[i + 1]] for i in range(len(cuts) + 1))


@pytest.fixture
def engine_cuts(monkeypatch):
    """The engine must cut: the Python fallback (for replies that are not exactly the range) is
    not allowed to run."""
    def refuse(data, cuts):
        raise AssertionError("cut in Python, not by the engine")
    monkeypatch.setattr("awsio.s3.native_backend.cut_body", refuse)


def test_pieces_of_a_split_get_hold_exactly_their_bytes(stub, engine_cuts):
    body = os.urandom(6 * PART + 333)
    stub.script = lambda n, seen: object_reply(body, seen)
    b = make(stub, part_size=PART)
    start, end = 100, 5 * PART + 200  # split into parts; cuts across part boundaries, empty pieces
    cuts = (0, 0, 512, PART - 100, PART - 100, PART + 1, 3 * PART + 7, end - start - 1, end - start)
    [(i, got)] = list(b.get_many([Request("bkt", "k", start, end, None, cuts)]))
    assert isinstance(got, tuple) and all(type(p) is bytes for p in got)
    assert got == pieces_of(body[:end], start, cuts)
    assert b"".join(got) == body[start:end]
    b.close()


def test_pieces_come_out_right_after_retried_parts_and_first_parts(stub, engine_cuts):
    body = os.urandom(6 * PART)
    events: list[str] = []

    def script(n, seen):
        rng = seen.headers.get("range", "")
        if rng.startswith("bytes=10-") and "first" not in events:
            events.append("first")
            return object_reply(body, seen, truncate_at=PART // 3)  # the first part, cut mid-body
        if rng.startswith(f"bytes={2 * PART + 10}-") and "503" not in events:
            events.append("503")
            return Reply(503, b"<Error><Code>SlowDown</Code></Error>")
        if rng.startswith(f"bytes={4 * PART + 10}-") and "cut" not in events:
            events.append("cut")
            return object_reply(body, seen, truncate_at=100)  # a part, cut mid-body
        return object_reply(body, seen)

    stub.script = script
    b = make(stub, part_size=PART, max_attempts=4)
    cuts = tuple(range(0, 6 * PART - 20, 4099))
    [(_, got)] = list(b.get_many([Request("bkt", "k", 10, 6 * PART - 10, None, cuts)]))
    assert sorted(events) == ["503", "cut", "first"]
    assert got == pieces_of(body[:6 * PART - 10], 10, cuts)
    b.close()


def test_many_ranges_in_pieces_and_whole(stub):
    objs = {f"o{i}": os.urandom(3000 + 517 * i) for i in range(30)}
    stub.script = lambda n, seen: object_reply(objs[seen.path.rsplit("/", 1)[1]], seen)
    b = make(stub, max_connections=8)
    reqs = [Request("bkt", k, 7, len(v) - 3, None, (0, 512, 1000, 1000)) if i % 2 else Request("bkt", k, 7, len(v) - 3)
            for i, (k, v) in enumerate(objs.items())]
    got = [d for _, d in b.get_many(reqs)]
    for (k, v), r, d in zip(objs.items(), reqs, got):
        assert d == (pieces_of(v[:r.end], 7, r.cuts) if r.cuts else v[7:r.end]), k
    b.close()


def test_a_server_ignoring_range_still_gives_the_pieces(stub):
    body = bytes(range(200))
    stub.script = lambda n, seen: Reply(200, body)  # 200 + the whole body despite Range
    b = make(stub)
    [(_, got)] = list(b.get_many([Request("bkt", "k", 20, 120, 200, (10, 50))]))
    assert got == (body[20:30], body[30:70], body[70:120])
    b.close()


def test_cuts_that_do_not_fit_the_range_are_refused_with_the_object(stub):
    stub.script = lambda n, seen: object_reply(b"x" * 100, seen)
    b = make(stub)
    for cuts, end in (((5, 4), 50), ((51,), 50), ((-1,), 50), ((3,), None)):
        with pytest.raises(ValueError, match="s3://bkt/k"):
            list(b.get_many([Request("bkt", "k", 0, end, None, cuts)]))
    b.close()


def test_cut_body_is_the_python_side_of_the_same_contract():
    data = bytes(range(50))
    assert cut_body(data, ()) == (data,)
    assert cut_body(data, (0, 10, 10, 50)) == (b"", data[:10], b"", data[10:], b"")
    assert cut_body(data[:30], (10, 40)) == (data[:10], data[10:30], b"")  # a clipped body: short pieces


def test_pieces_in_flight_are_not_reachable_through_the_gc(stub):
    """The engine writes into the pieces without the GIL: Python must not be able to reach them
    before they are handed over (gc.get_objects() did: a hash taken then stayed cached, wrong)."""
    import gc
    import threading
    import time

    body = os.urandom(2_000_000)

    def slow(n, seen):
        reply = object_reply(body, seen)
        reply.chunk_delay = 0.05  # ~1.5 s of body: time to look
        return reply

    stub.script = slow
    b = make(stub, part_size=0)
    sizes, seen, done = (1_000_000, 999_000), [], threading.Event()

    def spy():
        while not done.is_set() and not seen:
            for o in gc.get_objects():
                if (type(o) is tuple and len(o) == 2 and all(type(p) is bytes for p in o)
                        and tuple(map(len, o)) == sizes):
                    seen.append((o, hash(o[1])))
                    break
            time.sleep(0.01)

    th = threading.Thread(target=spy)
    th.start()
    try:
        [(_, got)] = list(b.get_many([Request("bkt", "k", 1000, 2_000_000, None, (1_000_000,))]))
    finally:
        done.set()
        th.join()
        b.close()
    assert got[1] == body[1_001_000:]
    assert not any(t is got for t, _ in seen), "the pieces were reachable from Python while being written"
    assert hash(got[1]) == hash(bytes(bytearray(got[1])))
