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

from awsio.archives.index import build_index, index_url, load_index
from awsio.archives.tar import iter_tar, walk_tar
from awsio.archives.zip import iter_zip
from awsio.dataset import S3IterableDataset
from awsio.errors import ArchiveError, IntegrityError
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


# -- zip builders ---------------------------------------------------------------------------------
_LOC = struct.Struct("<4s5H3L2H")
_CEN = struct.Struct("<4s6H3L5H2L")
_EOCD = struct.Struct("<4s4H2LH")


def deflate(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def hand_zip(entries: list[dict[str, Any]], *, count: int | None = None, cd_size: int | None = None) -> bytes:
    """A zip written field by field; ``cen`` overrides central-directory fields of an entry,
    ``comp`` gives its compressed bytes, ``local_name`` the name in its local header."""
    body, cen = b"", b""
    for e in entries:
        name, data, method = e["name"].encode(), e.get("data", b""), e.get("method", 0)
        comp = e.get("comp", deflate(data) if method == 8 else data)
        crc = zlib.crc32(data)
        local_name = e.get("local_name", e["name"]).encode()
        fields: dict[str, Any] = {"crc": crc, "csize": len(comp), "usize": len(data), "offset": len(body),
                                  "extra": b""}
        fields.update(e.get("cen", {}))
        body += _LOC.pack(b"PK\x03\x04", 20, 0, method, 0, 0, crc, len(comp), len(data), len(local_name), 0)
        body += local_name + comp
        cen += _CEN.pack(b"PK\x01\x02", 20, 20, 0, method, 0, 0, fields["crc"], fields["csize"],
                         fields["usize"], len(name), len(fields["extra"]), 0, 0, 0, 0, fields["offset"])
        cen += name + fields["extra"]
    n = len(entries) if count is None else count
    return body + cen + _EOCD.pack(b"PK\x05\x06", 0, 0, n, n, len(cen) if cd_size is None else cd_size,
                                   len(body), 0)


ZURL = "s3://b/z.zip"


class StrictClient(MemoryClient):
    """Refuses a range that ends before it starts, as :meth:`awsio.s3.client.S3Client.get_range` does."""

    def get_range(self, url: str, start: int, end: int | None, **kw: Any) -> bytes:
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"invalid range [{start}, {end}) for {url}")
        return super().get_range(url, start, end, **kw)


def zip_error(raw: bytes) -> ArchiveError:
    with pytest.raises(ArchiveError) as err:
        list(iter_zip(StrictClient({ZURL: raw}), ZURL))
    assert err.value.url == ZURL
    return err.value


GOOD: list[dict[str, Any]] = [{"name": "a.txt", "data": b"alpha" * 20, "method": 8}, {"name": "b.txt", "data": b"beta" * 30}]


def test_hand_zip_is_read() -> None:
    assert [(m.name, m.data) for m in iter_zip(MemoryClient({ZURL: hand_zip(GOOD)}), ZURL)] == [
        ("a.txt", b"alpha" * 20), ("b.txt", b"beta" * 30)]


def test_zip_truncated_central_directory() -> None:
    good = hand_zip(GOOD)
    cd_size = len(good) - 22 - good.index(b"PK\x01\x02")
    err = zip_error(hand_zip(GOOD, cd_size=cd_size - 20))  # the second entry is cut
    assert "central directory" in str(err) and err.offset is not None
    err = zip_error(hand_zip(GOOD, count=3))  # more entries than the directory holds
    assert "central directory" in str(err)
    err = zip_error(hand_zip(GOOD, count=1))  # fewer: the rest would be dropped without a word
    assert "central directory" in str(err)


def test_zip_entry_offset_past_directory() -> None:
    entries = [GOOD[0], dict(GOOD[1], cen={"offset": 10_000})]
    err = zip_error(hand_zip(entries))
    assert err.member == "b.txt" and err.offset == 10_000


def test_zip_local_header_too_short() -> None:
    # c.txt's directory entry points 10 bytes into a.txt's local header: a.txt's region is cut short
    err = zip_error(hand_zip([GOOD[0], {"name": "c.txt", "cen": {"offset": 10}}]))
    assert err.member == "a.txt" and err.offset == 0 and "local header" in str(err)


def test_zip64_extra_too_short() -> None:
    short = struct.pack("<HHQ", 1, 8, 100)  # needs two values (usize and csize), has one
    cen: dict[str, Any] = {"csize": 0xFFFFFFFF, "usize": 0xFFFFFFFF, "extra": short}
    entries = [{"name": "a.txt", "data": b"x" * 100, "cen": cen}]
    err = zip_error(hand_zip(entries))
    assert err.member == "a.txt" and "zip64" in str(err)
    lying = struct.pack("<HHQ", 1, 16, 100)  # says 16 bytes, the extra holds 8
    cen["extra"] = lying
    assert zip_error(hand_zip(entries)).member == "a.txt"


def test_zip64_eocd_record_truncated() -> None:
    raw = make_zip(samples(2))
    eocd = raw.rindex(b"PK\x05\x06")
    # a zip64 record that starts 32 bytes before the end of the file: 56 bytes would not fit
    loc = struct.pack("<4sLQL", b"PK\x06\x07", 0, eocd, 1)
    err = zip_error(raw[:eocd] + b"PK\x06\x06" + bytes(8) + loc + raw[eocd:])
    assert "zip64" in str(err)


def test_zip_local_name_differs_from_directory() -> None:
    err = zip_error(hand_zip([dict(GOOD[0], local_name="z.txt"), GOOD[1]]))
    assert err.member == "a.txt" and err.offset == 0


@pytest.mark.parametrize("declared", [99, 101, 0])
def test_zip_inflated_size_differs_from_declared(declared: int) -> None:
    err = zip_error(hand_zip([dict(GOOD[0], cen={"usize": declared})]))
    assert err.member == "a.txt" and "size" in str(err)


def test_zip_truncated_deflate_stream() -> None:
    data = bytes(range(256)) * 40
    comp = deflate(data)
    err = zip_error(hand_zip([{"name": "a.bin", "data": data, "method": 8, "comp": comp[:-3]}]))
    assert err.member == "a.bin"


def test_zip_bomb_stops_at_declared_size(tmp_path: Any) -> None:
    """A member declaring 1 KiB that inflates to 1 GiB fails fast in bounded memory (read in a
    process of its own, so the peak RSS measured is this read's)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(bytes(1 << 20)) + c.flush(zlib.Z_FULL_FLUSH)  # context-free: repeatable
    comp = block * 1024 + c.flush()  # 1 GiB of zeros in about 1 MiB
    path = tmp_path / "bomb.zip"
    path.write_bytes(hand_zip([{"name": "bomb.bin", "method": 8, "comp": comp,
                                "cen": {"usize": 1024, "crc": zlib.crc32(bytes(1024))}}]))
    code = textwrap.dedent("""
        import resource, sys, time
        from awsio.archives.zip import iter_zip
        from awsio.errors import ArchiveError
        from awsio.s3.backend import ObjectInfo
        raw = open(sys.argv[1], "rb").read()

        class Client:
            def head(self, url): return ObjectInfo(url, len(raw))
            def get_range(self, url, a, b): return raw[a:b]
            def get_many(self, items, ordered=True, ramp=False):
                for url, a, b in items:
                    yield url, raw[a:b]

        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t = time.monotonic()
        try:
            list(iter_zip(Client(), "s3://b/bomb.zip"))
            print("NO ERROR")
        except ArchiveError as exc:
            print("ArchiveError", exc.member, exc)
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        print("GROWN_KIB", grown, "SECONDS", round(time.monotonic() - t, 3))
    """)
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert "ArchiveError bomb.bin" in out.stdout, out.stdout
    grown_kib = int(out.stdout.split("GROWN_KIB ")[1].split()[0])
    assert grown_kib < 50 * 1024, out.stdout


# -- the handler policy, end to end ---------------------------------------------------------------
def bad_shards() -> dict[str, bytes]:
    b = "s3://bkt/data/"
    good = make_tar([("k0.cls", b"0"), ("k0.jpg", b"jpeg")])
    return {
        f"{b}a-good.tar": good,
        f"{b}b-nonoctal.tar": header("x.cls", 3, size_field=b"00000000z3") + pad(b"abc") + END,
        f"{b}c-empty.tar": b"",
        f"{b}d-empty.tgz": b"",
        f"{b}e-empty.zip": b"",
        f"{b}f-negative-pax.tar": pax_header([("size", "-5")]) + member("y.cls", b"abc") + END,
        f"{b}g-cut.tgz": gzip.compress(good)[:-4],
        f"{b}h-cut-cd.zip": hand_zip(GOOD, count=3),
        f"{b}i-bomb.zip": hand_zip([dict(GOOD[0], cen={"usize": 10})]),
        f"{b}j-no-end.tar": good[:1024],
    }


def test_dataset_applies_the_handler_to_every_malformed_shard(caplog: pytest.LogCaptureFixture) -> None:
    objs = bad_shards()
    client = StrictClient(objs)
    for url in objs:
        if "good" in url:
            continue
        with pytest.raises(ArchiveError) as err:  # when it is indexed (made), or when it is read
            list(S3IterableDataset(url, client=client))
        assert err.value.url == url, err.value
    for policy in ("skip", "warn"):
        caplog.clear()
        ds = S3IterableDataset("s3://bkt/data/", client=client, handler=policy)
        # a shard that cannot be indexed is skipped whole when the dataset is made; the zip bomb
        # indexes (its directory is fine) and fails when its member is inflated
        assert [n for n, _ in ds] == ["k0.cls", "k0.jpg"]
        assert ds.stats.counts == {("index", "ArchiveError"): len(objs) - 2, ("read", "ArchiveError"): 1}
        warned = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warned) == (len(objs) - 1 if policy == "warn" else 0)
    pipe = S3IterableDataset("s3://bkt/data/", client=client, handler="skip").dataproc(shuffle=False)
    assert len(list(pipe)) == 1 and pipe.stats.total == len(objs) - 1


def test_dataset_counts_links() -> None:
    raw = linked_tar()
    client = MemoryClient({"s3://bkt/l/x.tar": raw, "s3://bkt/l/y.tgz": gzip.compress(raw)})
    ds = S3IterableDataset("s3://bkt/l/", client=client)
    names = [n for n, _ in ds]
    # .tar: the hardlink's target is in the same ranged read, so it resolves; .tgz: counted
    assert names == ["d/a.jpg", "d/b.jpg", "d/c.jpg", "d/a.jpg", "d/b.jpg"]
    assert ds.stats.counts == {("read", "symlink"): 2, ("read", "hardlink"): 3}


# -- shard indexes --------------------------------------------------------------------------------
def index_doc(raw: bytes) -> dict[str, Any]:
    return json.loads(build_index(io.BytesIO(raw)).to_json())


@pytest.mark.parametrize("mutate", [
    lambda d: "not json",
    lambda d: "[1, 2]",
    lambda d: {k: v for k, v in d.items() if k != "members"},
    lambda d: {k: v for k, v in d.items() if k != "size"},
    lambda d: dict(d, members=5),
    lambda d: dict(d, members=[5]),
    lambda d: dict(d, members=[["a"]]),
    lambda d: dict(d, members=[["a", "x", 3]]),
    lambda d: dict(d, members=[["a", 0, -1]]),
    lambda d: dict(d, members=[["a", 1.5, 1]]),
    lambda d: dict(d, members=[{"name": "a"}]),
    lambda d: dict(d, members=d["members"][::-1]),  # offsets must increase
    lambda d: dict(d, members=d["members"] + [["z.jpg", d["size"] + 512, 10]]),  # past the shard end
    lambda d: dict(d, end=d["size"] + 1),
    lambda d: dict(d, size="big"),
    lambda d: dict(d, kind="rar"),
])
def test_malformed_sidecar_names_the_index(mutate: Callable[[dict[str, Any]], Any]) -> None:
    raw = make_tar(samples(3))
    doc = mutate(index_doc(raw))
    text = doc if isinstance(doc, str) else json.dumps(doc)
    client = MemoryClient({URL: raw, index_url(URL): text.encode()})
    with pytest.raises(ArchiveError) as err:
        load_index(client, URL, size=len(raw))
    assert err.value.url == index_url(URL) and isinstance(err.value, ValueError)


def test_sidecar_for_another_shard_size() -> None:
    raw = make_tar(samples(3))
    client = MemoryClient({URL: raw, index_url(URL): build_index(io.BytesIO(raw)).to_json().encode()})
    with pytest.raises(ArchiveError, match="disagrees") as err:
        load_index(client, URL, size=len(raw) + 512)
    assert err.value.url == index_url(URL)


def test_index_pointing_past_the_shard_end_fails_when_read() -> None:
    """With no size known (a brace pattern is not listed), the ranged read finds the shard short."""
    raw = make_tar(samples(4))
    stale = build_index(io.BytesIO(raw))
    client = MemoryClient({URL: raw[:stale.members[4][1]]})  # cut at a member boundary
    with pytest.raises(IntegrityError) as err:  # the range reader finds the object short
        list(iter_tar(client.open(URL, start=0, end=stale.end, chunk_size=1024, prefetch=0), url=URL, partial=True))
    assert err.value.url == URL and err.value.code == "SizeMismatch"
    # replaced by a shorter, whole tar: the range of samples 2..3 holds its end-of-archive blocks
    client = MemoryClient({URL: make_tar(samples(2))})
    a, b = stale.byte_range(2, 4)
    assert b <= len(client.objects[URL])
    with pytest.raises(ArchiveError, match="stale index") as err:
        list(iter_tar(client.open(URL, start=a, end=b, chunk_size=1024, prefetch=0), url=URL, start_offset=a,
                      partial=True))
    assert err.value.offset == a


# -- damage: every single byte, and random --------------------------------------------------------
FUZZ_MEMBERS = [("a.cls", b"1"), ("a.jpg", bytes(range(256)) * 3), ("b.cls", b"22")]
FUZZ = {"tar": make_tar(FUZZ_MEMBERS), "tgz": gzip.compress(make_tar(FUZZ_MEMBERS), mtime=0),
        "zip": make_zip(FUZZ_MEMBERS)}
with tarfile.open(fileobj=io.BytesIO(FUZZ["tar"])) as _tf:
    _RANGES = [(m.offset_data, m.offset_data + m.size) for m in _tf]
_END_AT = (_RANGES[-1][1] + 511) // 512 * 512 + 512  # just past the first end-of-archive block
_HEADERS = {a - 512 for a, _ in _RANGES} | {_END_AT - 512}


def outcome(kind: str, data: bytes) -> list[tuple[str, bytes]] | None:
    """The members read, or None for an ArchiveError; any other exception fails the test."""
    try:
        if kind == "zip":
            return [(m.name, m.data) for m in iter_zip(StrictClient({ZURL: data}), ZURL)]
        return read_all(data, gzip=kind == "tgz", chunk_size=256)
    except ArchiveError:
        return None


def flipped(raw: bytes, flips: list[tuple[int, int]]) -> bytes:
    out = bytearray(raw)
    for pos, xor in flips:
        out[pos % len(raw)] ^= xor
    return bytes(out)


def predicted_tar(pos: int, xor: int) -> list[list[tuple[str, bytes]] | None]:
    """What a whole tar read may give with byte ``pos`` flipped (tar checksums headers, not data)."""
    bad = flipped(FUZZ["tar"], [(pos, xor)])
    expected = [(n, bad[a:b]) for (n, _), (a, b) in zip(FUZZ_MEMBERS, _RANGES)]
    if 148 <= pos % 512 < 156:
        return [expected, None]  # the checksum field: its bytes after the NUL are not read
    if pos // 512 * 512 in _HEADERS:
        return [None]  # a header (or the first end block) whose checksum no longer holds
    return [expected]  # data, padding, later blocks: the flipped byte comes through as it is


@pytest.mark.parametrize("kind", ["tar", "tgz", "zip"])
def test_every_single_byte_flip_and_cut(kind: str) -> None:
    """Exhaustive: exactly the right members (for tar: with a flipped data byte, which tar cannot
    see) or ArchiveError, never another exception; a cut shard always fails (a tar cut after its
    first end-of-archive block is whole)."""
    raw = FUZZ[kind]
    for pos in range(len(raw)):
        for xor in (0x01, 0x80, 0xFF):
            got = outcome(kind, flipped(raw, [(pos, xor)]))
            allowed = predicted_tar(pos, xor) if kind == "tar" else [FUZZ_MEMBERS, None]
            assert got in allowed, (pos, xor, got)
        got = outcome(kind, raw[:pos])
        assert got == (FUZZ_MEMBERS if kind == "tar" and pos >= _END_AT else None), (pos, got)


_damage = st.tuples(st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(1, 255)), min_size=1, max_size=4),
                    st.one_of(st.none(), st.integers(0, 1 << 20)))


@settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["tar", "tgz", "zip"]), _damage)
def test_fuzz_random_damage(kind: str, damage: tuple[list[tuple[int, int]], int | None]) -> None:
    """Several flips and maybe a cut: tgz and zip (CRC-32 over the data, names checked against the
    directory) give exactly the right members or ArchiveError. A tar has only a sum over each
    header, which two flips can cancel: it must just never raise anything else."""
    flips, cut = damage
    bad = flipped(FUZZ[kind], flips)
    if cut is not None:
        bad = bad[:cut % len(bad)]
    got = outcome(kind, bad)
    if kind != "tar":
        assert got in (FUZZ_MEMBERS, None)


@settings(max_examples=60, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000))
def test_fuzz_garbage(data: bytes) -> None:
    for kind in FUZZ:
        outcome(kind, data)
    try:
        list(walk_tar(io.BytesIO(data), url=URL, skip_data=True))
    except ArchiveError:
        pass
