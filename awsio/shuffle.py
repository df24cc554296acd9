"""Seeded shuffles as pure functions: same (seed, epoch, ...) -> same order, on every machine.

Never the global ``random`` state, never time or pid: every generator is seeded from a tuple.
"""

from __future__ import annotations

import random
from typing import Iterable, Iterator, Sequence, TypeVar

import numpy as np

__all__ = ["buffer_shuffle", "make_rng", "seed_sequence", "shuffled"]

T = TypeVar("T")


def seed_sequence(*parts: int) -> np.random.SeedSequence:
    """A numpy SeedSequence from non-negative integers (seed, epoch, rank, worker...)."""
    return np.random.SeedSequence([int(p) & 0xFFFFFFFFFFFFFFFF for p in parts])


def make_rng(*parts: int) -> random.Random:
    """A ``random.Random`` seeded from the tuple ``parts`` (e.g. ``seed, epoch, rank, worker``)."""
    state = seed_sequence(*parts).generate_state(4, dtype=np.uint64)
    return random.Random(int.from_bytes(state.tobytes(), "little"))


def shuffled(items: Sequence[T], seed: int, epoch: int) -> list[T]:
    """``items`` permuted by ``(seed, epoch)``: identical on every rank and worker."""
    rng = np.random.Generator(np.random.PCG64(seed_sequence(seed, epoch)))
    return [items[int(i)] for i in rng.permutation(len(items))]


def buffer_shuffle(iterable: Iterable[T], size: int, rng: random.Random) -> Iterator[T]:
    """Shuffle a stream with a bounded buffer of ``size`` items (memory stays O(size)).

    The first ``size`` items fill the buffer; then each incoming item takes the place of a random
    buffered one, which is yielded; the buffer is drained in random order at the end.
    ``size <= 1`` passes items through unchanged. Every item comes out exactly once.
    """
    if size <= 1:
        yield from iterable
        return
    buf: list[T] = []
    for item in iterable:
        if len(buf) < size:
            buf.append(item)
            continue
        i = rng.randrange(size)
        out, buf[i] = buf[i], item
        yield out
    rng.shuffle(buf)
    yield from buf
