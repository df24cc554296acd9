"""Shard maker and upload integrity: what is packed/uploaded is exactly what readers get back, or
a clear error says why not (sample-key collisions, names readers drop, symlinked folders, reruns
into the same output, short reads from raw streams, duplicate zip entry names)."""

from __future__ import annotations

import io
import os
import tarfile
import warnings
import zipfile

import pytest

from awsio.archives.index import ShardIndex, index_url
from awsio.tools import makeshards as ms
from awsio.tools.storage import Storage


def _write(path, data: bytes = b"x") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _names(shard: str) -> list[str]:
    with tarfile.open(shard) as tar:
        return tar.getnames()


# -- 1. imagefolder: two images, one sample key -----------------------------------------------------
@pytest.mark.parametrize("a, b", [("x.jpg", "x.png"), ("a.b.jpg", "a_b.jpg")])
def test_imagefolder_refuses_two_images_with_one_key(tmp_path, a, b):
    root = tmp_path / "tree"
    _write(root / "cat" / a, b"one")
    _write(root / "cat" / b, b"two")
    with pytest.raises(ValueError) as err:
        ms.folder_samples(str(root), shuffle=False)
    assert f"cat/{a}" in str(err.value) and f"cat/{b}" in str(err.value)


# -- 2. files mode: names readers drop or rename ------------------------------------------------------
@pytest.mark.parametrize("name", ["pkg/__init__.py", "__main__.py"])
def test_files_mode_refuses_names_readers_drop_as_metadata(tmp_path, name):
    root = tmp_path / "in"
    _write(root / "pkg" / "mod.py")
    _write(root / name)
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        ms.folder_samples(str(root), shuffle=False)


def test_files_mode_writes_extensionless_files_under_their_own_name(tmp_path):
    root = tmp_path / "in"
    _write(root / "pkg" / "README", b"readme")
    _write(root / "pkg" / "mod.py", b"mod")
    loaders, info = ms.folder_samples(str(root), shuffle=False)
    assert info["mode"] == "files"
    summary = ms.write_shards(loaders, str(tmp_path / "out"), prefix="t", progress=False)
    shard = summary["urls"][0]
    with tarfile.open(shard) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]
    assert members == {"pkg/README": b"readme", "pkg/mod.py": b"mod"}
    index = ShardIndex.from_json(open(index_url(shard)).read())
    assert summary["samples"] == index.sample_count == 2


# -- 3. symlinked folders ---------------------------------------------------------------------------
def test_walk_follows_symlinked_folders_and_stops_at_loops(tmp_path):
    real = tmp_path / "real" / "dog"
    for i in range(3):
        _write(real / f"d{i}.jpg")
    root = tmp_path / "tree"
    _write(root / "cat" / "a.jpg")
    os.symlink(real, root / "dog")
    loaders, info = ms.folder_samples(str(root), shuffle=False)
    assert info["classes"] == ["cat", "dog"]
    assert [f().key for f in loaders] == ["cat/a", "dog/d0", "dog/d1", "dog/d2"]

    os.symlink(root, root / "cat" / "loop")  # a folder linked inside itself: walked once
    assert ms._walk(str(root)) == ["cat/a.jpg", "dog/d0.jpg", "dog/d1.jpg", "dog/d2.jpg"]


# -- 4. writing again into the same output -------------------------------------------------------------
def _run(out, n, *extra):
    return ms.main(["--synthetic", str(n), "--output", str(out), "--maxcount", "5", "--quiet", *extra])


def test_rerun_into_same_output_is_refused_without_overwrite(tmp_path, capsys):
    out = tmp_path / "out"
    assert _run(out, 20) == 0
    before = {f: (out / f).read_bytes() for f in os.listdir(out)}
    assert _run(out, 10, "--seed", "2") == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and "train-000000.tar" in err
    assert {f: (out / f).read_bytes() for f in os.listdir(out)} == before  # untouched
    with pytest.raises(FileExistsError):
        ms.write_shards(ms.synthetic_samples(3, size=16), str(out), prefix="train", progress=False)
    # another prefix in the same folder is another data set: allowed
    assert _run(out, 5, "--prefix", "val") == 0


def test_overwrite_replaces_shards_and_removes_stale_ones(tmp_path):
    out = tmp_path / "out"
    assert _run(out, 20) == 0  # 4 shards + 4 sidecars
    assert _run(out, 10, "--seed", "2", "--overwrite") == 0
    assert sorted(os.listdir(out)) == ["train-000000.tar", "train-000000.tar.idx.json",
                                       "train-000001.tar", "train-000001.tar.idx.json"]
    assert sum(ShardIndex.from_json((out / f).read_text()).sample_count
               for f in os.listdir(out) if f.endswith(".idx.json")) == 10
    # an index-less overwrite leaves no sidecar describing an earlier shard
    assert _run(out, 5, "--seed", "3", "--overwrite", "--no-index") == 0
    assert sorted(os.listdir(out)) == ["train-000000.tar"]


class _FailingShardPut(Storage):
    def put(self, location, data):
        if location.endswith(".tar"):
            raise OSError(f"upload of {location} failed")
        super().put(location, data)


def test_failed_shard_upload_leaves_no_sidecar_of_the_old_shard(tmp_path):
    out = str(tmp_path / "out")
    ms.write_shards(ms.synthetic_samples(3, size=16), out, prefix="t", progress=False)
    assert os.path.exists(os.path.join(out, "t-000000.tar.idx.json"))
    with pytest.raises(OSError, match="failed"):
        with ms.ShardWriter(out, prefix="t", storage=_FailingShardPut(), overwrite=True) as w:
            for s in ms.synthetic_samples(2, size=16, seed=9):
                w.write(s)
    assert not os.path.exists(os.path.join(out, "t-000000.tar.idx.json"))


def test_overwrite_is_in_the_cli_help():
    assert "--overwrite" in ms.build_parser().format_help()


# -- 5. S3Client.put with a stream that returns short reads ------------------------------------------------
class _ShortReads(io.RawIOBase):
    """A raw stream (a pipe, a socket) whose reads return at most 64 KiB."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        n = min(len(b), 64 << 10, len(self.data) - self.pos)
        b[:n] = self.data[self.pos:self.pos + n]
        self.pos += n
        return n


@pytest.mark.parametrize("size", [3 << 20, (11 << 20) + 7])
def test_put_reads_whole_parts_from_short_read_streams(moto_config, moto_bucket, size):
    from awsio.s3.client import S3Client

    payload = os.urandom(size)
    client = S3Client(moto_config)
    try:
        url = f"s3://{moto_bucket}/raw/{size}"
        client.put(url, _ShortReads(payload), part_size=5 << 20)
        assert bytes(client.get(url)) == payload
    finally:
        client.close()


class _NotReady(io.RawIOBase):
    def readable(self) -> bool:
        return True

    def readinto(self, b):  # type: ignore[override]
        return None  # a non-blocking stream with no data yet: not the end of it


def test_put_refuses_a_non_blocking_stream_instead_of_storing_it_empty(moto_config, moto_bucket):
    from awsio.s3.client import S3Client

    client = S3Client(moto_config)
    try:
        with pytest.raises(ValueError, match="non-blocking"):
            client.put(f"s3://{moto_bucket}/raw/none", _NotReady())
        assert not client.exists(f"s3://{moto_bucket}/raw/none")
    finally:
        client.close()


# -- 6. compat zipdata: the same entry name twice ---------------------------------------------------------
def test_zipdata_yields_each_entry_with_its_own_bytes():
    from awsio.python.lib.io.s3 import s3dataset as old

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name"
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("a.txt", b"first version")
            z.writestr("a.txt", b"second version")
            z.writestr("b.txt", b"b")
    assert list(old.zipdata(buf.getvalue())) == [("a.txt", b"first version"), ("a.txt", b"second version"),
                                                  ("b.txt", b"b")]


def test_a_local_write_that_fails_leaves_nothing_behind(tmp_path):
    """Storage.put to a local path writes a temporary file and renames it: a write that fails
    part-way removes it, so no partial shard (which a later listing would read) is left."""
    import io

    from awsio.tools.storage import Storage

    class Failing(io.RawIOBase):
        calls = 0

        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:
            self.calls += 1
            if self.calls > 2:
                raise OSError("input error")
            return b"x" * 1024

    with pytest.raises(OSError, match="input error"):
        Storage().put(str(tmp_path / "train-000001.tar"), Failing())
    assert list(tmp_path.iterdir()) == []
