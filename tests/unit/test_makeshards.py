"""Shard maker: synthetic and folder inputs -> tar shards (+ index), limits, determinism, CLI."""

from __future__ import annotations

import io
import json
import os
import tarfile

import numpy as np
import pytest
from PIL import Image

from awsio.tools import makeshards as ms
from awsio.tools import synthetic


def _members(path: str) -> list[tuple[str, bytes]]:
    with tarfile.open(path) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar if m.isfile()]  # type: ignore[union-attr]


def _shards(folder: str, prefix: str = "train") -> list[str]:
    return sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.startswith(prefix) and f.endswith(".tar"))


def test_synthetic_round_trip_counts_limits_and_index(tmp_path):
    out = str(tmp_path / "out")
    summary = ms.write_shards(ms.synthetic_samples(53, classes=4, size=16, seed=3), out, prefix="train",
                              maxcount=10, progress=False)
    shards = _shards(out)
    assert summary["shards"] == len(shards) == 6 and summary["samples"] == 53
    assert [os.path.basename(s) for s in shards][:2] == ["train-000000.tar", "train-000001.tar"]
    assert summary["bytes"] == sum(os.path.getsize(s) for s in shards)
    seen = []
    for shard in shards:
        members = _members(shard)
        assert len(members) <= 20
        names = [n for n, _ in members]
        # .cls then .jpg of the same key, consecutive
        for cls, jpg in zip(names[::2], names[1::2]):
            assert cls.endswith(".cls") and jpg == cls[:-4] + ".jpg"
        seen += [int(d) for n, d in members if n.endswith(".cls")]
        from awsio.archives.index import ShardIndex, build_index

        index = ShardIndex.from_json(open(shard + ".idx.json").read())
        with open(shard, "rb") as f:
            assert index == build_index(f, size=os.path.getsize(shard))  # same as a scan of the tar
        assert index.sample_count == len(members) // 2
        raw = open(shard, "rb").read()
        for (name, offset, size), (mname, data) in zip(index.members, members):
            assert name == mname and raw[offset + 512:offset + 512 + size] == data
    assert sorted(seen) == sorted(i % 4 for i in range(53))  # balanced labels, each sample once


def test_synthetic_is_deterministic_and_class_is_visible(tmp_path):
    a = list(ms.synthetic_samples(40, classes=10, size=32, seed=7))
    b = list(ms.synthetic_samples(40, classes=10, size=32, seed=7))
    c = list(ms.synthetic_samples(40, classes=10, size=32, seed=8))
    assert a == b and a != c
    # The class shows in the pixels: the mean colour's nearest palette entry is the label's colour
    # for most images (noise and the occluding square make it imperfect, on purpose).
    palette = np.array(synthetic._PALETTE[:synthetic._COLOURS], dtype=np.float64)
    hits = 0
    for s in a:
        fields = dict(s.fields)
        img = np.asarray(Image.open(io.BytesIO(fields["jpg"])).convert("RGB"), dtype=np.float64)
        assert img.shape == (32, 32, 3)
        mean = img.reshape(-1, 3).mean(0)
        # compare chromaticity (brightness varies per image)
        norm = lambda v: v / (np.linalg.norm(v, axis=-1, keepdims=True) + 1e-9)  # noqa: E731
        guess = int(np.argmax(norm(palette) @ norm(mean)))
        hits += guess == int(fields["cls"]) % synthetic._COLOURS
    assert hits >= 0.6 * len(a)


def test_maxsize_limits_shard_bytes(tmp_path):
    out = str(tmp_path)
    ms.write_shards(ms.synthetic_samples(30, size=32, seed=0), out, prefix="train", maxcount=1000, maxsize=20_000,
                    progress=False, index=False)
    shards = _shards(out)
    assert len(shards) > 1
    assert all(os.path.getsize(s) <= 20_000 for s in shards)
    assert sum(len(_members(s)) for s in shards) == 60
    assert not any(f.endswith(".idx.json") for f in os.listdir(out))


def _image(path, colour):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), colour).save(path)


def test_imagefolder_tree_gets_class_indexes(tmp_path):
    root = tmp_path / "tree"
    _image(root / "cat" / "a.jpg", (255, 0, 0))
    _image(root / "cat" / "b.v2.jpg", (250, 0, 0))
    _image(root / "dog" / "c.png", (0, 0, 255))
    loaders, info = ms.folder_samples(str(root), shuffle=False)
    assert info == {"mode": "imagefolder", "classes": ["cat", "dog"]}
    out = str(tmp_path / "out")
    ms.write_shards(loaders, out, prefix="in", maxcount=2, progress=False)
    members = _members(os.path.join(out, "in-000000.tar")) + _members(os.path.join(out, "in-000001.tar"))
    names = [n for n, _ in members]
    assert names == ["cat/a.cls", "cat/a.jpg", "cat/b_v2.cls", "cat/b_v2.jpg", "dog/c.cls", "dog/c.jpg"]
    assert dict(members)["dog/c.cls"] == b"1"
    assert dict(members)["dog/c.jpg"] == (root / "dog" / "c.png").read_bytes()


def test_files_mode_groups_by_key(tmp_path):
    root = tmp_path / "files"
    (root / "d").mkdir(parents=True)
    (root / "d" / "x.json").write_text("{}")
    (root / "d" / "x.seg.png").write_bytes(b"png")
    (root / "y.txt").write_text("hello")
    loaders, info = ms.folder_samples(str(root), shuffle=False)
    assert info["mode"] == "files"
    samples = [f() for f in loaders]
    assert [(s.key, [f for f, _ in s.fields]) for s in samples] == [("d/x", ["json", "seg.png"]), ("y", ["txt"])]


def test_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        ms.folder_samples(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError):
        ms.folder_samples(str(tmp_path / "empty"))
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.txt").write_text("x")
    with pytest.raises(ValueError):
        ms.folder_samples(str(tmp_path / "flat"), mode="imagefolder")
    with pytest.raises(ValueError):
        ms.ShardWriter(str(tmp_path), maxcount=0)


def test_cli_synthetic_summary_and_errors(tmp_path, capsys):
    out = tmp_path / "cli"
    assert ms.main(["--synthetic", "25", "--output", str(out), "--maxcount", "10", "--quiet", "--seed", "1"]) == 0
    text = capsys.readouterr().out
    assert "3 shards, 25 samples" in text and "train-{000000..000002}.tar" in text
    assert ms.main(["--input", str(tmp_path / "nope"), "--output", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ms.main(["--synthetic", "5", "--output", str(out), "--maxsize", "lots"])
