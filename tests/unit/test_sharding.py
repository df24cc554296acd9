"""Property tests of splitting and shuffling: exactly once across ranks x workers, deterministic."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from awsio.grouping import group_keys, is_metadata, sample_key
from awsio.sharding import Piece, plan_counted, plan_uncounted, split_round_robin
from awsio.shuffle import buffer_shuffle, make_rng, shuffled
from awsio.world import World, current_world

counts_st = st.lists(st.integers(min_value=0, max_value=40), min_size=0, max_size=12)


def expand(piece: Piece, n: int) -> list[tuple[str, int]]:
    stop = n if piece.stop is None else piece.stop
    return [(piece.url, i) for i in range(piece.start, stop) if i % piece.parts == piece.part]


@settings(max_examples=200, deadline=None)
@given(counts=counts_st, ranks=st.integers(1, 5), workers=st.integers(1, 6))
def test_counted_plan_is_disjoint_and_complete(counts: list[int], ranks: int, workers: int) -> None:
    items = [(f"s3://b/{i:03d}.tar", n) for i, n in enumerate(counts)]
    sizes = dict(items)
    slots = ranks * workers
    plan = plan_counted(items, slots)
    got = [s for pieces in plan.slots for p in pieces for s in expand(p, sizes[p.url])]
    assert Counter(got) == Counter((u, i) for u, n in items for i in range(n))
    assert max(plan.counts) - min(plan.counts) <= 1 if items and slots else True
    for i, pieces in enumerate(plan.slots):
        assert sum(len(expand(p, sizes[p.url])) for p in pieces) == plan.counts[i]
    # few shards: no worker idles while there are at least as many samples as slots
    if sum(counts) >= slots:
        assert all(c >= 1 for c in plan.counts)


@settings(max_examples=200, deadline=None)
@given(counts=counts_st, ranks=st.integers(1, 5), workers=st.integers(1, 4),
       mode=st.sampled_from(["drop", "repeat"]))
def test_equal_work_gives_equal_counts_with_minimal_change(counts: list[int], ranks: int, workers: int,
                                                           mode: str) -> None:
    items = [(f"u{i}", n) for i, n in enumerate(counts)]
    sizes = dict(items)
    slots = ranks * workers
    total = sum(counts)
    plan = plan_counted(items, slots, mode)
    per_slot = [sum(len(expand(p, sizes[p.url])) for p in pieces) for pieces in plan.slots]
    assert len(set(per_slot)) <= 1 and per_slot == list(plan.counts)
    per_rank = {plan.rank_count(r, workers) for r in range(ranks)}
    assert len(per_rank) == 1
    seen = Counter(s for pieces in plan.slots for p in pieces for s in expand(p, sizes[p.url]))
    if mode == "drop":
        assert plan.dropped == total % slots and sum(seen.values()) == total - plan.dropped
        assert max(seen.values(), default=1) == 1
    else:
        extra = (slots - total % slots) % slots if total else 0
        assert plan.repeated == extra and sum(seen.values()) == total + extra
        assert set(seen) == {(u, i) for u, n in items for i in range(n)}


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 30), ranks=st.integers(1, 4), workers=st.integers(1, 6))
def test_uncounted_plan_is_disjoint_and_complete(n: int, ranks: int, workers: int) -> None:
    urls = [f"s{i}" for i in range(n)]
    slots = ranks * workers
    plan = plan_uncounted(urls, slots)
    samples_per_shard = 13
    got = Counter(s for pieces in plan.slots for p in pieces for s in expand(p, samples_per_shard))
    assert got == Counter((u, i) for u in urls for i in range(samples_per_shard))
    if 0 < n < slots:
        assert all(plan.slots)  # fewer shards than slots: every slot still has work


@given(items=st.lists(st.integers(), max_size=50), slots=st.integers(1, 9))
def test_round_robin(items: list[int], slots: int) -> None:
    parts = [split_round_robin(items, i, slots) for i in range(slots)]
    assert sorted(x for p in parts for x in p) == sorted(items)
    with pytest.raises(ValueError):
        split_round_robin(items, slots, slots)


@given(items=st.lists(st.text(max_size=5), max_size=40), seed=st.integers(0, 2**32), epoch=st.integers(0, 100))
def test_shuffle_is_a_deterministic_permutation(items: list[str], seed: int, epoch: int) -> None:
    a = shuffled(items, seed, epoch)
    random.seed(12345)  # the global state must not matter
    b = shuffled(items, seed, epoch)
    assert a == b and sorted(a) == sorted(items)


def test_shuffle_changes_with_epoch_and_seed() -> None:
    items = list(range(100))
    assert shuffled(items, 0, 0) != shuffled(items, 0, 1) != shuffled(items, 1, 1)


@given(items=st.lists(st.integers(), max_size=200), size=st.integers(0, 50), seed=st.integers(0, 1000))
def test_buffer_shuffle_keeps_every_item(items: list[int], size: int, seed: int) -> None:
    out = list(buffer_shuffle(iter(items), size, make_rng(seed, 0, 0, 0)))
    assert sorted(out) == sorted(items)
    assert out == list(buffer_shuffle(iter(items), size, make_rng(seed, 0, 0, 0)))


def test_buffer_shuffle_is_bounded_and_shuffles() -> None:
    pulled = 0

    def source():  # type: ignore[no-untyped-def]
        nonlocal pulled
        for i in range(1000):
            pulled += 1
            yield i

    it = buffer_shuffle(source(), 10, make_rng(1, 2, 3, 4))
    first = next(it)
    assert pulled == 11 and first < 11
    rest = [first, *it]
    assert rest != sorted(rest)


def test_sample_key_and_grouping() -> None:
    assert sample_key("dir/n0144_10026.seg.png") == ("dir/n0144_10026", "seg.png")
    assert sample_key("a.b/c") == ("a.b/c", "")
    assert sample_key("x.cls") == ("x", "cls")
    assert is_metadata("__index__") and is_metadata("d/__meta__.json") and not is_metadata("__x.jpg")
    assert list(group_keys(["a.x", "a.y", "b.x", "a.z"])) == [("a", 2), ("b", 1), ("a", 1)]


def test_world_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "4")
    w = current_world()
    assert (w.rank, w.world_size, w.worker, w.num_workers) == (2, 4, 0, 1)
    assert World(1, 2, 1, 3).slot == 4 and World(1, 2, 1, 3).slots == 6
    with pytest.raises(ValueError):
        World(2, 2)
