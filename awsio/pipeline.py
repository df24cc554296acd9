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

A :class:`Pipeline` is an ``IterableDataset`` made of a *source* (anything with
``iter_records()`` yielding :class:`awsio.grouping.Record` ``(source, name, data)`` already split
by rank and worker, and ``set_epoch(n)``; :class:`S3IterableDataset` is one) and an immutable
tuple of picklable stages. Every method returns a new Pipeline with one more stage, so a
pipeline can be reused and sent to spawned DataLoader workers.

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
``torch.utils.data.default_collate`` (tuples of stacked tensors). The best DataLoader for such a
pipeline is ``DataLoader(dataset, batch_size=None, num_workers=...)``. The snippet above leaves
the DataLoader's default ``batch_size=1``, which would normally add a leading dimension of 1 to
every batch. It does not here: the pipeline's batches are :class:`Batch` (a tuple) or
:class:`BatchDict` objects, and importing this module registers them in torch's
``default_collate_fn_map`` so that the DataLoader's collation *concatenates* pipeline batches
along the first dimension instead of stacking them. With ``batch_size=1`` a batch passes
through unchanged; with ``batch_size=k`` the loader yields ``k`` pipeline batches joined.

**Errors**: every stage that can fail takes ``handler=`` (:mod:`awsio.handlers`): ``"raise"``
(default: the source's own ``handler`` if it has one), ``"warn"``, ``"skip"`` or a callable.
Skipped samples are counted by stage and reason in ``pipeline.stats`` (a
:class:`~awsio.handlers.SkipStats`, reset on each iteration, exact for ``num_workers=0``);
DataLoader workers each log their summary when their iteration ends. What the source skipped
(shards or objects it could not read) is merged in under the source's stage name (``"read"``
for :class:`~awsio.dataset.S3IterableDataset`).

**Randomness**: ``shuffle`` uses a bounded buffer seeded from ``(seed, epoch, rank, worker)``.
The epoch advances on every iteration of this object, or is set by ``set_epoch(n)`` (forwarded
to the source). Non-persistent DataLoader workers iterate fresh copies each pass; without
``set_epoch`` they add the loader's base seed of the pass to the epoch, so passes still differ
(:func:`awsio.world.pass_epoch`). Under torchrun call ``set_epoch`` each epoch, as with
``DistributedSampler``.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field as dc_field
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import torch
from torch.utils.data import IterableDataset
from torch.utils.data._utils.collate import default_collate, default_collate_fn_map

from awsio.decode import Decoder, DecoderSpec
from awsio.decode.roles import find_field
from awsio.errors import ArchiveError
from awsio.grouping import Record, is_metadata, sample_key
from awsio.handlers import Handler, HandlerSpec, SkipStats, resolve_handler
from awsio.shuffle import buffer_shuffle, make_rng
from awsio.world import World, current_world, pass_epoch

__all__ = ["Batch", "BatchDict", "MemorySource", "Pipeline", "PipelineMixin", "collate_batches"]

log = logging.getLogger(__name__)

DEFAULT_SHUFFLE_BUFFER = 1000


# -- batches that DataLoader auto-collation concatenates instead of stacking ------------------
class Batch(tuple):  # type: ignore[type-arg]
    """A batch made by the pipeline: a tuple of collated fields, e.g. ``(images, targets)``."""

    __slots__ = ()

    def __reduce__(self) -> tuple[Any, ...]:
        return Batch, (tuple(self),)


class BatchDict(dict):  # type: ignore[type-arg]
    """A batch made by the pipeline from dict samples: ``{field: collated values}``."""


def _concat(values: Sequence[Any]) -> Any:
    first = values[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(list(values), 0)
    if isinstance(first, (list, tuple)) and not isinstance(first, Batch):
        return [x for v in values for x in v]
    try:
        import numpy as np

        if isinstance(first, np.ndarray):
            return np.concatenate(values, 0)
    except ImportError:  # pragma: no cover
        pass
    return list(values)


def collate_batches(batches: Sequence[Any], *, collate_fn_map: Any = None) -> Any:
    """Join pipeline batches: one passes through, several are concatenated along dimension 0."""
    if len(batches) == 1:
        return batches[0]
    first = batches[0]
    if isinstance(first, BatchDict):
        return BatchDict({k: _concat([b[k] for b in batches]) for k in first})
    return Batch(_concat([b[i] for b in batches]) for i in range(len(first)))


default_collate_fn_map[Batch] = collate_batches
default_collate_fn_map[BatchDict] = collate_batches


def _as_batch(value: Any) -> Any:
    if isinstance(value, Mapping) and not isinstance(value, BatchDict):
        return BatchDict(value)
    if isinstance(value, (tuple, list)) and not isinstance(value, Batch):
        return Batch(value)
    return value


# -- sources ----------------------------------------------------------------------------------
class MemorySource:
    """Records held in memory, split across ranks x workers by position: for tests and benchmarks.

    ``records``: :class:`Record` objects or ``(source, name, data)`` tuples.
    """

    def __init__(self, records: Iterable[Record | tuple[str, str, bytes]]) -> None:
        self.records = [Record(*r) for r in records]
        self.stats = SkipStats()

    def set_epoch(self, epoch: int) -> None:
        pass

    def iter_records(self) -> Iterator[Record]:
        world = current_world()
        # split by sample key so that a sample never straddles two slots
        slot, n = world.slot, world.slots
        idx, last = -1, None
        for r in self.records:
            key = (r.source, sample_key(r.name)[0])
            if key != last:
                idx, last = idx + 1, key
            if idx % n == slot:
                yield r


# -- stages: picklable callables (samples, ctx) -> samples ------------------------------------
@dataclass
class Context:
    """What a stage may know about the current iteration."""

    epoch: int
    world: World
    seed: int
    stats: SkipStats


class Group:
    """Records -> sample dicts (see the module docstring)."""

    name = "group"

    def __init__(self, handler: Handler) -> None:
        self.handler = handler

    def __call__(self, records: Iterator[Record], ctx: Context) -> Iterator[dict[str, Any]]:
        current: dict[str, Any] | None = None
        for source, name, data in records:
            if is_metadata(name):
                continue
            key, fld = sample_key(name)
            fld = fld or "data"
            if current is None or key != current["__key__"] or source != current["__url__"]:
                if current is not None:
                    yield current
                current = {"__key__": key, "__url__": source}
            if fld in current:
                exc = ArchiveError(f"duplicate field {fld!r} in sample {key!r}", url=source, member=name)
                self.handler.handle(exc, stage=self.name, stats=ctx.stats, where=name)
                continue
            current[fld] = data
        if current is not None:
            yield current


class _PerItem:
    """A stage that maps each item through ``self.apply`` under the handler."""

    name = "stage"
    handler: Handler

    def apply(self, item: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, items: Iterator[Any], ctx: Context) -> Iterator[Any]:
        for item in items:
            try:
                out = self.apply(item)
            except Exception as exc:
                self.handler.handle(exc, stage=self.name, stats=ctx.stats, where=_where(item))
                continue
            if out is not _DROP:
                yield out


_DROP = object()


def _where(item: Any) -> str:
    if isinstance(item, Mapping):
        return f"{item.get('__url__', '')}:{item.get('__key__', '')}"
    return ""


class Decode(_PerItem):
    name = "decode"

    def __init__(self, decoder: Decoder, handler: Handler) -> None:
        self.decoder, self.handler = decoder, handler

    def apply(self, item: Any) -> Any:
        return self.decoder(item)


class TransformRoles(_PerItem):
    """Apply functions to fields by role and yield ``(*inputs, target)`` tuples."""

    name = "transform_fn"

    def __init__(self, fns: tuple[tuple[str, Callable[[Any], Any]], ...], handler: Handler) -> None:
        self.fns, self.handler = fns, handler
        # with only target= named, the input is the untransformed image
        self.inputs = tuple(role for role, _ in fns if role != "target") or ("image",)

    def apply(self, item: Any) -> Any:
        values = {}
        for role, fn in self.fns:
            values[role] = fn(item[_field(item, role)])
        out = [values[r] if r in values else item[_field(item, r)] for r in self.inputs]
        out.append(values["target"] if "target" in values else item[_field(item, "target")])
        return tuple(out)


def _field(sample: Mapping[str, Any], name: str) -> str:
    found = find_field(sample, name)
    if found is None:
        fields = sorted(f for f in sample if not f.startswith("__"))
        raise KeyError(f"sample {sample.get('__key__')!r} has no field for {name!r} (fields: {fields})")
    return found


class ToTuple(_PerItem):
    name = "to_tuple"

    def __init__(self, names: tuple[str, ...], handler: Handler) -> None:
        self.names, self.handler = names, handler

    def apply(self, item: Any) -> Any:
        return tuple(item[_field(item, n)] for n in self.names)


class Map(_PerItem):
    name = "map"

    def __init__(self, fn: Callable[[Any], Any], handler: Handler) -> None:
        self.fn, self.handler = fn, handler

    def apply(self, item: Any) -> Any:
        return self.fn(item)


class Select(_PerItem):
    name = "select"

    def __init__(self, predicate: Callable[[Any], bool], handler: Handler) -> None:
        self.predicate, self.handler = predicate, handler

    def apply(self, item: Any) -> Any:
        return item if self.predicate(item) else _DROP


class Rename(_PerItem):
    """``rename(image="jpg;png")``: new field names from old ones; other fields are kept."""

    name = "rename"

    def __init__(self, mapping: tuple[tuple[str, str], ...], handler: Handler) -> None:
        self.mapping, self.handler = mapping, handler

    def apply(self, item: Any) -> Any:
        found = [(new, _field(item, old)) for new, old in self.mapping]
        out = {k: v for k, v in item.items() if k not in {old for _, old in found}}
        out.update({new: item[old] for new, old in found})
        return out


class Shuffle:
    """A bounded shuffle buffer seeded from ``(seed, epoch, rank, worker)``."""

    name = "shuffle"

    def __init__(self, size: int, seed: int | None = None) -> None:
        self.size, self.seed = size, seed

    def __call__(self, items: Iterator[Any], ctx: Context) -> Iterator[Any]:
        seed = ctx.seed if self.seed is None else self.seed
        rng = make_rng(seed, ctx.epoch, ctx.world.rank, ctx.world.worker)
        return buffer_shuffle(items, self.size, rng)


class Batched:
    """Groups of ``size`` items collated into one batch (a :class:`Batch` or :class:`BatchDict`)."""

    name = "batched"

    def __init__(self, size: int, collate: Callable[[list[Any]], Any] | None, partial: bool,
                 handler: Handler) -> None:
        self.size, self.collate, self.partial, self.handler = size, collate, partial, handler

    def _emit(self, items: list[Any], ctx: Context) -> Iterator[Any]:
        try:
            out = (self.collate or default_collate)(items)
        except Exception as exc:
            self.handler.handle(exc, stage=self.name, stats=ctx.stats, where=f"{len(items)} items")
            return
        yield _as_batch(out)

    def __call__(self, items: Iterator[Any], ctx: Context) -> Iterator[Any]:
        buf: list[Any] = []
        for item in items:
            buf.append(item)
            if len(buf) == self.size:
                yield from self._emit(buf, ctx)
                buf = []
        if buf and self.partial:
            yield from self._emit(buf, ctx)


# -- the fluent methods ---------------------------------------------------------------------
class PipelineMixin:
    """The fluent methods; each returns a new :class:`Pipeline` with one more stage.

    Mixed into :class:`awsio.dataset.S3IterableDataset` (which provides ``iter_records``);
    on a Pipeline they extend it, on a source they start one.
    """

    def _pipeline(self) -> Pipeline:
        return Pipeline(self)

    def dataproc(self, batch_size: int | None = None, *, shuffle: bool = True,
                 shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER, seed: int | None = None,
                 drop_last: bool = False, handler: HandlerSpec = None) -> Pipeline:
        """Training-style data processing: shuffling and batching parameters.

        ``shuffle`` shuffles the shard order every epoch (when the source has ``shuffle_urls``)
        and the samples through a ``shuffle_buffer``-sample buffer at this point of the
        pipeline; ``batch_size`` collates the final items into batches at the *end* of the
        pipeline (``drop_last`` drops a short last batch per worker); ``seed`` seeds every
        shuffle (default: the source's ``seed``, else 0); ``handler`` becomes the default
        policy of the stages added after this one. The buffer holds ``shuffle_buffer``
        undecoded samples per DataLoader worker (about 100 MiB for 1000 ImageNet samples).
        """
        p = self._pipeline()
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        changes: dict[str, Any] = {"batch_size": batch_size, "drop_last": drop_last}
        if seed is not None:
            changes["seed"] = seed
        if handler is not None:
            changes["handler"] = resolve_handler(handler)
        if shuffle and hasattr(p.source, "shuffle_urls"):
            source = copy.copy(p.source)
            source.shuffle_urls = True
            if hasattr(source, "seed"):
                source.seed = changes.get("seed", p.seed)
            changes["source"] = source
        p = p._replace(**changes)
        if shuffle and shuffle_buffer > 1:
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
        """Collate groups of ``batch_size`` items here (default: torch ``default_collate``);
        ``partial=False`` drops a short last batch."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        p = self._pipeline()
        return p._add(Batched(batch_size, collate, partial, p._handler(handler)), shape="any")


class Pipeline(PipelineMixin, IterableDataset):  # type: ignore[type-arg]
    """A source of records plus a tuple of stages; see the module docstring.

    Args:
        source: an object with ``iter_records()`` and ``set_epoch(n)``.
        stages: the stages after grouping (normally built by the fluent methods).
        seed: base seed of the shuffles (default: ``source.seed`` if present, else 0).
        handler: the default error policy of stages (default: ``source.handler`` if present).
        batch_size, drop_last: final batching, as set by :meth:`dataproc`.
    """

    def __init__(self, source: Any, stages: Sequence[Any] = (), *, seed: int | None = None,
                 handler: HandlerSpec = None, batch_size: int | None = None,
                 drop_last: bool = False, shape: str = "dict") -> None:
        super().__init__()
        if not hasattr(source, "iter_records"):
            raise TypeError(f"a Pipeline source needs iter_records(): {type(source).__name__}")
        self.source = source
        self.stages = tuple(stages)
        self.seed = int(getattr(source, "seed", 0) or 0) if seed is None else int(seed)
        src_handler = getattr(source, "handler", None)
        self.handler = resolve_handler(handler if handler is not None else src_handler)
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.shape = shape
        self._epoch = 0
        self._epoch_set = False
        self.stats = SkipStats()

    # -- building -------------------------------------------------------------------------
    def _pipeline(self) -> Pipeline:
        return self

    def _replace(self, **changes: Any) -> Pipeline:
        new = copy.copy(self)
        new.__dict__.update(changes)
        new.stats = SkipStats()
        return new

    def _add(self, stage: Any, shape: str | None = None) -> Pipeline:
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

    # -- running --------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch`` for the next iteration (forwarded to the source)."""
        self._epoch = int(epoch)
        self._epoch_set = True
        self.source.set_epoch(epoch)

    @property
    def epoch(self) -> int:
        return self._epoch

    def __iter__(self) -> Iterator[Any]:
        world = current_world()
        epoch = pass_epoch(self._epoch, self._epoch_set, world)
        self._epoch += 1
        self.source.set_epoch(epoch)
        stats = SkipStats()
        self.stats = stats
        ctx = Context(epoch, world, self.seed, stats)
        items: Iterator[Any] = Group(self.handler)(iter(self.source.iter_records()), ctx)
        for stage in self.stages:
            items = stage(items, ctx)
        if self.batch_size is not None:
            items = Batched(self.batch_size, None, not self.drop_last, self.handler)(items, ctx)
        count = 0
        try:
            for item in items:
                count += 1
                yield item
        finally:
            _count_source_skips(self.source, stats)
            level = logging.WARNING if stats.total else logging.INFO
            log.log(level, "pipeline epoch %d rank %d worker %d/%d: %d items, %s", epoch,
                    world.rank, world.worker, world.num_workers, count, stats.summary())


def _count_source_skips(source: Any, stats: SkipStats) -> None:
    src = getattr(source, "stats", None)
    skips = getattr(src, "skips", src)
    if isinstance(skips, SkipStats):
        stats.merge(skips)
    elif isinstance(getattr(src, "skipped", None), int) and getattr(src, "skipped"):
        stats.counts[("source", "skipped")] += getattr(src, "skipped")
        stats.examples.extend(list(getattr(src, "errors", []))[:5])
