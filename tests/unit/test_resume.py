"""Resume: the one conformance test every source passes, the elastic matrix, and the ecosystem.

A rank's DataLoader hands batches to the training loop round-robin over its workers; with
awsio's unit split that is the rank's units in order. ``deliver`` plays that in-process (each
worker is a copy of the pipeline iterating under its own (rank, worker)), so the tests can stop
after any number of batches, save, and resume under another world size and worker count.
"""

from __future__ import annotations

import copy
import gzip
import json
import pickle
from collections import Counter
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_archives import MemoryClient, make_tar, make_zip, samples

import awsio.source as srcmod
from awsio.dataset import S3IterableDataset
from awsio.epoch import advance, global_order, split
from awsio.errors import StateError
from awsio.pipeline import MemorySource, Pipeline
from awsio.world import World

B = "s3://bkt/"


def _key(sample: dict[str, Any]) -> str:
    return f"{sample['__url__']}#{sample['__key__']}"


def memory_records(shards: int, per: int) -> list[tuple[str, str, bytes]]:
    return [(f"mem://s{i}", f"k{i}_{j:03d}.{ext}", (str(j % 3) if ext == "cls" else f"{i}/{j}").encode())
            for i in range(shards) for j in range(per + i % 2) for ext in ("cls", "txt")]


def s3_objects(kind: str, n: int = 4) -> dict[str, bytes]:
    out = {}
    for i in range(n):
        members = [(f"sh{i}/{name}", data) for name, data in samples(3 + i, 64)]
        if kind == "tar":
            out[f"{B}d/train-{i:03d}.tar"] = make_tar(members)
        elif kind == "tgz":
            out[f"{B}d/train-{i:03d}.tar.gz"] = gzip.compress(make_tar(members))
        elif kind == "zip":
            out[f"{B}d/train-{i:03d}.zip"] = make_zip(members)
        else:
            for j in range(5 + i):
                out[f"{B}d/o{i}-{j:02d}.bin"] = bytes([i, j]) * 10
    return out


def in_world(monkeypatch: pytest.MonkeyPatch, rank: int, world: int, worker: int = 0, workers: int = 1) -> None:
    monkeypatch.setattr(srcmod, "current_world", lambda: World(rank, world, worker, workers))
    import awsio.pipeline as pmod

    monkeypatch.setattr(pmod, "current_world", lambda: World(rank, world, worker, workers))


def deliver(pipe: Pipeline, rank: int, world: int, workers: int, monkeypatch: pytest.MonkeyPatch,
            limit: int | None = None) -> list[Any]:
    """The batches rank ``rank`` receives, in DataLoader order (``workers=0``: in-process);
    nothing is pulled before the loop asks for it, as with a DataLoader without workers."""
    k = max(1, workers)
    copies = [pickle.loads(pickle.dumps(pipe)) if workers else pipe for _ in range(k)]
    its: list[Any] = [None] * k
    live = [True] * k
    out: list[Any] = []
    i = 0
    while any(live) and (limit is None or len(out) < limit):
        w = i % k
        i += 1
        if not live[w]:
            continue
        if its[w] is None:
            in_world(monkeypatch, rank, world, w, k)  # each worker starts under its own world
            its[w] = iter(copies[w])
        item = next(its[w], None)
        if item is None:
            live[w] = False
            continue
        out.append(item)
    in_world(monkeypatch, rank, world)
    return out


def flat(batches: list[Any]) -> list[str]:
    return [x for b in batches for x in b]


def run_all(make: Callable[[], Pipeline], world: int, workers: int, monkeypatch: pytest.MonkeyPatch,
            state: Any = None, epoch: int = 1) -> list[list[Any]]:
    out = []
    for r in range(world):
        p = make()
        p.set_epoch(epoch)
        if state is not None:
            p.load_state_dict(json.loads(json.dumps(state)))  # only plain JSON crosses
            if p.epoch != epoch:  # the saved epoch was over: the resume starts the next one
                out.append([])
                continue
        out.append(deliver(p, r, world, workers, monkeypatch))
    return out


def stop_and_resume(make: Callable[[], Pipeline], w0: int, k0: int, w1: int, k1: int, steps: int,
                    monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], list[str], list[str]]:
    """Run ``steps`` batches on every rank under (w0, k0), save, resume under (w1, k1).
    Returns (uninterrupted epoch, consumed before the stop, yielded after the resume)."""
    whole = flat([b for rank in run_all(make, w0, k0, monkeypatch) for b in rank])
    before: list[str] = []
    states = []
    for r in range(w0):
        p = make()
        p.set_epoch(1)
        got = deliver(p, r, w0, k0, monkeypatch, limit=steps)
        before += flat(got)
        main = make()  # the main process's object: it never iterated when k0 > 0
        main.set_epoch(1)
        if k0 == 0:
            main = p
        in_world(monkeypatch, r, w0)
        states.append(main.state_dict(delivered=len(got) if k0 else None))
    after = flat([b for rank in run_all(make, w1, k1, monkeypatch, state=states) for b in rank])
    return whole, before, after


def memory_pipeline(shuffle: bool, equal: str | None, unit: int) -> Callable[[], Pipeline]:
    recs = memory_records(5, 4)

    def make() -> Pipeline:
        src = MemorySource(recs, shuffle=shuffle, seed=3, window=2, equal_work=equal)
        return Pipeline(src).map(_key).batched(unit, collate=list)

    return make


def s3_pipeline(kind: str, shuffle: bool, equal: str | None, unit: int, client: MemoryClient) -> Callable[[], Pipeline]:
    def make() -> Pipeline:
        ds = S3IterableDataset(f"{B}d/", client=client, shuffle_urls=shuffle, seed=5, window=2,
                               equal_work=equal)
        return ds.map(_key).batched(unit, collate=list)

    return make


def check_exact(whole: list[str], before: list[str], after: list[str], equal: str | None) -> None:
    total = Counter(before) + Counter(after)
    assert max(total.values()) == 1, "a sample came twice"
    if equal is None:
        assert total == Counter(whole), "lost or extra samples"
    else:  # 'drop' may leave a few samples out, each epoch and at the resume
        assert set(total) <= set(whole) and len(total) >= len(whole) - 6


# -- the pure parts -------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(counts=st.lists(st.integers(0, 9), min_size=1, max_size=6), seed=st.integers(0, 5),
       shuffle=st.booleans(), window=st.integers(1, 3))
def test_global_order_is_a_permutation_and_pure(counts: list[int], seed: int, shuffle: bool, window: int) -> None:
    o = global_order(counts, seed=seed, epoch=2, shuffle=shuffle, window=window)
    pairs = sorted(zip(o.shard.tolist(), o.sample.tolist()))
    assert pairs == [(i, j) for i, n in enumerate(counts) for j in range(n)]
    again = global_order(counts, seed=seed, epoch=2, shuffle=shuffle, window=window)
    assert (o.shard == again.shard).all() and (o.sample == again.sample).all()


@settings(max_examples=80, deadline=None)
@given(total=st.integers(0, 40), world=st.integers(1, 4), world2=st.integers(1, 4),
       consumed=st.lists(st.integers(0, 15), min_size=4, max_size=4),
       equal=st.sampled_from([None, "drop", "repeat"]))
def test_split_and_advance_lose_nothing(total: int, world: int, world2: int, consumed: list[int],
                                        equal: str | None) -> None:
    runs = split([(0, total)], world, equal, total)
    sizes = {r.size for r in runs}
    if equal is not None:
        assert len(sizes) <= 1
    done: list[int] = []
    for run, c in zip(runs, consumed):  # padding ("repeat") repeats positions done elsewhere
        done += run.positions()[:min(c, sum(b - a for a, b in run.core))].tolist()
    left = advance([(0, total)], world, equal, consumed[:world], total)
    rest = [p for a, b in left for p in range(a, b)]
    runs2 = split(left, world2, None, total)
    assert sorted(p for r in runs2 for p in r.positions().tolist()) == rest
    assert not set(done) & set(rest) and len(done) == len(set(done))
    if equal != "drop":
        assert sorted(set(done) | set(rest)) == list(range(total))


# -- the conformance test: every source, save anywhere, resume anywhere ---------------------------
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(w0=st.integers(1, 3), k0=st.integers(0, 2), w1=st.integers(1, 3), k1=st.integers(0, 2),
       steps=st.integers(0, 6), shuffle=st.booleans(), equal=st.sampled_from([None, "drop"]),
       unit=st.sampled_from([1, 3]))
def test_memory_source_resumes_exactly_and_elastically(w0: int, k0: int, w1: int, k1: int, steps: int,
                                                      shuffle: bool, equal: str | None, unit: int,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    make = memory_pipeline(shuffle, equal, unit)
    check_exact(*stop_and_resume(make, w0, k0, w1, k1, steps, monkeypatch), equal)


@pytest.mark.parametrize("kind", ["tar", "zip", "tgz", "plain"])
@pytest.mark.parametrize("w0,k0,w1,k1,steps", [(1, 0, 1, 0, 2), (2, 2, 3, 0, 3), (3, 1, 2, 2, 1),
                                               (1, 2, 2, 1, 5), (2, 0, 1, 2, 2)])
@pytest.mark.parametrize("shuffle,equal", [(False, None), (True, "drop")])
def test_s3_dataset_resumes_exactly_and_elastically(kind: str, w0: int, k0: int, w1: int, k1: int,
                                                    steps: int, shuffle: bool, equal: str | None,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    client = MemoryClient(s3_objects(kind))
    make = s3_pipeline(kind, shuffle, equal, 2, client)
    check_exact(*stop_and_resume(make, w0, k0, w1, k1, steps, monkeypatch), equal)


def test_state_at_epoch_end_moves_to_the_next_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    make = memory_pipeline(True, None, 2)
    p = make()
    p.set_epoch(4)
    in_world(monkeypatch, 0, 1)
    list(p)
    state = p.state_dict()
    q = make()
    q.load_state_dict(state)
    assert q.epoch == 5
    r = make()
    r.set_epoch(5)
    assert list(q) == list(r)


def test_zero_replay_bytes_before_the_first_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a resume reads before its first sample is one read-ahead chunk at most, wherever the
    state was saved: nothing already consumed is read again."""
    objs = s3_objects("tar", 4)
    client = MemoryClient(objs)
    in_world(monkeypatch, 0, 1)
    chunk = 4096

    def make() -> Pipeline:
        return S3IterableDataset(f"{B}d/", client=client, chunk_size=chunk).batched(1, collate=list)

    fetched = {}
    for steps in (1, 8, 15):
        p = make()
        it = iter(p)
        for _ in range(steps):
            next(it)
        state = p.state_dict()
        fresh = make()
        fresh.load_state_dict(state)
        client.calls.clear()
        next(iter(fresh))
        reads = [c for c in client.calls if c[0] == "get_range"]
        fetched[steps] = sum(c[3] - c[2] for c in reads)
        assert len(reads) == 1 and reads[0][2] > 0 if steps > 1 else True
    # one chunk (a sample may run past it; a shard's last range runs to its end: tar padding)
    assert max(fetched.values()) <= chunk + 10240


def test_state_from_another_listing_or_options_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    in_world(monkeypatch, 0, 1)
    state = memory_pipeline(False, None, 2)().state_dict()
    other = Pipeline(MemorySource(memory_records(4, 4))).batched(2, collate=list)
    with pytest.raises(StateError) as err:
        other.load_state_dict(state)
    assert err.value.field.startswith("identity.")
    seeded = Pipeline(MemorySource(memory_records(5, 4), seed=9, window=2)).batched(2, collate=list)
    with pytest.raises(StateError, match="option") as err:
        seeded.load_state_dict(state)
    assert err.value.field == "options.seed"
    with pytest.raises(StateError):
        seeded.load_state_dict({"kind": "something else"})


def test_shuffle_buffer_pipeline_refuses_to_save() -> None:
    p = Pipeline(MemorySource(memory_records(2, 3))).shuffle(4)
    with pytest.raises(StateError, match="shuffle"):
        p.state_dict()


# -- the ecosystem: real DataLoaders -------------------------------------------------------------
@pytest.mark.parametrize("k0,k1", [(2, 0), (0, 2), (2, 3)])
def test_dataloader_resume_with_other_worker_count(k0: int, k1: int) -> None:
    import torch

    recs = memory_records(5, 6)

    def make() -> Pipeline:
        return Pipeline(MemorySource(recs, shuffle=True, seed=1)).map(_key).batched(4, collate=list)

    def loader(p: Pipeline, k: int) -> Any:
        return torch.utils.data.DataLoader(p, batch_size=None, num_workers=k,
                                           multiprocessing_context="fork" if k else None)

    full = make()
    full.set_epoch(0)
    whole = flat(list(loader(full, k0)))
    first = make()
    first.set_epoch(0)
    got = []
    for batch in loader(first, k0):
        got.append(batch)
        if len(got) == 3:
            break
    state = first.state_dict(delivered=3)
    second = make()
    second.load_state_dict(json.loads(json.dumps(state)))
    rest = flat(list(loader(second, k1)))
    assert Counter(flat(got)) + Counter(rest) == Counter(whole)
    assert flat(got) == whole[:len(flat(got))]  # consumed = delivered, not read ahead


def test_a_shuffled_state_needs_set_epoch_when_workers_iterate() -> None:
    """Without set_epoch, DataLoader workers take each pass's epoch from the loader's base seed,
    which the main process never sees: its state_dict(delivered=n) cannot name the order they
    read, so it refuses (a resume would read another order: samples twice and never)."""
    import torch

    def make() -> Pipeline:
        return Pipeline(MemorySource(memory_records(4, 6), shuffle=True, seed=1)).map(_key).batched(3, collate=list)

    p = make()
    loader = torch.utils.data.DataLoader(p, batch_size=None, num_workers=2, multiprocessing_context="fork")
    got = []
    for batch in loader:
        got.append(batch)
        if len(got) == 3:
            break
    with pytest.raises(StateError, match="set_epoch"):
        p.state_dict(delivered=3)
    p.set_epoch(0)
    assert p.state_dict(delivered=3)["epoch"] == 0
    unshuffled = Pipeline(MemorySource(memory_records(4, 6))).map(_key).batched(3, collate=list)
    assert unshuffled.state_dict(delivered=3)["consumed"] == 9  # the order is the same every epoch


@pytest.mark.parametrize("workers", [0, 2])
def test_stateful_dataloader_saves_and_restores(workers: int) -> None:
    sdl = pytest.importorskip("torchdata.stateful_dataloader")
    recs = memory_records(4, 6)

    def make() -> Pipeline:
        return Pipeline(MemorySource(recs, shuffle=True, seed=2)).map(_key).batched(3, collate=list)

    kw: dict[str, Any] = {"batch_size": None, "num_workers": workers}
    if workers:
        kw["multiprocessing_context"] = "fork"
    whole = flat(list(sdl.StatefulDataLoader(make(), **kw)))
    loader = sdl.StatefulDataLoader(make(), **kw)
    got = []
    for batch in loader:
        got.append(batch)
        if len(got) == 4:
            break
    state = copy.deepcopy(loader.state_dict())
    del loader
    again = sdl.StatefulDataLoader(make(), **kw)
    again.load_state_dict(state)
    rest = flat(list(again))
    assert Counter(flat(got)) + Counter(rest) == Counter(whole)


@pytest.mark.parametrize("unit", [1, 3])
def test_mixed_kinds_in_one_order_keep_every_sample_in_place(unit: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Streamed (tar.gz, zip) and fetched (tar, plain) samples interleaved by the shuffle."""
    objs: dict[str, bytes] = {}
    for kind in ("tar", "tgz", "zip", "plain"):
        objs.update({k.replace("/d/", f"/d/{kind}-"): v for k, v in s3_objects(kind, 2).items()})
    client = MemoryClient(objs)
    in_world(monkeypatch, 0, 1)
    ds = S3IterableDataset(f"{B}d/", client=client, shuffle_urls=True, seed=4, window=4)
    expected = Counter((n, d) for n, d in S3IterableDataset(f"{B}d/", client=client))
    got = Counter((r.name, r.data) for _, recs in ds.iter_units(unit) for r in recs)
    assert got == expected and sum(expected.values()) > 40


def _keep(sample: dict[str, Any]) -> bool:
    return not sample["__key__"].endswith("1")


def _text(item: Any) -> str:
    return repr(item)


STAGES: dict[str, Callable[[Pipeline], Pipeline]] = {
    "decode": lambda p: p.decode().map(_key),
    "select": lambda p: p.select(_keep).map(_key),
    "rename": lambda p: p.rename(text="txt").map(_key),
    "to_tuple": lambda p: p.decode().to_tuple("txt", "cls").map(_text),
    "map": lambda p: p.map(_key),
}


@pytest.mark.parametrize("stage", sorted(STAGES))
@pytest.mark.parametrize("w0,k0,w1,k1,steps", [(2, 2, 1, 0, 3), (1, 0, 3, 2, 2)])
def test_every_stage_resumes_exactly(stage: str, w0: int, k0: int, w1: int, k1: int, steps: int,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The conformance test for each stage: stages keep no state across units, so a pipeline
    with any of them saves and resumes exactly (here under other ranks and workers)."""
    recs = memory_records(5, 4)

    def make() -> Pipeline:
        return STAGES[stage](Pipeline(MemorySource(recs, shuffle=True, seed=8, window=2))).batched(
            3, collate=list)

    check_exact(*stop_and_resume(make, w0, k0, w1, k1, steps, monkeypatch), None)


def test_tar_requests_grow_from_the_first_chunk_to_chunk_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stream starts with a small request (its first sample comes as fast as that brings it),
    then each request is up to twice the last, at most ``chunk_size``: fewer, larger GETs."""
    import awsio.reading as reading

    monkeypatch.setattr(reading, "FIRST_CHUNK", 1024)
    big = {f"{B}d/train-000.tar": make_tar([(f"s{j:03d}.bin", bytes([j]) * 500) for j in range(120)])}
    client = MemoryClient(big)
    in_world(monkeypatch, 0, 1)
    ds = S3IterableDataset(f"{B}d/", client=client, chunk_size=16 * 1024)
    client.calls.clear()
    got = list(ds)
    assert [name for name, _ in got] == [f"s{j:03d}.bin" for j in range(120)]
    sizes = [c[3] - c[2] for c in client.calls if c[0] == "get_range"]
    assert sizes[0] <= 1024 and sizes[1] <= 2048 and sizes[2] <= 4096, sizes
    # it grew to chunk_size (the shard's last range runs to its end: the end-of-archive blocks)
    assert max(sizes[:-1]) == 16 * 1024, sizes


def test_the_first_unit_of_a_stream_is_read_in_small_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests grow only after the stream's first unit: wherever a resume starts (a unit may
    straddle two shards), every request made before its first unit is a small one, so that unit
    comes as fast as small requests bring it."""
    import awsio.reading as reading

    member = 512 + 4096  # header + data
    monkeypatch.setattr(reading, "FIRST_CHUNK", member)
    objs = {f"{B}d/train-{i:03d}.tar": make_tar([(f"s{i}-{j:03d}.bin", bytes([j]) * 4096) for j in range(30)])
            for i in range(3)}
    client = MemoryClient(objs)
    in_world(monkeypatch, 0, 1)

    def make() -> Pipeline:
        return S3IterableDataset(f"{B}d/", client=client, chunk_size=256 * 1024).batched(4, collate=list)

    for steps in range(0, 22, 3):
        p = make()
        it = iter(p)
        for _ in range(steps):
            next(it)
        fresh = make()
        fresh.load_state_dict(p.state_dict())
        client.calls.clear()
        next(iter(fresh))
        sizes = [c[3] - c[2] for c in client.calls if c[0] == "get_range"]
        assert max(sizes) <= member + 10240, (steps, sizes)  # (a shard's last range runs to its end)
