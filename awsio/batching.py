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


