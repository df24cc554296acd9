"""Malformed tar / tar.gz / zip shards and shard indexes: every one gets an ArchiveError naming the
shard (or index) URL, the member and the byte offset, raised from its cause, under the handler
policy; links are resolved or counted; a zip bomb is stopped at its declared size. No server."""

from __future__ import annotations

import gzip
import io
import json
import logging
import struct
import subprocess
import sys
import tarfile
import textwrap
import zlib
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_archives import MemoryClient, make_tar, make_zip, samples

from awsio.archives.index import RangedStream, build_index, index_url, load_index
from awsio.archives.tar import iter_tar, walk_tar
from awsio.archives.zip import iter_zip
from awsio.dataset import S3IterableDataset
from awsio.errors import ArchiveError
from awsio.handlers import SkipStats

URL = "s3://b/shard.tar"


# -- tar builders ---------------------------------------------------------------------------------
def rechecksum(header: bytes | bytearray) -> bytes:
    h = bytearray(header)
    h[148:156] = b" " * 8
    h[148:156] = b"%06o\0 " % sum(h)
    return bytes(h)


def header(name: str, size: int = 0, typeflag: bytes = b"0", linkname: str = "",
           size_field: bytes | None = None) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.linkname = size, typeflag, linkname
    h = bytearray(info.tobuf(tarfile.USTAR_FORMAT))
    if size_field is not None:
        h[124:136] = size_field.ljust(12, b"\0")
    return rechecksum(h)


def pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 512)


def member(name: str, data: bytes, **kw: Any) -> bytes:
    return header(name, len(data), **kw) + pad(data)


def pax_header(records: list[tuple[str, str]] | bytes) -> bytes:
    if isinstance(records, bytes):
        body = records
    else:
        body = b""
        for key, value in records:
            rec = f" {key}={value}\n".encode()
            n = len(rec) + 1
            while len(str(n)) + len(rec) != n:
                n += 1
            body += str(n).encode() + rec
    return header("PaxHeaders/x", len(body), typeflag=b"x") + pad(body)


END = b"\0" * 1024


def read_all(data: bytes, **kw: Any) -> list[tuple[str, bytes]]:
    return [(m.name, m.data) for m in iter_tar(io.BytesIO(data), url=URL, **kw)]


def read_until_error(data: bytes, **kw: Any) -> tuple[list[tuple[str, bytes]], ArchiveError]:
    got: list[tuple[str, bytes]] = []
    with pytest.raises(ArchiveError) as err:
        for m in iter_tar(io.BytesIO(data), url=URL, **kw):
            got.append((m.name, m.data))
    return got, err.value


# -- tar: typed errors ----------------------------------------------------------------------------
@pytest.mark.parametrize("field", [b"0000000009x", b"-0000000005", b"0o17", b"1_0", b" +7",
                                   b"\xff" + b"\xff" * 11, b"\x81" + b"\0" * 11])
def test_tar_size_field_not_a_number(field: bytes) -> None:
    raw = member("a.txt", b"abc") + header("b.txt", 3, size_field=field) + pad(b"xyz") + END
    got, err = read_until_error(raw)
    assert got == [("a.txt", b"abc")]
    assert err.url == URL and err.member == "b.txt" and err.offset == 1024
    assert isinstance(err.__cause__, ValueError) and "size" in str(err)


def test_tar_base256_size_is_read() -> None:
    raw = header("a.bin", size_field=b"\x80" + (3).to_bytes(11, "big")) + pad(b"xyz") + END
    assert read_all(raw) == [("a.bin", b"xyz")]


@pytest.mark.parametrize("value", ["xyz", "1e3", "-5", "+5", " 3", "3 ", "٣"])
def test_pax_size_not_a_number_fails_first(value: str) -> None:
    raw = member("a.txt", b"abc") + pax_header([("size", value)]) + member("b.txt", b"xyz") + END
    got, err = read_until_error(raw)
    assert got == [("a.txt", b"abc")]  # nothing of b.txt, no empty member before the error
    assert err.url == URL and err.offset == 1024 and "pax" in str(err)


@pytest.mark.parametrize("body", [b"x size=3\n", b"99 size=3\n", b"0 size=3\n", b"5 size=3\n",
                                  b"10 size3\n\n", b"12 size=3\nXX"])
def test_pax_record_malformed(body: bytes) -> None:
    raw = pax_header(body) + member("b.txt", b"xyz") + END
    got, err = read_until_error(raw)
    assert got == [] and err.url == URL and err.offset == 0 and "pax" in str(err)


def test_pax_size_overrides_header() -> None:
    raw = pax_header([("size", "3"), ("path", "long/" + "n" * 150)]) + header("b.txt", 0) + pad(b"xyz") + END
    assert read_all(raw) == [("long/" + "n" * 150, b"xyz")]


@pytest.mark.parametrize("data,gz", [(b"", False), (b"", True), (gzip.compress(b"", mtime=0), True)],
                         ids=["tar", "tgz", "tgz-of-nothing"])
def test_empty_shard(data: bytes, gz: bool) -> None:
    with pytest.raises(ArchiveError, match="empty shard") as err:
        read_all(data, gzip=gz)
    assert err.value.url == URL and err.value.offset == 0


def test_empty_zip() -> None:
    with pytest.raises(ArchiveError, match="empty shard") as err:
        list(iter_zip(MemoryClient({"s3://b/z.zip": b""}), "s3://b/z.zip"))
    assert err.value.url == "s3://b/z.zip"


def test_tar_without_end_blocks_is_truncated_unless_partial() -> None:
    body = member("a.txt", b"abc") + member("b.txt", b"xyz")
    got, err = read_until_error(body)
    assert got == [("a.txt", b"abc"), ("b.txt", b"xyz")] and err.offset == 2048
    assert "end-of-archive" in str(err)
    assert read_all(body, partial=True) == got
    assert read_all(body + END[:512]) == got  # one zero block ends it, as in tarfile


@pytest.mark.parametrize("cut", [1, 4, 8])
def test_tgz_truncated_trailer(cut: int) -> None:
    raw = make_tar(samples(20, 3000))
    gz = gzip.compress(raw)
    with pytest.raises(ArchiveError, match="gzip") as err:
        read_all(gz[:-cut], gzip=True, chunk_size=4096)
    assert err.value.url == URL


@pytest.mark.parametrize("at", [-8, -5, -3, -1])  # CRC-32 bytes, then ISIZE bytes
def test_tgz_bad_trailer(at: int) -> None:
    gz = bytearray(gzip.compress(make_tar(samples(20, 3000))))
    gz[at] ^= 0x55
    with pytest.raises(ArchiveError, match="gzip") as err:
        read_all(bytes(gz), gzip=True, chunk_size=4096)
    assert err.value.url == URL and isinstance(err.value.__cause__, zlib.error)


def test_tgz_trailing_garbage() -> None:
    gz = gzip.compress(make_tar(samples(2))) + b"garbage!"
    with pytest.raises(ArchiveError, match="gzip"):
        read_all(gz, gzip=True)


# -- tar: links -----------------------------------------------------------------------------------
def linked_tar() -> bytes:
    return (member("d/a.jpg", b"A" * 700) + member("d/b.jpg", b"B" * 10)
            + header("d/c.jpg", typeflag=b"1", linkname="d/a.jpg")
            + header("d/e.jpg", typeflag=b"2", linkname="a.jpg")
            + header("d/f.jpg", typeflag=b"1", linkname="d/missing.jpg") + END)


def test_hardlink_reread_and_links_counted(caplog: pytest.LogCaptureFixture) -> None:
    raw = linked_tar()
    skips = SkipStats()
    got = read_all(raw, reread=lambda a, b: raw[a:b], skips=skips)
    assert got == [("d/a.jpg", b"A" * 700), ("d/b.jpg", b"B" * 10), ("d/c.jpg", b"A" * 700)]
    assert skips.counts == {("read", "symlink"): 1, ("read", "hardlink"): 1}
    assert "d/e.jpg" in caplog.text and "d/missing.jpg" in caplog.text
    # a stream that cannot be re-read (tar.gz): the hardlink is counted too, never dropped quietly
    skips = SkipStats()
    assert [n for n, _ in read_all(gzip.compress(raw), gzip=True, skips=skips)] == ["d/a.jpg", "d/b.jpg"]
    assert skips.counts == {("read", "symlink"): 1, ("read", "hardlink"): 2}
    # the index describes the hardlink that a whole read yields
    assert [m[0] for m in build_index(io.BytesIO(raw)).members] == ["d/a.jpg", "d/b.jpg", "d/c.jpg"]


def test_hardlink_reread_short_is_an_error() -> None:
    raw = linked_tar()
    got, err = read_until_error(raw, reread=lambda a, b: raw[a:b - 1])
    assert err.member == "d/c.jpg" and len(got) == 2


def test_unsupported_member_types_are_counted() -> None:
    raw = member("a.txt", b"abc") + member("s.bin", b"sparse", typeflag=b"S") + END
    skips = SkipStats()
    assert read_all(raw, skips=skips) == [("a.txt", b"abc")]
    assert skips.counts == {("read", "unsupported member type"): 1}


