"""Epochs without ``set_epoch``: every pass over a DataLoader gets a new order (workers or not,
persistent or not), the same ``torch.manual_seed`` gives the same sequence of orders, and an
explicit ``set_epoch`` rules."""

from __future__ import annotations

from typing import Any, Callable

import pytest
import torch
from test_archives import MemoryClient

from awsio.dataset import S3IterableDataset, ShuffleDataset
from awsio.python.lib.io.s3 import s3dataset as old

B = "s3://bkt/s/"
OBJECTS = {f"{B}{i:03d}": bytes([i]) for i in range(40)}
CLIENT = MemoryClient(OBJECTS)

MAKERS: dict[str, Callable[[], Any]] = {
    "shuffle_urls": lambda: S3IterableDataset(B, shuffle_urls=True, client=CLIENT),
    "ShuffleDataset": lambda: ShuffleDataset(S3IterableDataset(B, client=CLIENT), 10),
    "Pipeline.shuffle": lambda: S3IterableDataset(B, client=CLIENT).shuffle(10),
    "original shuffle_urls": lambda: old.S3IterableDataset(B, True, client=CLIENT),
}


def name(item: Any) -> str:
    return str(item["__key__"] if isinstance(item, dict) else item[0])


def passes(ds: Any, workers: int, n: int = 3, persistent: bool = False,
           before: Callable[[], None] | None = None) -> list[list[str]]:
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers,
                                         persistent_workers=persistent,
                                         multiprocessing_context="fork" if workers else None)
    out = []
    for _ in range(n):
        if before is not None:
            before()
        out.append([name(x) for x in loader])
    return out


@pytest.mark.parametrize("kind", sorted(MAKERS))
@pytest.mark.parametrize("workers,persistent", [(0, False), (2, False), (2, True)])
def test_each_pass_a_new_order_reproducible_under_manual_seed(kind: str, workers: int,
                                                              persistent: bool) -> None:
    torch.manual_seed(1234)
    first = passes(MAKERS[kind](), workers, persistent=persistent)
    assert all(sorted(p) == sorted(OBJECTS) for p in first)
    assert first[0] != first[1] and first[1] != first[2] and first[0] != first[2]
    torch.manual_seed(1234)
    assert passes(MAKERS[kind](), workers, persistent=persistent) == first


@pytest.mark.parametrize("kind", sorted(MAKERS))
@pytest.mark.parametrize("workers", [0, 2])
def test_set_epoch_rules(kind: str, workers: int) -> None:
    ds = MAKERS[kind]()
    torch.manual_seed(1)
    fixed = passes(ds, workers, before=lambda: ds.set_epoch(4))
    assert fixed[0] == fixed[1] == fixed[2]
    torch.manual_seed(2)
    assert passes(ds, workers, n=1, before=lambda: ds.set_epoch(4)) == fixed[:1]
    other = passes(ds, workers, n=1, before=lambda: ds.set_epoch(5))
    assert other != fixed[:1] and sorted(other[0]) == sorted(OBJECTS)
    if kind == "shuffle_urls" and workers == 0:  # the order is the epoch's global order
        assert fixed[0] == [ds.urls[i] for i in ds.order(4).shard.tolist()]


def test_pass_epoch_rule(monkeypatch: pytest.MonkeyPatch, caplog: Any) -> None:
    import awsio.world as world_mod
    from awsio.world import World, pass_epoch

    monkeypatch.setattr(world_mod, "_warned_derived", False)
    assert pass_epoch(3, False, World()) == 3  # not in a worker: the pass counter
    monkeypatch.setattr(world_mod, "loader_base_seed", lambda: 1000)
    assert pass_epoch(3, True, World(0, 2, 0, 2)) == 3  # set_epoch rules
    assert not caplog.records
    with caplog.at_level("WARNING", logger="awsio.world"):
        assert pass_epoch(3, False, World(0, 1, 0, 2)) == 1003
        assert not caplog.records  # one rank: nothing to agree on
        # several ranks: never a per-rank base seed (ranks would read overlapping samples)
        assert pass_epoch(3, False, World(1, 2, 0, 2)) == pass_epoch(3, False, World(1, 2, 0, 2)) == 3
    assert len(caplog.records) == 1 and "set_epoch" in caplog.records[0].getMessage()
