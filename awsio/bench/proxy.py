"""A counting HTTP proxy on 127.0.0.1: how many GET / HEAD / LIST requests a loader makes.

SeaweedFS's Prometheus metrics count GETs and LISTs but not HEADs, so the engine counts requests
itself: during its warm-up run (which is not timed) a loader is pointed at this proxy instead of the
server. The proxy reads each request's head on the way in (method, path, query, Content-Length) and
relays every byte unchanged both ways, so SigV4 signatures, which cover the ``Host`` header the
client sent, still verify at the server. It counts:

* ``GET``: a GET of an object (ranged or not; ``GET_RANGED`` counts the ones with a Range header),
* ``LIST``: a GET of a bucket (path-style ``/bucket`` or ``/bucket/``, e.g. ``?list-type=2``),
* ``HEAD``: any HEAD, ``OTHER``: anything else (PUT, POST, DELETE),

and the bytes the server sent back (headers included: what crossed the wire). Path-style addressing
only (every benchmark endpoint is a custom one). A request body sent with ``Transfer-Encoding:
chunked`` cannot be delimited without parsing it; the rest of that connection is relayed blind and
counted in ``uncounted_connections``.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

__all__ = ["CountingProxy", "classify"]

_LIMIT = 1 << 20  # longest request head accepted


def classify(method: str, target: str) -> str:
    """The request kind (GET / LIST / HEAD / OTHER) of ``method target`` on a path-style endpoint."""
    path = urlsplit(target).path
    if method == "HEAD":
        return "HEAD"
    if method == "GET":
        key = path.lstrip("/").partition("/")[2]
        return "GET" if key else "LIST"
    return "OTHER"


class CountingProxy:
    """Relays 127.0.0.1:<port> to ``upstream`` (an ``http://host:port`` URL), counting requests.

    Use as a context manager; :attr:`url` is the endpoint to give the client; :meth:`take` returns
    the counts so far and starts new ones. Raises ValueError for an https upstream (TLS cannot be
    relayed while reading the requests).
    """

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the counting proxy relays plain http only, not {upstream!r}")
        self.host, self.port = parts.hostname, parts.port or 80
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="awsio-bench-proxy", daemon=True)
        self.url = ""

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0, limit=_LIMIT), self._loop)
        self._server = fut.result(timeout=10)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc: Any) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)  # let them unwind before the loop stops

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def take(self) -> dict[str, int]:
        """The counts since the last call (GET, GET_RANGED, LIST, HEAD, OTHER, wire_bytes, ...)."""
        with self._lock:
            out = dict(self._counts)
            self._counts.clear()
        return out

    def _add(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(self.host, self.port, limit=_LIMIT)
        except OSError:
            client_w.close()
            return
        requests = asyncio.ensure_future(self._requests(client_r, up_w))
        try:
            await self._replies(up_r, client_w)
        finally:
            requests.cancel()
            for w in (up_w, client_w):
                w.close()

    async def _requests(self, reader: asyncio.StreamReader, up: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    break
                lines = head.decode("latin-1").split("\r\n")
                method, target = (lines[0].split(" ") + ["", ""])[:2]
                headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
                kind = classify(method, target)
                self._add(kind)
                if kind == "GET" and "range" in headers:
                    self._add("GET_RANGED")
                up.write(head)
                if "chunked" in headers.get("transfer-encoding", "").lower():
                    self._add("uncounted_connections")
                    while chunk := await reader.read(1 << 16):
                        up.write(chunk)
                        await up.drain()
                    break
                remaining = int(headers.get("content-length", "0") or 0)
                while remaining > 0:
                    chunk = await reader.read(min(remaining, 1 << 20))
                    if not chunk:
                        break
                    remaining -= len(chunk)
                    up.write(chunk)
                    await up.drain()
                await up.drain()
            if up.can_write_eof():
                up.write_eof()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            up.close()

    async def _replies(self, upstream: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        try:
            while chunk := await upstream.read(1 << 20):
                self._add("wire_bytes", len(chunk))
                client.write(chunk)
                await client.drain()
        except ConnectionError:
            pass
