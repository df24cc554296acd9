"""Read samples by position: the byte ranges of the samples a unit needs, and nothing else.

:class:`ShardReader` turns each unit (a list of positions in the epoch's global order, see
:mod:`awsio.epoch`) into the :class:`~awsio.grouping.Record` s of its samples:

* plain objects: one GET each;
* tar shards: the byte range of a run of consecutive samples, from the shard's index
  (:mod:`awsio.archives.index`), cut into requests at sample boundaries: those of a stream's
  first unit of at most ``first_chunk`` bytes, each next one up to twice the last, at most
  ``chunk`` (the first unit comes as fast as small requests bring it, wherever a resume starts;
  later, fewer and larger requests cost the server and the client less per byte); members are checked against the index (a shard rewritten since it was indexed is
  an :class:`~awsio.errors.ArchiveError`, never a wrong sample);
* zip shards: the members' local regions, from the central directory;
* tar.gz shards (no random access): a forward-only stream per shard (a shuffled epoch keeps
  their samples in shard order, :func:`awsio.epoch.global_order`, so each is read once; up to
  ``streams`` are open at once, ``STREAMS_BYTES`` of read-ahead between them); samples before
  the wanted ones are decompressed and dropped here, never handed to the pipeline;
* zip and tar.gz samples are read at most ``chunk`` bytes of samples at a time (at least one).

Plain-object and tar requests of successive units go through one ``client.get_many`` stream, so
the next units are already in flight while the pipeline works on this one; memory stays about
``max_inflight_bytes`` (see ``get_many``). A failed request (after the client's retries) is handed to the
handler: its samples are skipped and counted, and the stream restarts after it.
"""

from __future__ import annotations

import bisect
import functools
import io
import itertools
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

from awsio.archives.index import ShardIndex
from awsio.archives.tar import TarMember, cut_members, iter_tar, member_cuts, walk_tar
from awsio.archives.zip import ZipEntry, iter_zip, read_zip_directory
from awsio.epoch import Order
from awsio.errors import ArchiveError, AwsioError
from awsio.grouping import Record, sample_runs
from awsio.handlers import Handler, SkipStats
from awsio.s3.backend import body_len

__all__ = ["FIRST_CHUNK", "Shard", "ShardReader", "ZipIndex", "unread_member_skips", "zip_index"]

FIRST_CHUNK = 4 << 20  # the largest first tar request of a stream (see the module docstring)
STREAMS_BYTES = 64 << 20  # the read-ahead of all open tar.gz streams together


@dataclass(frozen=True)
class Shard:
    """One listed object: ``kind`` is ``"tar"``/``"tgz"``/``"zip"``, or None for a plain object."""

    url: str
    kind: str | None
    size: int | None = None
    etag: str | None = None


def unread_member_skips(client: Any, shard: Shard, size: int) -> SkipStats:
    """The members a tar / tar.gz shard without samples holds and no reader will walk (links,
    unsupported types): its headers walked once (data skipped), each such member counted."""
    skips = SkipStats()
    if shard.kind in ("tar", "tgz"):
        tgz = shard.kind == "tgz"
        chunk = 1 << 20 if tgz else 8 << 10  # a tar's headers by small ranges, as scan_tar reads them
        stream = client.open(shard.url, size=size, etag=shard.etag, chunk_size=chunk, prefetch=0)
        try:
            for _ in walk_tar(stream, url=shard.url, gzip=tgz, skip_data=True, skips=skips, chunk_size=chunk):
                pass
        finally:
            stream.close()
    return skips


@dataclass
class _Fetch:
    """Samples ``first..stop-1`` of one shard: a request through the shared stream (``request``
    set), or work done in place (zip members, tar.gz samples). ``units[i]``: the unit that sample
    ``first + i`` belongs to; ``ends``: the units whose last sample is in it (complete once it is
    read)."""

    shard: int
    first: int          # first sample (within the shard)
    stop: int           # one past the last sample
    request: tuple[Any, ...] | None = None  # a get_many item: (url, start, end, size[, cuts[, if_match]])
    units: Any = None
    ends: list[int] = field(default_factory=list)


class ShardReader:
    """Reads the samples of units of positions; see the module docstring."""

    def __init__(self, client: Any, shards: Sequence[Shard], indexes: dict[int, Any], *,
                 handler: Handler, stats: SkipStats, chunk: int = 16 << 20, first_chunk: int | None = None,
                 open_chunk: int = 8 << 20, prefetch: int = 2, streams: int = 4) -> None:
        self.client = client
        self.shards = shards
        self.indexes = indexes
        self.handler = handler
        self.stats = stats
        self.chunk = max(1, chunk)
        self.first_chunk = max(1, min(FIRST_CHUNK if first_chunk is None else first_chunk, self.chunk))
        self._step = self.first_chunk  # the size of the next tar request (grows to `chunk`)
        self._first_unit: int | None = None  # the stream's first unit (read in first_chunk requests)
        self.open_chunk = open_chunk
        self.prefetch = prefetch
        # tar.gz streams open at once (a shuffled window's are read interleaved), their chunks
        # sized so that all their read-ahead stays within STREAMS_BYTES
        self.streams = max(1, streams)
        self._stream_chunk = min(open_chunk, max(256 << 10, STREAMS_BYTES // (self.streams * (prefetch + 1))))
        self._tgz: dict[int, _TgzCursor] = {}
        self._offsets: dict[int, list[int]] = {}
        self._sizes: dict[int, list[int]] = {}

    # -- planning -----------------------------------------------------------------------------
    def _fetches(self, sh: int, first: int, stop: int, units: np.ndarray) -> list[_Fetch]:
        """The fetches of samples ``first..stop-1`` of shard ``sh`` (``units``: each one's unit)."""
        shard = self.shards[sh]
        if shard.kind is None:
            return [_Fetch(sh, s, s + 1, (shard.url, 0, None, shard.size), units[s - first:s - first + 1])
                    for s in range(first, stop)]
        if shard.kind != "tar":
            return self._in_place_fetches(sh, first, stop, units)
        index = self.indexes[sh]
        starts = index.sample_starts
        out: list[_Fetch] = []
        s = first
        while s < stop:
            a = starts[s] if s else 0  # from byte 0: members before the first sample are seen
            # the longest run of whole samples from s within `step` bytes (at least one): samples
            # s..e-1 end where sample e starts (or at the index's end for the shard's last sample)
            if self._first_unit is None:
                self._first_unit = int(units[s - first])
            if int(units[s - first]) == self._first_unit:
                step = self.first_chunk  # the stream's first unit: small requests only
            else:
                step, self._step = self._step, min(self.chunk, 2 * self._step)
            hi = min(stop, len(starts) - 1)
            e = bisect.bisect_right(starts, a + step, s + 1, max(hi, s) + 1) - 1
            if e >= hi and stop == len(starts) and index.end - a <= step:
                e = stop
            e = min(max(e, s + 1), stop)
            b = index.byte_range(s, e)[1]
            if e == index.sample_count and shard.size is not None:
                b = shard.size  # to the end: members after the last sample (links) are seen
            # each member in a piece of its own, written there by the reader: no copy to cut it out
            cuts = member_cuts(self._members(sh, index, a, b), a, b)
            # (the listed ETag, when there is one, keeps every range of the shard on one version)
            request: tuple[Any, ...] = (shard.url, a, b, shard.size)
            if cuts is not None or shard.etag:
                request += (cuts,) + ((shard.etag,) if shard.etag else ())
            out.append(_Fetch(sh, s, e, request, units[s - first:e - first]))
            s = e
        return out

    def _in_place_fetches(self, sh: int, first: int, stop: int, units: np.ndarray) -> list[_Fetch]:
        """Zip and tar.gz samples ``first..stop-1``, read in place (zip members, a tar.gz stream)
        ``chunk`` bytes of samples at a time (at least one sample)."""
        sizes = self._sample_bytes(sh)
        out: list[_Fetch] = []
        s = first
        while s < stop:
            e, held = s + 1, sizes[s]
            while e < stop and held + sizes[e] <= self.chunk:
                held += sizes[e]
                e += 1
            out.append(_Fetch(sh, s, e, None, units[s - first:e - first]))
            s = e
        return out

    def _plans(self, order: Order, units: Iterator[np.ndarray], block: int = 2048) -> Iterator[_Fetch]:
        """Fetches in position order, planned a block of units at a time with array operations.
        Consecutive samples of a tar shard are read together up to ``chunk`` bytes, across unit
        boundaries; each fetch knows which unit each of its samples belongs to."""
        next_unit = 0
        while True:
            parts: list[np.ndarray] = []
            n = 0
            for positions in units:
                parts.append(positions)
                n += len(positions)
                if n >= block:
                    break
            if not parts:
                return
            sizes = np.fromiter((len(p) for p in parts), dtype=np.int64, count=len(parts))
            unit_ids = np.arange(next_unit, next_unit + len(parts), dtype=np.int64)
            next_unit += len(parts)
            pos = np.concatenate(parts)
            owner = np.repeat(unit_ids, sizes)           # the unit of each position
            last = np.cumsum(sizes) - 1                 # the last position index of each unit
            sh, sa = order.shard[pos], order.sample[pos]
            cut = np.flatnonzero((np.diff(sh) != 0) | (np.diff(sa) != 1)) + 1
            bounds = np.concatenate(([0], cut, [len(pos)])) if len(pos) else np.zeros(1, dtype=np.int64)
            pending_ends = [int(u) for u, i in zip(unit_ids, last) if i < 0]  # empty units first
            if pending_ends:
                yield _Fetch(-1, 0, 0, ends=pending_ends)
            li = 0
            for i0, i1 in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
                fetches = self._fetches(int(sh[i0]), int(sa[i0]), int(sa[i0]) + (i1 - i0), owner[i0:i1])
                at = i0
                for f in fetches:
                    hi = at + (f.stop - f.first)
                    while li < len(last) and last[li] < hi:  # units ending in this fetch
                        f.ends.append(int(unit_ids[li]))
                        li += 1
                    at = hi
                yield from fetches

    # -- reading ------------------------------------------------------------------------------
    def read(self, order: Order, units: Iterator[np.ndarray]) -> Iterator[list[Record]]:
        """One list of records per unit, in order."""
        self._step, self._first_unit = self.first_chunk, None
        parts: dict[int, list[Record]] = {}
        planned: deque[_Fetch] = deque()  # made by _plans(), not yet consumed, in order

        def plans() -> Iterator[_Fetch]:
            for f in self._plans(order, units):
                planned.append(f)
                yield f

        source = plans()

        def requests() -> Iterator[tuple[Any, ...]]:
            # the fetches already planned (after a restart), then new ones as get_many asks
            for f in itertools.chain(list(planned), source):
                if f.request is not None:
                    yield f.request

        def complete(f: _Fetch, records: list[Record]) -> Iterator[list[Record]]:
            for record in records:
                parts.setdefault(int(f.units[record.sample - f.first]), []).append(record)
            for u in f.ends:
                yield parts.pop(u, [])

        results = self.client.get_many(requests(), ordered=True, ramp=True)
        ready: Any = None        # the result of the first request in `planned`, once received
        exhausted = False
        try:
            while True:
                if not planned or (planned[0].request is not None and ready is None):
                    if exhausted:
                        if not planned:
                            return
                        raise RuntimeError("awsio: a planned request got no result")  # pragma: no cover
                    try:
                        ready = next(results)
                    except StopIteration:
                        exhausted = True
                    except (AwsioError, OSError) as exc:
                        bad = self._failed(planned, exc)
                        self._skip(bad, exc)
                        yield from complete(bad, [])
                        results = self.client.get_many(requests(), ordered=True, ramp=True)
                    continue
                f = planned.popleft()
                data = None
                if f.request is not None:
                    data, ready = ready[1], None
                yield from complete(f, self._records(f, data))
        finally:
            close = getattr(results, "close", None)
            if close is not None:
                close()
            for cursor in self._tgz.values():
                cursor.close()
            self._tgz.clear()

    def _skip(self, f: _Fetch, exc: BaseException) -> None:
        where = self.shards[f.shard].url if f.shard >= 0 else ""
        self.handler.handle(exc, stage="read", stats=self.stats, where=where, count=max(1, f.stop - f.first))

    @staticmethod
    def _failed(planned: deque[_Fetch], exc: BaseException) -> _Fetch:
        url = getattr(exc, "url", None)
        for i, f in enumerate(planned):
            if f.request is not None and f.request[0] == url:
                del planned[i]
                return f
        for i, f in enumerate(planned):
            if f.request is not None:
                del planned[i]
                return f
        return planned.popleft()  # pragma: no cover

    def _records(self, f: _Fetch, data: Any) -> list[Record]:
        """The records of a fetch, each with the index of its sample in the shard."""
        if f.shard < 0:
            return []
        shard = self.shards[f.shard]
        try:
            if shard.kind is None:
                return [Record(shard.url, shard.url, data, f.first)]
            if shard.kind == "tar":
                return self._tar_records(f, data)
            if shard.kind == "zip":
                return self._zip_records(f)
            return self._tgz_records(f)
        except (AwsioError, OSError) as exc:
            self._skip(f, exc)
            return []

    def _tar_records(self, f: _Fetch, data: bytes | tuple[bytes, ...]) -> list[Record]:
        shard, index = self.shards[f.shard], self.indexes[f.shard]
        assert f.request is not None
        a, b = f.request[1], int(f.request[2])  # type: ignore[arg-type]
        got = body_len(data)
        if got != b - a:  # only possible when the size was not known: S3 clips the range
            raise ArchiveError(f"the shard ends {got} bytes into [{a}, {b}): shorter than its index "
                               "says (rewritten since it was indexed?)", url=shard.url, member=None, offset=a)
        expected = self._members(f.shard, index, a, b)
        direct = cut_members(data, a, expected)
        if direct is not None:
            return [Record(shard.url, m.name, m.data, index.sample_of_offset(m.offset)) for m in direct]
        if isinstance(data, tuple):
            data = b"".join(data)  # the walk below reads the range as one piece
        # one read of the whole range (BytesIO hands back the bytes object itself: no copy)
        members = iter_tar(io.BytesIO(data), url=shard.url, start_offset=a, partial=b != shard.size,
                           chunk_size=max(1, len(data)), skips=self.stats,
                           reread=functools.partial(self.client.get_range, shard.url, if_match=shard.etag))
        # every member read must be the index's next one (an entry passed over only for a
        # hardlink that iter_tar could not resolve within this range, and counted)
        return [Record(shard.url, m.name, m.data, index.sample_of_offset(m.offset))
                for m in _IndexMatch(shard.url, expected, self.stats).members(members, a)]

    def _sample_bytes(self, sh: int) -> list[int]:
        """The bytes each sample of a zip or tar.gz shard brings (its entries' local regions; its
        span in the uncompressed tar)."""
        sizes = self._sizes.get(sh)
        if sizes is None:
            index = self.indexes[sh]
            if isinstance(index, ZipIndex):
                sizes = [sum(e.end - e.offset for e in sample) for sample in index.samples]
            else:
                starts = index.sample_starts
                sizes = [b - a for a, b in zip(starts, starts[1:] + (index.end,))]
            self._sizes[sh] = sizes
        return sizes

    def _members(self, sh: int, index: ShardIndex, a: int, b: int) -> Sequence[tuple[str, int, int]]:
        """``(name, offset, size)`` of the index's members that start in ``[a, b)``."""
        offsets = self._offsets.get(sh)
        if offsets is None:
            offsets = self._offsets[sh] = [m[1] for m in index.members]
        lo, hi = bisect.bisect_left(offsets, a), bisect.bisect_left(offsets, b)
        return index.members[lo:hi]

    def _zip_records(self, f: _Fetch) -> list[Record]:
        shard = self.shards[f.shard]
        index = self.indexes[f.shard]
        assert isinstance(index, ZipIndex)
        owned = [(f.first + i, e) for i, sample in enumerate(index.samples[f.first:f.stop]) for e in sample]
        members = iter_zip(self.client, shard.url, entries=[e for _, e in owned], every_entry=True)
        return [Record(shard.url, m.name, m.data, smp) for (smp, _), m in zip(owned, members)]

    def _tgz_records(self, f: _Fetch) -> list[Record]:
        cursor = self._tgz.get(f.shard)
        if cursor is None or cursor.next_sample > f.first:
            if cursor is not None:
                self._tgz.pop(f.shard).close()
            if len(self._tgz) >= self.streams:
                oldest = next(iter(self._tgz))
                self._tgz.pop(oldest).close()
            shard = self.shards[f.shard]
            reader = self.client.open(shard.url, chunk_size=self._stream_chunk, prefetch=self.prefetch,
                                      size=shard.size, etag=shard.etag)
            cursor = self._tgz[f.shard] = _TgzCursor(shard.url, reader, self.indexes[f.shard], self.stats)
        try:
            return cursor.take(f.first, f.stop)
        except BaseException:
            self._tgz.pop(f.shard).close()  # a failed stream is not read on: the next fetch reopens it
            raise


@dataclass(frozen=True)
class ZipIndex:
    """The entries of a zip shard grouped into samples (its central directory is its index)."""

    samples: tuple[tuple[ZipEntry, ...], ...]

    @property
    def sample_count(self) -> int:
        return len(self.samples)


def zip_index(client: Any, url: str, size: int | None, *, every_entry: bool = False) -> ZipIndex:
    """Read a zip's central directory and group its files (``every_entry``: and directory and
    metadata entries) into samples by key."""
    if size is None:
        size = client.head(url).size
    entries = [e for e in read_zip_directory(client, url, size) if e.is_file or every_entry]
    return ZipIndex(tuple(tuple(run) for run in sample_runs(entries, name=lambda e: e.name)))


class _IndexMatch:
    """Checks that the members a header walk yields are the index's, in order: each one the
    index's next member (name, offset and size); an index entry passed over only for a hardlink
    the walk could not resolve (counted in ``walked``, the walk's skip counts). A shard rewritten
    since it was indexed is an :class:`~awsio.errors.ArchiveError`, never a wrong or a missing
    sample."""

    def __init__(self, url: str, expected: Sequence[tuple[str, int, int]], walked: SkipStats) -> None:
        self.url, self.expected, self.walked = url, expected, walked
        self.k = 0     # the index of the next expected member
        self.read = 0  # members read
        self.links = walked.counts[("read", "hardlink")]

    def check(self, m: TarMember) -> None:
        expected, k = self.expected, self.k
        while k < len(expected) and expected[k][1] < m.offset:
            k += 1
        if k >= len(expected) or expected[k] != (m.name, m.offset, len(m.data)):
            raise ArchiveError("the shard does not match its index (rewritten since it was indexed?)",
                               url=self.url, member=m.name, offset=m.offset)
        self.k, self.read = k + 1, self.read + 1
        self._explained(self.k - self.read, m.offset)

    def done(self, offset: int) -> None:
        """The walk has ended: every index entry not read must be an unresolvable hardlink."""
        self._explained(len(self.expected) - self.read, offset)

    def _explained(self, passed_over: int, offset: int) -> None:
        if passed_over > self.walked.counts[("read", "hardlink")] - self.links:
            raise ArchiveError(f"{passed_over} member(s) of the index are missing from the shard "
                               "(rewritten since it was indexed?)", url=self.url, member=None, offset=offset)

    def members(self, walk: Iterator[TarMember], end: int) -> Iterator[TarMember]:
        """``walk``'s members, each checked, then the walk's end (at byte ``end``)."""
        for m in walk:
            self.check(m)
            yield m
        self.done(end)


class _TgzCursor:
    """Samples of a tar.gz stream, forward only, numbered by the shard's index (samples before the
    wanted ones are dropped); every member and the stream's end are checked against the index
    (:class:`_IndexMatch`). A member the walk skips (a link, an unsupported type) is counted once
    in an epoch, whoever walks past it (another rank's reader, a stream reopened for a shuffled
    window): by the ``take`` whose samples hold its bytes."""

    def __init__(self, url: str, reader: Any, index: ShardIndex, stats: SkipStats) -> None:
        self.url, self.reader, self.index, self.stats = url, reader, index, stats
        self.walked = SkipStats()  # every skip of the walk; counted into `stats` by its owner
        self.members: Iterator[TarMember] = iter_tar(reader, url=url, gzip=True, chunk_size=1 << 20,
                                                     skips=self.walked)
        self.match = _IndexMatch(url, index.members, self.walked)
        self.next_sample = 0  # the first sample the next take may ask for
        self.held: tuple[int, TarMember] | None = None  # read, belongs to a later take
        self.owed: tuple[int, SkipStats] | None = None  # skips that belong to a later take's sample
        self._seen: Counter[tuple[str, str]] = Counter()  # walked.counts already handed on
        self._examples = 0  # walked.examples already handed on

    def _owe(self, sample: int, first: int, stop: int) -> None:
        """The walk's new skips belong to ``sample``: count them if this take holds it."""
        new = self.walked.counts - self._seen
        if not new:
            return
        self._seen = Counter(self.walked.counts)
        skips = SkipStats(new, self.walked.examples[self._examples:])
        self._examples = len(self.walked.examples)
        if first <= sample < stop:
            self.stats.merge(skips)
        elif sample >= stop:
            self.owed = (sample, skips)

    def _next(self, first: int, stop: int) -> tuple[int, TarMember] | None:
        m = next(self.members, None)
        # members skipped on the way lie in the sample that holds the byte before m (or the last)
        self._owe(max(0, self.index.sample_of_offset((m.offset if m is not None else self.index.end) - 1)),
                  first, stop)
        if m is None:
            self.match.done(self.index.end)
            return None
        self.match.check(m)
        return self.index.sample_of_offset(m.offset), m

    def take(self, first: int, stop: int) -> list[Record]:
        if self.owed is not None and self.owed[0] < stop:
            sample, skips = self.owed
            self.owed = None
            if sample >= first:
                self.stats.merge(skips)
        out: list[Record] = []
        while True:
            if self.held is not None:
                nxt, self.held = self.held, None
            else:
                nxt = self._next(first, stop)
                if nxt is None:
                    break
            s, m = nxt
            if s >= stop:
                self.held = nxt
                break
            if s >= first:
                out.append(Record(self.url, m.name, m.data, s))
        self.next_sample = stop
        return out

    def close(self) -> None:
        close = getattr(self.reader, "close", None)
        if close is not None:
            close()
