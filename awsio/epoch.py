"""An epoch's work as pure functions: the global sample order, its split, and what is left of it.

The unit of data is a *sample* (a run of archive members sharing a key, or one plain object),
numbered by its *position* in the epoch's **global order**. That order is a pure function of
``(listing, seed, epoch, shuffle, window)`` and never of the world size or the number of
DataLoader workers, which is what makes resuming exact and elastic:

* shuffling permutes the shards by ``(seed, epoch)`` and then the samples inside each *window*
  of ``window`` consecutive shards of that order by ``(seed, epoch, block)`` (a block shuffle, as
  mosaic streaming's ``py1b``): samples of a window are read concurrently by byte ranges, so the
  order needs no shuffle buffer and resuming needs no saved buffer;
* the positions still to do in the epoch (``remaining``, a list of half-open intervals; all of
  ``[0, total)`` at the start) are cut into one contiguous run per rank (``equal_work`` trims or
  pads runs to equal length);
* a rank's run is cut into *units* of ``unit`` positions (the pipeline's batch); DataLoader worker
  ``k`` of ``K`` takes units ``k, k + K, ...``. The DataLoader hands batches to the training loop
  round-robin over its workers, so the loop receives the rank's units **in order**, whatever
  ``K`` is: after ``c`` batches the rank has consumed exactly the first ``c`` units of its run.

:func:`advance` turns "every rank consumed its first ``c`` units" into the new ``remaining``,
which any other world size and worker count can split again. No I/O, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from awsio.shuffle import seed_sequence

__all__ = ["EQUAL_WORK", "Order", "RankRun", "advance", "global_order", "intervals_total", "split"]

EQUAL_WORK = (None, "drop", "repeat")
Intervals = list[tuple[int, int]]


@dataclass(frozen=True)
class Order:
    """The epoch's global order: position ``p`` is sample ``sample[p]`` of shard ``shard[p]``."""

    shard: np.ndarray   # int64, index into the listing
    sample: np.ndarray  # int64, sample index within that shard

    def __len__(self) -> int:
        return int(self.shard.shape[0])


def global_order(counts: Sequence[int], *, seed: int = 0, epoch: int = 0, shuffle: bool = False,
                 window: int = 8, shards: Sequence[int] | None = None,
                 streams: Sequence[bool] | None = None) -> Order:
    """The global order of the samples of shards with ``counts[i]`` samples each.

    Unshuffled: shard by shard, in listing order. Shuffled: shards permuted by ``(seed, epoch)``
    (or in the order ``shards`` gives), then the samples of each block of ``window`` consecutive
    shards permuted by ``(seed, epoch, block)`` (``window=0``: samples keep their shard order).
    The samples of a shard marked in ``streams`` (one that can only be read forwards: tar.gz)
    keep their shard order inside the block, interleaved with the others at the positions the
    permutation gave that shard. Identical on every rank and worker.
    """
    counts_arr = np.asarray(counts, dtype=np.int64)
    if counts_arr.ndim != 1 or (counts_arr < 0).any():
        raise ValueError("counts must be a list of non-negative sample counts")
    if window < 0:
        raise ValueError("window must be >= 0")
    if shards is not None:
        order = np.asarray(shards, dtype=np.int64)
        if sorted(order.tolist()) != list(range(len(counts_arr))):
            raise ValueError("shards must be a permutation of the shard indices")
    else:
        order = np.arange(len(counts_arr), dtype=np.int64)
        if shuffle:
            order = np.random.Generator(np.random.PCG64(seed_sequence(seed, epoch))).permutation(order)
    step = window if (shuffle and window) else max(1, len(order))
    stream_mask = np.asarray(streams, dtype=bool) if streams is not None and any(streams) else None
    shard_parts: list[np.ndarray] = []
    sample_parts: list[np.ndarray] = []
    for b in range(0, len(order), step):
        block = order[b:b + step]
        n = counts_arr[block]
        sh = np.repeat(block, n)
        # sample index within its shard: 0..n-1 for each shard of the block
        sa = np.arange(int(n.sum()), dtype=np.int64) - np.repeat(np.cumsum(n) - n, n)
        if shuffle and window and len(sh) > 1:
            rng = np.random.Generator(np.random.PCG64(seed_sequence(seed, epoch, 1 + b // step)))
            perm = rng.permutation(len(sh))
            sh, sa = sh[perm], sa[perm]
            if stream_mask is not None:
                _in_shard_order(sh, sa, stream_mask)
        shard_parts.append(sh)
        sample_parts.append(sa)
    if not shard_parts:
        empty = np.zeros(0, dtype=np.int64)
        return Order(empty, empty)
    return Order(np.concatenate(shard_parts), np.concatenate(sample_parts))


def _in_shard_order(sh: np.ndarray, sa: np.ndarray, streams: np.ndarray) -> None:
    """Renumber, in place, the samples of the ``streams`` shards of a block so that each shard's
    come in order (0, 1, ...) at the positions they hold; the block holds every sample of its shards."""
    at = np.flatnonzero(streams[sh])
    if not len(at):
        return
    by_shard = at[np.argsort(sh[at], kind="stable")]  # each shard's positions, in order
    s = sh[by_shard]
    starts = np.flatnonzero(np.concatenate(([True], s[1:] != s[:-1])))
    sa[by_shard] = np.arange(len(s)) - np.repeat(starts, np.diff(np.concatenate((starts, [len(s)]))))


def intervals_total(intervals: Sequence[Sequence[int]]) -> int:
    """How many positions the half-open ``intervals`` hold."""
    return sum(max(0, int(b) - int(a)) for a, b in intervals)


def _normalize(intervals: Sequence[Sequence[int]]) -> Intervals:
    out: Intervals = []
    for a, b in intervals:
        a, b = int(a), int(b)
        if b <= a:
            continue
        if out and out[-1][1] == a:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def _slice(intervals: Intervals, lo: int, hi: int) -> Intervals:
    """Positions ``lo..hi-1`` (counted along ``intervals``) as intervals."""
    out: Intervals = []
    seen = 0
    for a, b in intervals:
        n = b - a
        s, e = max(lo - seen, 0), min(hi - seen, n)
        if e > s:
            out.append((a + s, a + e))
        seen += n
        if seen >= hi:
            break
    return out


@dataclass(frozen=True)
class RankRun:
    """What one rank does in (what is left of) an epoch.

    ``core``: its contiguous share of ``remaining`` (intervals of positions); ``pad``: positions
    taken again from the start of the epoch to equalize ranks (``equal_work="repeat"``).
    """

    core: Intervals
    pad: Intervals

    @property
    def size(self) -> int:
        return intervals_total(self.core) + intervals_total(self.pad)

    def positions(self) -> np.ndarray:
        """Every position of the run, in order (core first, then padding)."""
        parts = [np.arange(a, b, dtype=np.int64) for a, b in self.core + self.pad]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def units(self, unit: int) -> int:
        """How many units of ``unit`` positions the run makes (the last one may be short)."""
        return -(-self.size // unit)


def split(remaining: Sequence[Sequence[int]], world_size: int, equal_work: str | None = None,
          total: int | None = None) -> list[RankRun]:
    """Cut ``remaining`` into one contiguous run per rank, sizes differing by at most one.

    ``equal_work="drop"`` gives every rank ``R // world_size`` positions (the last ``R %
    world_size`` positions of the epoch are not read); ``"repeat"`` pads the shorter runs with one
    position each from the start of the epoch's order (``total``: the epoch's size).
    """
    if equal_work not in EQUAL_WORK:
        raise ValueError(f"equal_work must be one of {EQUAL_WORK}, got {equal_work!r}")
    if world_size < 1:
        raise ValueError("world_size must be >= 1")
    rem = _normalize(remaining)
    r_total = intervals_total(rem)
    q, r = divmod(r_total, world_size)
    runs: list[RankRun] = []
    wrap = 0
    for rank in range(world_size):
        if equal_work == "drop":
            lo, size = rank * q, q
        else:
            lo, size = rank * q + min(rank, r), q + (1 if rank < r else 0)
        core = _slice(rem, lo, lo + size)
        pad: Intervals = []
        if equal_work == "repeat" and r and size == q:
            n = total if total is not None else r_total
            if n:
                pad = [(wrap % n, wrap % n + 1)]
                wrap += 1
        runs.append(RankRun(core, pad))
    return runs


def advance(remaining: Sequence[Sequence[int]], world_size: int, equal_work: str | None,
            consumed: Sequence[int], total: int | None = None) -> Intervals:
    """``remaining`` after rank ``i`` consumed the first ``consumed[i]`` positions of its run.

    Padding (``"repeat"``) is never left over: it only repeats positions done elsewhere. What
    ``"drop"`` left out of every run stays out (it is dropped for good, as in a full epoch).
    """
    if len(consumed) != world_size:
        raise ValueError(f"need one consumed count per rank ({world_size}), got {len(consumed)}")
    runs = split(remaining, world_size, equal_work, total)
    left: Intervals = []
    for run, c in zip(runs, consumed):
        n = intervals_total(run.core)
        left.extend(_slice(run.core, min(max(int(c), 0), n), n))
    return _normalize(left)
