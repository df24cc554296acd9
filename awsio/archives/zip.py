"""Zip shards read with ranged GETs: the tail (end of central directory, zip64 included), the
central directory, then each member's byte range, fetched concurrently through the client.

Only what is needed crosses the network: a sample-range split of a zip shard reads just its own
members. Stored (0) and deflated (8) members are supported, and CRC-32 is checked. Anything else
(encryption, other methods, truncation, bad signatures) raises :class:`ArchiveError` naming the
shard and the member.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

from awsio.archives.tar import TarMember
from awsio.errors import ArchiveError
from awsio.grouping import is_metadata

__all__ = ["ZipEntry", "iter_zip", "parse_central_directory", "read_zip_directory"]

_EOCD = struct.Struct("<4s4H2LH")
_LOC64 = struct.Struct("<4sLQL")
_EOCD64 = struct.Struct("<4sQ2H2L4Q")
_CEN = struct.Struct("<4s6H3L5H2L")
_TAIL = 65536 + _EOCD.size + _LOC64.size  # max comment + EOCD + zip64 locator


@dataclass(frozen=True)
class ZipEntry:
    """One member as the central directory describes it. ``end``: where its local region ends
    (the next member's local header, or the central directory), so one ranged GET of
    ``[offset, end)`` holds its local header, data and any data descriptor."""

    name: str
    offset: int
    end: int
    csize: int
    usize: int
    method: int
    crc: int
    flags: int

    @property
    def is_file(self) -> bool:
        """A regular member worth yielding (not a directory, not ``__...__`` metadata)."""
        return not self.name.endswith("/") and not is_metadata(self.name)


def _find_eocd(tail: bytes, url: str) -> int:
    pos = len(tail)
    while True:
        pos = tail.rfind(b"PK\x05\x06", 0, pos)
        if pos < 0 or len(tail) - pos < _EOCD.size:
            if pos < 0:
                raise ArchiveError("not a zip file (no end of central directory record)", url=url)
            continue
        comment_len = _EOCD.unpack_from(tail, pos)[7]
        if pos + _EOCD.size + comment_len <= len(tail):
            return pos


def parse_central_directory(cd: bytes, cd_offset: int, count: int, url: str = "") -> list[ZipEntry]:
    """Entries of a central directory blob, in directory order."""
    raw: list[tuple[str, int, int, int, int, int, int]] = []
    pos = 0
    for _ in range(count):
        if cd[pos:pos + 4] != b"PK\x01\x02":
            raise ArchiveError("corrupt zip central directory", url=url, offset=cd_offset + pos)
        (_, _, _, flags, method, _, _, crc, csize, usize, nlen, elen, clen, _, _, _,
         offset) = _CEN.unpack_from(cd, pos)
        pos += _CEN.size
        name_b = cd[pos:pos + nlen]
        extra = cd[pos + nlen:pos + nlen + elen]
        pos += nlen + elen + clen
        name = name_b.decode("utf-8" if flags & 0x800 else "cp437", "surrogateescape")
        if 0xFFFFFFFF in (csize, usize, offset):
            csize, usize, offset = _zip64_extra(extra, csize, usize, offset, url, name)
        raw.append((name, offset, csize, usize, method, crc, flags))
    ends = sorted({r[1] for r in raw} | {cd_offset})
    import bisect

    out = []
    for name, offset, csize, usize, method, crc, flags in raw:
        end = ends[bisect.bisect_right(ends, offset)] if offset < cd_offset else cd_offset
        out.append(ZipEntry(name, offset, end, csize, usize, method, crc, flags))
    return out


def _zip64_extra(extra: bytes, csize: int, usize: int, offset: int, url: str,
                 name: str) -> tuple[int, int, int]:
    pos = 0
    while pos + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4:pos + 4 + size]
        if tag == 1:
            vals = list(struct.unpack_from(f"<{len(body) // 8}Q", body))
            if usize == 0xFFFFFFFF:
                usize = vals.pop(0)
            if csize == 0xFFFFFFFF:
                csize = vals.pop(0)
            if offset == 0xFFFFFFFF:
                offset = vals.pop(0)
            return csize, usize, offset
        pos += 4 + size
    raise ArchiveError("zip64 member without its zip64 extra field", url=url, member=name)


def read_zip_directory(client: Any, url: str, size: int) -> list[ZipEntry]:
    """Read a zip's central directory with one or two ranged GETs (three for zip64)."""
    tail_start = max(0, size - _TAIL)
    tail = client.get_range(url, tail_start, size)
    pos = _find_eocd(tail, url)
    _, _, _, _, count, cd_size, cd_offset, _ = _EOCD.unpack_from(tail, pos)
    loc = pos - _LOC64.size
    if loc >= 0 and tail[loc:loc + 4] == b"PK\x06\x07":
        eocd64_at = _LOC64.unpack_from(tail, loc)[2]
        if eocd64_at >= tail_start:
            rec = tail[eocd64_at - tail_start:eocd64_at - tail_start + _EOCD64.size]
        else:
            rec = client.get_range(url, eocd64_at, eocd64_at + _EOCD64.size)
        if rec[:4] != b"PK\x06\x06":
            raise ArchiveError("corrupt zip64 end of central directory", url=url, offset=eocd64_at)
        _, _, _, _, _, _, _, count, cd_size, cd_offset = _EOCD64.unpack(rec)
    if cd_offset + cd_size > size:
        raise ArchiveError("truncated zip (central directory past the end)", url=url, offset=cd_offset)
    if cd_offset >= tail_start:
        cd = tail[cd_offset - tail_start:cd_offset - tail_start + cd_size]
    else:
        cd = client.get_range(url, cd_offset, cd_offset + cd_size)
    return parse_central_directory(cd, cd_offset, count, url)


def _extract(entry: ZipEntry, region: bytes, url: str) -> bytes:
    if region[:4] != b"PK\x03\x04":
        raise ArchiveError("corrupt zip local header", url=url, member=entry.name, offset=entry.offset)
    nlen, elen = struct.unpack_from("<HH", region, 26)
    start = 30 + nlen + elen
    comp = region[start:start + entry.csize]
    if len(comp) < entry.csize:
        raise ArchiveError("truncated zip member", url=url, member=entry.name, offset=entry.offset)
    if entry.flags & 0x1:
        raise ArchiveError("encrypted zip members are not supported", url=url, member=entry.name)
    try:
        if entry.method == 0:
            data = comp
        elif entry.method == 8:
            z = zlib.decompressobj(-15)
            data = z.decompress(comp) + z.flush()
        else:
            raise ArchiveError(f"unsupported zip compression method {entry.method}", url=url,
                               member=entry.name, offset=entry.offset)
    except zlib.error as exc:
        raise ArchiveError(f"corrupt deflate data: {exc}", url=url, member=entry.name,
                           offset=entry.offset) from exc
    if len(data) != entry.usize or zlib.crc32(data) != entry.crc:
        raise ArchiveError("zip member fails its CRC/size check", url=url, member=entry.name,
                           offset=entry.offset)
    return data


def iter_zip(client: Any, url: str, *, size: int | None = None,
             entries: Sequence[ZipEntry] | None = None, every_entry: bool = False) -> Iterator[TarMember]:
    """Yield ``(name, data, offset)`` for the regular members of a zip, in directory order.

    ``entries`` restricts the read to those members (a split); by default the whole directory is
    read first. ``every_entry``: directory entries (``b""``) and ``__...__`` metadata too, as the
    original plugin's ``zipdata`` yields them. Member ranges are fetched concurrently through
    ``client.get_many``.
    """
    if entries is None:
        if size is None:
            size = client.head(url).size
        entries = read_zip_directory(client, url, size)
    wanted = [e for e in entries if e.is_file or every_entry]
    requests: Iterable[tuple[str, int, int]] = ((url, e.offset, e.end) for e in wanted)
    for entry, (_, region) in zip(wanted, client.get_many(requests, ordered=True)):
        yield TarMember(entry.name, _extract(entry, region, url), entry.offset)
