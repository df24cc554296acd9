"""Resumable sources: samples numbered by their position in the epoch's global order.

The contract a pipeline source offers (:class:`awsio.pipeline.Pipeline` relies on nothing else):

* ``iter_units(unit)`` yields this rank's and worker's *units* (lists of
  :class:`~awsio.grouping.Record`, the records of ``unit`` consecutive samples of the rank's run;
  fewer where samples were skipped), see :mod:`awsio.epoch` for who gets which;
* ``set_epoch(n)``; ``seed``; ``stats`` (a :class:`~awsio.handlers.SkipStats`);
* ``state_dict(delivered=None)`` / ``load_state_dict(state)``: a small JSON-able dict.

:class:`IndexedSource` implements the contract once, for any source that can say how many samples
each of its shards holds and read samples by position: :class:`awsio.dataset.S3IterableDataset`
(objects, indexed tar, zip, tar.gz) and :class:`MemorySource` (tests, benchmarks).

**State.** ``state_dict()`` says which epoch is running, what was left of it when it started
(``remaining``), how it was split (world size, ``equal_work``, ``unit``) and how many positions
this rank consumed. Consumed means *delivered to the training loop*: with ``num_workers=0`` the
source counts the units it handed out; with DataLoader workers the main process does not iterate,
so the loop passes the number of batches it received, ``state_dict(delivered=n)`` (every rank
consumed its first ``n`` units, because the DataLoader hands a rank's units out in order). Inside
a DataLoader worker (what torchdata's ``StatefulDataLoader`` calls), the state is the worker's own
and restores under the same worker count. ``load_state_dict`` takes one state (all ranks took
the same number of steps, as DDP does) or the list of every rank's state, and the next iteration
yields exactly the positions not consumed, split over the *current* ranks and workers. A state
from another listing or with other options raises :class:`~awsio.errors.StateError` naming what
differs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Generator, Iterable, Iterator, Mapping, Sequence

import numpy as np

from awsio.epoch import EQUAL_WORK, Intervals, Order, advance, global_order, intervals_total, split
from awsio.errors import ConfigError, StateError
from awsio.grouping import Record, sample_runs
from awsio.handlers import HandlerSpec, SkipStats, resolve_handler
from awsio.world import ParentWorld, World, current_world, loader_base_seed, pass_epoch

__all__ = ["IndexedSource", "MemorySource", "STATE_VERSION", "digest"]

STATE_VERSION = 1
_KIND = "awsio.source"


def digest(items: Iterable[Any]) -> str:
    """A short stable hash of JSON-able items (a listing, sample counts)."""
    h = hashlib.sha256()
    for item in items:
        h.update(json.dumps(item, separators=(",", ":")).encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class _Resume:
    epoch: int
    remaining: Intervals
    worker_units: int | None = None  # a worker's own state: units it had yielded
    num_workers: int | None = None
    world_size: int | None = None
    rank: int | None = None
    unit: int | None = None


@dataclass
class _Progress:
    epoch: int
    remaining: Intervals
    world_size: int
    rank: int
    worker: int
    num_workers: int
    unit: int
    core: int           # positions in this rank's run that are not padding
    units: int = 0      # units this worker handed out (resumed worker states count from theirs)


class IndexedSource:
    """The resumable-source contract over shards of counted samples; subclasses provide
    :meth:`_shard_counts`, :meth:`_identity` and :meth:`_read`.

    Args:
        seed: base seed of the shuffle.
        shuffle: permute shards by ``(seed, epoch)`` and samples within windows of ``window`` shards.
        window: shards whose samples are mixed (and read concurrently) when shuffling.
        equal_work: None, ``"drop"`` or ``"repeat"``: every rank gets the same number of samples.
        handler: what to do with a sample or shard that cannot be read (``"raise"``, ``"warn"``,
            ``"skip"`` or a callable); skips are counted in ``stats``.
    """

    def __init__(self, *, seed: int = 0, shuffle: bool = False, window: int = 8,
                 equal_work: str | None = None, handler: HandlerSpec = "raise") -> None:
        if equal_work not in EQUAL_WORK:
            raise ConfigError("equal_work must be None, 'drop' or 'repeat'", field="equal_work",
                              value=equal_work)
        if not isinstance(window, int) or window < 0:
            raise ConfigError("window must be an integer >= 0 (0: samples keep their shard's order)",
                              field="window", value=window)
        self.seed = int(seed)
        self.shuffled = bool(shuffle)
        self.window = window
        self.equal_work = equal_work
        self.handler = resolve_handler(handler)
        self.stats = SkipStats()
        self._epoch = 0
        self._epoch_set = False
        self._resume: _Resume | None = None
        self._progress: _Progress | None = None
        self._parent_world = ParentWorld()  # the rank, for DataLoader workers (see ParentWorld)

    # -- what subclasses provide ------------------------------------------------------------
    def _shard_counts(self) -> list[int]:
        """Samples in each shard, in listing order."""
        raise NotImplementedError

    def _identity(self) -> dict[str, Any]:
        """What a saved state must match (the listing and anything that changes the order)."""
        raise NotImplementedError

    def _read(self, order: Order, units: Iterator[np.ndarray]) -> Iterator[list[Record]]:
        """The records of each unit's positions, in order, one list per unit (skips counted in
        ``self.stats``)."""
        raise NotImplementedError

    def _stream_shards(self) -> list[bool] | None:
        """Which shards can only be read forwards (their samples keep their order in a shuffle)."""
        return None

    def _pass_skips(self) -> SkipStats:
        """Skips that belong to no sample position (shards that could not be indexed, members of
        shards without samples): counted once in each pass, by the first reader (rank 0, worker 0)."""
        return SkipStats()

    # -- epochs -------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch`` for the next iteration (later iterations count on from it)."""
        self._epoch = int(epoch)
        self._epoch_set = True

    @property
    def epoch(self) -> int:
        """The epoch counter: the next iteration's epoch (see :meth:`pass_epoch`)."""
        return self._epoch

    def pass_epoch(self, world: World) -> int:
        """The epoch the next iteration uses: the counter, plus the DataLoader's base seed of the
        pass in a non-persistent worker when ``set_epoch`` was never called
        (:func:`awsio.world.pass_epoch`)."""
        return pass_epoch(self._epoch, self._epoch_set, world)

    def _shard_order(self, epoch: int) -> Sequence[int] | None:
        """The shard order of a shuffled ``epoch`` (None: permuted from ``(seed, epoch)``)."""
        return None

    def order(self, epoch: int) -> Order:
        """The global order of ``epoch`` (pure: the same on every rank and worker)."""
        shards = self._shard_order(epoch) if self.shuffled else None
        return global_order(self._shard_counts(), seed=self.seed, epoch=epoch, shuffle=self.shuffled,
                            window=self.window, shards=shards, streams=self._stream_shards())

    def rank_size(self, world_size: int, rank: int) -> int:
        """Samples ``rank`` of ``world_size`` yields in a whole epoch."""
        total = sum(self._shard_counts())
        return split([(0, total)], world_size, self.equal_work, total)[rank].size

    def metrics(self, ranks: bool = False) -> Any:
        """Counters of this source (:mod:`awsio.metrics`); empty for a source that keeps none."""
        from awsio.metrics import Snapshot

        return Snapshot()

    def note_samples(self, samples: int = 0, skips: int = 0, final: bool = False) -> None:
        """Count samples delivered (and skipped) by a pipeline over this source; ``final`` at the
        end of a pass. Sources that keep counters (S3IterableDataset) record them; others ignore it."""

    def __len__(self) -> int:
        """Samples this rank yields in a whole epoch (objects, or samples of archive shards)."""
        w = current_world()
        return self.rank_size(w.world_size, w.rank)

    # -- iteration ----------------------------------------------------------------------------
    def iter_units(self, unit: int = 1, *, drop_last: bool = False) -> Generator[tuple[int, list[Record]], None, None]:
        """This rank's and worker's units of ``unit`` samples, as ``(position of the unit's first
        sample, records)`` (see the module docstring). ``drop_last``: not the rank's last unit
        when it is short (it is never read)."""
        if unit < 1:
            raise ConfigError("unit must be >= 1", field="unit", value=unit)
        world = current_world()
        epoch = self.pass_epoch(world)
        self._epoch += 1
        self.stats = SkipStats()
        if world.rank == 0 and world.worker == 0:
            self.stats.merge(self._pass_skips())
        counts = self._shard_counts()
        total = sum(counts)
        resume, self._resume = self._resume, None
        if resume is not None and resume.epoch != epoch:
            resume = None  # set_epoch moved to another epoch: that one starts from its beginning
        remaining = resume.remaining if resume is not None else [(0, total)]
        skip = 0
        if resume is not None and resume.worker_units is not None:
            for name, saved, now in (("world_size", resume.world_size, world.world_size),
                                     ("rank", resume.rank, world.rank),
                                     ("num_workers", resume.num_workers, world.num_workers),
                                     ("unit", resume.unit, unit)):
                if saved != now:
                    raise StateError("a DataLoader worker's state restores only under the same ranks, "
                                     "workers and batch size; for an elastic resume save "
                                     "state_dict(delivered=batches) in the main process",
                                     field=name, saved=saved, current=now)
            skip = resume.worker_units
        run = split(remaining, world.world_size, self.equal_work, total)[world.rank]
        positions = run.positions()

        def remaining_position(i: int) -> int:
            return int(positions[i]) if i < len(positions) else total

        progress = _Progress(epoch, remaining, world.world_size, world.rank, world.worker,
                             world.num_workers, unit, intervals_total(run.core), units=skip)
        self._progress = progress
        n_units = len(positions) // unit if drop_last else -(-len(positions) // unit)
        first = world.worker + world.num_workers * skip
        mine = range(first, n_units, world.num_workers)
        order = self.order(epoch)

        def unit_positions() -> Iterator[np.ndarray]:
            for j in mine:
                yield positions[j * unit:(j + 1) * unit]

        for first, records in zip(mine, self._read(order, unit_positions())):
            progress.units += 1
            yield int(remaining_position(first * unit)), records

    # -- state --------------------------------------------------------------------------------
    def _options(self) -> dict[str, Any]:
        return {"seed": self.seed, "shuffle": self.shuffled, "window": self.window,
                "equal_work": self.equal_work}

    def state_dict(self, delivered: int | None = None, *, unit: int | None = None) -> dict[str, Any]:
        """A JSON-able snapshot of where this rank is in the epoch (see the module docstring).

        ``delivered``: batches (units) the training loop received from the DataLoader in this
        epoch; needed in the main process when DataLoader workers do the iterating. ``unit``:
        the unit size those batches had (default: the one this process iterated with, else 1).
        """
        counts = self._shard_counts()
        total = sum(counts)
        p = self._progress
        base: dict[str, Any] = {"version": STATE_VERSION, "kind": _KIND, "identity": self._identity(),
                                "options": self._options(), "total": total}
        if delivered is None and p is not None and p.num_workers > 1:
            # inside a DataLoader worker: its own progress; restores under the same workers
            return {**base, "epoch": p.epoch, "remaining": [list(x) for x in p.remaining],
                    "world_size": p.world_size, "rank": p.rank, "unit": p.unit,
                    "worker": p.worker, "num_workers": p.num_workers, "worker_units": p.units}
        world = current_world()
        if p is not None:
            epoch, remaining, size = p.epoch, p.remaining, p.unit
        else:
            if self.shuffled and not self._epoch_set and loader_base_seed() is None:
                # DataLoader workers took each pass's epoch from the loader's base seed (see
                # awsio.world.pass_epoch), which the main process never sees
                raise StateError("call set_epoch(epoch) before each epoch to save the state of a "
                                 "shuffled data set iterated by DataLoader workers: without it the "
                                 "workers' order cannot be named here", field="epoch",
                                 saved=None, current=self._epoch)
            epoch = self._epoch
            r = self._resume
            remaining = r.remaining if r is not None and r.epoch == epoch else [(0, total)]
            size = 1
        size = unit or size
        units = delivered if delivered is not None else (p.units if p is not None else 0)
        run = split(remaining, world.world_size, self.equal_work, total)[world.rank]
        consumed = min(units * size, intervals_total(run.core))
        return {**base, "epoch": epoch, "remaining": [list(x) for x in remaining],
                "world_size": world.world_size, "rank": world.rank, "consumed": consumed}

    def load_state_dict(self, state: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> None:
        """Continue from ``state`` (one rank's state, or every rank's): the next iteration yields
        exactly what is left of that epoch, split over the current ranks and workers.

        Raises :class:`~awsio.errors.StateError` naming what differs when the state is from
        another listing, other options, or is not an awsio source state.
        """
        states = [state] if isinstance(state, Mapping) else list(state)
        if not states:
            raise StateError("no state to load", field="state", saved=None, current=None)
        for s in states:
            self._check(s)
        first = states[0]
        epoch = int(first["epoch"])
        remaining = [(int(a), int(b)) for a, b in first["remaining"]]
        total = int(first["total"])
        if "worker" in first:
            if len(states) != 1:
                raise StateError("load a DataLoader worker's state in that worker", field="state",
                                 saved=len(states), current=1)
            self._epoch, self._epoch_set = epoch, True
            self._resume = _Resume(epoch, remaining, int(first["worker_units"]), int(first["num_workers"]),
                                   int(first["world_size"]), int(first["rank"]), int(first["unit"]))
            return
        world_size = int(first["world_size"])
        consumed = [int(first["consumed"])] * world_size
        if len(states) > 1:
            by_rank = {int(s["rank"]): s for s in states}
            if sorted(by_rank) != list(range(world_size)):
                raise StateError("need the state of every rank", field="rank",
                                 saved=sorted(by_rank), current=list(range(world_size)))
            for s in states:
                if int(s["epoch"]) != epoch or s["remaining"] != first["remaining"]:
                    raise StateError("the ranks' states are from different points", field="epoch",
                                     saved=int(s["epoch"]), current=epoch)
            consumed = [int(by_rank[r]["consumed"]) for r in range(world_size)]
        left = advance(remaining, world_size, self.equal_work, consumed, total)
        self._epoch_set = True
        if not left:
            self._epoch, self._resume = epoch + 1, None
        else:
            self._epoch, self._resume = epoch, _Resume(epoch, left)
        self._progress = None

    def _check(self, s: Mapping[str, Any]) -> None:
        if not isinstance(s, Mapping) or s.get("kind") != _KIND:
            raise StateError("not an awsio data state", field="kind",
                             saved=s.get("kind") if isinstance(s, Mapping) else type(s).__name__,
                             current=_KIND)
        if s.get("version") != STATE_VERSION:
            raise StateError("unsupported state version", field="version", saved=s.get("version"),
                             current=STATE_VERSION)
        for group, now in (("identity", self._identity()), ("options", self._options())):
            saved = s.get(group, {})
            for name in sorted(set(saved) | set(now)):
                if saved.get(name) != now.get(name):
                    what = "the listing differs" if group == "identity" else "an option differs"
                    raise StateError(f"this state is from another data set ({what})",
                                     field=f"{group}.{name}", saved=saved.get(name), current=now.get(name))


class MemorySource(IndexedSource):
    """Records held in memory, grouped into samples by ``(source, key)``; the shards are the
    distinct sources in first-seen order. For tests and benchmarks; resumes like any source.

    ``records``: :class:`Record` objects or ``(source, name, data)`` tuples.
    """

    def __init__(self, records: Iterable[Record | tuple[str, str, bytes]], *, seed: int = 0,
                 shuffle: bool = False, window: int = 8, equal_work: str | None = None,
                 handler: HandlerSpec = "raise") -> None:
        super().__init__(seed=seed, shuffle=shuffle, window=window, equal_work=equal_work,
                         handler=handler)
        self.records = [Record(*r) for r in records]
        shards: dict[str, list[list[Record]]] = {}
        for run in sample_runs(self.records, name=lambda r: r.name, scope=lambda r: r.source):
            samples = shards.setdefault(run[0].source, [])
            samples.append([r._replace(sample=len(samples)) for r in run])  # (its index in the shard)
        self._shards = list(shards.values())
        self._names = list(shards)

    def _shard_counts(self) -> list[int]:
        return [len(s) for s in self._shards]

    def _identity(self) -> dict[str, Any]:
        return {"shards": len(self._shards),
                "digest": digest((n, len(s)) for n, s in zip(self._names, self._shards))}

    def _read(self, order: Order, units: Iterator[np.ndarray]) -> Iterator[list[Record]]:
        for positions in units:
            out: list[Record] = []
            for p in positions:
                out.extend(self._shards[int(order.shard[p])][int(order.sample[p])])
            yield out
