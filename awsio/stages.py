"""Pipeline stages: picklable callables ``(items, ctx) -> items``, torch-free.

Each stage runs over the samples of one *unit* (see :mod:`awsio.source`) at a time: a fresh
generator per unit, so no stage carries anything from one unit to the next and a resumed
pipeline produces exactly what an uninterrupted one would. :class:`Group` turns records into
sample dicts; the others map, filter, decode or shuffle samples; batching lives in
:mod:`awsio.batching` (the one module that touches torch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

from awsio.decode import Decoder
from awsio.decode.roles import find_field
from awsio.errors import ArchiveError
from awsio.grouping import Record, is_metadata, sample_key
from awsio.handlers import Handler, SkipStats
from awsio.shuffle import buffer_shuffle, make_rng
from awsio.world import World

__all__ = ["Context", "Decode", "Group", "Map", "Rename", "Select", "Shuffle", "ToTuple", "TransformRoles"]


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
        at = -1  # the sample index of `current` in its source (-1: not known)
        for source, name, data, sample in records:
            if is_metadata(name):
                continue
            key, fld = sample_key(name)
            fld = fld or "data"
            if current is None or key != current["__key__"] or source != current["__url__"] or sample != at:
                if current is not None:
                    yield current
                current, at = {"__key__": key, "__url__": source}, sample
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
    """A bounded shuffle buffer over the whole stream, seeded from ``(seed, epoch, rank, worker)``.

    It spans batches, so a pipeline that has one cannot save an exact state (its buffer would be
    lost): ``Pipeline.state_dict`` refuses. The source's own shuffle (``shuffle_urls=True``,
    ``dataproc(shuffle=True)``) is part of the epoch's order and resumes exactly.
    """

    name = "shuffle"
    spans_units = True

    def __init__(self, size: int, seed: int | None = None) -> None:
        self.size, self.seed = size, seed

    def __call__(self, items: Iterator[Any], ctx: Context) -> Iterator[Any]:
        seed = ctx.seed if self.seed is None else self.seed
        rng = make_rng(seed, ctx.epoch, ctx.world.rank, ctx.world.worker)
        return buffer_shuffle(items, self.size, rng)
