"""awsio.pipeline on in-memory records: grouping, every stage, batching rules, handlers, pickling,
DataLoader behaviour, and equivalence with webdataset. No server needed."""

from __future__ import annotations

import io
import logging
import pickle
import sys
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from awsio.archives.tar import iter_tar
from awsio.grouping import Record
from awsio.batching import Batch, BatchDict
from awsio.pipeline import MemorySource, Pipeline

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tv_compat import import_torchvision  # noqa: E402

COLOURS = [(220, 30, 30), (30, 200, 40), (40, 40, 210)]


def jpeg(label: int, i: int, size: int = 24) -> bytes:
    rng = np.random.default_rng(i)
    arr = np.clip(np.array(COLOURS[label])[None, None] + rng.normal(0, 20, (size, size, 3)), 0, 255)
    buf = io.BytesIO()
    Image.fromarray(arr.astype(np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def shard_records(shards: int = 3, per_shard: int = 8, prefix: str = "s3://b/train") -> list[Record]:
    out = []
    for s in range(shards):
        url = f"{prefix}-{s:06d}.tar"
        for i in range(per_shard):
            n = s * per_shard + i
            key = f"d/sample{n:05d}"
            out.append(Record(url, f"{key}.cls", str(n % 3).encode()))
            out.append(Record(url, f"{key}.jpg", jpeg(n % 3, n)))
    return out


def pipeline(records: list[Record]) -> Pipeline:
    return Pipeline(MemorySource(records))


# -- module-level callables: stages must pickle for spawned workers --------------------------
def to_tensor(img: Image.Image, size: int = 8) -> torch.Tensor:
    arr = np.asarray(img.resize((size, size)), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def even_key(sample: dict[str, Any]) -> bool:
    return int(sample["__key__"][-5:]) % 2 == 0


def drop_first(t: tuple[Any, ...]) -> tuple[Any, ...]:
    return t[1:]


def plus_one(t: int) -> int:
    return t + 1


# -- grouping --------------------------------------------------------------------------------
def test_grouping_by_key_with_dirs_and_url() -> None:
    samples = list(pipeline(shard_records(2, 3)))
    assert [s["__key__"] for s in samples] == [f"d/sample{n:05d}" for n in range(6)]
    assert samples[0]["__url__"] == "s3://b/train-000000.tar"
    assert samples[5]["__url__"] == "s3://b/train-000001.tar"
    assert set(samples[0]) == {"__key__", "__url__", "cls", "jpg"}


def test_a_key_split_across_two_shards_never_merges() -> None:
    records = [Record("s3://b/a.tar", "x/k1.cls", b"1"), Record("s3://b/a.tar", "x/k1.jpg", b"J"),
               Record("s3://b/b.tar", "x/k1.seg.png", b"P"), Record("s3://b/b.tar", "x/k2.cls", b"2")]
    samples = list(pipeline(records))
    assert [(s["__url__"], s["__key__"], sorted(k for k in s if not k.startswith("__")))
            for s in samples] == [("s3://b/a.tar", "x/k1", ["cls", "jpg"]),
                                  ("s3://b/b.tar", "x/k1", ["seg.png"]),
                                  ("s3://b/b.tar", "x/k2", ["cls"])]


def test_plain_objects_are_one_field_samples_and_metadata_is_dropped() -> None:
    records = [Record("s3://b/f/a.jpg", "s3://b/f/a.jpg", b"A"),
               Record("s3://b/f/a.cls", "s3://b/f/a.cls", b"1"),
               Record("s3://b/f/README", "s3://b/f/README", b"R"),
               Record("s3://b/s.tar", "__index__.json", b"{}")]
    samples = list(pipeline(records))
    assert [(s["__key__"], {k: v for k, v in s.items() if not k.startswith("__")}) for s in samples] == [
        ("s3://b/f/a", {"jpg": b"A"}), ("s3://b/f/a", {"cls": b"1"}), ("s3://b/f/README", {"data": b"R"})]


def test_duplicate_field_follows_the_handler() -> None:
    records = [Record("u", "k.cls", b"1"), Record("u", "k.cls", b"2"), Record("u", "j.cls", b"3")]
    with pytest.raises(ValueError, match="duplicate"):
        list(pipeline(records))
    p = Pipeline(MemorySource(records), handler="skip")
    assert [s["cls"] for s in p] == [b"1", b"3"]
    assert p.stats.counts == {("group", "ArchiveError"): 1}


# -- stages ----------------------------------------------------------------------------------
def test_decode_to_tuple_map_select_rename() -> None:
    p = pipeline(shard_records(1, 6)).decode("rgb8").select(even_key).rename(image="jpg;png", label="cls")
    samples = list(p)
    assert [s["label"] for s in samples] == [0, 2, 1]
    assert samples[0]["image"].shape == (24, 24, 3) and "jpg" not in samples[0]
    tuples = list(p.to_tuple("image", "label").map(drop_first))
    assert tuples == [(0,), (2,), (1,)]


def test_transform_fn_roles_give_input_target_tuples() -> None:
    out = list(pipeline(shard_records(1, 4)).decode().transform_fn(image=to_tensor))
    assert [t for _, t in out] == [0, 1, 2, 0]
    assert all(x.shape == (3, 8, 8) for x, _ in out)
    out = list(pipeline(shard_records(1, 4)).decode().transform_fn(image=to_tensor, target=plus_one))
    assert [t for _, t in out] == [1, 2, 3, 1]
    only_target = list(pipeline(shard_records(1, 2)).decode().transform_fn(target=plus_one))
    assert isinstance(only_target[0][0], Image.Image) and only_target[0][1] == 1


def test_transform_fn_missing_role_is_a_handled_error() -> None:
    records = shard_records(1, 3)
    del records[2]  # sample 1 loses its .cls
    with pytest.raises(KeyError, match="target"):
        list(pipeline(records).decode().transform_fn(image=to_tensor))
    p = pipeline(records).decode().transform_fn(image=to_tensor, handler="skip")
    assert [t for _, t in p] == [0, 2]
    assert p.stats.counts == {("transform_fn", "KeyError"): 1}


def test_dict_stages_after_tuples_are_refused_when_building() -> None:
    p = pipeline(shard_records(1, 1)).to_tuple("jpg", "cls")
    for build in (lambda: p.decode(), lambda: p.rename(a="jpg"), lambda: p.transform_fn(image=to_tensor)):
        with pytest.raises(TypeError, match="sample dicts"):
            build()


def test_decode_errors_raise_warn_or_skip_with_counts() -> None:
    records = shard_records(1, 5)
    records[3] = Record(records[3].source, records[3].name, b"not a jpeg")
    with pytest.raises(ValueError, match="d/sample00001"):
        list(pipeline(records).decode())
    for policy in ("warn", "skip"):
        p = pipeline(records).decode(handler=policy)
        assert [s["__key__"][-1] for s in p] == ["0", "2", "3", "4"]
        assert p.stats.counts == {("decode", "DecodeError"): 1}
    # the source's handler is the default policy of every stage
    src = MemorySource(records)
    src.handler = "skip"  # type: ignore[attr-defined]
    assert len(list(Pipeline(src).decode())) == 4


def test_pipelines_are_immutable_and_reusable() -> None:
    base = pipeline(shard_records(1, 4))
    decoded = base.decode()
    assert base.stages == () and len(decoded.stages) == 1
    assert [s["__key__"] for s in decoded] == [s["__key__"] for s in decoded]


def test_shuffle_is_seeded_by_seed_and_epoch_and_loses_nothing() -> None:
    p = pipeline(shard_records(2, 10)).shuffle(8, seed=5).map(_key)
    first, second = list(p), list(p)  # epochs 0 and 1
    assert sorted(first) == sorted(second) == [f"d/sample{n:05d}" for n in range(20)]
    assert first != second
    p.set_epoch(0)
    assert list(p) == first
    other = pipeline(shard_records(2, 10)).shuffle(8, seed=6).map(_key)
    assert list(other) != first


def _key(sample: dict[str, Any]) -> str:
    return sample["__key__"]


def test_batched_collates_and_partial() -> None:
    p = pipeline(shard_records(1, 5)).decode("torchrgb8").to_tuple("jpg", "cls")
    batches = list(p.batched(2))
    assert [b[1].tolist() for b in batches] == [[0, 1], [2, 0], [1]]
    assert isinstance(batches[0], Batch) and batches[0][0].shape == (2, 3, 24, 24)
    assert len(list(p.batched(2, partial=False))) == 2
    dicts = list(pipeline(shard_records(1, 2)).decode().batched(2, collate=_as_dict_of_lists))
    assert isinstance(dicts[0], BatchDict) and dicts[0]["cls"] == [0, 1]


def _as_dict_of_lists(samples: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {k: [s[k] for s in samples] for k in samples[0]}


def test_every_stage_and_pipeline_pickle() -> None:
    p = (pipeline(shard_records(1, 6))
         .dataproc(batch_size=2, shuffle_buffer=4, seed=3)
         .decode("pil", {"cls": int})
         .select(even_key)
         .rename(image="jpg")
         .shuffle(3)
         .transform_fn(image=to_tensor, target=plus_one)
         .map(tuple)
         .batched(1))
    for stage in p.stages:
        back = pickle.loads(pickle.dumps(stage))
        assert type(back) is type(stage)
    back = pickle.loads(pickle.dumps(p))
    a, b = list(p), list(back)
    assert len(a) == len(b) == 2
    for x, y in zip(a, b):
        assert torch.equal(x[0], y[0]) and torch.equal(x[1], y[1])


# -- the snippet and DataLoader batching -------------------------------------------
def make_preproc() -> Any:
    tv = import_torchvision()
    if tv is None:
        return to_tensor
    from torchvision import transforms as T

    return T.Compose([T.Resize(10), T.CenterCrop(8), T.ToTensor()])


@pytest.mark.parametrize("loader_kwargs", [{}, {"batch_size": None}, {"batch_size": 2}],
                         ids=["default-batch-size-1", "batch-size-None", "batch-size-2"])
def test_dataproc_batches_are_not_stacked_again_by_the_dataloader(loader_kwargs: dict[str, Any]) -> None:
    records = shard_records(3, 8)
    dataset = pipeline(records).dataproc(batch_size=5, seed=1).decode("pil").transform_fn(image=make_preproc())
    loader = DataLoader(dataset, **loader_kwargs)
    k = loader_kwargs.get("batch_size", 1) or 1
    sizes, targets = [], []
    for inputs, tgt in loader:
        assert inputs.dim() == 4 and inputs.shape[1:] == (3, 8, 8) and inputs.dtype == torch.float32
        assert tgt.dtype == torch.int64 and tgt.shape == (inputs.shape[0],)
        sizes.append(len(tgt))
        targets += tgt.tolist()
    assert sum(sizes) == 24 and max(sizes) == 5 * k
    assert sorted(targets) == sorted(n % 3 for n in range(24))


def test_snippet_trains_with_workers() -> None:
    """The issue's snippet on in-memory shards: DataLoader default batch_size=1, 2 workers."""
    torch.manual_seed(0)
    dataset = pipeline(shard_records(4, 12)).dataproc(batch_size=8).decode("pil").transform_fn(
        image=make_preproc())
    loader = DataLoader(dataset, num_workers=2)
    model = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 3))
    opt = torch.optim.SGD(model.parameters(), lr=2.0)
    for epoch in range(6):
        dataset.set_epoch(epoch)
        seen = 0
        for inputs, targets in loader:
            loss = torch.nn.functional.cross_entropy(model(inputs), targets)
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(targets)
        assert seen == 48
    correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in loader)
    assert correct / 48 > 0.9


def test_stats_count_in_process_and_workers_log(caplog: pytest.LogCaptureFixture) -> None:
    records = shard_records(2, 4)
    records[1] = Record(records[1].source, records[1].name, b"broken")
    p = pipeline(records).decode(handler="skip").to_tuple("jpg", "cls")
    with caplog.at_level(logging.WARNING, logger="awsio.pipeline"):
        assert len(list(DataLoader(p, batch_size=None))) == 7
    assert p.stats.total == 1 and "decode/DecodeError=1" in p.stats.summary()
    assert "7 items, skipped 1 (decode/DecodeError=1)" in caplog.text


# -- equivalence with webdataset ---------------------------------------------------------------
def write_tars(tmp_path: Path, records: list[Record]) -> list[Path]:
    paths: dict[str, tarfile.TarFile] = {}
    for r in records:
        if r.source not in paths:
            paths[r.source] = tarfile.open(tmp_path / Path(r.source).name, "w")
        info = tarfile.TarInfo(r.name)
        info.size = len(r.data)
        paths[r.source].addfile(info, io.BytesIO(r.data))
    for tf in paths.values():
        tf.close()
    return [Path(tf.name) for tf in paths.values()]  # type: ignore[arg-type]


def _fields(sample: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in sample.items() if not k.startswith("__") or k == "__key__"}


@pytest.mark.parametrize("spec", ["pil", "rgb8", "torchrgb", "l"])
def test_same_samples_as_webdataset(tmp_path: Path, spec: str) -> None:
    import webdataset as wds

    records = shard_records(2, 5)
    records.insert(3, Record(records[0].source, "d/sample00001.json", b'{"a": 1}'))
    paths = write_tars(tmp_path, records)
    theirs = list(wds.WebDataset([str(p) for p in paths], shardshuffle=False, empty_check=False).decode(spec))
    ours_records = []
    for path in paths:
        with open(path, "rb") as fh:
            ours_records += [Record(str(path), m.name, m.data) for m in iter_tar(fh, url=str(path))]
    ours = list(Pipeline(MemorySource(ours_records)).decode(spec))
    assert len(ours) == len(theirs) == 10
    for a, b in zip(ours, theirs):
        a, b = _fields(a), _fields(b)
        assert a.keys() == b.keys() and a["__key__"] == b["__key__"]
        for k in a:
            x, y = a[k], b[k]
            if isinstance(x, Image.Image):
                assert x.mode == y.mode and x.tobytes() == y.tobytes()
            elif isinstance(x, (np.ndarray, torch.Tensor)):
                assert type(x) is type(y) and x.dtype == y.dtype
                np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
            else:
                assert x == y


def test_snippet_pipeline_runs_in_spawned_workers() -> None:
    """Every stage pickles and the batch marker is registered in a fresh interpreter too."""
    dataset = pipeline(shard_records(2, 6)).dataproc(batch_size=4, seed=2).decode("pil").transform_fn(
        image=to_tensor)
    loader = DataLoader(dataset, num_workers=2, multiprocessing_context="spawn")
    shapes, targets = [], []
    for inputs, tgt in loader:
        shapes.append(tuple(inputs.shape))
        targets += tgt.tolist()
    assert sorted(targets) == sorted(n % 3 for n in range(12))
    assert all(len(s) == 4 and s[1:] == (3, 8, 8) for s in shapes)


@pytest.mark.parametrize("seed", range(4))
def test_two_samples_with_one_key_stay_two_samples(seed: int) -> None:
    """Two samples of a shard that share a key (not next to each other in the shard) may land
    side by side after the shuffle: they are still two samples, never one dict of both."""
    from awsio.pipeline import MemorySource, Pipeline

    recs = [("s0", "a.jpg", b"A1"), ("s0", "a.cls", b"1"), ("s0", "b.jpg", b"B"), ("s0", "b.cls", b"2"),
            ("s0", "a.json", b"third"), ("s0", "c.jpg", b"C"), ("s0", "a.jpg", b"A2"), ("s0", "a.cls", b"3")]
    p = Pipeline(MemorySource(recs)).dataproc(shuffle=True, seed=seed, handler="skip").batched(5, collate=list)
    got = sorted(sorted((k, v) for k, v in s.items() if not k.startswith("__")) for b in p for s in b)
    assert got == sorted([[("cls", b"1"), ("jpg", b"A1")], [("cls", b"2"), ("jpg", b"B")], [("json", b"third")],
                          [("jpg", b"C")], [("cls", b"3"), ("jpg", b"A2")]])
    assert p.stats.total == 0
