"""Fixtures for the native reader's tests: a scriptable HTTP stub standing in for S3.

The stub lets tests make S3 misbehave on purpose (503 SlowDown, 500, redirects, truncated
bodies, slow bodies) and see exactly what the native client sent (path, headers).
Tests against a real S3 server use the shared fixtures in ``tests/conftest.py``.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterator

import pytest

native = pytest.importorskip("awsio._native", reason="awsio._native is not built")


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    truncate_at: int | None = None      # send Content-Length of the full body, then close early
    chunk_delay: float = 0.0            # seconds between 64 KiB chunks
    stall: float = 0.0                  # seconds of silence after the headers


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


class Stub:
    """Answers each request with ``script(n, seen)`` (n = 0-based request number)."""

    def __init__(self, certfile: str | None = None) -> None:
        self.script: Callable[[int, Seen], Reply] = lambda n, seen: Reply(404)
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in separate writes: without this, Nagle + delayed ACK
                # add ~40 ms to every keep-alive request.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _serve(self) -> None:
                seen = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
                with stub.lock:
                    n = len(stub.seen)
                    stub.seen.append(seen)
                reply = stub.script(n, seen)
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                if self.command == "HEAD":
                    return
                if reply.stall:
                    time.sleep(reply.stall)
                body = reply.body if reply.truncate_at is None else reply.body[: reply.truncate_at]
                step = 64 * 1024
                for i in range(0, len(body), step):
                    self.wfile.write(body[i:i + step])
                    self.wfile.flush()
                    if reply.chunk_delay:
                        time.sleep(reply.chunk_delay)
                if reply.truncate_at is not None:
                    self.close_connection = True

            do_GET = _serve
            do_HEAD = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False  # a stalled handler must not hold up teardown
        scheme = "http"
        if certfile:
            import ssl

            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(certfile)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.endpoint = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub() -> Iterator[Stub]:
    s = Stub()
    yield s
    s.close()


@pytest.fixture
def tls_stub(tmp_path) -> Iterator[tuple[Stub, str]]:
    """A stub behind TLS with a fresh self-signed certificate for 127.0.0.1 (yields stub, cert path)."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not available")
    pem = tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(tmp_path / "key.pem"), "-out", str(pem)],
        check=True, capture_output=True,
    )
    both = tmp_path / "both.pem"
    both.write_bytes(pem.read_bytes() + (tmp_path / "key.pem").read_bytes())
    s = Stub(certfile=str(both))
    yield s, str(pem)
    s.close()


def error_xml(code: str, message: str = "", request_id: str = "REQ123") -> bytes:
    return (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{message}</Message>"
            f"<RequestId>{request_id}</RequestId></Error>").encode()


def object_reply(body: bytes, seen: Seen, etag: str = '"e1"', **kw: object) -> Reply:
    """How S3 answers a GET of ``body``: Range (206 + Content-Range, 416 past the end), If-Match
    (412 when the ETag differs), ETag header."""
    headers = {"ETag": etag}
    if_match = seen.headers.get("if-match")
    if if_match is not None and if_match != etag:
        return Reply(412, error_xml("PreconditionFailed", "At least one of the pre-conditions you specified did not hold"))
    rng = seen.headers.get("range")
    if rng is None:
        return Reply(200, body, headers, **kw)  # type: ignore[arg-type]
    first, _, last = rng.removeprefix("bytes=").partition("-")
    start = int(first)
    end = min(int(last) + 1, len(body)) if last else len(body)
    if start >= len(body):
        return Reply(416, error_xml("InvalidRange"))
    headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(body)}"
    return Reply(206, body[start:end], headers, **kw)  # type: ignore[arg-type]
