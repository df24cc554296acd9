"""The fluent API: samples grouped by key, shuffled, decoded, transformed and batched.

::

    dataset = (
        S3IterableDataset("s3://bucket/imagenet/train-{000000..000127}.tar")
        .dataproc(batch_size=200)            # shuffling and batching parameters
        .decode("pil")
        .transform_fn(image=preproc)         # any callable, e.g. a torchvision Compose
    )
    loader = torch.utils.data.DataLoader(dataset, num_workers=8)   # batch_size=None is better
    for inputs, targets in loader:           # inputs: N x C x H x W, targets: N int64
        ...

A :class:`Pipeline` is an ``IterableDataset`` made of a resumable *source*
(:mod:`awsio.source`: it yields this rank's and worker's *units*, the records of a batch's worth
of samples; :class:`S3IterableDataset` is one) and an immutable tuple of picklable, torch-free
stages (:mod:`awsio.stages`). It runs the stages over one unit at a time and batches each unit
into one batch (:mod:`awsio.batching`), so its state is the source's (:meth:`Pipeline.state_dict`).
Every method returns a new Pipeline with one more stage, so a pipeline can be reused and sent to
spawned DataLoader workers.

**Grouping** (always first): consecutive records sharing a key (:func:`awsio.grouping.sample_key`:
the name up to the first dot of the basename) and a source become one sample dict
``{"__key__": key, "__url__": source, "<field>": bytes, ...}``. A key split across two shards
never merges; a plain object becomes a one-field sample; a name without extension gives the
field ``"data"``; ``__...__`` metadata members are dropped.

**Samples to (inputs, targets)**: the rule. ``transform_fn(**fns)`` names fields by *role*
(:mod:`awsio.decode.roles`): ``image`` is the first of jpg, jpeg, png, webp, ...; ``target`` is
the first of cls, cls2, class, index, inx, label, id; any other keyword is a field name or
``"a;b"`` alternatives. It applies each function to its field and yields the tuple
``(*inputs, target)``: the fields of the roles it names, in keyword order, other than
``target``, followed by the ``target`` field (transformed if ``target=`` was given). So
``transform_fn(image=preproc)`` yields ``(preproc(image), class_int)``. A sample without one of
these fields is an error of the stage (subject to the handler). ``to_tuple("jpg;png", "cls")``
is the explicit form and yields exactly the fields named. After either, samples are tuples:
``decode``/``rename``/``transform_fn`` must come before them (checked when the pipeline is built).

**Batching**: ``dataproc(batch_size=N)`` batches *inside the dataset, at the end of the
pipeline* wherever it appears (``batched(n)`` instead batches at its own position), with
``torch.utils.data.default_collate`` (tuples of stacked tensors), one batch per unit. The best
DataLoader for such a pipeline is ``DataLoader(dataset, batch_size=None, num_workers=...)``. The
snippet above leaves the DataLoader's default ``batch_size=1``, which would normally add a
leading dimension of 1 to every batch. It does not here: the pipeline's batches are
:class:`~awsio.batching.Batch` (a tuple) or :class:`~awsio.batching.BatchDict` objects, which a
pipeline that batches registers in torch's ``default_collate_fn_map`` (when it is built or
iterated, never at import) so that the DataLoader's collation *concatenates* pipeline batches.

**Errors**: every stage that can fail takes ``handler=`` (:mod:`awsio.handlers`): ``"raise"``
(default: the source's own ``handler`` if it has one), ``"warn"``, ``"skip"`` or a callable.
Skipped samples are counted by stage and reason in ``pipeline.stats`` (a
:class:`~awsio.handlers.SkipStats`, reset on each iteration, exact for ``num_workers=0``);
DataLoader workers each log their summary when their iteration ends. What the source skipped
(shards or objects it could not read) is merged in under the source's stage name (``"read"``
for :class:`~awsio.dataset.S3IterableDataset`).

**Randomness**: ``dataproc(shuffle=True)`` shuffles the source's global order (shards, then
samples within windows of shards: :mod:`awsio.epoch`), which resumes exactly. ``.shuffle(n)`` is
a streaming buffer seeded from ``(seed, epoch, rank, worker)`` that spans batches, so a pipeline
with one refuses to save a state. The epoch is the source's: ``set_epoch(n)`` sets it, and
without it each pass still gets a new one (:func:`awsio.world.pass_epoch`).
"""

from __future__ import annotations

import copy
import logging
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from torch.utils.data import IterableDataset, get_worker_info

from awsio.batching import Batched, register_collation
from awsio.decode import Decoder, DecoderSpec
from awsio.errors import StateError
from awsio.handlers import Handler, HandlerSpec, SkipStats, resolve_handler
from awsio.source import MemorySource
from awsio.stages import (Context, Decode, Group, Map, Rename, Select, Shuffle, ToTuple,
                          TransformRoles)
from awsio.transport import use_shared_memory
from awsio.world import current_world

__all__ = ["MemorySource", "Pipeline", "PipelineMixin"]

log = logging.getLogger(__name__)

DEFAULT_SHUFFLE_BUFFER = 1000


# -- the fluent methods ---------------------------------------------------------------------
class PipelineMixin:
    """The fluent methods; each returns a new :class:`Pipeline` with one more stage.

    Mixed into :class:`awsio.dataset.S3IterableDataset` (which provides ``iter_records``);
    on a Pipeline they extend it, on a source they start one.
    """

    def _pipeline(self) -> Pipeline:
        return Pipeline(self)

    def dataproc(self, batch_size: int | None = None, *, shuffle: bool = True,
                 shuffle_buffer: int = 0, seed: int | None = None,
                 drop_last: bool = False, handler: HandlerSpec = None) -> Pipeline:
        """Training-style data processing: shuffling and batching parameters.

        ``shuffle`` shuffles the epoch's order at the source (shards, then samples within
        windows of shards: :mod:`awsio.epoch`), which resumes exactly; ``batch_size`` collates
        the final items into batches at the *end* of the pipeline, one batch per unit of
        ``batch_size`` samples (``drop_last``: not the rank's last batch when it would be short;
        a batch short of skipped samples is delivered); ``seed`` seeds the shuffle
        (default: the source's ``seed``); ``handler`` becomes the default policy of the stages
        added after this one. ``shuffle_buffer > 1`` adds a streaming ``.shuffle(n)`` buffer
        here as well (it spans batches, so such a pipeline cannot save an exact state).
        """
        p = self._pipeline()
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        changes: dict[str, Any] = {"batch_size": batch_size, "drop_last": drop_last}
        if seed is not None:
            changes["seed"] = seed
        if handler is not None:
            changes["handler"] = resolve_handler(handler)
        if shuffle:
            source = copy.copy(p.source)
            source.shuffled = True
            source.seed = changes.get("seed", p.seed)
            changes["source"] = source
        p = p._replace(**changes)
        if shuffle_buffer > 1:
            p = p._add(Shuffle(shuffle_buffer))
        return p

    def shuffle(self, buffer_size: int = DEFAULT_SHUFFLE_BUFFER, *, seed: int | None = None) -> Pipeline:
        """Shuffle items through a bounded buffer seeded from ``(seed, epoch, rank, worker)``."""
        if buffer_size < 0:
            raise ValueError(f"buffer_size must be >= 0, got {buffer_size}")
        return self._pipeline()._add(Shuffle(buffer_size, seed))

    def decode(self, *specs: DecoderSpec | Decoder, handler: HandlerSpec = None,
               allow_pickle: bool = False) -> Pipeline:
        """Decode byte fields by extension (see :mod:`awsio.decode`); a failing sample is a
        :class:`~awsio.errors.DecodeError` subject to ``handler``."""
        p = self._pipeline()._needs_dicts("decode")
        return p._add(Decode(Decoder(*specs, allow_pickle=allow_pickle), p._handler(handler)))

    def transform_fn(self, *, handler: HandlerSpec = None, **fns: Callable[[Any], Any]) -> Pipeline:
        """Apply ``fns`` to fields by role (``image=``, ``target=``, or a field name) and yield
        ``(*inputs, target)`` tuples (see the module docstring)."""
        if not fns:
            raise ValueError("transform_fn needs at least one role=function")
        for role, fn in fns.items():
            if not callable(fn):
                raise TypeError(f"transform_fn({role}=...) is not callable: {fn!r}")
        p = self._pipeline()._needs_dicts("transform_fn")
        return p._add(TransformRoles(tuple(fns.items()), p._handler(handler)), shape="tuple")

    def to_tuple(self, *fields: str, handler: HandlerSpec = None) -> Pipeline:
        """Samples to tuples of the named fields (``"jpg;png"`` = the first present)."""
        if not fields:
            raise ValueError("to_tuple needs at least one field")
        p = self._pipeline()._needs_dicts("to_tuple")
        return p._add(ToTuple(tuple(fields), p._handler(handler)), shape="tuple")

    def map(self, fn: Callable[[Any], Any], *, handler: HandlerSpec = None) -> Pipeline:
        """Apply ``fn`` to every item (its result may have any shape)."""
        p = self._pipeline()
        return p._add(Map(fn, p._handler(handler)), shape="any")

    def select(self, predicate: Callable[[Any], bool], *, handler: HandlerSpec = None) -> Pipeline:
        """Keep the items for which ``predicate(item)`` is true."""
        p = self._pipeline()
        return p._add(Select(predicate, p._handler(handler)))

    def rename(self, *, handler: HandlerSpec = None, **new_from_old: str) -> Pipeline:
        """Rename fields: ``rename(image="jpg;png", label="cls")``; other fields are kept."""
        p = self._pipeline()._needs_dicts("rename")
        return p._add(Rename(tuple(new_from_old.items()), p._handler(handler)))

    def batched(self, batch_size: int, *, collate: Callable[[list[Any]], Any] | None = None,
                partial: bool = True, handler: HandlerSpec = None) -> Pipeline:
        """Collate groups of ``batch_size`` items here (default: torch ``default_collate``; dict
        samples must have the same fields); ``partial=False`` drops a short group, which the
        stages running unit by unit makes the remainder of every unit, each drop counted
        (``batched/partial``, see :class:`awsio.batching.Batched`)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        p = self._pipeline()
        return p._add(Batched(batch_size, collate, partial, p._handler(handler)), shape="any")


class Pipeline(PipelineMixin, IterableDataset):  # type: ignore[type-arg]
    """A source of samples plus a tuple of stages; see the module docstring.

    Args:
        source: a resumable source (:class:`awsio.source.IndexedSource`: ``iter_units``,
            ``set_epoch``, ``pass_epoch``, ``state_dict``, ``load_state_dict``, ``seed``, ``shuffled``,
            ``handler``, ``stats``), e.g. :class:`awsio.dataset.S3IterableDataset`.
        stages: the stages after grouping (normally built by the fluent methods).
        seed: base seed of the shuffles (default: ``source.seed``).
        handler: the default error policy of stages (default: ``source.handler``).
        batch_size, drop_last: final batching, as set by :meth:`dataproc`.
    """

    def __init__(self, source: Any, stages: Sequence[Any] = (), *, seed: int | None = None,
                 handler: HandlerSpec = None, batch_size: int | None = None,
                 drop_last: bool = False, shape: str = "dict") -> None:
        super().__init__()
        if not hasattr(source, "iter_units"):
            raise TypeError(f"a Pipeline source needs iter_units() (see awsio.source): {type(source).__name__}")
        self.source = source
        self.stages = tuple(stages)
        self.seed = int(source.seed) if seed is None else int(seed)
        self.handler = resolve_handler(handler if handler is not None else source.handler)
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.shape = shape
        self.stats = SkipStats()
        if batch_size is not None or any(isinstance(s, Batched) for s in self.stages):
            register_collation()

    # -- building -------------------------------------------------------------------------
    def _pipeline(self) -> Pipeline:
        return self

    def _replace(self, **changes: Any) -> Pipeline:
        new = copy.copy(self)
        new.__dict__.update(changes)
        new.stats = SkipStats()
        if new.batch_size is not None:
            register_collation()
        return new

    def _add(self, stage: Any, shape: str | None = None) -> Pipeline:
        if isinstance(stage, Batched):
            register_collation()
        return self._replace(stages=self.stages + (stage,), shape=shape or self.shape)

    def _handler(self, spec: HandlerSpec) -> Handler:
        return self.handler if spec is None else resolve_handler(spec)

    def _needs_dicts(self, method: str) -> Pipeline:
        if self.shape == "tuple":
            raise TypeError(f".{method}() needs sample dicts, but an earlier .to_tuple() or "
                            ".transform_fn() already made tuples; call it before them")
        return self

    def __repr__(self) -> str:
        names = ", ".join(type(s).__name__ for s in self.stages)
        return f"Pipeline({type(self.source).__name__}, [{names}], batch_size={self.batch_size})"

    @property
    def unit(self) -> int:
        """Samples per unit: the final batch size, else the last ``batched(n)``, else 1."""
        if self.batch_size is not None:
            return self.batch_size
        sizes = [s.size for s in self.stages if isinstance(s, Batched)]
        return sizes[-1] if sizes else 1

    # -- epochs and state ---------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch`` for the next iteration (it is the source's epoch)."""
        self.source.set_epoch(epoch)

    @property
    def epoch(self) -> int:
        return int(self.source.epoch)

    def state_dict(self, delivered: int | None = None) -> dict[str, Any]:
        """Where the data is in the epoch: the source's state (the stages keep none across
        units). ``delivered``: batches the training loop received this epoch, needed when
        DataLoader workers iterate (see :mod:`awsio.source`).

        Raises :class:`~awsio.errors.StateError` when a ``.shuffle(n)`` buffer spans batches
        (what it holds would be lost on resume)."""
        if self._spans_units():
            raise StateError("a .shuffle(n) buffer spans batches and cannot be resumed exactly; "
                             "shuffle the source instead (shuffle_urls=True or dataproc(shuffle=True))",
                             field="stages", saved=None, current=repr(self))
        return self.source.state_dict(delivered, unit=self.unit)  # type: ignore[no-any-return]

    def load_state_dict(self, state: Any) -> None:
        """Continue from a :meth:`state_dict` (one rank's, or every rank's list)."""
        self.source.load_state_dict(state)

    def __len__(self) -> int:
        """Units (batches, or samples when nothing batches) this rank yields in a whole epoch."""
        w = current_world()
        size = int(self.source.rank_size(w.world_size, w.rank))
        return size // self.unit if self._drops_last() else -(-size // self.unit)

    def metrics(self, ranks: bool = False) -> Any:
        """The source's counters (:meth:`awsio.dataset.S3IterableDataset.metrics`): requests,
        bytes, retries, TTFB, samples grouped and skipped, over DataLoader workers and, with
        ``ranks=True``, over ranks; empty counters for a source that keeps none."""
        return self.source.metrics(ranks=ranks)

    # -- running --------------------------------------------------------------------------
    def _spans_units(self) -> bool:
        return any(isinstance(s, Shuffle) for s in self.stages)

    def _drops_last(self) -> bool:
        """Whether the rank's short last unit is left out (``dataproc(drop_last=True)`` batches)."""
        return self.drop_last and self.batch_size is not None

    def __iter__(self) -> Iterator[Any]:
        world = current_world()
        epoch = int(self.source.pass_epoch(world))
        stats = SkipStats()
        self.stats = stats
        ctx = Context(epoch, world, self.seed, stats)
        group = Group(self.handler)
        # drop_last drops the rank's last unit when it is short, at the source (never read); a
        # batch short of samples that were skipped (and counted) is delivered
        final = Batched(self.batch_size, None, True, self.handler) if self.batch_size is not None else None
        if final is not None or self.unit > 1:
            register_collation()  # also in a spawned DataLoader worker, where collation runs
            if get_worker_info() is not None:
                use_shared_memory()  # its batches' bytes reach the training process through shared memory
        units = self.source.iter_units(self.unit, drop_last=self._drops_last())
        samples = [0]  # grouped samples not yet reported to the source's counters

        def run(records: Iterable[Any]) -> Iterator[Any]:
            def counted(grouped: Iterator[Any]) -> Iterator[Any]:
                for sample in grouped:
                    samples[0] += 1
                    yield sample

            items: Iterator[Any] = counted(group(iter(records), ctx))
            for stage in self.stages:
                items = stage(items, ctx)
            return final(items, ctx) if final is not None else items

        # one unit at a time (one batch per unit), unless a stream-wide shuffle buffer spans them
        streams = (((r for _, recs in units for r in recs),) if self._spans_units()
                   else (recs for _, recs in units))
        count = 0
        warned = False
        try:
            for records in streams:
                if samples[0]:
                    self.source.note_samples(samples[0])  # (a DataLoader worker publishes now and then)
                    samples[0] = 0
                before = count
                for item in run(records):
                    count += 1
                    yield item
                if count == before and world.num_workers > 1 and not warned:
                    warned = True  # this worker's next batch takes the empty unit's turn
                    log.warning("pipeline epoch %d rank %d worker %d/%d: a unit yielded no batch (every "
                                "sample in it skipped): state_dict(delivered=n) is not exact for the rest "
                                "of this epoch; torchdata's StatefulDataLoader is (see the README, "
                                "Resuming mid-epoch)", epoch, world.rank, world.worker, world.num_workers)
        finally:
            stats.merge(self.source.stats)
            self.source.note_samples(samples[0], stats.total, final=True)
            level = logging.WARNING if stats.total else logging.INFO
            log.log(level, "pipeline epoch %d rank %d worker %d/%d: %d items, %s", epoch,
                    world.rank, world.worker, world.num_workers, count, stats.summary())
