"""Streaming tar reader: ``(name, bytes, offset)`` for each regular member of a tar stream.

Reads any object with ``read(n)`` (an :class:`awsio.s3.reader.S3Reader`, a file, a socket)
sequentially, holding at most one member plus one read chunk in memory, whatever the shard size
(so a member's declared size is what it costs). Handles ustar (with the ``prefix`` field of POSIX
headers), GNU long names/links (``L``/``K``), pax headers (``path``, ``linkpath``, ``size``;
global ``g`` headers are skipped), GNU base-256 sizes, and gzip streams (``.tar.gz``/``.tgz``, multi-member
gzip included) decompressed incrementally with ``zlib`` and read to their end, so every gzip
member's CRC-32 and length are checked. Hardlinks are read again by range when the caller can
(else counted as skipped, like symlinks and unsupported member types: see :func:`iter_tar`);
directories, devices and ``__...__`` metadata members are skipped.

A hand-rolled 512-byte header loop: ``tarfile`` in stream mode (``r|``) is general but slower
per member and builds a TarInfo per member; this one slices the read buffer.

Tar keeps a checksum of each header, not of member data: a flipped data byte comes through as it
is (S3 checksums and length checks guard the transfer). Everything else that is wrong raises
:class:`awsio.errors.ArchiveError` naming the shard URL, the member (when known) and the offset
in the uncompressed stream: an empty shard, a missing end-of-archive marker (a shard cut at a
member boundary), a truncated header or member, a bad header checksum, a size field that is not
a number, a malformed pax record, a long-name or pax header over ``MAX_EXTENDED_SIZE``, a corrupt
or truncated gzip stream.
"""

from __future__ import annotations

import logging
import re
import struct
import zlib
from typing import BinaryIO, Callable, Iterator, NamedTuple, Protocol, Sequence

import numpy as np

from awsio.errors import ArchiveError
from awsio.grouping import is_metadata
from awsio.handlers import SkipStats
from awsio.s3.backend import cut_body

__all__ = ["TarMember", "cut_members", "iter_tar", "member_cuts", "walk_tar"]

log = logging.getLogger(__name__)

BLOCK = 512
_REGULAR = (b"0", b"\0", b"7")
_EXTENDED = (b"L", b"K", b"x", b"g")  # headers that describe the next member
_NO_DATA = (b"3", b"4", b"5", b"6")  # devices, directories, FIFOs: nothing to yield, nothing to count
_OCTAL = re.compile(rb"[0-7]*")
_DECIMAL = re.compile(r"[0-9]+", re.ASCII)
_PAX_RECORD = re.compile(rb"([0-9]{1,12}) ")
_PAX_KEYS = ("path", "linkpath", "size")
MAX_MEMBER_SIZE = 1 << 48  # larger sizes come from corrupt headers (S3 objects stop at 5 TiB)
# A GNU long name/link or pax header is read whole into memory (it describes the next member), so
# its size must not be what a header says: names are at most kilobytes (PATH_MAX is 4 KiB), pax
# records a few xattrs (64 KiB each on Linux). Larger ones come from corrupt or hostile headers,
# and a tar.gz inflates a long run of one byte ~1000x: 64 KiB would cost 64 MiB.
MAX_EXTENDED_SIZE = 8 << 20


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
    """A numeric header field: octal digits (space/NUL padded), or GNU base-256 (first byte 0x80).

    Raises ValueError for anything else, a negative base-256 number (0xFF) included.
    """
    if field[:1] == b"\x80":
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip(b" ")
    if not _OCTAL.fullmatch(text):
        raise ValueError(f"not an octal number: {bytes(field)!r}")
    return int(text, 8) if text else 0


def _parse_pax(data: bytes) -> dict[str, str]:
    """The records of a pax header (``"<length> <key>=<value>\\n"`` each) that awsio uses (path,
    linkpath, size: the others are checked and dropped, so that the records of a run of pax headers
    take no more memory than those); raises ValueError."""
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        m = _PAX_RECORD.match(data, pos)
        if m is None:
            raise ValueError(f"bad pax record length at byte {pos}")
        length = int(m.group(1))
        end = pos + length
        if end > len(data) or end <= m.end() or data[end - 1:end] != b"\n":
            raise ValueError(f"pax record at byte {pos} runs past its length {length}")
        key, eq, value = data[m.end():end - 1].partition(b"=")
        if not eq:
            raise ValueError(f"pax record at byte {pos} has no '='")
        key_text = key.decode("utf-8")
        if key_text in _PAX_KEYS:
            out[key_text] = value.decode("utf-8", "surrogateescape")
        pos = end
    size = out.get("size")
    if size == "":  # an empty value restores the header's own field (POSIX)
        del out["size"]
    elif size is not None and not _DECIMAL.fullmatch(size):
        raise ValueError(f"pax size {size!r} is not a non-negative decimal number")
    return out


def _checksum_ok(header: bytes) -> bool:
    """The header's checksum: its bytes summed as unsigned chars (POSIX) or, as some old tars
    wrote it, as signed chars; the checksum field itself counts as 8 spaces (as tarfile reads it)."""
    try:
        stored = _number(header[148:156])
    except ValueError:
        return False
    return (stored == sum(header[:148]) + 256 + sum(header[156:])
            or stored == 256 + sum(struct.unpack_from("148b8x356b", header)))


def _name(header: bytes) -> str:
    name = header[0:100].split(b"\0", 1)[0]
    if header[257:263] == b"ustar\0":  # POSIX only: a GNU header ("ustar  \0") keeps times there
        prefix = header[345:500].split(b"\0", 1)[0]
        if prefix:
            name = prefix + b"/" + name
    return name.decode("utf-8", "surrogateescape")


def member_cuts(expected: Sequence[tuple[str, int, int]], start: int, end: int) -> tuple[int, ...] | None:
    """Where to cut the bytes ``[start, end)`` of a tar so that each member ``expected``
    (``(name, offset, size)`` from a shard index, in order) lands in a piece of its own: after
    its header, after its data. The pieces alternate: headers (with the padding before them),
    members, ..., and what follows the last member. None unless the members sit one right after
    the other from ``start`` (each header after the previous member's padded data), as
    :func:`cut_members` requires: a tar with anything else between them (pax or long-name
    headers, directories) is walked instead, and pieces would only cost."""
    cuts: list[int] = []
    pos = 0  # where the next header must start
    for _, offset, size in expected:
        if offset - start != pos or size < 0:
            return None
        cuts += (pos + BLOCK, pos + BLOCK + size)
        pos += BLOCK + ((size + BLOCK - 1) & ~(BLOCK - 1))
    return tuple(cuts) if not cuts or cuts[-1] <= end - start else None


def cut_members(data: bytes | tuple[bytes, ...], start: int,
                expected: Sequence[tuple[str, int, int]]) -> list[TarMember] | None:
    """The members ``expected`` (``(name, offset, size)`` from a shard index, in order) cut
    straight out of ``data``, the bytes of the tar from offset ``start``: one ``bytes``, or the
    pieces :func:`member_cuts` names (as the reader delivers them: then each member is its piece,
    not copied again). Each member must sit at its offset under a plain ustar header (regular
    file, valid checksum) naming exactly it with its size, one right after the other, with only
    zero bytes after the last. That is the common case, and several times cheaper than walking
    the headers. None when anything else is there (a link, a pax or GNU long-name header, a
    directory, a mismatch): walk the range with :func:`iter_tar` instead, which resolves, counts
    or raises as it should.

    The layout, type, size and checksum of all headers are checked at once with array operations
    (per header in Python, they cost more than the rest of cutting a member)."""
    if isinstance(data, tuple):
        pieces = data
    else:
        cuts = member_cuts(expected, start, start + len(data))
        if cuts is None:
            return None
        pieces = cut_body(data, cuts)
    n = len(expected)
    if len(pieces) != 2 * n + 1:
        return None
    if not n:
        return [] if not pieces[0].strip(b"\0") else None
    offsets = np.fromiter((m[1] for m in expected), dtype=np.int64, count=n) - start
    sizes = np.fromiter((m[2] for m in expected), dtype=np.int64, count=n)
    lengths = np.fromiter(map(len, pieces), dtype=np.int64, count=2 * n + 1)
    ends = np.cumsum(lengths)
    padded = (sizes + (BLOCK - 1)) & ~(BLOCK - 1)
    # each header ends its lead piece at the member's offset, each member piece is its size, and
    # each member starts where the previous one's padded data ends (the first one at `start`)
    if (offsets[0] != 0 or (offsets[1:] != offsets[:-1] + BLOCK + padded[:-1]).any()
            or (ends[0:-1:2] != offsets + BLOCK).any() or (lengths[1::2] != sizes).any()):
        return None
    headers = [lead[-BLOCK:] for lead in pieces[0:-1:2]]
    blocks = np.frombuffer(b"".join(headers), dtype=np.uint8).reshape(n, BLOCK)
    types = blocks[:, 156]
    if not ((types == 0x30) | (types == 0)).all():  # regular files only
        return None
    try:
        if (_numbers(blocks, headers, 124, 136, 11) != sizes).any():
            return None
        stored = _numbers(blocks, headers, 148, 156, 6)
    except ValueError:
        return None
    unsigned = blocks.sum(axis=1, dtype=np.int64) - blocks[:, 148:156].sum(axis=1, dtype=np.int64) + 256
    for i in np.flatnonzero(stored != unsigned).tolist():  # (or signed, as some tars write it)
        if not _checksum_ok(headers[i]):
            return None
    out: list[TarMember] = []
    for header, member, (name, offset, _) in zip(headers, pieces[1::2], expected):
        if _name(header) != name:
            return None
        out.append(TarMember(name, member, offset))
    at = int(offsets[-1] + BLOCK + padded[-1] - ends[-2])  # the last member's padding, in the tail
    if pieces[-1][at:].strip(b"\0"):  # zero bytes only after the last member
        return None
    return out


def _numbers(blocks: np.ndarray, headers: list[bytes], lo: int, hi: int, digits: int) -> np.ndarray:
    """The numeric field ``[lo, hi)`` of every header (rows of ``blocks``), as :func:`_number` reads
    it: ``digits`` octal digits then NULs or spaces to the field's end (the form tar writers use:
    ``"%011o\\0"`` for a size, ``"%06o\\0 "`` for a checksum) read as arrays, any other form one
    row at a time. Raises ValueError as :func:`_number` does."""
    field = blocks[:, lo:hi]
    octal = field[:, :digits].astype(np.int64) - 0x30
    ok = (((octal >= 0) & (octal <= 7)).all(axis=1)
          & ((field[:, digits:] == 0) | (field[:, digits:] == 0x20)).all(axis=1))
    values = octal @ (8 ** np.arange(digits - 1, -1, -1, dtype=np.int64))
    for i in np.flatnonzero(~ok).tolist():
        values[i] = _number(headers[i][lo:hi])
    return values


def iter_tar(stream: BinaryIO | _Readable, *, url: str = "", gzip: bool = False,
             chunk_size: int = 1 << 20, start_offset: int = 0, partial: bool = False,
             reread: Callable[[int, int], bytes] | None = None,
             skips: SkipStats | None = None, metadata: bool = False) -> Iterator[TarMember]:
    """Yield each regular member of a tar stream in archive order, as ``(name, data, offset)``.

    ``gzip``: the stream is gzip-compressed (read to its very end, so its CRC-32 and length are
    checked). ``start_offset``: the stream starts at this offset of the tar, added to the
    reported offsets. ``partial``: the stream is a byte range of whole members of a larger tar (a
    ranged read of a sub-shard), so it ends without end-of-archive blocks; a whole tar must end
    with them (a shard cut at a member boundary is an error, not a shorter shard).

    Links: ``reread(a, b)`` returns bytes ``[a, b)`` of the uncompressed tar again (a ranged GET);
    with it, a hardlink to a regular member read earlier in this pass yields that member's bytes
    under the link's name. A hardlink that cannot be resolved (no ``reread``, as for tar.gz; a
    target not seen in this pass), a symlink (never followed: it may point outside the archive)
    and a member of an unsupported type (GNU sparse ``S``, vendor types) are skipped with a
    warning and counted in ``skips`` (stage ``"read"``, reasons ``"hardlink"``, ``"symlink"``,
    ``"unsupported member type"``). Directories, devices, FIFOs and ``__...__`` metadata members
    are skipped without a count (``metadata=True``: metadata members are yielded too).

    Raises :class:`ArchiveError` (url, member, offset; ``from`` the cause) for an empty shard and
    for truncated or corrupt input: a bad header checksum, a size that is not a number, a bad pax
    record, a corrupt or truncated gzip stream.
    """
    for name, data, offset, _, _ in walk_tar(stream, url=url, gzip=gzip, chunk_size=chunk_size,
                                             start_offset=start_offset, partial=partial,
                                             reread=reread, skips=skips, metadata=metadata):
        yield TarMember(name, data, offset)


def walk_tar(stream: BinaryIO | _Readable, *, url: str = "", gzip: bool = False,
             chunk_size: int = 1 << 20, start_offset: int = 0, partial: bool = False,
             skip_data: bool = False, reread: Callable[[int, int], bytes] | None = None,
             skips: SkipStats | None = None, metadata: bool = False) -> Iterator[tuple[str, bytes, int, int, int]]:
    """Like :func:`iter_tar`, yielding ``(name, data, offset, size, end)`` where ``end`` is the
    offset just past the member's padded data. ``skip_data``: data is ``b""`` and its bytes are
    skipped (header scans; a ranged source with ``skip(n)`` then jumps without fetching); a
    hardlink to a member seen earlier is then yielded as a member, and other links and
    unsupported members are counted only when ``skips`` is given."""
    raw: _Readable = _GzipStream(stream, chunk_size) if gzip else stream
    buf = _Buffered(raw, chunk_size, start_offset)
    long_name: str | None = None
    long_link: str | None = None
    pax: dict[str, str] = {}
    chain_start: int | None = None
    current = None
    # name -> (data offset, size) of the regular members read so far, to resolve hardlinks
    seen: dict[str, tuple[int, int]] | None = {} if (skip_data or reread is not None) else None
    try:
        while True:
            header_at = buf.offset
            header = buf.read(BLOCK)
            if not header:
                if header_at == start_offset:
                    raise ArchiveError("empty shard (no bytes)", url=url, offset=header_at)
                if partial and chain_start is None:
                    return  # a ranged read of whole members ends at a member boundary
                raise ArchiveError("truncated tar (it ends without its end-of-archive blocks)",
                                   url=url, member=current, offset=header_at)
            if len(header) < BLOCK:
                raise ArchiveError("truncated tar header", url=url, member=current, offset=header_at)
            if header.count(0) == BLOCK:
                if partial:  # a range of members, per an index: the shard is not what it describes
                    raise ArchiveError("end-of-archive block inside a byte range of members (stale "
                                       "index?)", url=url, member=current, offset=header_at)
                if gzip:
                    while raw.read(chunk_size):  # to the end of the gzip stream: checks its CRC
                        pass
                return  # end-of-archive marker
            if not _checksum_ok(header):
                raise ArchiveError("corrupt tar header (bad checksum)", url=url, member=current,
                                   offset=header_at)
            if chain_start is None:
                chain_start = header_at
            typeflag = header[156:157]
            if typeflag in _EXTENDED:
                data = _read_extended(buf, header, url, header_at)
                if typeflag == b"L":
                    long_name = _text(data)
                elif typeflag == b"K":
                    long_link = _text(data)
                elif typeflag == b"x":
                    try:
                        pax.update(_parse_pax(data))
                    except ValueError as exc:
                        raise ArchiveError(f"corrupt pax header: {exc}", url=url, member=_name(header),
                                           offset=header_at) from exc
                else:
                    chain_start = None  # a global header is not part of the next member
                continue
            name = pax.get("path") or long_name or _name(header)
            link = pax.get("linkpath") or long_link or _text(header[157:257])
            size = _member_size(header, pax, url, name, header_at)
            current = name
            offset, chain_start, long_name, long_link, pax = chain_start, None, None, None, {}
            padded = (size + BLOCK - 1) & ~(BLOCK - 1)
            if typeflag in (b"1", b"2", b"5"):
                padded = 0  # links and directories carry no data, whatever their size field says
                # (as GNU tar and tarfile read them); a device or FIFO's declared data is skipped
            quiet = typeflag in _NO_DATA or name.endswith("/") or (not metadata and is_metadata(name))
            if typeflag in _REGULAR and not quiet:
                data_at = buf.offset
                if skip_data:
                    got = buf.skip(padded)
                    data = b""
                else:
                    data = buf.read(size)  # then skip the padding: no second copy of the data
                    got = len(data) + (buf.skip(padded - size) if len(data) == size else 0)
                if got < padded:
                    raise ArchiveError(f"truncated tar member (expected {size} bytes)", url=url,
                                       member=name, offset=offset)
                if seen is not None:
                    seen[name] = (data_at, size)
                yield name, data, offset, size, buf.offset
                continue
            if buf.skip(padded) < padded:
                raise ArchiveError("truncated tar member", url=url, member=name, offset=offset)
            target = seen.get(link) if seen is not None and typeflag == b"1" else None
            if target is not None and not quiet:
                data = _reread(reread, target, url, name, offset, skip_data)
                yield name, data, offset, target[1], buf.offset
            elif not quiet and (not skip_data or skips is not None):
                reason = {b"1": "hardlink", b"2": "symlink"}.get(typeflag, "unsupported member type")
                what = f"{reason} to {link!r}" if typeflag in (b"1", b"2") else f"type {typeflag!r}"
                log.warning("%s: skipping tar member %r at offset %d (%s)", url, name, offset, what)
                if skips is not None:
                    skips.add("read", reason, f"{url} {name!r} ({what})")
    except zlib.error as exc:
        raise ArchiveError(f"corrupt gzip stream: {exc}", url=url, member=current, offset=buf.offset) from exc


def _text(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _read_extended(buf: _Buffered, header: bytes, url: str, at: int) -> bytes:
    """The data of a GNU long name/link or pax header (at most :data:`MAX_EXTENDED_SIZE` bytes)."""
    try:
        size = _number(header[124:136])
    except ValueError as exc:
        raise ArchiveError(f"corrupt tar header (size field): {exc}", url=url, member=_name(header),
                           offset=at) from exc
    if size > MAX_EXTENDED_SIZE:
        raise ArchiveError(f"tar extended header of {size} bytes is over the {MAX_EXTENDED_SIZE} byte "
                           "limit (corrupt header?)", url=url, member=_name(header), offset=at)
    padded = (size + BLOCK - 1) & ~(BLOCK - 1)
    data = buf.read(padded)
    if len(data) < padded:
        raise ArchiveError("truncated tar extended header", url=url, member=_name(header), offset=at)
    return data[:size]


def _member_size(header: bytes, pax: dict[str, str], url: str, name: str, at: int) -> int:
    """The data size of a member: its pax ``size`` if any (checked when parsed), else its header's."""
    try:
        size = int(pax["size"]) if "size" in pax else _number(header[124:136])
    except ValueError as exc:
        raise ArchiveError(f"corrupt tar header (size field): {exc}", url=url, member=name,
                           offset=at) from exc
    if size > MAX_MEMBER_SIZE:
        raise ArchiveError(f"tar member size {size} is implausible (corrupt header?)", url=url,
                           member=name, offset=at)
    return size


def _reread(reread: Callable[[int, int], bytes] | None, target: tuple[int, int], url: str, name: str,
            offset: int, skip_data: bool) -> bytes:
    """A hardlink's data: its target's bytes read again (``b""`` in a header scan)."""
    if skip_data or reread is None:
        return b""
    at, size = target
    data = reread(at, at + size)
    if len(data) != size:
        raise ArchiveError(f"hardlink target re-read gave {len(data)} of {size} bytes", url=url,
                           member=name, offset=offset)
    return data
