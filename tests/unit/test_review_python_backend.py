"""Review of the Python backend's concurrency and lifecycle: close() with GETs queued, fork, pickling.

Against the scriptable stub (``tests/http_stub.py``); where the native backend behaves the same,
on both backends.
"""

from __future__ import annotations

import os
import pickle
import threading
import time
from typing import Any

import pytest
from forking import in_child, needs_fork, stub_client
from http_stub import Reply, Seen, object_reply

from awsio.s3.backend import Request
from awsio.s3.threads import DaemonPool

BODY = os.urandom(1 << 20)



def test_a_cancelled_pool_future_counts_as_done_for_wait():
    """DaemonPool.shutdown cancelled its queued futures without notifying wait(): a waiter on
    them (the unordered get_many) slept forever."""
    from concurrent.futures import FIRST_COMPLETED, wait

    pool = DaemonPool(1, "awsio-test")
    gate, started = threading.Event(), threading.Event()
    running = pool.submit(lambda: started.set() or gate.wait())
    assert started.wait(5)
    queued = pool.submit(len, "never")
    pool.shutdown()
    done, _ = wait([queued], timeout=2, return_when=FIRST_COMPLETED)
    gate.set()
    assert running.result(timeout=5) is True
    assert done == {queued} and queued.cancelled()


@pytest.mark.parametrize("ordered", [True, False])
def test_closing_the_backend_with_gets_queued_ends_get_many(stub, ordered):
    """Workers busy with another iterator's GETs, this one's queued: close() must not leave the
    caller waiting forever (unordered) or with a bare CancelledError (ordered)."""
    release = threading.Event()

    def script(n: int, seen: Seen) -> Reply:
        if "/busy" in seen.path:
            release.wait(10)
        return object_reply(b"x" * 100, seen)

    stub.script = script
    client = stub_client(stub, "python", max_connections=2)
    backend = client.backend
    busy = backend.get_many([Request("bkt", f"busy{i}") for i in range(2)])
    threading.Thread(target=lambda: next(busy, None), daemon=True).start()
    deadline = time.monotonic() + 10
    while len(stub.seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    out: dict[str, Any] = {}

    def consume() -> None:
        try:
            out["got"] = list(backend.get_many([Request("bkt", f"q{i}") for i in range(2)], ordered=ordered))
        except BaseException as exc:  # noqa: BLE001 - inspected below
            out["err"] = exc

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    time.sleep(0.3)  # its two GETs wait in the pool's queue
    backend.close()
    consumer.join(5)
    release.set()
    assert not consumer.is_alive(), "get_many still waiting after close()"
    assert isinstance(out.get("err"), RuntimeError) and "closed" in str(out["err"]), out
    assert "s3://bkt/q" in str(out["err"])


@needs_fork
def test_a_backend_used_in_a_forked_child_opens_its_own_connections(stub, backend):
    """The child must not send requests on the parent's kept-alive connections: two processes
    reading replies from one socket swap bodies (seen: the parent got the child's object)."""
    conns: list[int] = []

    def script(n: int, seen: Seen) -> Reply:
        conns.append(threading.get_ident())  # the stub serves each connection in its own thread
        return object_reply(seen.path.encode() * 10, seen)

    stub.script = script
    client = stub_client(stub, backend, max_connections=1)
    be = client.backend
    assert be.get("bkt", "warm") == b"/bkt/warm" * 10
    assert in_child(lambda: be.get("bkt", "child")) == ("ok", b"/bkt/child" * 10)
    assert be.get("bkt", "parent") == b"/bkt/parent" * 10
    assert len(conns) == 3
    assert conns[1] != conns[0], "the child sent its GET on the parent's connection"
    client.close()


@needs_fork
def test_get_many_resumed_in_a_forked_child_raises_instead_of_hanging(stub, backend):
    def slow(n: int, seen: Seen) -> Reply:
        time.sleep(0.3)
        return object_reply(BODY[:1000], seen)

    stub.script = slow
    client = stub_client(stub, backend, max_connections=2)
    it = client.get_many([f"s3://bkt/k{i}" for i in range(6)])
    assert next(it)[0] == "s3://bkt/k0"
    kind, what = in_child(lambda: list(it))
    assert kind == "err" and "RuntimeError" in what and "forked child" in what, (kind, what)
    assert [u for u, _ in it] == [f"s3://bkt/k{i}" for i in range(1, 6)]  # the parent goes on
    client.close()


@needs_fork
def test_a_reader_opened_before_fork_reads_on_in_the_child(stub, backend):
    """Read-ahead chunks in flight at the fork belong to the parent's threads: the child used to
    wait on them forever."""
    def slow(n: int, seen: Seen) -> Reply:
        time.sleep(0.2)
        return object_reply(BODY, seen)

    stub.script = slow
    client = stub_client(stub, backend, max_connections=4)
    reader = client.open("s3://bkt/obj", size=len(BODY), chunk_size=128 << 10, prefetch=3)
    assert reader.read(10) == BODY[:10]
    assert in_child(lambda: reader.read() == BODY[10:]) == ("ok", True)
    assert reader.read() == BODY[10:]  # the parent's stream is untouched
    reader.close()
    client.close()


def test_the_python_backend_pickles_like_the_native_one(stub, backend):
    client = stub_client(stub, backend)
    stub.script = lambda n, seen: object_reply(b"abc", seen)
    clone = pickle.loads(pickle.dumps(client.backend))
    assert clone.name == backend and clone.get("bkt", "k") == b"abc"
    clone.close()
    client.close()


@needs_fork
def test_a_client_being_built_in_another_thread_at_fork_works_in_the_child(stub, monkeypatch):
    """S3Client's lock, held by a thread building the backend (a botocore client takes ~0.1 s)
    when the main thread forks (DataLoader workers), stayed locked in the child: its first read
    waited forever."""
    import awsio.s3.client as client_module

    real, building, go_on = client_module._make_backend, threading.Event(), threading.Event()

    def slow_make_backend(*args: Any) -> Any:
        if not go_on.is_set():
            building.set()
            go_on.wait(10)
        return real(*args)

    monkeypatch.setattr(client_module, "_make_backend", slow_make_backend)
    stub.script = lambda n, seen: object_reply(b"abc", seen)
    client = stub_client(stub, "python")
    builder = threading.Thread(target=lambda: client.backend, daemon=True)
    builder.start()
    assert building.wait(5)
    try:
        assert in_child(lambda: (go_on.set(), client.get("s3://bkt/k"))[1], timeout=10) == ("ok", b"abc")
    finally:
        go_on.set()
        builder.join(10)
    client.close()
