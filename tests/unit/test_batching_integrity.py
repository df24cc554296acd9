"""awsio.batching integrity: every sample a batch stage loses is counted with the right count, dict
samples with differing fields raise a typed error instead of losing a field, and joining pipeline
batches in a DataLoader (batch_size=k) keeps list- and dict-valued fields in default_collate's
structure. No server needed."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import DataLoader

from awsio.batching import Batch, BatchDict, collate_batches
from awsio.errors import DecodeError
from awsio.grouping import Record
from awsio.pipeline import MemorySource, Pipeline


def _records(n: int, **fields: object) -> list[Record]:
    """``n`` samples k00..; each field's value is ``fn(i)`` encoded (bytes kept as they are)."""
    out = []
    for i in range(n):
        for ext, fn in fields.items():
            value = fn(i)  # type: ignore[operator]
            out.append(Record("s0", f"k{i:02d}.{ext}", value if isinstance(value, bytes) else str(value).encode()))
    return out


def _tensor_of_len(s: dict[str, object]) -> tuple[torch.Tensor, object]:
    return torch.zeros(len(s["x"])), s["cls"]  # type: ignore[arg-type]


# -- 1. a batch that fails to collate counts all its samples ---------------------------------
def test_collate_failure_counts_every_sample_of_the_batch() -> None:
    recs = _records(4, x=lambda i: bytes(10 + i), cls=lambda i: i)  # tensors of different lengths
    p = (Pipeline(MemorySource(recs)).decode(handler="skip").map(_tensor_of_len)
         .dataproc(batch_size=4, shuffle=False, handler="skip"))
    assert list(p) == []
    assert p.stats.total == 4
    assert p.stats.by_stage() == {"batched": 4}


# -- 2. partial=False counts the remainder it drops, in every unit ---------------------------
def test_partial_false_counts_the_remainder_of_every_unit() -> None:
    recs = _records(20, cls=lambda i: i)
    p = (Pipeline(MemorySource(recs)).decode().to_tuple("cls", "__key__")
         .batched(4, partial=False).dataproc(batch_size=10, shuffle=False))
    delivered = sum(len(b[0]) for b in p)
    assert delivered == 16
    assert p.stats.counts[("batched", "partial")] == 4  # 2 of every unit of 10
    assert delivered + p.stats.total == 20


def test_partial_false_counts_the_short_last_batch() -> None:
    p = Pipeline(MemorySource(_records(10, cls=lambda i: i))).decode().batched(4, partial=False)
    assert sum(len(b["cls"]) for b in p) == 8
    assert dict(p.stats.counts) == {("batched", "partial"): 2}


def test_partial_true_counts_nothing() -> None:
    p = Pipeline(MemorySource(_records(10, cls=lambda i: i))).decode().batched(4)
    assert sum(len(b["cls"]) for b in p) == 10 and p.stats.total == 0


# -- 3. dict samples with differing fields ----------------------------------------------------
def test_dict_samples_with_an_extra_field_later_raise_a_typed_error() -> None:
    recs = [Record("s0", "k0.bin", b"x"), Record("s0", "k1.bin", b"y"), Record("s0", "k1.txt", b"caption")]
    with pytest.raises(DecodeError) as info:
        list(Pipeline(MemorySource(recs)).dataproc(batch_size=2, shuffle=False))
    assert isinstance(info.value, ValueError)
    assert "txt" in str(info.value) and "k0" in str(info.value) and "k1" in str(info.value)


def test_dict_samples_missing_a_field_later_raise_a_typed_error() -> None:
    recs = [Record("s0", "k0.bin", b"x"), Record("s0", "k0.txt", b"caption"), Record("s0", "k1.bin", b"y")]
    with pytest.raises(DecodeError, match="txt"):
        list(Pipeline(MemorySource(recs)).dataproc(batch_size=2, shuffle=False))


def test_dict_samples_with_differing_fields_are_skipped_and_counted_per_sample() -> None:
    recs = [Record("s0", "k0.bin", b"x"), Record("s0", "k1.bin", b"y"), Record("s0", "k1.txt", b"caption"),
            Record("s0", "k2.bin", b"z")]
    p = Pipeline(MemorySource(recs)).dataproc(batch_size=2, shuffle=False, handler="skip")
    out = list(p)
    assert [b["__key__"] for b in out] == [["k2"]]
    assert dict(p.stats.counts) == {("batched", "DecodeError"): 2}


def test_collate_batches_checks_the_fields_of_dict_batches() -> None:
    a = BatchDict(__key__=["k0"], x=torch.zeros(1))
    b = BatchDict(__key__=["k1"], x=torch.zeros(1), y=torch.ones(1))
    with pytest.raises(DecodeError, match="y"):
        collate_batches([a, b])
    with pytest.raises(DecodeError, match="y"):
        collate_batches([b, a])


# -- 4. joining batches keeps default_collate's structure -------------------------------------
def _json_pipeline(value: object) -> Pipeline:
    recs = _records(4, json=lambda i: json.dumps(value(i)), cls=lambda i: i)  # type: ignore[operator]
    return Pipeline(MemorySource(recs)).dataproc(batch_size=2, shuffle=False).decode().to_tuple("json", "cls")


def test_dataloader_joins_a_list_field_position_by_position() -> None:
    (box, cls), = list(DataLoader(_json_pipeline(lambda i: [i, 100 + i]), batch_size=2))
    assert len(box) == 2
    assert box[0].tolist() == [0, 1, 2, 3] and box[1].tolist() == [100, 101, 102, 103]
    assert cls.tolist() == [0, 1, 2, 3]


def test_dataloader_joins_a_dict_field_per_key() -> None:
    (field, cls), = list(DataLoader(_json_pipeline(lambda i: {"x": i, "name": f"n{i}"}), batch_size=2))
    assert isinstance(field, dict)
    assert field["x"].tolist() == [0, 1, 2, 3] and field["name"] == ["n0", "n1", "n2", "n3"]


def test_collate_batches_matches_default_collate_of_all_samples() -> None:
    from torch.utils.data import default_collate

    samples = [{"__key__": f"k{i}", "t": (f"a{i}", f"b{i}"), "l": [i, 10 * i], "b": bytes([i]),
                "d": {"v": [i], "s": f"s{i}"}} for i in range(4)]
    whole = default_collate(samples)
    joined = collate_batches([BatchDict(default_collate(samples[:2])), BatchDict(default_collate(samples[2:]))])
    assert isinstance(joined, BatchDict) and list(joined) == list(whole)
    assert joined["__key__"] == whole["__key__"] and list(joined["b"]) == list(whole["b"])
    assert [list(x) for x in joined["t"]] == [list(x) for x in whole["t"]]
    assert [x.tolist() for x in joined["l"]] == [x.tolist() for x in whole["l"]]
    assert [x.tolist() for x in joined["d"]["v"]] == [x.tolist() for x in whole["d"]["v"]]
    assert joined["d"]["s"] == whole["d"]["s"]


def test_collate_batches_keeps_tuple_batches_and_flat_fields() -> None:
    a = Batch((torch.tensor([0, 1]), ["k0", "k1"]))
    b = Batch((torch.tensor([2]), ("k2",)))
    joined = collate_batches([a, b])
    assert isinstance(joined, Batch)
    assert joined[0].tolist() == [0, 1, 2] and list(joined[1]) == ["k0", "k1", "k2"]


# -- 5. nested dict fields (a json field, a tuple of dicts) are checked too ------------------
def _json_batch(values: list[object], handler: str = "raise") -> Pipeline:
    recs = [Record("s0", f"k{i}.json", json.dumps(v).encode()) for i, v in enumerate(values)]
    return Pipeline(MemorySource(recs)).decode().map(lambda s: (s["json"], s["__key__"])).dataproc(
        batch_size=len(values), shuffle=False, handler=handler)


def test_a_nested_field_only_later_samples_have_raises_instead_of_vanishing() -> None:
    with pytest.raises(DecodeError) as info:
        list(_json_batch([{"meta": {"a": 1}}, {"meta": {"a": 2, "b": 3}}]))
    assert "b" in str(info.value)


def test_a_nested_field_a_later_sample_lacks_raises_a_typed_error() -> None:
    with pytest.raises(DecodeError, match="b"):
        list(_json_batch([{"meta": {"a": 1, "b": 3}}, {"meta": {"a": 2}}]))


def test_nested_fields_that_differ_are_skipped_and_counted() -> None:
    p = _json_batch([{"meta": {"a": 1}}, {"meta": {"a": 2, "b": 3}}], handler="skip")
    assert list(p) == [] and p.stats.by_stage() == {"batched": 2}


def test_matching_nested_fields_collate_as_default_collate_does() -> None:
    (batch,) = list(_json_batch([{"meta": {"a": 1, "b": [1, 2]}}, {"meta": {"a": 2, "b": [3, 4]}}]))
    assert batch[0]["meta"]["a"].tolist() == [1, 2]
    assert [t.tolist() for t in batch[0]["meta"]["b"]] == [[1, 3], [2, 4]]


def test_collate_batches_checks_nested_fields_of_joined_batches() -> None:
    a = Batch(({"m": {"x": torch.zeros(1)}}, ["k0"]))
    b = Batch(({"m": {"x": torch.zeros(1), "y": torch.ones(1)}}, ["k1"]))
    with pytest.raises(DecodeError, match="y"):
        collate_batches([a, b])
