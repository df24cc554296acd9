"""Splitting work across ranks x DataLoader workers, as pure functions.

Every function here is a pure function of its arguments (the item list, the slot and the slot
count), so every rank computes the same plan from the same (seed, epoch) order and no sample is
lost or doubled. The unit of work is a :class:`Piece`: a whole object/shard, a contiguous range
of a shard's samples (when a per-shard index gives sample counts), or "every ``parts``-th sample
starting at ``part``" of a shard whose counts are unknown (the fallback when there are fewer
shards than slots and no index).

A *slot* is one iterator: ``slot = rank * num_workers + worker`` of ``slots = world * num_workers``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, TypeVar

__all__ = ["Piece", "Plan", "plan_counted", "plan_uncounted", "split_round_robin"]

T = TypeVar("T")
EQUAL_MODES = (None, "drop", "repeat")


@dataclass(frozen=True)
class Piece:
    """One unit of work on ``url``.

    ``start``/``stop``: the half-open range of sample indices to yield (``stop=None``: to the end).
    ``part``/``parts``: of those, only samples whose index ``% parts == part``.
    """

    url: str
    start: int = 0
    stop: int | None = None
    part: int = 0
    parts: int = 1

    @property
    def whole(self) -> bool:
        """True when the piece is the whole object/shard."""
        return self.start == 0 and self.stop is None and self.parts == 1


@dataclass(frozen=True)
class Plan:
    """The pieces of every slot, plus what equal-work mode changed.

    ``counts[i]`` is the number of samples slot ``i`` yields (None where unknown).
    """

    slots: tuple[tuple[Piece, ...], ...]
    counts: tuple[int | None, ...]
    total: int | None
    dropped: int = 0
    repeated: int = 0

    def rank_count(self, rank: int, num_workers: int) -> int | None:
        """Samples yielded by all workers of ``rank`` (None if unknown)."""
        counts = self.counts[rank * num_workers:(rank + 1) * num_workers]
        if any(c is None for c in counts):
            return None
        return sum(c for c in counts if c is not None)


def split_round_robin(items: Sequence[T], slot: int, slots: int) -> list[T]:
    """Items ``slot, slot + slots, ...``: disjoint and complete over ``slot in range(slots)``."""
    if not 0 <= slot < slots:
        raise ValueError(f"slot {slot} out of range({slots})")
    return list(items[slot::slots])


def _cut(counts: Sequence[tuple[str, int]], offsets: Sequence[int], g0: int, g1: int) -> list[Piece]:
    """The pieces covering global sample indices [g0, g1) of the concatenated shards."""
    import bisect

    out: list[Piece] = []
    i = bisect.bisect_right(offsets, g0) - 1
    while g0 < g1 and i < len(counts):
        url, n = counts[i]
        base = offsets[i]
        s, e = g0 - base, min(g1 - base, n)
        if e > s:
            out.append(Piece(url) if s == 0 and e == n else Piece(url, s, e))
            g0 = base + e
        i += 1
    return out


def plan_counted(counts: Sequence[tuple[str, int]], slots: int, equal: str | None = None) -> Plan:
    """Cut the concatenated samples of ``counts`` (``(url, n_samples)`` in order) into ``slots``
    contiguous ranges whose sizes differ by at most one.

    ``equal="drop"`` trims the longer ranges (drops ``total % slots`` samples); ``equal="repeat"``
    pads the shorter ones with samples taken again from the start of the order (repeats
    ``slots - total % slots`` when the remainder is non-zero). Either way every slot, hence every
    rank, yields the same count, so the per-worker batch counts match across ranks too.
    """
    if equal not in EQUAL_MODES:
        raise ValueError(f"equal must be one of {EQUAL_MODES}, got {equal!r}")
    if slots < 1:
        raise ValueError("slots must be >= 1")
    offsets: list[int] = []
    total = 0
    for _, n in counts:
        offsets.append(total)
        total += n
    q, r = divmod(total, slots)
    plan: list[tuple[Piece, ...]] = []
    sizes: list[int] = []
    dropped = repeated = 0
    wrap = 0  # next global index to repeat
    for i in range(slots):
        g0 = i * q + min(i, r)
        size = q + (1 if i < r else 0)
        if equal == "drop" and size > q:
            size, dropped = q, dropped + 1
        pieces = _cut(counts, offsets, g0, g0 + size)
        if equal == "repeat" and r and size == q and total:
            pieces += _cut(counts, offsets, wrap % total, wrap % total + 1)
            wrap, size, repeated = wrap + 1, size + 1, repeated + 1
        plan.append(tuple(pieces))
        sizes.append(size)
    return Plan(tuple(plan), tuple(sizes), total, dropped, repeated)


def plan_uncounted(urls: Sequence[str], slots: int) -> Plan:
    """Plan shards whose sample counts are unknown.

    With at least as many shards as slots, whole shards go round-robin. With fewer, each shard is
    split ``parts = ceil(slots / len(urls))`` ways by sample index modulo ``parts`` (each piece
    streams the shard and keeps its samples; no sample is ever cut), and pieces go round-robin.
    """
    if slots < 1:
        raise ValueError("slots must be >= 1")
    if len(urls) >= slots or not urls:
        pieces = [Piece(u) for u in urls]
    else:
        parts = -(-slots // len(urls))
        pieces = [Piece(u, part=j, parts=parts) for u in urls for j in range(parts)]
    plan = tuple(tuple(split_round_robin(pieces, i, slots)) for i in range(slots))
    return Plan(plan, tuple(None for _ in range(slots)), None)
