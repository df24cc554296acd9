"""Streaming tar reader: ``(name, bytes, offset)`` for each regular member of a tar stream.

Reads any object with ``read(n)`` (an :class:`awsio.s3.reader.S3Reader`, a file, a socket)
sequentially, holding at most one member plus one read chunk in memory, whatever the shard size.
Handles ustar (with the ``prefix`` field), GNU long names/links (``L``/``K``), pax headers
(``path``, ``size``; global ``g`` headers are skipped), GNU base-256 sizes, and gzip streams
(``.tar.gz``/``.tgz``, multi-member gzip included) decompressed incrementally with ``zlib``.
Directories, links, devices and ``__...__`` metadata members are skipped.

A hand-rolled 512-byte header loop: ``tarfile`` in stream mode (``r|``) is general but slower
per member and builds a TarInfo per member; this one slices the read buffer.

Truncated or corrupt input raises :class:`awsio.errors.ArchiveError` naming the shard URL,
the member (when known) and the offset in the uncompressed stream.
"""

from __future__ import annotations

import zlib
from typing import BinaryIO, Iterator, NamedTuple, Protocol

from awsio.errors import ArchiveError
from awsio.grouping import is_metadata

__all__ = ["TarMember", "iter_tar", "walk_tar"]

BLOCK = 512
_REGULAR = (b"0", b"\0", b"7")
_SKIP_DATA_TYPES = (b"1", b"2", b"3", b"4", b"5", b"6")  # no data worth reading (size is usually 0)


class _Readable(Protocol):
    def read(self, n: int = -1) -> bytes: ...


class TarMember(NamedTuple):
    """A regular tar member. ``offset``: where its header chain starts in the (uncompressed) tar."""

    name: str
    data: bytes
    offset: int


class _GzipStream:
    """``read(n)`` over the decompressed bytes of a (possibly multi-member) gzip stream."""

    def __init__(self, raw: _Readable, chunk: int) -> None:
        self._raw = raw
        self._chunk = chunk
        self._z = zlib.decompressobj(wbits=47)  # 32 + 15: gzip or zlib header, auto-detected
        self._in = b""  # compressed bytes not yet consumed by the decompressor
        self._raw_eof = False
        self._fed = False  # the current decompressor has seen input

    def read(self, n: int = -1) -> bytes:
        limit = self._chunk if n is None or n < 0 else max(n, 1)
        while True:
            if not self._in:
                if self._raw_eof:
                    if not self._fed or self._z.eof:
                        return b""
                    out = self._z.decompress(b"", limit)  # output zlib still holds
                    if out:
                        return out
                    raise zlib.error("compressed stream ended early (truncated .gz)")
                self._in = self._raw.read(self._chunk)
                if not self._in:
                    self._raw_eof = True
                continue
            if self._z.eof:  # the next gzip member (some writers pad between with zeros)
                self._in = self._in.lstrip(b"\0")
                if not self._in:
                    continue
                self._z = zlib.decompressobj(wbits=47)
                self._fed = False
            out = self._z.decompress(self._in, limit)
            self._fed = True
            self._in = self._z.unused_data if self._z.eof else self._z.unconsumed_tail
            if out:
                return out


class _Buffered:
    """Exact-size reads over a stream, tracking the absolute offset."""

    def __init__(self, raw: _Readable, chunk: int, offset: int) -> None:
        self._raw = raw
        self._chunk = chunk
        self._buf = b""
        self._pos = 0
        self.offset = offset

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes; fewer only at the end of the stream."""
        buf, pos = self._buf, self._pos
        if len(buf) - pos >= n:
            self._pos = pos + n
            self.offset += n
            return buf[pos:pos + n]
        parts = [buf[pos:]] if pos < len(buf) else []
        need = n - (len(buf) - pos)
        self._buf, self._pos = b"", 0
        while need > 0:
            chunk = self._raw.read(max(need, self._chunk))
            if not chunk:
                break
            if len(chunk) > need:
                parts.append(chunk[:need])
                self._buf, self._pos = chunk, need
                need = 0
            else:
                parts.append(chunk)
                need -= len(chunk)
        out = parts[0] if len(parts) == 1 else b"".join(parts)
        self.offset += len(out)
        return out

    def skip(self, n: int) -> int:
        """Discard ``n`` bytes without keeping them; returns how many were skipped."""
        done = min(n, len(self._buf) - self._pos)
        self._pos += done
        self.offset += done
        raw_skip = getattr(self._raw, "skip", None)
        if raw_skip is not None and done < n:  # a ranged source: jump without fetching
            skipped = raw_skip(n - done)
            self.offset += skipped
            return done + skipped
        while done < n:
            got = len(self.read(min(n - done, 8 << 20)))
            if not got:
                break
            done += got
        return done


def _number(field: bytes) -> int:
    if field and field[0] & 0x80:  # GNU base-256 for values that do not fit in octal
        value = int.from_bytes(field, "big", signed=False) & ~(0x80 << (8 * (len(field) - 1)))
        return value
    text = field.split(b"\0", 1)[0].strip(b" \0")
    return int(text, 8) if text else 0


def _parse_pax(data: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.index(b" ", pos)
        length = int(data[pos:space])
        if length <= 0:
            raise ValueError("bad pax record length")
        record = data[space + 1:pos + length - 1]  # without the trailing newline
        key, _, value = record.partition(b"=")
        out[key.decode("utf-8")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out


def _checksum_ok(header: bytes) -> bool:
    try:
        stored = _number(header[148:156])
    except ValueError:
        return False
    unsigned = sum(header[:148]) + 256 + sum(header[156:])  # 8 spaces for the checksum field
    if stored == unsigned:
        return True
    signed = unsigned - sum(b for b in header if b > 127) * 2 + sum(b for b in header[148:156] if b > 127) * 2
    return stored == signed


def _name(header: bytes) -> str:
    name = header[0:100].split(b"\0", 1)[0]
    if header[257:262] == b"ustar":
        prefix = header[345:500].split(b"\0", 1)[0]
        if prefix:
            name = prefix + b"/" + name
    return name.decode("utf-8", "surrogateescape")


def iter_tar(stream: BinaryIO | _Readable, *, url: str = "", gzip: bool = False,
             chunk_size: int = 1 << 20, start_offset: int = 0) -> Iterator[TarMember]:
    """Yield each regular member of a tar stream in archive order, as ``(name, data, offset)``.

    ``gzip``: the stream is gzip-compressed. ``start_offset``: the stream starts at this offset of
    the tar (a ranged read of a sub-shard), added to the reported offsets. A clean end of the
    stream at a header boundary (no end-of-archive blocks) ends the archive, as in tarfile, so a
    ranged read of whole members parses too. Raises :class:`ArchiveError` on truncated or corrupt
    input.
    """
    for name, data, offset, _, _ in walk_tar(stream, url=url, gzip=gzip, chunk_size=chunk_size,
                                             start_offset=start_offset):
        yield TarMember(name, data, offset)


def walk_tar(stream: BinaryIO | _Readable, *, url: str = "", gzip: bool = False,
             chunk_size: int = 1 << 20, start_offset: int = 0,
             skip_data: bool = False) -> Iterator[tuple[str, bytes, int, int, int]]:
    """Like :func:`iter_tar`, yielding ``(name, data, offset, size, end)`` where ``end`` is the
    offset just past the member's padded data. ``skip_data``: data is ``b""`` and its bytes are
    skipped (header scans; a ranged source with ``skip(n)`` then jumps without fetching)."""
    raw: _Readable = _GzipStream(stream, chunk_size) if gzip else stream
    buf = _Buffered(raw, chunk_size, start_offset)
    long_name: str | None = None
    pax: dict[str, str] = {}
    chain_start: int | None = None
    current = None
    try:
        while True:
            header_at = buf.offset
            header = buf.read(BLOCK)
            if not header:
                return  # clean end at a header boundary (ranged read, or no end-of-archive blocks)
            if len(header) < BLOCK:
                raise ArchiveError("truncated tar header", url=url, member=current, offset=header_at)
            if header.count(0) == BLOCK:
                return  # end-of-archive marker
            if not _checksum_ok(header):
                raise ArchiveError("corrupt tar header (bad checksum)", url=url, member=current,
                                   offset=header_at)
            if chain_start is None:
                chain_start = header_at
            typeflag = header[156:157]
            size = _number(header[124:136])
            if "size" in pax and typeflag not in (b"x", b"g", b"L", b"K"):
                size = int(pax["size"])
            padded = (size + BLOCK - 1) & ~(BLOCK - 1)
            if typeflag in (b"L", b"K", b"x", b"g"):
                data = buf.read(padded)
                if len(data) < padded:
                    raise ArchiveError("truncated tar extended header", url=url, member=current,
                                       offset=header_at)
                data = data[:size]
                if typeflag == b"L":
                    long_name = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
                elif typeflag == b"x":
                    try:
                        pax.update(_parse_pax(data))
                    except ValueError as exc:
                        raise ArchiveError("corrupt pax header", url=url, member=current,
                                           offset=header_at) from exc
                if typeflag == b"g":
                    chain_start = None  # a global header is not part of the next member
                continue
            name = pax.get("path") or long_name or _name(header)
            current = name
            offset, chain_start, long_name, pax = chain_start, None, None, {}
            if typeflag in _REGULAR and not name.endswith("/") and not is_metadata(name):
                if skip_data:
                    got = buf.skip(padded)
                    data = b""
                else:
                    data = buf.read(size)  # then skip the padding: no second copy of the data
                    got = len(data) + (buf.skip(padded - size) if len(data) == size else 0)
                if got < padded:
                    raise ArchiveError(f"truncated tar member (expected {size} bytes)", url=url,
                                       member=name, offset=offset)
                yield name, data, offset, size, buf.offset
            else:
                if typeflag in _SKIP_DATA_TYPES and typeflag != b"5":
                    size = padded = 0 if typeflag in (b"1", b"2") else padded
                if buf.skip(padded) < padded:
                    raise ArchiveError("truncated tar member", url=url, member=name, offset=offset)
    except zlib.error as exc:
        raise ArchiveError(f"corrupt gzip stream: {exc}", url=url, member=current, offset=buf.offset) from exc
