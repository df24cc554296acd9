"""Tar header fields read as GNU tar reads them: checksums, directory sizes, the ustar prefix,
and the size of the headers that describe the next member (GNU long names, pax)."""

from __future__ import annotations

import gzip
import io
import shutil
import subprocess
import tarfile
import tracemalloc
from pathlib import Path
from typing import Any, Callable

import pytest
from test_archive_malformed import (END, URL, header, member, pad, pax_header, read_all, read_until_error,
                                    rechecksum)
from test_archives import MemoryClient

from awsio.archives.index import build_index, scan_tar
from awsio.archives.tar import MAX_EXTENDED_SIZE, cut_members, iter_tar
from awsio.errors import ArchiveError


def gnu_tar_names(tmp_path: Path, raw: bytes) -> list[str]:
    path = tmp_path / "x.tar"
    path.write_bytes(raw)
    return subprocess.run(["tar", "tf", str(path)], capture_output=True, text=True, check=True).stdout.split()


def index_names(raw: bytes) -> list[str]:
    """The member names the index builder finds, streaming and by ranged reads: both alike."""
    built = [m[0] for m in build_index(io.BytesIO(raw), url=URL).members]
    scanned = [m[0] for m in scan_tar(MemoryClient({URL: raw}), URL, len(raw)).members]
    assert built == scanned
    return built


def peak_memory(run: Callable[[], Any]) -> tuple[Any, int]:
    """What ``run()`` returns (or the exception it raises), and the most memory it held at once."""
    tracemalloc.start()
    try:
        try:
            out = run()
        except Exception as exc:
            out = exc
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# -- header checksums -----------------------------------------------------------------------------
def with_checksum(head: bytes, rule: str) -> bytes:
    """``head`` with its checksum summed by ``rule``: bytes as unsigned chars (POSIX), as signed
    chars (old Sun and BSD tars), or as an earlier awsio summed signed chars (wrong by either)."""
    h = bytearray(head)
    h[148:156] = b" " * 8
    high = [b for b in h if b > 127]
    total = {"unsigned": sum(h), "signed": sum(h) - 256 * len(high), "wrong": sum(h) - 2 * sum(high)}[rule]
    h[148:156] = b"%06o\0 " % total
    return bytes(h)


def test_signed_checksum_of_an_old_tar_is_accepted() -> None:
    raw = with_checksum(header("é.txt", 7), "signed") + pad(b"payload") + END
    with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
        assert [(m.name, tf.extractfile(m).read())  # type: ignore[union-attr]
                for m in tf] == [("é.txt", b"payload")]
    assert read_all(raw) == [("é.txt", b"payload")]
    expected = [("é.txt", 0, 7)]
    assert index_names(raw) == ["é.txt"]
    assert cut_members(raw, 0, expected) == list(iter_tar(io.BytesIO(raw)))


def test_checksum_wrong_by_both_rules_is_refused() -> None:
    raw = member("a.txt", b"abc") + with_checksum(header("é.txt", 7), "wrong") + pad(b"payload") + END
    with pytest.raises(tarfile.ReadError, match="bad checksum"):
        tarfile.open(fileobj=io.BytesIO(raw[1024:]), mode="r:")
    got, err = read_until_error(raw)
    assert got == [("a.txt", b"abc")]
    assert err.url == URL and err.offset == 1024 and "checksum" in str(err)
    assert cut_members(raw, 0, [("a.txt", 0, 3), ("é.txt", 1024, 7)]) is None


# -- members without data -------------------------------------------------------------------------
@pytest.mark.parametrize("typeflag", [b"5", b"3", b"4", b"6"], ids=["dir", "chr", "blk", "fifo"])
def test_directory_size_is_no_data_but_device_and_fifo_data_is_skipped(typeflag: bytes,
                                                                        tmp_path: Path) -> None:
    """GNU tar (1.34) reads the next header right after a directory's, whatever its size field
    says (so does tarfile), and skips the data a device or FIFO header declares."""
    name = "d/" if typeflag == b"5" else "d/node"
    data = b"" if typeflag == b"5" else b"\1" * 1024  # not a header: read as one, it fails
    raw = (member("x.txt", b"x") + header(name, 1024, typeflag=typeflag) + data + member("a.jpg", b"A" * 10)
           + END)
    assert read_all(raw) == [("x.txt", b"x"), ("a.jpg", b"A" * 10)]
    assert index_names(raw) == ["x.txt", "a.jpg"]
    if shutil.which("tar"):
        assert gnu_tar_names(tmp_path, raw) == ["x.txt", name, "a.jpg"]


def make_header(name: str, size: int, fmt: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    return info.tobuf(fmt)


# -- the ustar prefix -----------------------------------------------------------------------------
def test_gnu_header_times_are_not_a_name_prefix() -> None:
    """A GNU header (magic ``"ustar  \\0"``) keeps atime and ctime where POSIX ustar keeps the
    name's prefix: only a POSIX header's prefix is part of the name."""
    head = bytearray(make_header("d/a.txt", 5, tarfile.GNU_FORMAT))
    assert head[257:265] == b"ustar  \0"
    head[345:369] = b"15304267113\x0015304267113\x00"  # as `tar --format=gnu -G` writes them
    raw = rechecksum(head) + pad(b"hello") + END
    assert read_all(raw) == [("d/a.txt", b"hello")]
    assert index_names(raw) == ["d/a.txt"]
    got = cut_members(raw, 0, [("d/a.txt", 0, 5)])
    assert got is not None and [m.name for m in got] == ["d/a.txt"]
    # a POSIX ustar header's prefix is the name's first part
    long = "p" * 120 + "/a.txt"
    raw = make_header(long, 5, tarfile.USTAR_FORMAT) + pad(b"hello") + END
    assert raw[257:263] == b"ustar\0" and raw[345:350] == b"ppppp"
    assert read_all(raw) == [(long, b"hello")]
    got = cut_members(raw, 0, [(long, 0, 5)])
    assert got is not None and [m.name for m in got] == [long]


@pytest.mark.skipif(shutil.which("tar") is None, reason="GNU tar not installed")
def test_gnu_tar_incremental_archive_names(tmp_path: Path) -> None:
    (tmp_path / "src" / "d").mkdir(parents=True)
    (tmp_path / "src" / "d" / "a.txt").write_bytes(b"hello")
    out = tmp_path / "x.tar"
    subprocess.run(["tar", "--format=gnu", "-G", "-cf", str(out), "-C", str(tmp_path / "src"), "d"],
                   check=True)
    raw = out.read_bytes()
    assert read_all(raw) == [("d/a.txt", b"hello")]
    assert gnu_tar_names(tmp_path, raw) == ["d/", "d/a.txt"]


# -- the headers that describe the next member ----------------------------------------------------
@pytest.mark.parametrize("typeflag", [b"L", b"K", b"x", b"g"])
def test_extended_header_over_the_limit_fails_before_it_is_read(typeflag: bytes) -> None:
    """A 32 MiB long name costs a tar.gz 32 KiB: it must not cost memory to refuse."""
    size = 32 << 20
    assert size > MAX_EXTENDED_SIZE
    raw = (member("a.txt", b"abc") + header("././@LongLink", size, typeflag=typeflag) + pad(b"n" * size)
           + member("b.txt", b"xyz") + END)
    err, peak = peak_memory(lambda: read_all(gzip.compress(raw, 1), gzip=True))
    assert isinstance(err, ArchiveError) and "limit" in str(err)
    assert err.url == URL and err.member == "././@LongLink" and err.offset == 1024
    assert peak < 8 << 20


def test_extended_header_at_the_limit_is_read() -> None:
    name = "n" * MAX_EXTENDED_SIZE
    raw = (header("././@LongLink", len(name), typeflag=b"L") + pad(name.encode()) + member("b.txt", b"xyz")
           + END)
    assert read_all(raw) == [(name, b"xyz")]


def test_pax_records_awsio_does_not_use_are_not_kept() -> None:
    """Headers under the limit, one after another, hold no more than one of them: pax records
    other than path, linkpath and size (kept, the last one wins) are checked and dropped."""
    value = "v" * (1 << 20)
    raw = b"".join(pax_header([(f"k{i}", value)]) for i in range(40)) + member("b.txt", b"xyz") + END
    got, peak = peak_memory(lambda: read_all(raw))
    assert got == [("b.txt", b"xyz")] and peak < len(raw) // 4
    raw = pax_header([("path", "first")]) + pax_header([("path", "second")]) + member("b.txt", b"xyz") + END
    assert read_all(raw) == [("second", b"xyz")]
