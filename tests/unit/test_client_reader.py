"""S3Reader over an in-memory backend: exact bytes, bounded read-ahead, errors, closing."""

from __future__ import annotations

import io
import random
import threading
from typing import Optional

import pytest

from awsio.errors import NoSuchKeyError
from awsio.s3.backend import ObjectInfo
from awsio.s3.reader import S3Reader


class MemoryBackend:
    """Just enough of the Backend protocol for S3Reader, counting what it is asked for."""

    name = "memory"

    def __init__(self, body: bytes, fail_at: Optional[int] = None) -> None:
        self.body = body
        self.fail_at = fail_at  # a range starting at this offset raises
        self.calls: list[tuple[int, Optional[int]]] = []
        self.sizes: list[Optional[int]] = []  # the object size each get was told
        self.lock = threading.Lock()

    def head(self, bucket: str, key: str) -> ObjectInfo:
        return ObjectInfo(f"s3://{bucket}/{key}", len(self.body))

    def get(self, bucket: str, key: str, start: int = 0, end: Optional[int] = None,
            size: Optional[int] = None, if_match: Optional[str] = None) -> bytes:
        with self.lock:
            self.calls.append((start, end))
            self.sizes.append(size)
        if self.fail_at is not None and start == self.fail_at:
            raise NoSuchKeyError("gone", url=f"s3://{bucket}/{key}", status=404, code="NoSuchKey",
                                 request_id=None)
        return self.body[start:end]


BODY = random.Random(3).randbytes(100_003)


@pytest.mark.parametrize("chunk_size", [1000, 4096, 100_003, 1 << 20])
@pytest.mark.parametrize("prefetch", [0, 1, 3])
def test_reads_every_byte_in_order(chunk_size: int, prefetch: int) -> None:
    backend = MemoryBackend(BODY)
    rng = random.Random(chunk_size + prefetch)
    with S3Reader(backend, "b", "k", chunk_size=chunk_size, prefetch=prefetch) as r:
        assert r.size == len(BODY)
        got = bytearray()
        while True:
            chunk = r.read(rng.choice([1, 17, 999, 5000, 70_000]))
            if not chunk:
                break
            assert isinstance(chunk, bytes)
            got += chunk
            assert r.tell() == len(got)
        assert bytes(got) == BODY
        assert r.read() == b"" and r.read(10) == b""
    # Every byte fetched exactly once, by non-overlapping ranged GETs.
    spans = sorted(backend.calls)
    assert spans[0][0] == 0 and spans[-1][1] == len(BODY)
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))


@pytest.mark.parametrize("prefetch", [0, 1, 2, 4])
def test_holds_at_most_prefetch_plus_one_chunks(prefetch: int) -> None:
    backend = MemoryBackend(BODY)
    r = S3Reader(backend, "b", "k", chunk_size=1000, prefetch=prefetch)
    peak = 0
    while r.read(300):
        held = len(r._pending) + (1 if len(r._buf) else 0)
        peak = max(peak, held)
        # Requests made so far never run further ahead than the window.
        assert len(backend.calls) * 1000 <= r.tell() + 1000 * (prefetch + 1)
    assert peak <= prefetch + 1
    if prefetch:
        assert peak == prefetch + 1  # read-ahead actually happens
    r.close()


def test_range_readall_readinto_and_buffered_reader() -> None:
    backend = MemoryBackend(BODY)
    with S3Reader(backend, "b", "k", size=len(BODY), chunk_size=333, start=10, end=5000) as r:
        assert r.read() == BODY[10:5000]
    assert backend.calls and all(10 <= s and e <= 5000 for s, e in backend.calls)
    with S3Reader(backend, "b", "k", chunk_size=777, prefetch=2) as r:
        buf = bytearray(500)
        n = r.readinto(buf)
        assert n > 0 and bytes(buf[:n]) == BODY[:n]
    with io.BufferedReader(S3Reader(backend, "b", "k", chunk_size=7919)) as f:
        assert f.read(10) == BODY[:10]
        assert f.read() == BODY[10:]
    with S3Reader(MemoryBackend(b""), "b", "k") as r:
        assert r.size == 0 and r.read() == b"" and r.read(5) == b""


def test_every_ranged_get_carries_the_object_size() -> None:
    # The backends check each reply against it (a cut or replaced object raises IntegrityError).
    for kwargs in ({"size": len(BODY)}, {}, {"size": len(BODY), "start": 10, "end": 5000}):
        backend = MemoryBackend(BODY)
        with S3Reader(backend, "b", "k", chunk_size=1000, prefetch=2, **kwargs) as r:
            r.read()
        assert backend.sizes and set(backend.sizes) == {len(BODY)}, kwargs
    backend = MemoryBackend(BODY)
    with S3Reader(backend, "b", "k", chunk_size=1000, start=10, end=5000) as r:  # size unknown, no HEAD
        r.read()
    assert set(backend.sizes) == {None}


def test_chunk_error_surfaces_from_read() -> None:
    backend = MemoryBackend(BODY, fail_at=3000)
    with S3Reader(backend, "b", "k", chunk_size=1000, prefetch=2) as r:
        assert r.read(3000) != b""
        with pytest.raises(NoSuchKeyError) as info:
            while r.read(1000):
                pass
        assert info.value.url == "s3://b/k"


def test_closed_reader_refuses_reads() -> None:
    r = S3Reader(MemoryBackend(BODY), "b", "k", chunk_size=1000, prefetch=2)
    assert r.read(10) == BODY[:10]
    r.close()
    assert r.closed
    with pytest.raises(ValueError):
        r.read(10)


@pytest.mark.parametrize("kwargs", [{"chunk_size": 0}, {"prefetch": -1}])
def test_invalid_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        S3Reader(MemoryBackend(BODY), "b", "k", **kwargs)
