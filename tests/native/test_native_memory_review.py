"""Review of the native engine's body memory: what a reply that sends no body bytes, or more than
it owes, leaves in a (recycled) body, and how server text that is not UTF-8 reaches Python.

Chunked replies need a raw socket server (the stub always sends Content-Length): ``RawServer``
answers each request with ``script(n, method, headers)`` -> the raw reply, and closes.
"""

from __future__ import annotations

import base64
import os
import signal
import socketserver
import subprocess
import sys
import textwrap
import threading
from typing import Callable, Iterator

import pytest

from awsio.config import S3Config
from awsio.errors import IntegrityError, NoSuchKeyError, S3Error
from awsio.s3.native_backend import NativeBackend

from .conftest import Reply, object_reply

pytestmark = pytest.mark.native

PART = 64 * 1024


class RawServer:
    def __init__(self) -> None:
        self.script: Callable[[int, str, dict[str, str]], bytes | Iterator[bytes]] = lambda n, m, h: b""
        self.seen: list[dict[str, str]] = []
        self.sent = 0  # body bytes the last streamed reply got out before the client hung up
        server = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = self.request.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                lines = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
                with lock:
                    n = len(server.seen)
                    server.seen.append(headers)
                reply = server.script(n, lines[0].split()[0], headers)
                try:
                    if isinstance(reply, bytes):
                        self.request.sendall(reply)
                        return
                    for piece in reply:
                        self.request.sendall(piece)
                        server.sent += len(piece)
                except OSError:
                    pass

        lock = threading.Lock()
        self.srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.srv.daemon_threads = True
        threading.Thread(target=self.srv.serve_forever, args=(0.05,), daemon=True).start()
        self.endpoint = f"http://127.0.0.1:{self.srv.server_address[1]}"

    def close(self) -> None:
        self.srv.shutdown()
        self.srv.server_close()


@pytest.fixture
def raw() -> Iterator[RawServer]:
    s = RawServer()
    yield s
    s.close()


def backend(endpoint: str, **kw) -> NativeBackend:
    kw.setdefault("static_credentials", ("AKIDTEST", "secret", None))
    kw.setdefault("max_attempts", 2)
    return NativeBackend(S3Config(endpoint_url=endpoint, **kw))


def reply_206(body: bytes, headers: dict[str, str], *, empty_chunked: bool = False) -> bytes:
    first, _, last = headers["range"].removeprefix("bytes=").partition("-")
    s, e = int(first), min(int(last) + 1, len(body)) if last else len(body)
    head = f"HTTP/1.1 206 Partial Content\r\nETag: \"e1\"\r\nContent-Range: bytes {s}-{e - 1}/{len(body)}\r\n"
    head += "Connection: close\r\n"
    if empty_chunked:  # a 206 owing e - s bytes that sends none
        return (head + "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n").encode()
    return (head + f"Content-Length: {e - s}\r\n\r\n").encode() + body[s:e]


def crc32c_b64(data: bytes) -> str:
    from awscrt import checksums

    return base64.b64encode(checksums.crc32c(data).to_bytes(4, "big")).decode()


# ---------------------------------------------------------------- replies with no body byte


def test_a_part_that_sends_no_body_byte_never_leaves_another_samples_bytes(raw):
    # A part answered with an empty chunked 206 (its Content-Range owes 64 KiB) had no write
    # callback, so nothing checked its length: the GET came back whole-sized with that part's
    # place holding what the recycled buffer held before, bytes of the previous sample.
    a, b = os.urandom(2 * 1024 * 1024 + 5), os.urandom(2 * 1024 * 1024 + 5)
    state = {"obj": a, "empty_at": -1}

    def script(n, method, headers):
        start = int(headers["range"].removeprefix("bytes=").partition("-")[0])
        return reply_206(state["obj"], headers, empty_chunked=start == state["empty_at"])

    raw.script = script
    be = backend(raw.endpoint, part_size=PART)
    got = be.get("bkt", "k")
    assert got == a
    del got  # its buffer is free for the next body
    state["obj"], state["empty_at"] = b, 3 * PART
    with pytest.raises(IntegrityError) as info:
        be.get("bkt", "k")
    assert (info.value.code, info.value.expected, info.value.got) == ("SizeMismatch", PART, 0)
    state["empty_at"] = -1
    assert be.get("bkt", "k") == b  # and the same read with every part whole is right
    be.close()


def test_a_range_answered_with_no_body_byte_is_a_size_mismatch(raw):
    body = os.urandom(1000)
    raw.script = lambda n, m, h: reply_206(body, h, empty_chunked=n == 0)
    be = backend(raw.endpoint, part_size=0)
    assert be.get("bkt", "k", 100, 300) == body[100:300]  # the first reply (empty) is retried
    assert len(raw.seen) == 2
    raw.script = lambda n, m, h: reply_206(body, h, empty_chunked=True)
    with pytest.raises(IntegrityError) as info:
        be.get("bkt", "k", 100, 300)  # was b"" for a 200-byte range
    assert (info.value.code, info.value.expected, info.value.got) == ("SizeMismatch", 200, 0)
    be.close()


def test_an_empty_chunked_200_of_an_object_known_to_be_larger_is_a_size_mismatch(raw):
    raw.script = lambda n, m, h: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n"
    be = backend(raw.endpoint, part_size=0)
    with pytest.raises(IntegrityError) as info:
        be.get("bkt", "k", size=100)  # was b""
    assert (info.value.code, info.value.expected, info.value.got) == ("SizeMismatch", 100, 0)
    assert be.get("bkt", "k") == b""  # size unknown: an empty object is all it can be
    be.close()


def test_an_empty_chunked_200_is_checked_against_its_checksum(raw):
    state = {"sum": crc32c_b64(b"the object")}
    raw.script = lambda n, m, h: (f"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nx-amz-checksum-crc32c: "
                                  f"{state['sum']}\r\nConnection: close\r\n\r\n0\r\n\r\n").encode()
    be = backend(raw.endpoint, part_size=0)
    with pytest.raises(IntegrityError) as info:
        be.get("bkt", "k")  # was b"", the checksum of another body never looked at
    assert info.value.code == "ChecksumMismatch"
    state["sum"] = crc32c_b64(b"")
    assert be.get("bkt", "k") == b""
    be.close()


# ---------------------------------------------------------------- replies longer than owed


def test_a_chunked_body_longer_than_the_known_size_is_not_held(raw):
    # A chunked 200 has no Content-Length to stop at: its bytes were collected without bound
    # (here 64 MiB for an object known to be 1000 bytes) and only then compared with the size.
    chunk = os.urandom(1 << 20)

    def endless(n, method, headers):
        yield b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        for _ in range(64):
            yield b"%x\r\n%s\r\n" % (len(chunk), chunk)
        yield b"0\r\n\r\n"

    raw.script = endless
    be = backend(raw.endpoint, part_size=0, max_attempts=1)
    with pytest.raises(IntegrityError) as info:
        be.get("bkt", "k", size=1000)
    assert info.value.code == "SizeMismatch"
    assert raw.sent < 16 << 20  # the client hung up long before the server was done
    be.close()


# ---------------------------------------------------------------- server text that is not UTF-8


def test_error_text_that_is_not_utf8_is_still_the_typed_error(stub):
    # py::str of the error XML's fields raised UnicodeDecodeError out of wait(), instead of
    # the S3 error, and dropped every other result of the same batch with it.
    stub.script = lambda n, seen: Reply(404, b"<Error><Code>NoSuchKey</Code><Message>gone \xff</Message></Error>",
                                        {"x-amz-request-id": "R\xe9Q"})
    be = backend(stub.endpoint, part_size=0, max_attempts=1)
    with pytest.raises(NoSuchKeyError) as info:
        be.get("bkt", "k")
    assert info.value.code == "NoSuchKey"
    body = os.urandom(3000)

    def script(n, seen):
        if seen.path.endswith("/bad"):  # a Content-Range that is not text: RangeMismatch quotes it
            return Reply(206, body, {"Content-Range": "bytes \xff-1/2"})
        return object_reply(body, seen)

    stub.script = script
    with pytest.raises(IntegrityError) as err:
        be.get("bkt", "bad", 0, 100)
    assert err.value.code == "RangeMismatch"
    got = {}
    with pytest.raises(S3Error):
        for i, d in be.get_many([("bkt", "good", 0, None), ("bkt", "bad", 0, 100)], ordered=False):
            got[i] = d
    assert got.get(0, body) == body
    be.close()


def test_results_of_one_batch_hold_their_own_pooled_buffers(stub):
    # Many large bodies finished in one wait(), dropped in turn and read again: each result is its
    # own bytes object, and a buffer freed by the caller is reused only once no one holds it.
    objs = {f"o{i}": os.urandom(1_100_000 + 4096 * i) for i in range(8)}
    stub.script = lambda n, seen: object_reply(objs[seen.path.rsplit("/", 1)[1]], seen)
    be = backend(stub.endpoint, part_size=0, max_connections=8)
    kept = []
    for rnd in range(3):
        for i, d in be.get_many([("bkt", k, 0, None) for k in objs], ordered=True):
            assert d == objs[f"o{i}"]
            if i % 2 == rnd % 2:
                kept.append((i, memoryview(d)))  # a view keeps its body from being recycled
    for i, view in kept:
        assert view.tobytes() == objs[f"o{i}"]
    assert be._pool.stats()["reused"] > 0
    be.close()


# ---------------------------------------------------------------- forked children


def test_an_abandoned_client_raises_instead_of_crashing(tmp_path):
    # A client abandoned (a forked child's) had its engine pointer released: every call but
    # wakeup() dereferenced null and the process died of SIGSEGV.
    code = textwrap.dedent("""
        from awsio.config import S3Config
        from awsio.s3.native_backend import native_client
        c = native_client(S3Config(endpoint_url="http://127.0.0.1:9", static_credentials=("a", "b", None)))
        c.abandon()
        c.wakeup()
        for call in (c.pending, lambda: c.wait(0.1), c.cancel_all, lambda: c.submit(0, "b", "k"), c.budget,
                     lambda: c.set_credentials("a", "b", ""), lambda: c.object_url("b", "k")):
            try:
                call()
            except RuntimeError as exc:
                assert "abandoned" in str(exc), exc
            else:
                raise AssertionError("no error")
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", (proc.returncode, proc.stderr[-2000:])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_get_many_iterator_resumed_in_a_forked_child_raises_instead_of_hanging(stub):
    # The child forgets the parent's clients and takes the backend's pid as its own, so the
    # iterator's same-process check passed there, and it waited forever for results from a pump
    # thread that exists only in the parent.
    body = os.urandom(100_000)
    stub.script = lambda n, seen: object_reply(body, seen, chunk_delay=0.2)
    be = backend(stub.endpoint, max_attempts=1, max_connections=2)
    it = be.get_many([("bkt", f"k{i}", 0, None) for i in range(6)])
    assert next(it) == (0, body)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        signal.alarm(10)
        try:
            next(it)
            os.write(w, b"returned")
        except RuntimeError as exc:
            os.write(w, b"raised" if "forked child" in str(exc) else str(exc).encode()[:200])
        except BaseException as exc:  # noqa: BLE001
            os.write(w, repr(exc).encode()[:200])
        os._exit(0)
    os.close(w)
    _, status = os.waitpid(pid, 0)
    said = os.read(r, 1000)
    os.close(r)
    assert (os.WIFSIGNALED(status), said) == (False, b"raised")
    assert [i for i, _ in it] == [1, 2, 3, 4, 5]  # the parent's iterator is untouched
    be.close()
