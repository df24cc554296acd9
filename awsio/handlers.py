"""The one error policy for everything that can fail on a sample or a shard.

A *handler* decides what happens when a stage (reading a shard, grouping, decoding, a user
transform...) raises:

* ``"raise"`` (default): the exception propagates (a DataLoader worker sends it to the main process).
* ``"warn"``: log a warning naming the stage and the error, skip the item, go on.
* ``"skip"``: skip the item quietly, go on.
* a callable ``handler(exc) -> bool`` (as in webdataset): True skips the item, False re-raises;
  the callable may also raise itself.

Skips are never silent: each one is counted in a :class:`SkipStats` by ``(stage, reason)``
(reason = the exception's class name). A pipeline's counts are reachable as ``pipeline.stats``.
With ``num_workers=0`` they are exact and live in the process that iterates. DataLoader workers
are separate processes, so their counts stay in the workers: every worker logs its summary (one
INFO line, WARNING if anything was skipped) when its iteration ends; ``pipeline.stats`` in the
main process then only covers iterations run in the main process.

No torch here; this module is imported by the datasets layer and the pipeline.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Union

__all__ = ["POLICIES", "Handler", "HandlerSpec", "SkipStats", "resolve_handler"]

log = logging.getLogger(__name__)

POLICIES = ("raise", "warn", "skip")
HandlerSpec = Union[str, Callable[[BaseException], bool], "Handler", None]

# how many example messages a SkipStats keeps (the counts are always complete), and how long each
_MAX_EXAMPLES = 20
_MAX_EXAMPLE_CHARS = 1000


@dataclass
class SkipStats:
    """Counts of skipped items by ``(stage, reason)``, plus a few example messages.

    ``counts`` maps ``(stage, reason)`` to a number; ``total`` is their sum. Thread-safe
    (background prefetching threads may count too) and picklable.
    """

    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def add(self, stage: str, exc: BaseException | str, where: str = "", count: int = 1) -> None:
        """Count ``count`` skipped items of ``stage`` because of ``exc`` (an exception or a reason)."""
        reason = exc if isinstance(exc, str) else type(exc).__name__
        with self._lock:
            self.counts[(stage, reason)] += count
            if len(self.examples) < _MAX_EXAMPLES:
                where_ = f" {where}" if where else ""
                example = f"{stage}{where_}: {reason}: {exc}"
                if len(example) > _MAX_EXAMPLE_CHARS:
                    example = example[:_MAX_EXAMPLE_CHARS] + "..."
                self.examples.append(example)

    @property
    def total(self) -> int:
        """How many items were skipped, all stages together."""
        with self._lock:  # (another thread may be adding a new (stage, reason))
            return sum(self.counts.values())

    def by_stage(self) -> dict[str, int]:
        """Skipped items per stage."""
        out: dict[str, int] = {}
        with self._lock:
            counts = list(self.counts.items())
        for (stage, _), n in counts:
            out[stage] = out.get(stage, 0) + n
        return out

    def merge(self, other: SkipStats) -> SkipStats:
        """Add ``other``'s counts into this one (e.g. counts gathered from workers); returns self."""
        with other._lock:  # (a copy first: ``other`` may be this one, or be counting in a thread)
            counts, examples = Counter(other.counts), list(other.examples)
        with self._lock:
            self.counts.update(counts)
            room = _MAX_EXAMPLES - len(self.examples)
            self.examples.extend(examples[:max(0, room)])
        return self

    def clear(self) -> None:
        with self._lock:
            self.counts.clear()
            self.examples.clear()

    def summary(self) -> str:
        """One line: ``"skipped 3 (decode/DecodeError=2, map/KeyError=1)"`` or ``"skipped 0"``."""
        with self._lock:
            counts = sorted(self.counts.items())
        if not counts:
            return "skipped 0"
        parts = ", ".join(f"{s}/{r}={n}" for (s, r), n in counts)
        return f"skipped {sum(n for _, n in counts)} ({parts})"

    def __getstate__(self) -> dict[str, object]:
        with self._lock:
            return {"counts": Counter(self.counts), "examples": list(self.examples)}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


class Handler:
    """A resolved error policy; picklable when its callable is.

    Call :meth:`handle` from an ``except`` block: it re-raises, or counts the skip (and logs it
    under ``"warn"``) and returns so the caller moves on to the next item.
    """

    __slots__ = ("policy", "fn")
    policy: str
    fn: Callable[[BaseException], bool] | None

    def __init__(self, policy: str | Callable[[BaseException], bool] = "raise") -> None:
        if callable(policy):
            self.policy = "callable"
            self.fn = policy
        elif policy in POLICIES:
            self.policy, self.fn = str(policy), None
        else:
            raise ValueError(f"handler must be one of {POLICIES} or a callable(exc) -> bool, "
                             f"got {policy!r}")

    def __getstate__(self) -> tuple[str, Callable[[BaseException], bool] | None]:
        return self.policy, self.fn

    def __setstate__(self, state: tuple[str, Callable[[BaseException], bool] | None]) -> None:
        self.policy, self.fn = state

    def __repr__(self) -> str:
        return f"Handler({self.fn!r})" if self.fn is not None else f"Handler({self.policy!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Handler) and (self.policy, self.fn) == (other.policy, other.fn)

    def __hash__(self) -> int:
        return hash((self.policy, id(self.fn)))

    def skips(self, exc: BaseException) -> bool:
        """True if ``exc`` is to be skipped; False if it must propagate."""
        if self.fn is not None:
            return bool(self.fn(exc))
        return self.policy != "raise"

    def handle(self, exc: BaseException, *, stage: str, stats: SkipStats | None = None,
               where: str = "", count: int = 1) -> None:
        """Apply the policy to ``exc`` raised by ``stage`` on item ``where`` (``count`` items lost).

        Raises:
            ``exc`` itself (with its traceback) when the policy does not skip it.
        """
        if not self.skips(exc):
            raise exc
        if stats is not None:
            stats.add(stage, exc, where, count)
        if self.policy == "warn":
            log.warning("skipping %s%s after %s: %s", stage, f" {where}" if where else "",
                        type(exc).__name__, exc)


def resolve_handler(spec: HandlerSpec) -> Handler:
    """A :class:`Handler` from ``"raise"|"warn"|"skip"``, a callable, a Handler, or None (raise).

    Raises:
        ValueError: for any other value.
    """
    if spec is None:
        return Handler("raise")
    if isinstance(spec, Handler):
        return spec
    return Handler(spec)
