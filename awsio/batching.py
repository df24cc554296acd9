"""Batches: the pipeline's one stage that touches torch.

A pipeline batch is a :class:`Batch` (a tuple of collated fields) or a :class:`BatchDict`.
:func:`register_collation` (called when a pipeline that batches is built, never at import)
teaches torch's ``default_collate`` to *concatenate* pipeline batches instead of stacking them,
so ``DataLoader(pipeline)`` with its default ``batch_size=1`` passes each batch through
unchanged, and ``batch_size=k`` joins ``k`` of them. ``DataLoader(pipeline, batch_size=None)``
needs none of it and is the recommended form.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from torch.utils.data._utils.collate import default_collate, default_collate_fn_map

try:
    import numpy as np
except ImportError:  # pragma: no cover
    np = None  # type: ignore[assignment]

from awsio.errors import DecodeError
from awsio.handlers import Handler
from awsio.stages import Context

__all__ = ["Batch", "BatchDict", "Batched", "collate_batches", "register_collation"]


class Batch(tuple):  # type: ignore[type-arg]
    """A batch made by the pipeline: a tuple of collated fields, e.g. ``(images, targets)``."""

    __slots__ = ()

    def __reduce__(self) -> tuple[Any, ...]:
        return Batch, (tuple(self),)


class BatchDict(dict):  # type: ignore[type-arg]
    """A batch made by the pipeline from dict samples: ``{field: collated values}``."""


def _check_fields(maps: Sequence[Mapping[Any, Any]], what: str) -> None:
    """Raise :class:`DecodeError` unless every mapping has the same fields: ``default_collate`` takes
    the first one's, so it would drop a field only later ones have, or fail on one they lack."""
    first = maps[0].keys()
    if all(m.keys() == first for m in maps):
        return
    differ = sorted(set().union(*maps) - set(first).intersection(*maps), key=str)
    keys = [m["__key__"] for m in maps if "__key__" in m] or None
    raise DecodeError(f"{what} with different fields cannot be collated: {differ} not in all of them",
                      key=keys, field=differ)


def _check_nested_fields(values: Sequence[Any], what: str, path: str = "") -> None:
    """:func:`_check_fields` at every level ``default_collate`` walks: the samples themselves, a
    mapping's values key by key, a list/tuple's positions (e.g. the dicts inside a ``json`` field)."""
    first = values[0]
    if isinstance(first, Mapping):
        _check_fields(values, f"{what} at {path}" if path else what)
        for k in first:
            _check_nested_fields([v[k] for v in values], what, f"{path}[{k!r}]")
    elif isinstance(first, (list, tuple)) and all(isinstance(v, (list, tuple)) and len(v) == len(first)
                                                   for v in values):
        for i, x in enumerate(first):
            if isinstance(x, (Mapping, list, tuple)):
                _check_nested_fields([v[i] for v in values], what, f"{path}[{i}]")


def _collate(samples: list[Any]) -> Any:
    """``default_collate``, after checking that dict samples (and dicts nested in them) all have
    the same fields."""
    _check_nested_fields(samples, f"{len(samples)} samples")
    return default_collate(samples)


_COLLATED = (torch.Tensor, Mapping, list, tuple) + ((np.ndarray,) if np is not None else ())


def _concat(values: Sequence[Any]) -> Any:
    """Join values ``default_collate`` made from consecutive groups of samples, mirroring its
    structure: tensors and arrays along dimension 0, a mapping key by key, a list/tuple of
    collated items (a list/tuple field's positions) position by position, any other list/tuple
    (one value per sample: str, bytes) flattened."""
    first = values[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(list(values), 0)
    if np is not None and isinstance(first, np.ndarray):
        return np.concatenate(values, 0)
    if isinstance(first, Mapping):
        _check_fields(values, f"{len(values)} batches")
        return {k: _concat([v[k] for v in values]) for k in first}
    if isinstance(first, (list, tuple)):
        if first and all(isinstance(x, _COLLATED) for x in first):
            if any(len(v) != len(first) for v in values):
                raise ValueError(f"cannot join batches whose list fields have {sorted({len(v) for v in values})} "
                                 "positions")
            return [_concat([v[i] for v in values]) for i in range(len(first))]
        return [x for v in values for x in v]
    return list(values)


def collate_batches(batches: Sequence[Any], *, collate_fn_map: Any = None) -> Any:
    """Join pipeline batches: one passes through, several are concatenated along dimension 0
    (:class:`~awsio.errors.DecodeError` when dict batches have different fields)."""
    if len(batches) == 1:
        return batches[0]
    if isinstance(batches[0], BatchDict):
        return BatchDict(_concat(batches))
    return Batch(_concat([b[i] for b in batches]) for i in range(len(batches[0])))


def register_collation() -> None:
    """Make torch's default collation concatenate pipeline batches (idempotent)."""
    default_collate_fn_map[Batch] = collate_batches
    default_collate_fn_map[BatchDict] = collate_batches


def _as_batch(value: Any) -> Any:
    if isinstance(value, Mapping) and not isinstance(value, BatchDict):
        return BatchDict(value)
    if isinstance(value, (tuple, list)) and not isinstance(value, Batch):
        return Batch(value)
    return value



class Batched:
    """Groups of ``size`` items collated into one batch (a :class:`Batch` or :class:`BatchDict`).

    The default collation is ``default_collate``; dict samples must all have the same fields
    (else :class:`~awsio.errors.DecodeError`). A batch that fails to collate is handled by
    ``handler``, and a skip counts all its items. ``partial=False`` drops a short group; as the
    pipeline runs its stages one unit at a time, that is the remainder of *every* unit (e.g.
    ``dataproc(batch_size=10).batched(4, partial=False)`` drops 2 samples of every 10), each
    drop counted in the stats as ``("batched", "partial")`` with the number of items dropped.
    """

    name = "batched"

    def __init__(self, size: int, collate: Callable[[list[Any]], Any] | None, partial: bool,
                 handler: Handler) -> None:
        self.size, self.collate, self.partial, self.handler = size, collate, partial, handler

    def _emit(self, items: list[Any], ctx: Context) -> Iterator[Any]:
        try:
            out = (self.collate or _collate)(items)
        except Exception as exc:
            self.handler.handle(exc, stage=self.name, stats=ctx.stats, where=f"{len(items)} items",
                                count=len(items))
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
        elif buf:
            ctx.stats.add(self.name, "partial", f"{len(buf)} items", count=len(buf))


