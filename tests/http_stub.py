"""A scriptable HTTP stub standing in for S3, for tests of both backends.

The stub lets tests make S3 misbehave on purpose (503 SlowDown, 500, redirects, truncated,
reset, stalled and over-long bodies, lying headers, outages) and see exactly what the client
sent (path, headers). Fixtures (``stub``, ``tls_stub``) live in ``tests/conftest.py``.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    truncate_at: int | None = None      # send Content-Length of the full body, then close early
    chunk_delay: float = 0.0            # seconds between 64 KiB chunks
    stall: float = 0.0                  # seconds of silence after `stall_at` body bytes
    stall_at: int = 0                   # where the stall happens (0: right after the headers)
    reset: bool = False                 # at truncate_at: send a TCP reset instead of a clean close
    outage: float = 0.0                 # at truncate_at: drop every connection, refuse new ones this long
    extra: bytes = b""                  # bytes sent after the body, beyond Content-Length


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
        self._certfile = certfile
        self._conns: set[socket.socket] = set()
        self._port = 0
        self._closed = False
        self._start()
        scheme = "https" if certfile else "http"
        self.endpoint = f"{scheme}://127.0.0.1:{self._port}"

    def _start(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", self._port), self._handler())
        self.server.daemon_threads = True
        self.server.block_on_close = False  # a stalled handler must not hold up teardown
        self.server.handle_error = lambda *a: None  # type: ignore[method-assign]  # clients hang up on purpose
        if self._certfile:
            import ssl

            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(self._certfile)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self._port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def go_away(self, seconds: float) -> None:
        """Drop every open connection and refuse new ones for ``seconds``, then serve again."""
        self.server.shutdown()
        self.server.server_close()
        with self.lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        def back() -> None:
            time.sleep(seconds)
            if not self._closed:
                self._start()

        threading.Thread(target=back, daemon=True).start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
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
                with stub.lock:
                    stub._conns.add(self.connection)

            def finish(self) -> None:
                with stub.lock:
                    stub._conns.discard(self.connection)
                try:
                    super().finish()
                except OSError:
                    pass

            def _write(self, data: bytes, delay: float) -> None:
                step = 64 * 1024
                for i in range(0, len(data), step):
                    self.wfile.write(data[i:i + step])
                    self.wfile.flush()
                    if delay:
                        time.sleep(delay)

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
                body = reply.body if reply.truncate_at is None else reply.body[: reply.truncate_at]
                if reply.stall:
                    self._write(body[: reply.stall_at], reply.chunk_delay)
                    self.wfile.flush()
                    time.sleep(reply.stall)
                    body = body[reply.stall_at:]
                self._write(body + reply.extra, reply.chunk_delay)
                if reply.truncate_at is None:
                    return
                self.close_connection = True
                if reply.reset:  # SO_LINGER 0: close() sends RST
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                if reply.outage:
                    stub.go_away(reply.outage)

            do_GET = _serve
            do_HEAD = _serve

        return Handler

    def close(self) -> None:
        self._closed = True
        self.server.shutdown()
        self.server.server_close()


def error_xml(code: str, message: str = "", request_id: str = "REQ123") -> bytes:
    return (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{message}</Message>"
            f"<RequestId>{request_id}</RequestId></Error>").encode()


def object_reply(body: bytes, seen: Seen, etag: str = '"e1"', **kw: Any) -> Reply:
    """How S3 answers a GET of ``body``: Range (206 + Content-Range, 416 past the end), If-Match
    (412 when the ETag differs), ETag header."""
    headers = {"ETag": etag}
    if_match = seen.headers.get("if-match")
    if if_match is not None and if_match != etag:
        return Reply(412, error_xml("PreconditionFailed", "At least one of the pre-conditions you specified did not hold"))
    rng = seen.headers.get("range")
    if rng is None:
        return Reply(200, body, headers, **kw)
    first, _, last = rng.removeprefix("bytes=").partition("-")
    start = int(first)
    end = min(int(last) + 1, len(body)) if last else len(body)
    if start >= len(body):
        return Reply(416, error_xml("InvalidRange"))
    headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(body)}"
    return Reply(206, body[start:end], headers, **kw)
