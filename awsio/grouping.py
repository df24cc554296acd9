"""Sample keys of member names, and the record type that flows out of the datasets.

A *sample* is a run of consecutive archive members that share a key: ``dir/n0144_10026.cls`` and
``dir/n0144_10026.jpg`` are one sample with key ``dir/n0144_10026``. The key is the path up to the
first dot of the basename (directories kept), so it is the same rule webdataset uses. Splitting
(:mod:`awsio.epoch`) never cuts inside a sample, and the pipeline groups members by it.
No I/O, no torch.
"""

from __future__ import annotations

from typing import Callable, Hashable, Iterable, Iterator, NamedTuple, TypeVar

__all__ = ["Record", "group_keys", "is_metadata", "sample_key", "sample_runs"]

T = TypeVar("T")


class Record(NamedTuple):
    """One item yielded by a dataset: where it came from, its name, its bytes.

    ``source`` is the shard URL for archive members and the object URL for plain objects;
    ``name`` is the member name, or the object URL for plain objects. ``sample``: the index of
    its sample in the source when the source knows it (-1: not known), so that two samples with
    the same key (not next to each other in their shard, side by side after a shuffle) are never
    grouped into one.
    """

    source: str
    name: str
    data: bytes
    sample: int = -1


def sample_key(name: str) -> tuple[str, str]:
    """Split a member name into ``(key, field)``.

    >>> sample_key("dir/n0144_10026.seg.png")
    ('dir/n0144_10026', 'seg.png')
    >>> sample_key("README")
    ('README', '')
    """
    slash = name.rfind("/") + 1
    dot = name.find(".", slash)
    if dot < 0:
        return name, ""
    return name[:dot], name[dot + 1:]


def is_metadata(name: str) -> bool:
    """True for ``__...__`` metadata members (``__index__``, ``dir/__meta__.json``): never samples."""
    key = sample_key(name)[0]
    base = key[key.rfind("/") + 1:]
    return len(base) > 4 and base.startswith("__") and base.endswith("__")


def group_keys(names: Iterable[str]) -> Iterator[tuple[str, int]]:
    """Yield ``(key, member_count)`` for each run of consecutive names sharing a key."""
    current: str | None = None
    count = 0
    for name in names:
        key = sample_key(name)[0]
        if key != current:
            if current is not None:
                yield current, count
            current, count = key, 0
        count += 1
    if current is not None:
        yield current, count


def sample_runs(items: Iterable[T], name: Callable[[T], str],
                scope: Callable[[T], Hashable] = lambda _: None) -> Iterator[list[T]]:
    """The samples of ``items``: runs of consecutive items whose ``name`` has the same key (and
    the same ``scope``, e.g. the shard, so a key never spans two shards). The one place where
    members become samples: indexes, zip directories and in-memory sources all use it."""
    run: list[T] = []
    last: tuple[Hashable, str] | None = None
    for item in items:
        key = (scope(item), sample_key(name(item))[0])
        if key != last and run:
            yield run
            run = []
        last = key
        run.append(item)
    if run:
        yield run
