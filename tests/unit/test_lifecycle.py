"""Lifecycle of reads: Ctrl-C exits at once, and early-closed iterators leave nothing behind.

Against the scriptable stub (``tests/http_stub.py``), on both backends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest
from http_stub import Reply, Seen, object_reply

from awsio import S3Client
from awsio.config import S3Config
from awsio.s3.threads import DaemonPool

BODY = os.urandom(1 << 20)
URL = "s3://bkt/obj"

CHILD = textwrap.dedent("""
    import sys
    from awsio import S3Client
    from awsio.config import S3Config

    endpoint, backend, mode = sys.argv[1:4]
    client = S3Client(S3Config(endpoint_url=endpoint, backend=backend, region="us-east-1",
                               static_credentials=("AKIDTEST", "secret", None), read_timeout=30.0))
    print("reading", flush=True)
    if mode == "reader":
        client.open("s3://bkt/obj", size={size}, chunk_size=64 * 1024, prefetch=4).read()
    else:
        for _ in client.get_many(["s3://bkt/a", "s3://bkt/b", "s3://bkt/c"]):
            pass
""").format(size=len(BODY))


@pytest.mark.parametrize("mode", ["reader", "get_many"])
def test_ctrl_c_during_a_stalled_read_exits_within_a_second(stub, backend, mode):
    stub.script = lambda n, seen: Reply(200 if mode == "get_many" else 206, BODY[:64 * 1024],
                                        {"Content-Range": f"bytes 0-65535/{len(BODY)}"},
                                        stall=60.0, stall_at=1000)
    proc = subprocess.Popen([sys.executable, "-c", CHILD, stub.endpoint, backend, mode],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "reading\n"
        deadline = time.monotonic() + 20
        while len(stub.seen) < 3 and time.monotonic() < deadline:  # every GET is stalled mid-body
            time.sleep(0.05)
        assert len(stub.seen) >= 3
        time.sleep(0.3)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=15)
        took = time.monotonic() - t0
    finally:
        proc.kill()
        proc.wait()
    stderr = proc.stderr.read() if proc.stderr else ""
    assert "KeyboardInterrupt" in stderr and "terminate called" not in stderr, stderr
    assert took < 1.0, f"exit took {took:.1f} s"


def _awsio_threads(prefix: str = "awsio") -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith(prefix))


def _client_sockets(stub: Any) -> int:
    """Sockets of this process connected to the stub (its own server-side sockets excluded)."""
    import psutil

    port = int(stub.endpoint.rsplit(":", 1)[1])
    return sum(1 for c in psutil.Process().net_connections(kind="tcp") if c.raddr and c.raddr.port == port)


def _client_fds(stub: Any) -> int:
    """Open fds of this process, less the stub's own (server-side) sockets."""
    import psutil

    port = int(stub.endpoint.rsplit(":", 1)[1])
    server = sum(1 for c in psutil.Process().net_connections(kind="tcp") if c.laddr and c.laddr.port == port)
    return len(os.listdir("/proc/self/fd")) - server


def _settle(check: Any, timeout: float = 5.0) -> Any:
    end = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > end:
            return value
        time.sleep(0.05)


def test_early_closed_readers_and_iterators_leave_no_threads_or_sockets(stub, backend):
    stub.script = lambda n, seen: object_reply(BODY, seen)
    client = S3Client(S3Config(endpoint_url=stub.endpoint, backend=backend, region="us-east-1",
                               static_credentials=("AKIDTEST", "secret", None), max_connections=8))
    client.head(URL)

    def early_closes(n: int) -> None:
        for _ in range(n):
            with client.open(URL, size=len(BODY), chunk_size=64 * 1024, prefetch=4) as r:
                assert r.read(10) == BODY[:10]
            it = client.get_many((URL, o, o + 50_000) for o in range(0, len(BODY), 50_000))
            assert next(it)[1] == BODY[:50_000]
            it.close()
            reader = client.open(URL, size=len(BODY), chunk_size=64 * 1024, prefetch=4)
            reader.read(10)
            del reader  # never closed: garbage collection closes it

    threads0, fds0 = _awsio_threads(), _client_fds(stub)
    # Kept-alive connections: one pool of max_connections (Python); one per native client in
    # use at once (here 4 read-ahead threads + this one), each of max_connections, plus its
    # multi handle's own fds.
    bound = 8 * (1 if backend == "python" else 5)
    for _ in range(10):
        early_closes(10)
        assert _settle(lambda: _client_sockets(stub) <= bound), _client_sockets(stub)
    assert _settle(lambda: _awsio_threads() <= threads0), _awsio_threads()  # idle workers end
    assert _client_fds(stub) <= fds0 + bound + (0 if backend == "python" else 5 * 2)
    client.close()


def test_closing_get_many_abandons_stalled_transfers(stub, backend):
    # The first object comes at once, the others stall mid-body far past the test.
    def script(n: int, seen: Seen) -> Reply:
        if seen.path.endswith("/0"):
            return Reply(200, b"first")
        return Reply(200, BODY, stall=60.0, stall_at=1000)

    stub.script = script
    client = S3Client(S3Config(endpoint_url=stub.endpoint, backend=backend, region="us-east-1",
                               static_credentials=("AKIDTEST", "secret", None), max_connections=4,
                               read_timeout=30.0))
    it = client.get_many(f"s3://bkt/{i}" for i in range(20))
    assert next(it) == ("s3://bkt/0", b"first")
    assert _settle(lambda: len(stub.seen) >= 4 and _client_sockets(stub) >= 3)  # 3 or 4 stalled
    time.sleep(0.2)
    t0 = time.monotonic()
    it.close()
    # No socket left on the stalled transfers (one may stay kept alive), no new request.
    assert _settle(lambda: _client_sockets(stub) <= 1, timeout=2.0), _client_sockets(stub)
    assert time.monotonic() - t0 < 2.0
    seen = len(stub.seen)
    time.sleep(0.5)
    assert len(stub.seen) == seen


def test_daemon_pool_runs_cancels_and_lets_idle_workers_go():
    pool = DaemonPool(3, "awsio-test", linger=0.2)
    assert [f.result() for f in [pool.submit(pow, 2, i) for i in range(10)]] == [2 ** i for i in range(10)]
    assert 1 <= _awsio_threads("awsio-test") <= 3
    assert _settle(lambda: _awsio_threads("awsio-test") == 0, timeout=3.0)
    assert pool.submit(len, "abc").result() == 3  # workers come back on demand
    gate, started = threading.Event(), threading.Semaphore(0)

    def job() -> bool:
        started.release()
        return gate.wait()

    running = [pool.submit(job) for _ in range(3)]
    for _ in running:
        assert started.acquire(timeout=5)
    queued = pool.submit(len, "never")
    pool.shutdown()
    assert queued.cancelled()
    gate.set()
    assert all(f.result() is True for f in running)
    assert _settle(lambda: _awsio_threads("awsio-test") == 0, timeout=3.0)
    with pytest.raises(RuntimeError):
        pool.submit(len, "x")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_daemon_pool_works_in_a_forked_child():
    import multiprocessing

    pool = DaemonPool(2, "awsio-test", linger=0.2)
    assert pool.submit(len, "ab").result() == 2  # the parent has a worker now
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=lambda: queue.put(pool.submit(len, "abc").result(timeout=10)))
    child.start()
    assert queue.get(timeout=30) == 3
    child.join(30)
    assert child.exitcode == 0
    pool.shutdown()
