"""The benchmark engine's statistics: round order, paired ratios, medians with their spread.

Pure functions of numbers (no I/O, no clock), so that they can be tested exactly.

A benchmark on a shared machine is noisy: the load of other processes drifts over seconds. The
engine therefore runs every case once per *round*, all cases of a round back to back, and reverses
the order every other round (:func:`round_order`) so that no case always runs first, or always right
after the same neighbour. Two cases measured in the same round shared the machine's state of that
moment, so the ratio of their throughputs *in that round* is steadier than the ratio of two
independent best-ofs; the engine reports the median of these per-round ratios and their range
(:func:`paired_ratios`, :func:`summarize`).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Sequence, TypeVar

__all__ = ["Summary", "paired_ratios", "rank_with_ties", "round_order", "summarize"]

T = TypeVar("T")


@dataclass(frozen=True)
class Summary:
    """The median of some values and their range (``lo``..``hi``) over ``n`` values."""

    median: float
    lo: float
    hi: float
    n: int

    def spread(self) -> str:
        """``"0.91-1.05"``, or ``""`` for a single value."""
        return f"{self.lo:.2f}-{self.hi:.2f}" if self.n > 1 else ""


def round_order(items: Sequence[T], round_index: int) -> list[T]:
    """The order of ``items`` in round ``round_index`` (0-based): as given in even rounds, reversed
    in odd ones, so every item runs early and late, and after each neighbour, equally often."""
    return list(items) if round_index % 2 == 0 else list(items)[::-1]


def summarize(values: Sequence[float]) -> Summary | None:
    """Median and range of ``values``; None when there are none."""
    if not values:
        return None
    return Summary(statistics.median(values), min(values), max(values), len(values))


def paired_ratios(rates: Sequence[float | None], reference: Sequence[float | None]) -> list[float]:
    """``rates[i] / reference[i]`` for every round ``i`` where both cases produced a rate.

    Rates are throughputs (bigger is better), one per round, None where the case failed in that
    round. Raises ValueError when the two sequences cover different numbers of rounds (a pairing
    of unequal lists would silently compare different rounds).
    """
    if len(rates) != len(reference):
        raise ValueError(f"paired ratios need one value per round on both sides ({len(rates)} vs {len(reference)})")
    return [a / b for a, b in zip(rates, reference) if a is not None and b is not None and b > 0]


def rank_with_ties(medians: dict[str, float], ratio_spreads: dict[tuple[str, str], Summary],
                   margin: float = 1.1) -> list[list[str]]:
    """Names grouped by rank, best first: sorted by median, and a name joins the previous group
    when its paired ratios against that group's last member do not separate them: their range
    includes 1.0 (the rounds disagree which is faster) or their median is under ``margin`` (closer
    than 10 %, less than this machine's run-to-run noise). Ranking such pairs apart would flip
    between runs.

    ``ratio_spreads[(a, b)]`` is the summary of a's per-round ratios to b, for neighbours in the
    median order (either key order is accepted). A pair without a summary is ranked by median.
    """
    order = sorted(medians, key=lambda k: -medians[k])
    groups: list[list[str]] = []
    for name in order:
        if groups:
            prev = groups[-1][-1]
            s = ratio_spreads.get((prev, name))
            if s is None and (name, prev) in ratio_spreads:
                r = ratio_spreads[(name, prev)]
                s = Summary(1 / r.median, 1 / r.hi, 1 / r.lo, r.n)
            if s is not None and ((s.n > 1 and s.lo <= 1.0 <= s.hi) or s.median < margin):
                groups[-1].append(name)
                continue
        groups.append([name])
    return groups
