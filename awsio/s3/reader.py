"""Sequential streaming reads of one S3 object with bounded read-ahead.

:class:`S3Reader` is a read-only file object over ranged GETs: while the consumer parses chunk
*i* (a tar header, a gzip block), chunks *i+1 .. i+prefetch* are already in flight. Memory is
bounded by ``chunk_size * (prefetch + 1)`` whatever the object's size, so a 100 GiB shard streams
in a few tens of MiB.
"""

from __future__ import annotations

import io
import os
from collections import deque
from concurrent.futures import Future
from typing import Any, Optional

from awsio.errors import IntegrityError

from awsio.s3.threads import DaemonPool

__all__ = ["S3Reader"]


class S3Reader(io.RawIOBase):
    """A non-seekable, readable stream over ``backend`` for ``s3://bucket/key``.

    Args:
        backend: an :class:`awsio.s3.backend.Backend`.
        bucket, key: the object.
        size: the object's size if known (from a listing); otherwise one HEAD request finds it
            (unless ``end`` is given). Each ranged GET is checked against it.
        etag: the object's ETag if known (from a listing; else the HEAD's, when one is made): every
            chunk asks for that version (``If-Match``), so an object replaced while it is read is
            an ``IntegrityError`` (``PreconditionFailed``), never a stream of two versions.
        chunk_size: bytes per ranged GET.
        prefetch: chunks fetched ahead of the one being read (0 disables read-ahead).
        start, end: read only the half-open byte range [start, end) of the object.

    Raises the backend's :mod:`awsio.errors` exceptions from ``read`` when a chunk fails
    (``IntegrityError`` when a reply contradicts ``size`` or the range asked for), and the same
    exception from every later ``read`` or ``skip``: the stream never goes on past a gap.
    Read-ahead runs on daemon threads that :meth:`close` releases: a reader abandoned in a
    stalled read never holds up the interpreter's exit.
    """

    def __init__(self, backend: Any, bucket: str, key: str, *, size: Optional[int] = None,
                 chunk_size: int = 8 << 20, prefetch: int = 2, start: int = 0,
                 end: Optional[int] = None, etag: Optional[str] = None) -> None:
        super().__init__()
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        if prefetch < 0:
            raise ValueError("prefetch must be >= 0")
        self.url = f"s3://{bucket}/{key}"
        self._backend = backend
        self._bucket, self._key = bucket, key
        if end is None:
            if size is None:
                info = backend.head(bucket, key)
                size, etag = info.size, etag or info.etag
            end = size
        self._object_size = size
        self._etag = etag  # every chunk asks for this version (If-Match), when it is known
        self._end = end
        self._next_fetch = start  # offset of the next chunk to request
        self._pos = start  # offset of the next byte handed to the caller
        self._failed: Optional[BaseException] = None  # a chunk failed for good: the stream stops there
        self._chunk_size = chunk_size
        self._prefetch = prefetch
        self._pending: deque[tuple[int, int, Future[bytes]]] = deque()  # (lo, hi, its bytes)
        self._buf = memoryview(b"")
        self._pool = DaemonPool(prefetch, "awsio-readahead") if prefetch else None
        self._pid = os.getpid()

    @property
    def size(self) -> int:
        """End offset of the stream (the object's size unless a range was asked for)."""
        return self._end

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def _schedule(self) -> None:
        # The chunk being read (self._buf) plus ``prefetch`` in flight: prefetch + 1 chunks at most.
        while self._next_fetch < self._end and len(self._pending) < max(1, self._prefetch):
            lo = self._next_fetch
            hi = min(self._end, lo + self._chunk_size)
            self._next_fetch = hi
            args = (self._bucket, self._key, lo, hi, self._object_size, self._etag)
            if self._pool is None:
                fut: Future[bytes] = Future()
                fut.set_result(self._backend.get(*args))
            else:
                fut = self._pool.submit(self._backend.get, *args)
            self._pending.append((lo, hi, fut))
            if self._pool is None:
                return

    def _forked(self) -> None:
        # In a forked child the read-ahead in flight runs on the parent's threads, never here:
        # waiting on it would never end. Fetch it again (the pool starts afresh in the child).
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._pending.clear()
            self._next_fetch = self._pos + len(self._buf)

    def _fill(self) -> bool:
        if self.closed:
            raise ValueError(f"I/O operation on a closed S3Reader ({self.url})")
        self._forked()
        if len(self._buf):
            return True
        if self._failed is not None:  # every read after a failed chunk fails: never the next chunk's bytes
            raise self._failed
        try:
            self._schedule()
            if not self._pending:
                return False
            lo, hi, fut = self._pending.popleft()
            data = fut.result()
            if len(data) != hi - lo:  # the object ends before the range this reader was opened for
                raise IntegrityError(f"the object ended {len(data)} bytes into [{lo}, {hi}) of the range "
                                     f"being read (it is shorter than the caller said)", url=self.url, status=None,
                                     code="SizeMismatch", request_id=None, expected=hi, got=lo + len(data))
        except BaseException as exc:
            self._failed = exc
            raise
        if self._pool is not None:  # refill the window while the caller works on this chunk
            self._schedule()
        self._buf = memoryview(data)
        return len(data) > 0

    def readinto(self, b: Any) -> int:
        if not self._fill():
            return 0
        out = memoryview(b).cast("B")
        n = min(len(out), len(self._buf))
        out[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        self._pos += n
        return n

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all that is left for -1); b"" at the end of the object."""
        if size is None or size < 0:
            return self.readall()
        if not self._fill():
            return b""
        if len(self._buf) <= size:
            # Hand over the rest of this chunk; no copy when it is a whole chunk.
            buf, self._buf = self._buf, memoryview(b"")
            self._pos += len(buf)
            obj = buf.obj
            return obj if isinstance(obj, bytes) and len(obj) == len(buf) else buf.tobytes()
        out = self._buf[:size].tobytes()
        self._buf = self._buf[size:]
        self._pos += size
        return out

    def readall(self) -> bytes:
        parts: list[bytes] = []
        while True:
            chunk = self.read(self._chunk_size)
            if not chunk:
                return b"".join(parts)
            parts.append(chunk)

    def skip(self, n: int) -> int:
        """Move ``n`` bytes forward without handing them over; returns how many were skipped.

        Chunks that lie wholly in the skipped span are not fetched: read-ahead is dropped and
        restarts at the new offset (header scans jump over member data this way)."""
        if self.closed:
            raise ValueError(f"I/O operation on a closed S3Reader ({self.url})")
        if self._failed is not None:
            raise self._failed
        self._forked()
        n = max(0, min(n, self._end - self._pos))
        if n <= len(self._buf):
            self._buf = self._buf[n:]
        else:
            for _, _, fut in self._pending:
                fut.cancel()
            self._pending.clear()
            self._buf = memoryview(b"")
            self._next_fetch = self._pos + n
        self._pos += n
        return n

    def close(self) -> None:
        if not self.closed:
            self._forked()
            for _, _, fut in self._pending:
                fut.cancel()
            self._pending.clear()
            if self._pool is not None:
                self._pool.shutdown()
            self._buf = memoryview(b"")
        super().close()
