"""tar / tar.gz / zip readers and the shard index, against reference readers (no server)."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path
from typing import Any, Iterable, Iterator

import pytest

from awsio.archives import archive_kind
from awsio.archives.index import ShardIndex, build_index, load_index, scan_tar, write_index
from awsio.archives.tar import iter_tar
from awsio.archives.zip import iter_zip, read_zip_directory
from awsio.errors import ArchiveError, IntegrityError, NoSuchKeyError
from awsio.s3.backend import ObjectInfo


class MemoryClient:
    """The S3Client surface the datasets use, over a dict ``url -> bytes`` (picklable)."""

    def __init__(self, objects: dict[str, bytes] | None = None) -> None:
        self.objects = dict(objects or {})
        self.calls: list[tuple[Any, ...]] = []

    def _data(self, url: str) -> bytes:
        try:
            return self.objects[str(url)]
        except KeyError:
            raise NoSuchKeyError("no such key", url=str(url), status=404, code="NoSuchKey") from None

    def get(self, url: str, *, size: int | None = None) -> bytes:
        self.calls.append(("get", str(url)))
        return self._data(url)

    def get_range(self, url: str, start: int, end: int | None, *, size: int | None = None,
                  if_match: str | None = None) -> bytes:
        self.calls.append(("get_range", str(url), start, end))
        data = self._data(url)
        if if_match is not None and if_match != hashlib.md5(data).hexdigest():  # (list()'s ETags)
            raise IntegrityError("At least one of the pre-conditions you specified did not hold", url=str(url),
                                 status=412, code="PreconditionFailed", request_id=None)
        return data[start:end]

    def get_many(self, items: Iterable[Any], ordered: bool = True, ramp: bool = False) -> Iterator[tuple[str, bytes]]:
        for item in items:
            if isinstance(item, tuple):
                yield str(item[0]), self.get_range(*item[:3], **({"if_match": item[5]} if len(item) > 5 else {}))
            else:
                yield str(item), self.get(item)

    def head(self, url: str) -> ObjectInfo:
        return ObjectInfo(str(url), len(self._data(url)))

    def list(self, url: str) -> Iterator[ObjectInfo]:
        self.calls.append(("list", str(url)))
        for key in sorted(self.objects):
            if key.startswith(str(url)):
                data = self.objects[key]
                yield ObjectInfo(key, len(data), etag=hashlib.md5(data).hexdigest())

    def open(self, url: str, *, chunk_size: int = 8 << 20, prefetch: int = 2,
             size: int | None = None, start: int = 0, end: int | None = None, etag: str | None = None) -> Any:
        """The real S3Reader, over this client's ranged reads (so its calls are counted)."""
        from awsio.s3.reader import S3Reader

        self.calls.append(("open", str(url)))
        client = self

        class _Backend:
            def head(self, bucket: str, key: str) -> ObjectInfo:
                return client.head(f"s3://{bucket}/{key}")

            def get(self, bucket: str, key: str, start: int = 0, end: int | None = None,
                    size: int | None = None, if_match: str | None = None) -> bytes:
                return client.get_range(f"s3://{bucket}/{key}", start, end,
                                        **({"if_match": if_match} if if_match else {}))

        bucket, _, key = str(url)[5:].partition("/")
        return S3Reader(_Backend(), bucket, key, size=size, chunk_size=chunk_size, prefetch=prefetch,
                        start=start, end=end, etag=etag)

    def put(self, url: str, data: bytes) -> None:
        self.objects[str(url)] = bytes(data)


def make_tar(members: list[tuple[str, bytes]], fmt: int = tarfile.USTAR_FORMAT, extra_dirs: bool = False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        if extra_dirs:
            info = tarfile.TarInfo("somedir")
            info.type = tarfile.DIRTYPE
            tf.addfile(info)
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def reference_tar(path_or_bytes: Any) -> list[tuple[str, bytes]]:
    fileobj = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else open(path_or_bytes, "rb")
    with fileobj, tarfile.open(fileobj=fileobj, mode="r|*") as tf:
        return [(m.name, tf.extractfile(m).read()) for m in tf if m.isfile()  # type: ignore[union-attr]
                and not os.path.basename(m.name).startswith("__")]


def samples(n: int, size: int = 300) -> list[tuple[str, bytes]]:
    out = []
    for i in range(n):
        out.append((f"d/s{i:04d}.cls", str(i).encode()))
        out.append((f"d/s{i:04d}.jpg", os.urandom(size + i)))
    return out


def mine(data: bytes, **kw: Any) -> list[tuple[str, bytes]]:
    return [(m.name, m.data) for m in iter_tar(io.BytesIO(data), **kw)]


def test_archive_kind_case_insensitive() -> None:
    assert archive_kind("s3://b/x.TAR") == "tar"
    assert archive_kind("s3://b/x.Tar.Gz") == "tgz"
    assert archive_kind("s3://b/x.tgz") == "tgz"
    assert archive_kind("s3://b/x.ZIP") == "zip"
    assert archive_kind("s3://b/x.jpg") is None
    assert archive_kind("s3://b/x.shard", {".shard": "tar"}) == "tar"


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_python_tarfile_formats_and_gzip(fmt: int) -> None:
    long = "deep/" + "x" * 140 + "/" + "é" * 30 + ".jpg" if fmt != tarfile.USTAR_FORMAT else "a.jpg"
    members = samples(5) + [(long, b"long-named")]
    raw = make_tar(members, fmt, extra_dirs=True)
    assert mine(raw) == reference_tar(raw) == members
    assert mine(gzip.compress(raw), gzip=True) == members
    # multi-member gzip, as `cat a.gz b.gz` makes
    half = len(raw) // 2
    assert mine(gzip.compress(raw[:half]) + gzip.compress(raw[half:]), gzip=True) == members


@pytest.mark.skipif(shutil.which("tar") is None, reason="GNU tar not installed")
@pytest.mark.parametrize("fmt", ["gnu", "pax", "posix", "ustar"])
def test_gnu_tar_long_names(tmp_path: Path, fmt: str) -> None:
    src = tmp_path / "src"
    long_dir = src / ("P" * 60) / ("Q" * 60)
    long_dir.mkdir(parents=True)
    (src / "a.cls").write_bytes(b"1")
    (src / "__meta__").write_bytes(b"metadata")
    if fmt != "ustar":
        (long_dir / ("n" * 120 + ".jpg")).write_bytes(os.urandom(2000))
    (src / "big.bin").write_bytes(os.urandom(70000))
    out = tmp_path / "x.tar"
    subprocess.run(["tar", f"--format={fmt}", "--sort=name", "-cf", str(out), "-C", str(src), "."], check=True)
    raw = out.read_bytes()
    got = mine(raw)
    assert got == reference_tar(raw)
    assert all("__meta__" not in n for n, _ in got) and len(got) == (2 if fmt == "ustar" else 3)
    assert any(len(n) > 100 for n, _ in got) == (fmt != "ustar")


def test_webdataset_writer_and_reader() -> None:
    wds = pytest.importorskip("webdataset")
    from webdataset.tariterators import tar_file_iterator

    buf = io.BytesIO()
    with wds.TarWriter(buf) as sink:
        for i in range(4):
            sink.write({"__key__": f"k{i:03d}", "txt": f"t{i}", "bin": os.urandom(100 + i)})
    raw = buf.getvalue()
    ref = [(d["fname"], d["data"]) for d in tar_file_iterator(io.BytesIO(raw))]
    assert mine(raw) == ref == reference_tar(raw)
    assert len(ref) == 8


def test_truncated_and_corrupt_tar_name_shard_and_member() -> None:
    raw = make_tar(samples(3, 2000))
    # cut inside the data of the 4th member (s0001.jpg)
    with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
        at = tf.getmember("d/s0001.jpg").offset_data
    cut = raw[:at + 100]
    with pytest.raises(ArchiveError) as err:
        mine(cut, url="s3://b/shard.tar")
    assert err.value.url == "s3://b/shard.tar" and err.value.member == "d/s0001.jpg"
    with pytest.raises(ArchiveError, match="truncated tar header"):
        mine(raw[:512 * 2 + 300], url="s3://b/shard.tar")
    bad = bytearray(raw)
    bad[512 * 2 + 10] ^= 0xFF  # a header byte of the second member -> checksum fails
    with pytest.raises(ArchiveError, match="checksum") as err:
        mine(bytes(bad), url="s3://b/shard.tar")
    assert err.value.member == "d/s0000.cls" and err.value.offset == 1024
    with pytest.raises(ArchiveError, match="gzip"):
        mine(gzip.compress(raw)[:-100], gzip=True, url="s3://b/s.tgz")
    import pickle
    again = pickle.loads(pickle.dumps(err.value))
    assert again.url == err.value.url and again.member == err.value.member


def make_zip(members: list[tuple[str, bytes]], *, zip64: bool = False, method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as zf:
        zf.writestr("dir/", b"")
        for name, data in members:
            with zf.open(name, "w", force_zip64=zip64) as f:
                f.write(data)
    return buf.getvalue()


@pytest.mark.parametrize("zip64", [False, True])
@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_zip_by_ranges_matches_zipfile(zip64: bool, method: int) -> None:
    members = samples(6, 5000) + [("__meta__.json", b"{}")]
    raw = make_zip(members, zip64=zip64, method=method)
    client = MemoryClient({"s3://b/z.zip": raw})
    got = [(m.name, m.data) for m in iter_zip(client, "s3://b/z.zip")]
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        ref = [(n, zf.read(n)) for n in zf.namelist() if not n.endswith("/") and not n.startswith("__")]
    assert got == ref == members[:-1]
    # the data came by ranges, not one whole-object GET
    assert not any(c[0] == "get" for c in client.calls)


@pytest.mark.skipif(shutil.which("zip") is None, reason="zip CLI not installed")
def test_zip_cli(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    for name, data in samples(3, 4000):
        p = tmp_path / "src" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    subprocess.run(["zip", "-qr", str(tmp_path / "x.zip"), "d"], cwd=tmp_path / "src", check=True)
    raw = (tmp_path / "x.zip").read_bytes()
    got = [(m.name, m.data) for m in iter_zip(MemoryClient({"u": raw}), "u")]
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        ref = [(n, zf.read(n)) for n in zf.namelist() if not n.endswith("/")]
    assert got == ref and len(got) == 6


def test_zip_corrupt_and_not_zip() -> None:
    raw = bytearray(make_zip(samples(2, 3000), method=zipfile.ZIP_STORED))
    with pytest.raises(ArchiveError, match="not a zip"):
        list(iter_zip(MemoryClient({"u": b"x" * 100}), "u"))
    info = zipfile.ZipFile(io.BytesIO(bytes(raw))).getinfo("d/s0001.jpg")
    raw[info.header_offset + 30 + len(info.filename) + 10] ^= 0xFF  # member data -> CRC fails
    with pytest.raises(ArchiveError, match="CRC") as err:
        list(iter_zip(MemoryClient({"s3://b/z.zip": bytes(raw)}), "s3://b/z.zip"))
    assert err.value.url == "s3://b/z.zip" and err.value.member == "d/s0001.jpg"


def test_index_build_scan_sidecar_agree(tmp_path: Path) -> None:
    raw = make_tar(samples(7, 70000), tarfile.GNU_FORMAT, extra_dirs=True)
    built = build_index(io.BytesIO(raw))
    client = MemoryClient({"s3://b/t.tar": raw})
    scanned = scan_tar(client, "s3://b/t.tar", len(raw))
    assert built == scanned and built.sample_count == 7 and built.size == len(raw)
    # the scan fetched far less than the shard
    fetched = sum((c[3] - c[2]) for c in client.calls if c[0] == "get_range")
    assert fetched < len(raw) / 2
    path = tmp_path / "t.tar.idx.json"
    write_index(built, str(path))
    assert ShardIndex.from_json(path.read_bytes()) == built
    write_index(built, "s3://b/t.tar.idx.json", client=client)
    assert load_index(client, "s3://b/t.tar", size=len(raw)) == built
    # a byte range of whole samples parses on its own and holds exactly those samples
    a, b = built.byte_range(2, 5)
    got = [m.name for m in iter_tar(client.open("s3://b/t.tar", start=a, end=b, chunk_size=50000, prefetch=0),
                                    start_offset=a, partial=True)]
    assert got == [n for n, _ in samples(7)[4:10]]
    tgz = build_index(io.BytesIO(gzip.compress(raw)), gzip=True)
    assert tgz.members == built.members


def test_index_reads_shard_maker_format() -> None:
    raw = make_tar(samples(3))
    with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
        entries = [{"name": m.name, "key": m.name.split(".")[0], "offset": m.offset,
                    "data_offset": m.offset_data, "size": m.size} for m in tf]
    import json
    doc = {"version": 1, "shard": "t.tar", "size": len(raw), "samples": 3, "members": entries}
    assert ShardIndex.from_json(json.dumps(doc)) == build_index(io.BytesIO(raw))


def test_zip_directory_index() -> None:
    raw = make_zip(samples(4))
    client = MemoryClient({"u.zip": raw})
    entries = read_zip_directory(client, "u.zip", len(raw))
    assert [e.name for e in entries if e.is_file] == [n for n, _ in samples(4)]
    assert load_index(client, "u.zip", size=len(raw), kind="zip").sample_count == 4  # type: ignore[union-attr]


# -- cutting members straight out of a ranged read by the index ---------------------------------

def _index_of(blob: bytes) -> ShardIndex:
    return build_index(io.BytesIO(blob))


def _as_read(data: bytes, start: int, expected: Any, pieces: bool) -> Any:
    """A ranged read as the shard reader gets it: one bytes, or in the pieces its cuts name."""
    from awsio.archives.tar import member_cuts
    from awsio.s3.backend import cut_body

    if not pieces:
        return data
    cuts = member_cuts(expected, start, start + len(data))
    assert cuts is not None
    return cut_body(data, cuts)


@pytest.mark.parametrize("pieces", [False, True])
def test_cut_members_gives_what_walking_the_headers_gives(pieces: bool) -> None:
    from awsio.archives.tar import cut_members

    blob = make_tar([(f"s{i}.{ext}", os.urandom(700 + 37 * i)) for i in range(6) for ext in ("jpg", "cls")]
                    + [("empty.txt", b""), ("block.bin", os.urandom(1024))])
    index = _index_of(blob)
    walked = list(iter_tar(io.BytesIO(blob)))
    assert cut_members(_as_read(blob, 0, index.members, pieces), 0, index.members) == walked
    # a range from the third member on, as the shard reader reads it
    a = index.members[2][1]
    assert cut_members(_as_read(blob[a:], a, index.members[2:], pieces), a, index.members[2:]) == walked[2:]
    # a range that stops before the end-of-archive blocks
    b = index.members[5][1]
    assert cut_members(_as_read(blob[a:b], a, index.members[2:5], pieces), a, index.members[2:5]) == walked[2:5]


def test_members_cut_from_pieces_are_the_pieces_themselves() -> None:
    """The reader writes each member into its own bytes: cutting must not copy it again."""
    from awsio.archives.tar import cut_members

    blob = make_tar([(f"s{i}.bin", os.urandom(3000 + i)) for i in range(5)])
    index = _index_of(blob)
    read = _as_read(blob, 0, index.members, True)
    members = cut_members(read, 0, index.members)
    assert members is not None and [m.data for m in members] == [read[2 * i + 1] for i in range(5)]
    assert all(m.data is read[2 * i + 1] for i, m in enumerate(members))


def test_pieces_that_do_not_match_the_index_are_left_to_the_walk() -> None:
    from awsio.archives.tar import cut_members, member_cuts

    blob = make_tar([(f"s{i}.bin", os.urandom(3000 + i)) for i in range(3)])
    members = list(_index_of(blob).members)
    read = _as_read(blob, 0, members, True)
    assert cut_members(read[:-2] + (read[-2] + read[-1],), 0, members) is None  # pieces joined
    assert cut_members(read + (b"",), 0, members) is None  # one piece too many
    shifted = (read[0][:-1], read[0][-1:] + read[1]) + read[2:]  # a member one byte off
    assert cut_members(shifted, 0, members) is None
    assert member_cuts(members[::-1], 0, len(blob)) is None  # out of order
    assert member_cuts(members, 0, members[-1][1] + 600) is None  # past the range
    # headers between members (a GNU long name, pax): walked, so no pieces are asked for
    for fmt in ("gnu", "pax"):
        long = make_tar([("d" * 120 + f"/s{i}.bin", b"z" * 700) for i in range(3)],
                        fmt=tarfile.GNU_FORMAT if fmt == "gnu" else tarfile.PAX_FORMAT)
        assert member_cuts(_index_of(long).members, 0, len(long)) is None, fmt


@pytest.mark.parametrize("size_form", ["%011o\0", "%011o ", " %010o\0", "%o\0", "base-256"])
@pytest.mark.parametrize("checksum_form", ["%06o\0 ", "%07o\0", " %06o\0", "%06o  ", "signed"])
def test_cut_members_reads_every_form_of_the_numeric_fields(size_form: str, checksum_form: str) -> None:
    """Headers are checked as arrays in the form tar writers use, any other form one by one:
    the same members either way, and a checksum that is wrong in any form is caught."""
    from awsio.archives.tar import cut_members

    blob = bytearray(make_tar([(f"s{i}.bin", os.urandom(700 + i)) for i in range(4)]))
    expected = list(_index_of(bytes(blob)).members)
    h = expected[2][1]  # rewrite the third member's header
    size = expected[2][2]
    blob[h + 124:h + 136] = (b"\x80" + size.to_bytes(11, "big") if size_form == "base-256"
                             else (size_form % size).encode().ljust(12, b"\0"))
    blob[h + 297] = 0xC3 if checksum_form == "signed" else 0  # a byte > 127 (in the group name)
    total = sum(blob[h:h + 148]) + 256 + sum(blob[h + 156:h + 512])
    if checksum_form == "signed":  # as some old tars sum the header: bytes as signed chars
        total -= 256 * sum(b > 127 for b in blob[h:h + 148] + blob[h + 156:h + 512])
    blob[h + 148:h + 156] = ((checksum_form if checksum_form != "signed" else "%06o\0 ") % total).encode()
    walked = list(iter_tar(io.BytesIO(bytes(blob))))
    for pieces in (False, True):
        assert cut_members(_as_read(bytes(blob), 0, expected, pieces), 0, expected) == walked
    blob[h + 100] ^= 1  # the mode: only the checksum can tell
    for pieces in (False, True):
        assert cut_members(_as_read(bytes(blob), 0, expected, pieces), 0, expected) is None


@pytest.mark.parametrize("pieces", [False, True])
@pytest.mark.parametrize("case", ["directory between", "symlink between", "long name", "header flipped",
                                  "checksum wrong", "size differs", "name differs", "junk after"])
def test_cut_members_leaves_anything_unusual_to_the_header_walk(case: str, pieces: bool) -> None:
    from awsio.archives.tar import cut_members

    members = [("a.jpg", b"x" * 600), ("b.jpg", b"y" * 300)]
    blob = make_tar(members)
    expected = list(_index_of(blob).members)
    if case in ("directory between", "symlink between"):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
            for i, (name, data) in enumerate(members):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
                if i == 0:
                    extra = tarfile.TarInfo("d" if case == "directory between" else "ln")
                    extra.type = tarfile.DIRTYPE if case == "directory between" else tarfile.SYMTYPE
                    extra.linkname = "" if case == "directory between" else "a.jpg"
                    tf.addfile(extra)
        blob = buf.getvalue()
        expected = list(_index_of(blob).members)
    elif case == "long name":
        blob = make_tar([("n" * 150 + ".jpg", b"x" * 10)], fmt=tarfile.GNU_FORMAT)
        expected = list(_index_of(blob).members)
    elif case == "header flipped":
        blob = bytearray(blob)
        blob[1536 + 3] ^= 1  # in b.jpg's name (its header follows a.jpg's: 512 + 600 padded to 1024)
        blob = bytes(blob)
    elif case == "checksum wrong":
        blob = bytearray(blob)
        blob[1536 + 140] ^= 1  # in b.jpg's mtime: only its header checksum can tell
        blob = bytes(blob)
    elif case == "size differs":
        expected[1] = (expected[1][0], expected[1][1], expected[1][2] + 1)
    elif case == "name differs":
        expected[0] = ("z.jpg", *expected[0][1:])
    elif case == "junk after":
        blob = blob[:-1] + b"\x01"
    from awsio.archives.tar import member_cuts

    if pieces and member_cuts(expected, 0, len(blob)) is not None:
        blob = _as_read(blob, 0, expected, True)
    assert cut_members(blob, 0, expected) is None
