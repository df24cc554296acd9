"""Zip shards read with ranged GETs: the tail (end of central directory, zip64 included), the
central directory, then each member's byte range, fetched concurrently through the client.

Only what is needed crosses the network: a sample-range split of a zip shard reads just its own
members. Stored (0) and deflated (8) members are supported. Each member is checked against the
central directory: the local header's name, the size (inflated in one bounded step that stops one
byte past the declared size, so a zip bomb costs its declared size, not what it would inflate
to) and the CRC-32. Anything else (encryption, other methods, truncation, bad signatures, a
directory whose entries, sizes or offsets do not add up) raises :class:`ArchiveError` naming
the shard, the member and its offset. Symlink entries are not told apart: they read as members
whose data is the link target.
"""

from __future__ import annotations

import bisect
import struct
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

from awsio.archives.tar import MAX_MEMBER_SIZE, TarMember
from awsio.errors import ArchiveError
from awsio.grouping import is_metadata

__all__ = ["ZipEntry", "iter_zip", "parse_central_directory", "read_zip_directory"]

_EOCD = struct.Struct("<4s4H2LH")
_LOC64 = struct.Struct("<4sLQL")
_EOCD64 = struct.Struct("<4sQ2H2L4Q")
_CEN = struct.Struct("<4s6H3L5H2L")
_LOC = 30  # local header size before its name and extra field
_LOCAL_MAX = _LOC + 0xFFFF + 0xFFFF  # a local header with the longest name and extra field
_TAIL = 65536 + _EOCD.size + _LOC64.size  # max comment + EOCD + zip64 locator
_MAX32 = 0xFFFFFFFF


@dataclass(frozen=True)
class ZipEntry:
    """One member as the central directory describes it. ``end``: where its local region ends
    (the next member's local header or the central directory, and never further than its local
    header, name, extra field and data can reach), so one ranged GET of ``[offset, end)`` holds
    its local header and data, and its size is bounded by the member's compressed size."""

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


def _decode_name(raw: bytes, flags: int) -> str:
    return raw.decode("utf-8" if flags & 0x800 else "cp437", "surrogateescape")


def _find_eocd(tail: bytes, url: str) -> int:
    pos = len(tail)
    while True:
        pos = tail.rfind(b"PK\x05\x06", 0, pos)
        if pos < 0:
            raise ArchiveError("not a zip file (no end of central directory record)", url=url)
        if len(tail) - pos < _EOCD.size:
            continue
        comment_len = _EOCD.unpack_from(tail, pos)[7]
        if pos + _EOCD.size + comment_len <= len(tail):
            return pos


def parse_central_directory(cd: bytes, cd_offset: int, count: int, url: str = "") -> list[ZipEntry]:
    """Entries of a central directory blob, in directory order.

    Raises :class:`ArchiveError` (naming the entry's offset) for a directory that is truncated,
    holds another number of entries than ``count``, has a short zip64 extra field, or describes a
    member that does not fit before the directory.
    """
    raw: list[tuple[str, int, int, int, int, int, int]] = []
    pos = 0
    for _ in range(count):
        at = cd_offset + pos
        if cd[pos:pos + 4] != b"PK\x01\x02" or pos + _CEN.size > len(cd):
            raise ArchiveError("truncated or corrupt zip central directory", url=url, offset=at)
        (_, _, _, flags, method, _, _, crc, csize, usize, nlen, elen, clen, _, _, _,
         offset) = _CEN.unpack_from(cd, pos)
        pos += _CEN.size
        name = _decode_name(cd[pos:pos + nlen], flags)
        extra = cd[pos + nlen:pos + nlen + elen]
        pos += nlen + elen + clen
        if pos > len(cd):
            raise ArchiveError("truncated zip central directory", url=url, member=name, offset=at)
        if _MAX32 in (csize, usize, offset):
            csize, usize, offset = _zip64_extra(extra, csize, usize, offset, url, name, at)
        if offset + _LOC + nlen + csize > cd_offset or usize > MAX_MEMBER_SIZE:
            raise ArchiveError(f"zip member at {offset} ({csize} bytes) does not fit before the central "
                               f"directory at {cd_offset}", url=url, member=name, offset=offset)
        raw.append((name, offset, csize, usize, method, crc, flags))
    if pos != len(cd):
        raise ArchiveError(f"zip central directory of {len(cd)} bytes holds more than its {count} "
                           "entries", url=url, offset=cd_offset + pos)
    starts = sorted({r[1] for r in raw} | {cd_offset})
    out = []
    for name, offset, csize, usize, method, crc, flags in raw:
        end = min(starts[bisect.bisect_right(starts, offset)], offset + _LOCAL_MAX + csize)
        out.append(ZipEntry(name, offset, end, csize, usize, method, crc, flags))
    return out


def _zip64_extra(extra: bytes, csize: int, usize: int, offset: int, url: str, name: str,
                 at: int) -> tuple[int, int, int]:
    """The 64-bit sizes/offset of the zip64 extra field (tag 1), for the fields set to 0xFFFFFFFF."""
    pos = 0
    while pos + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4:pos + 4 + size]
        if tag == 1:
            need = (usize, csize, offset).count(_MAX32)
            if len(body) < size or size < 8 * need:
                raise ArchiveError(f"zip64 extra field too short ({len(body)} bytes for {need} values)",
                                   url=url, member=name, offset=at)
            values = iter(struct.unpack_from(f"<{need}Q", body))
            usize = next(values) if usize == _MAX32 else usize
            csize = next(values) if csize == _MAX32 else csize
            offset = next(values) if offset == _MAX32 else offset
            return csize, usize, offset
        pos += 4 + size
    raise ArchiveError("zip64 member without its zip64 extra field", url=url, member=name, offset=at)


def read_zip_directory(client: Any, url: str, size: int) -> list[ZipEntry]:
    """Read a zip's central directory with one or two ranged GETs (three for zip64).

    Raises :class:`ArchiveError` for an empty object, a missing, truncated or corrupt end of
    central directory (zip64 included) or central directory.
    """
    if size == 0:
        raise ArchiveError("empty shard (no bytes)", url=url, offset=0)
    tail_start = max(0, size - _TAIL)
    tail = client.get_range(url, tail_start, size)
    pos = _find_eocd(tail, url)
    _, _, _, _, count, cd_size, cd_offset, _ = _EOCD.unpack_from(tail, pos)
    loc = pos - _LOC64.size
    if loc >= 0 and tail[loc:loc + 4] == b"PK\x06\x07":
        eocd64_at = _LOC64.unpack_from(tail, loc)[2]
        if eocd64_at + _EOCD64.size > tail_start + loc:
            raise ArchiveError("truncated zip64 end of central directory", url=url, offset=eocd64_at)
        if eocd64_at >= tail_start:
            rec = tail[eocd64_at - tail_start:eocd64_at - tail_start + _EOCD64.size]
        else:
            rec = client.get_range(url, eocd64_at, eocd64_at + _EOCD64.size)
        if rec[:4] != b"PK\x06\x06" or len(rec) < _EOCD64.size:
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
    """The member's bytes out of its local region, checked against the central directory."""
    def error(message: str) -> ArchiveError:
        return ArchiveError(message, url=url, member=entry.name, offset=entry.offset)

    if len(region) < _LOC or region[:4] != b"PK\x03\x04":
        raise error("truncated or corrupt zip local header")
    if entry.flags & 0x1:
        raise error("encrypted zip members are not supported")
    nlen, elen = struct.unpack_from("<HH", region, 26)
    if _decode_name(region[_LOC:_LOC + nlen], entry.flags) != entry.name:
        raise error("zip local header names another member than the central directory")
    start = _LOC + nlen + elen
    comp = region[start:start + entry.csize]
    if len(comp) < entry.csize:
        raise error("truncated zip member")
    if entry.method == 0:
        data = comp
    elif entry.method == 8:
        data = _inflate(comp, entry.usize, error)
    else:
        raise error(f"unsupported zip compression method {entry.method}")
    if len(data) != entry.usize:
        raise error(f"zip member has {len(data)} bytes, its declared size is {entry.usize}")
    if zlib.crc32(data) != entry.crc:
        raise error("zip member fails its CRC-32 check")
    return data


def _inflate(comp: bytes, usize: int, error: Callable[[str], ArchiveError]) -> bytes:
    """Inflate raw deflate data, never past one byte more than the declared size (zip bombs)."""
    z = zlib.decompressobj(-15)
    try:
        data = z.decompress(comp, usize + 1)
    except zlib.error as exc:
        raise error(f"corrupt deflate data: {exc}") from exc
    if len(data) > usize:
        raise error(f"zip member inflates past its declared size of {usize} bytes (a zip bomb?)")
    if not z.eof:
        raise error(f"truncated deflate data ({len(data)} of {usize} bytes)")
    return data


def iter_zip(client: Any, url: str, *, size: int | None = None,
             entries: Sequence[ZipEntry] | None = None, every_entry: bool = False) -> Iterator[TarMember]:
    """Yield ``(name, data, offset)`` for the regular members of a zip, in directory order.

    ``entries`` restricts the read to those members (a split); by default the whole directory is
    read first. ``every_entry``: directory entries (``b""``) and ``__...__`` metadata too, as the
    original plugin's ``zipdata`` yields them. Member ranges are fetched concurrently through
    ``client.get_many``. Each member is inflated at most to its declared size and checked
    against the directory (name, size, CRC-32). Raises :class:`ArchiveError` naming the shard,
    the member and its offset.
    """
    if entries is None:
        if size is None:
            size = client.head(url).size
        entries = read_zip_directory(client, url, size)
    wanted = [e for e in entries if e.is_file or every_entry]
    requests: Iterable[tuple[str, int, int]] = ((url, e.offset, e.end) for e in wanted)
    for entry, (_, region) in zip(wanted, client.get_many(requests, ordered=True)):
        yield TarMember(entry.name, _extract(entry, region, url), entry.offset)
