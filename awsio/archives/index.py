"""Per-shard member index: names, offsets, sizes and the sample count of a tar shard.

Why: equal-work DDP needs every shard's sample count before iterating, and splitting a shard
between workers (fewer shards than ranks x workers) needs the byte offset of every sample so each
worker reads only its own byte range. The shard maker writes a small JSON sidecar next to each
shard (``train-000000.tar`` -> ``train-000000.tar.idx.json``)::

    from awsio.archives.index import build_index, write_index
    with open("train-000000.tar", "rb") as f:
        write_index(build_index(f), "train-000000.tar.idx.json")         # local path, or
    write_index(index, "s3://bucket/train-000000.tar.idx.json", client=client)   # next to the shard

Without a sidecar, :func:`load_index` scans the tar headers with ranged reads (skipping member
data, so it reads little more than one 64 KiB window per member) and caches the result in-process.
Zip shards need no sidecar: the central directory is their index.

Sidecar format (JSON)::

    {"version": 1, "kind": "tar", "size": <shard bytes>, "end": <end of the last member's data>,
     "members": [[name, header_offset, data_size], ...]}
"""

from __future__ import annotations

import bisect
import json
import threading
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterator

from awsio.archives.tar import walk_tar
from awsio.errors import ArchiveError
from awsio.grouping import is_metadata, sample_runs

__all__ = ["INDEX_SUFFIX", "ShardIndex", "build_index", "index_url", "load_index",
           "clear_index_cache", "scan_tar", "write_index"]

INDEX_SUFFIX = ".idx.json"
INDEX_VERSION = 1
_cache: dict[tuple[str, int | None, str | None], ShardIndex] = {}
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class ShardIndex:
    """The regular members of one shard and the byte range of each sample (run of one key)."""

    kind: str
    size: int
    end: int
    members: tuple[tuple[str, int, int], ...]
    sample_starts: tuple[int, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        runs = sample_runs(self.members, name=lambda m: m[0])
        object.__setattr__(self, "sample_starts", tuple(run[0][1] for run in runs))

    @property
    def sample_count(self) -> int:
        """Number of samples (runs of consecutive members with the same key)."""
        return len(self.sample_starts)

    def byte_range(self, start: int, stop: int) -> tuple[int, int]:
        """The half-open byte range ``[a, b)`` of the tar that holds samples ``start..stop-1``."""
        n = self.sample_count
        if not 0 <= start < stop <= n:
            raise ValueError(f"sample range [{start}, {stop}) outside [0, {n})")
        a = self.sample_starts[start]
        b = self.sample_starts[stop] if stop < n else self.end
        return a, b

    def sample_of_offset(self, offset: int) -> int:
        """Index of the sample whose byte range holds ``offset``."""
        return bisect.bisect_right(self.sample_starts, offset) - 1

    def to_json(self) -> str:
        return json.dumps({"version": INDEX_VERSION, "kind": self.kind, "size": self.size,
                           "end": self.end, "members": [list(m) for m in self.members]},
                          separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes, url: str = "") -> ShardIndex:
        """Parse a sidecar (``url``: where it was read, for errors).

        Members may also be objects ``{"name", "offset", "data_offset", "size"}`` (the form the
        shard maker in :mod:`awsio.tools.makeshards` writes); ``end`` and ``kind`` are then derived.

        Raises:
            ArchiveError: (a ValueError) naming ``url``, for anything but a well-formed index of
                this version: not JSON, missing or mistyped fields, negative numbers, member
                offsets that do not increase, a member past the index's ``end``, an ``end`` past
                the shard's size.
        """
        try:
            return cls._parse(json.loads(text))
        except (ValueError, KeyError, TypeError) as exc:
            raise ArchiveError(f"malformed shard index: {type(exc).__name__}: {exc}", url=url) from exc

    @classmethod
    def _parse(cls, obj: Any) -> ShardIndex:
        if not isinstance(obj, dict) or obj.get("version") != INDEX_VERSION:
            raise ValueError("not an awsio shard index (or an unsupported version)")
        kind = obj.get("kind", "tar")
        if kind not in ("tar", "tgz"):
            raise ValueError(f"kind {kind!r} is not 'tar' or 'tgz'")
        if not isinstance(obj["members"], list):
            raise TypeError("members is not a list")
        members: list[tuple[str, int, int]] = []
        least_end = 0  # members end at least here (their data starts a header or more after them)
        last = -1
        for m in obj["members"]:
            if type(m) is list and len(m) == 3:  # the common form, checked inline (a sidecar of
                name, offset, size = m           # a large shard has tens of thousands of members)
                if type(offset) is not int or type(size) is not int or size < 0:
                    raise ValueError(f"member {m!r}: its offset or size is not a non-negative integer")
                data_at = offset + 512
            elif isinstance(m, dict):
                name, offset, size = m["name"], _count(m["offset"]), _count(m["size"])
                data_at = _count(m.get("data_offset", offset + 512))
            else:
                raise TypeError(f"member {m!r} is not [name, offset, size]")
            if type(name) is not str or offset <= last or data_at < offset + 512:
                raise ValueError(f"member {m!r}: no name, or its offset does not follow the last one")
            last = offset
            end = data_at + ((size + 511) & ~511)
            if end > least_end:
                least_end = end
            if not name.endswith("/") and not ("__" in name and is_metadata(name)):
                members.append((name, offset, size))
        size = _count(obj["size"])
        end = _count(obj.get("end", least_end))
        if end < least_end:
            raise ValueError(f"a member runs to byte {least_end}, past the index's end {end}")
        if kind == "tar" and end > size:
            raise ValueError(f"end {end} is past the shard's size {size}")
        return cls(kind, size, end, tuple(members))


def _count(value: Any) -> int:
    """A JSON non-negative integer (not a float, not a bool); raises ValueError."""
    if type(value) is not int or value < 0:
        raise ValueError(f"{value!r} is not a non-negative integer")
    return value


def index_url(shard_url: str) -> str:
    """Where the sidecar of ``shard_url`` lives."""
    return shard_url + INDEX_SUFFIX


def build_index(stream: BinaryIO, *, gzip: bool = False, size: int | None = None,
                url: str = "") -> ShardIndex:
    """Scan a tar (or tar.gz with ``gzip=True``) stream and index its regular members.

    ``size``: the shard's size in bytes (default: the bytes consumed from ``stream``).
    Raises :class:`awsio.errors.ArchiveError` for a corrupt or truncated tar.
    """
    counting = _Counting(stream)
    members, end = _index_members(walk_tar(counting, url=url, gzip=gzip, skip_data=True))
    kind = "tgz" if gzip else "tar"
    return ShardIndex(kind, counting.count if size is None else size, end, tuple(members))


def write_index(index: ShardIndex, dest: str, *, client: Any = None) -> None:
    """Write ``index`` as JSON to ``dest``: through ``client.put`` (an S3Client, or the harness's
    Storage for local paths and ``s3://`` alike) when given, else to a local path (or an ``s3://``
    URL with a default S3Client)."""
    text = index.to_json().encode()
    if client is None and dest.startswith("s3://"):
        from awsio.s3.client import S3Client

        client = S3Client()
    if client is not None:
        client.put(dest, text)
    else:
        with open(dest, "wb") as f:
            f.write(text)


def clear_index_cache() -> None:
    """Forget every index cached in this process."""
    with _cache_lock:
        _cache.clear()


def load_index(client: Any, url: str, *, size: int | None = None, kind: str = "tar",
               scan: bool = True, etag: str | None = None) -> ShardIndex | None:
    """The index of one shard: cached, else the sidecar, else (``scan=True``) a header scan.

    The in-process cache is keyed by ``(url, size, etag)``: pass what the listing said so that
    a rewritten shard is not served a stale index.

    A tar is scanned with ranged reads; a tar.gz has to be streamed (it is read once, data
    discarded); zip indexes come from the central directory. Returns None when there is no
    sidecar and ``scan`` is False.

    Raises:
        ArchiveError: naming the sidecar's URL when it is malformed or describes a shard of
            another size than ``size`` (stale: rebuild or delete it); naming the shard when a
            scan finds it corrupt.
    """
    key = (url, size, etag)
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None:
        return hit
    index = _read_sidecar(client, url, size)
    if index is None and scan:
        if size is None:
            size = client.head(url).size
        if kind == "zip":
            from awsio.archives.zip import read_zip_directory

            entries = [e for e in read_zip_directory(client, url, size) if e.is_file]
            index = ShardIndex("zip", size, size, tuple((e.name, e.offset, e.usize) for e in entries))
        elif kind == "tgz":
            index = build_index(client.open(url, size=size), gzip=True, size=size, url=url)
        else:
            index = scan_tar(client, url, size)
    if index is not None:
        with _cache_lock:
            _cache[key] = index
    return index


def _read_sidecar(client: Any, url: str, size: int | None) -> ShardIndex | None:
    where = index_url(url)
    try:
        text = client.get(where)
    except FileNotFoundError:
        return None
    index = ShardIndex.from_json(text, where)
    if size is not None and index.size != size:
        raise ArchiveError(f"shard index disagrees with the shard: it describes {index.size} bytes, "
                           f"the shard has {size} (stale? rebuild or delete it)", url=where)
    return index


def scan_tar(client: Any, url: str, size: int, window: int = 8 << 10) -> ShardIndex:
    """Index an uncompressed tar on S3 by reading its headers with ranged GETs (data skipped)."""
    stream = client.open(url, size=size, chunk_size=window, prefetch=0)
    try:
        members, end = _index_members(walk_tar(stream, url=url, skip_data=True, chunk_size=window))
    finally:
        stream.close()
    return ShardIndex("tar", size, end, tuple(members))


def _index_members(members: Iterator[tuple[str, bytes, int, int, int]]) -> tuple[list[tuple[str, int, int]], int]:
    out: list[tuple[str, int, int]] = []
    end = 0
    for name, _, offset, size, end in members:
        out.append((name, offset, size))
    return out, end


class _Counting:
    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.count += len(data)
        return data
