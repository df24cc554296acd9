"""The native reader under faults that could hand out wrong bytes: every reply is checked.

Against the scriptable stub (tests/native/conftest.py): short bodies, a 206 for another range,
replies that contradict the known object size, servers that ignore Range, wrong checksums. Each
is retried (``max_attempts`` in all), then raised as a typed error; nothing wrong is returned.
"""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
import zlib

import pytest

from awsio.config import S3Config
from awsio.errors import EndpointConnectionError, IntegrityError
from awsio.s3.backend import Request
from awsio.s3.native_backend import NativeBackend, native_client

from .conftest import Reply, native, object_reply
from .test_native_parts import PART, make

pytestmark = pytest.mark.native


def integrity(fn, *args, **kw) -> IntegrityError:
    with pytest.raises(IntegrityError) as info:
        fn(*args, **kw)
    return info.value


# ---------------------------------------------------------------- split GETs


def test_first_part_cut_short_and_retried_gives_every_object_whole(stub):
    # The first part of each split GET is cut mid-body once: it must be retried cleanly (it used
    # to stay queued for its parts with its body released, and came back as b"" without an error).
    objs = {f"o{i}": os.urandom(5 * PART + 17 * i) for i in range(20)}
    cut: set[str] = set()

    def script(n, seen):
        name = seen.path.rsplit("/", 1)[1]
        if seen.headers.get("range", "").startswith("bytes=0-") and name not in cut:
            cut.add(name)
            return object_reply(objs[name], seen, truncate_at=PART // 2)
        return object_reply(objs[name], seen)

    stub.script = script
    b = make(stub, part_size=PART, max_connections=8)
    got = [d for _i, d in b.get_many([("bkt", k, 0, None) for k in objs])]
    assert [len(d) for d in got] == [len(v) for v in objs.values()]
    assert got == list(objs.values())
    assert cut == set(objs)
    b.close()


def test_retried_first_part_is_pinned_to_the_etag_its_parts_use(stub):
    # The first part fails after its parts went out: its retry asks for the same version
    # (If-Match), so a replaced object fails with 412 instead of mixing two versions' bytes.
    body = os.urandom(6 * PART)
    first_tries: list[dict[str, str]] = []

    def script(n, seen):
        if seen.headers.get("range", "").startswith("bytes=0-"):
            first_tries.append(seen.headers)
            if len(first_tries) == 1:
                return object_reply(body, seen, truncate_at=PART // 2, chunk_delay=0.2)
        return object_reply(body, seen)

    stub.script = script
    b = make(stub, part_size=PART)
    assert b.get("bkt", "k") == body
    assert len(first_tries) == 2
    assert "if-match" not in first_tries[0] and first_tries[1]["if-match"] == '"e1"'
    b.close()


# ---------------------------------------------------------------- lengths and ranges


def test_206_for_another_range_is_retried_then_a_range_mismatch(stub):
    body = bytes(range(256)) * 8

    def script(n, seen):
        if n == 0:  # same length, other bytes
            return Reply(206, body[10:20], {"Content-Range": f"bytes 10-19/{len(body)}"})
        return object_reply(body, seen)

    stub.script = script
    b = make(stub, part_size=0)
    assert b.get("bkt", "k", 0, 10) == body[:10]
    assert len(stub.seen) == 2
    stub.seen.clear()
    stub.script = lambda n, seen: Reply(206, body[10:20], {"Content-Range": f"bytes 10-19/{len(body)}"})
    err = integrity(b.get, "bkt", "k", 0, 10)
    assert len(stub.seen) == 3  # max_attempts
    assert (err.code, err.status, err.url) == ("RangeMismatch", 206, "s3://bkt/k")
    assert err.expected == "bytes 0-9" and err.got == f"bytes 10-19/{len(body)}"  # as the Python backend
    assert isinstance(err, OSError)
    b.close()


def test_206_without_content_range_is_a_range_mismatch(stub):
    stub.script = lambda n, seen: Reply(206, b"0123456789")
    err = integrity(make(stub, part_size=0).get, "bkt", "k", 0, 10)
    assert err.code == "RangeMismatch" and len(stub.seen) == 3


def test_short_206_is_retried_not_handed_out(stub):
    body = os.urandom(1000)

    def script(n, seen):
        if n == 0:  # a proxy cut the range short, and said so in Content-Range
            return Reply(206, body[:50], {"Content-Range": f"bytes 0-49/{len(body)}"})
        if n == 1:  # Content-Range claims the whole range, Content-Length is shorter
            return Reply(206, body[:50], {"Content-Range": f"bytes 0-99/{len(body)}"})
        return object_reply(body, seen)

    stub.script = script
    b = make(stub, part_size=0, max_attempts=3)
    assert b.get("bkt", "k", 0, 100) == body[:100]
    assert len(stub.seen) == 3
    stub.seen.clear()
    stub.script = lambda n, seen: Reply(206, body[:50], {"Content-Range": f"bytes 0-99/{len(body)}"})
    err = integrity(b.get, "bkt", "k", 0, 100)
    assert (err.code, err.expected, err.got) == ("SizeMismatch", 100, 50)
    b.close()


def test_known_size_is_checked_against_every_kind_of_reply(stub):
    body = os.urandom(3000)
    stub.script = lambda n, seen: object_reply(body, seen)
    b = make(stub, part_size=0)
    assert b.get("bkt", "k", size=3000) == body
    assert b.get("bkt", "k", 100, 200, size=3000) == body[100:200]
    # Whole-object 200 whose Content-Length is not the listed size.
    err = integrity(b.get, "bkt", "k", size=4000)
    assert (err.code, err.expected, err.got) == ("SizeMismatch", 4000, 3000)
    # 206 whose Content-Range total is not the listed size.
    err = integrity(b.get, "bkt", "k", 100, 200, size=4000)
    assert (err.code, err.expected, err.got) == ("SizeMismatch", 4000, 3000)
    # 416 for a range that starts inside the listed size: the object shrank.
    err = integrity(b.get, "bkt", "k", 3500, 3600, size=4000)
    assert err.code == "SizeMismatch"
    assert b.get("bkt", "k", 3500, 3600) == b""  # without a known size, past the end is empty
    stub.seen.clear()
    err = integrity(lambda: list(b.get_many([Request("bkt", "k", 0, None, 2999)])))
    assert err.code == "SizeMismatch" and len(stub.seen) == 3
    assert list(b.get_many([Request("bkt", "k", 0, None, 3000), Request("bkt", "k", 5, 9, 3000)])) == [
        (0, body), (1, body[5:9])]
    b.close()


def test_split_get_first_part_total_is_checked_against_the_known_size(stub):
    body = os.urandom(5 * PART)
    stub.script = lambda n, seen: object_reply(body, seen)
    b = make(stub, part_size=PART)
    assert b.get("bkt", "k", size=len(body)) == body
    stub.seen.clear()
    err = integrity(b.get, "bkt", "k", size=len(body) + 1)
    assert (err.code, err.expected, err.got) == ("SizeMismatch", len(body) + 1, len(body))
    assert len(stub.seen) == 3  # the first part, three times: no part was spawned
    b.close()


def test_a_part_for_another_range_fails_the_get(stub):
    body = os.urandom(4 * PART)

    def script(n, seen):
        rng = seen.headers.get("range", "")
        if rng.startswith(f"bytes={2 * PART}-"):  # answered with the part before it
            return Reply(206, body[PART:2 * PART], {"Content-Range": f"bytes {PART}-{2 * PART - 1}/{len(body)}",
                                                    "ETag": '"e1"'})
        return object_reply(body, seen)

    stub.script = script
    err = integrity(make(stub, part_size=PART).get, "bkt", "k")
    assert err.code == "RangeMismatch"
    assert err.expected == f"bytes {2 * PART}-{3 * PART - 1}"


def test_server_ignoring_range_is_sliced_only_when_the_length_is_right(stub):
    body = b"0123456789"
    stub.script = lambda n, seen: Reply(200, body)  # 200 + the whole body despite Range
    b = make(stub)
    assert b.get("bkt", "k", 2, 5, size=10) == b"234"
    err = integrity(b.get, "bkt", "k", 2, 5, size=11)
    assert (err.code, err.expected, err.got) == ("SizeMismatch", 11, 10)
    b.close()


def test_connection_closed_mid_body_says_how_far_it_got(stub):
    body = os.urandom(300_000)
    stub.script = lambda n, seen: Reply(200, body, truncate_at=100_000)
    with pytest.raises(EndpointConnectionError) as info:
        make(stub, part_size=0).get("bkt", "k")
    assert len(stub.seen) == 3
    assert "connection closed after 100000 of 300000 body bytes" in info.value.reason


# ---------------------------------------------------------------- checksums


def _crc(fn, data: bytes, width: int) -> str:
    return base64.b64encode(fn(data).to_bytes(width, "big")).decode()


def expected_checksums(data: bytes) -> dict[str, str]:
    """The x-amz-checksum-* values S3 would send for ``data`` (awscrt's CRCs, hashlib's SHAs)."""
    checksums = pytest.importorskip("awscrt.checksums")
    return {
        "crc32": _crc(checksums.crc32, data, 4),
        "crc32c": _crc(checksums.crc32c, data, 4),
        "crc64nvme": _crc(checksums.crc64nvme, data, 8),
        "sha1": base64.b64encode(hashlib.sha1(data).digest()).decode(),
        "sha256": base64.b64encode(hashlib.sha256(data).digest()).decode(),
    }


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 63, 64, 127, 128, 200, 1000, 65537, (1 << 20) + 3])
def test_checksums_match_awscrt_and_hashlib(n):
    data = os.urandom(n)
    want = expected_checksums(data)
    assert base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode() == want["crc32"]
    for algo in native.checksum_algorithms():
        assert native.checksum(algo, data) == want[algo], algo
        # Fed in uneven pieces, as the write callback sees it.
        assert native.checksum(algo, data, 1 + n // 3) == want[algo], algo


def test_every_algorithm_is_built():
    assert set(native.checksum_algorithms()) == {"crc32", "crc32c", "crc64nvme", "sha1", "sha256"}


@pytest.mark.parametrize("algo", ["crc32", "crc32c", "crc64nvme", "sha1", "sha256"])
def test_whole_object_checksum_is_verified(stub, algo):
    body = os.urandom(200_000)
    good = expected_checksums(body)[algo]
    bad = expected_checksums(body[::-1])[algo]

    def script(n, seen):
        return Reply(200, body, {f"x-amz-checksum-{algo}": bad if n == 0 else good,
                                 "x-amz-checksum-type": "FULL_OBJECT"})

    stub.script = script
    b = make(stub, part_size=0)
    assert b.get("bkt", "k") == body
    assert len(stub.seen) == 2  # the first, wrong one was retried
    assert stub.seen[0].headers["x-amz-checksum-mode"] == "ENABLED"
    signed = stub.seen[0].headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
    assert "x-amz-checksum-mode" in signed
    stub.seen.clear()
    stub.script = lambda n, seen: Reply(200, body, {f"x-amz-checksum-{algo}": bad})
    err = integrity(b.get, "bkt", "k")
    assert len(stub.seen) == 3
    assert (err.code, err.expected, err.got, err.status) == ("ChecksumMismatch", bad, good, 200)
    b.close()


def test_checksum_of_a_chunked_body_is_verified(stub):
    import socketserver

    body = os.urandom(5000)
    good = expected_checksums(body)["crc32c"]

    class Chunked(socketserver.BaseRequestHandler):
        def handle(self):
            self.request.recv(65536)
            half = len(body) // 2
            head = (f"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nx-amz-checksum-crc32c: {self.server.value}"
                    f"\r\nConnection: close\r\n\r\n").encode()
            chunks = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (body[:half], body[half:]))
            self.request.sendall(head + chunks + b"0\r\n\r\n")

    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Chunked) as srv:
        import threading

        threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True).start()
        b = NativeBackend(S3Config(endpoint_url=f"http://127.0.0.1:{srv.server_address[1]}", max_attempts=2,
                                   static_credentials=("a", "b", None), part_size=0))
        srv.value = good
        assert b.get("bkt", "k") == body
        srv.value = expected_checksums(b"other")["crc32c"]
        assert integrity(b.get, "bkt", "k").code == "ChecksumMismatch"
        srv.shutdown()


def test_checksums_of_parts_and_of_ranges_are_not_checked(stub):
    body = os.urandom(3000)
    wrong = expected_checksums(b"not the body")

    def script(n, seen):
        reply = object_reply(body, seen)
        reply.headers["x-amz-checksum-crc32"] = wrong["crc32"]  # a server that sends it regardless
        return reply

    stub.script = script
    b = make(stub, part_size=0)
    assert b.get("bkt", "k", 5, 100) == body[5:100]  # a range: not the whole object's checksum
    assert "x-amz-checksum-mode" not in stub.seen[0].headers
    stub.script = lambda n, seen: Reply(200, body, {"x-amz-checksum-crc32": wrong["crc32"] + "-3"})
    assert b.get("bkt", "k") == body  # a checksum of parts (-N) cannot be checked on the body
    stub.script = lambda n, seen: Reply(200, body, {"x-amz-checksum-crc32c": wrong["crc32c"],
                                                    "x-amz-checksum-type": "COMPOSITE"})
    assert b.get("bkt", "k") == body
    b.close()


def test_split_get_sends_checksum_mode_only_on_the_first_request(stub):
    body = os.urandom(5 * PART)
    stub.script = lambda n, seen: object_reply(body, seen)
    b = make(stub, part_size=PART)
    assert b.get("bkt", "k") == body
    assert stub.seen[0].headers.get("x-amz-checksum-mode") == "ENABLED"
    assert all("x-amz-checksum-mode" not in s.headers for s in stub.seen[1:])
    b.close()


def test_known_small_size_reads_the_whole_object_in_one_plain_get(stub):
    # With the size known and small enough not to split, a whole GET carries no Range, so S3
    # sends the object's checksum and it is verified.
    body = os.urandom(PART + 5)
    good = expected_checksums(body)["crc64nvme"]
    stub.script = lambda n, seen: Reply(200, body, {"x-amz-checksum-crc64nvme": good})
    b = make(stub, part_size=PART)
    assert b.get("bkt", "k", size=len(body)) == body
    assert "range" not in stub.seen[0].headers and len(stub.seen) == 1
    b.close()


def test_a_client_told_not_to_verify_does_not_check(stub):
    body = os.urandom(1000)
    stub.script = lambda n, seen: Reply(200, body, {"x-amz-checksum-crc32c": expected_checksums(b"x")["crc32c"]})
    c = native_client(S3Config(endpoint_url=stub.endpoint, unsigned=True, max_connections=2, connect_timeout=5.0,
                               read_timeout=10.0, max_attempts=2, part_size=0, verify_checksums=False),
                      deadline=30.0)  # the benchmark's baseline
    c.submit(0, "bkt", "k")
    assert [(r.tag, r.kind, r.data) for r in c.wait(10.0)] == [(0, "ok", body)]
    assert stub.seen[0].headers["x-amz-checksum-mode"] == "ENABLED"  # the same request as a checking client


# ---------------------------------------------------------------- Ctrl-C


_STALLED_READS = textwrap.dedent("""
    import sys, threading
    from concurrent.futures import ThreadPoolExecutor
    from awsio.config import S3Config
    from awsio.s3.native_backend import NativeBackend
    b = NativeBackend(S3Config(endpoint_url=sys.argv[1], static_credentials=("a", "b", None),
                               read_timeout=60.0, max_attempts=5, part_size=0))
    get = lambda: b.get("bkt", "stalled")
    if sys.argv[2] == "pool":  # read-ahead on an executor: exit joins its workers
        pool = ThreadPoolExecutor(2)
        futures = [pool.submit(get) for _ in range(2)]
    elif sys.argv[2] == "daemon":  # read-ahead on daemon threads: exit finalizes under them
        for _ in range(4):
            threading.Thread(target=get, daemon=True).start()
    print("reading", flush=True)
    futures[0].result() if sys.argv[2] == "pool" else get() if sys.argv[2] == "main" else threading.Event().wait()
""")


@pytest.mark.parametrize("where", ["main", "pool", "daemon"])
def test_ctrl_c_during_a_stalled_body_exits_promptly(stub, where):
    body = os.urandom(1 << 20)
    stub.script = lambda n, seen: Reply(200, body, chunk_delay=30.0)  # 64 KiB, then silence
    proc = subprocess.Popen([sys.executable, "-c", _STALLED_READS, stub.endpoint, where], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "reading"
        deadline = time.monotonic() + 10
        while len(stub.seen) < (1 if where == "main" else 2) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # the first 64 KiB are in; the bodies stall
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
        elapsed = time.monotonic() - t0
    finally:
        proc.kill()
        proc.wait()
    err = proc.stderr.read()
    assert "KeyboardInterrupt" in err
    assert "terminate called" not in err and proc.returncode == -signal.SIGINT, (proc.returncode, err[-500:])
    assert elapsed < 2.0, elapsed
