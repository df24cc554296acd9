"""PyTorch datasets over S3: :class:`S3IterableDataset`, :class:`S3Dataset`, :class:`ShuffleDataset`.

``S3IterableDataset`` yields ``(name, bytes)``: ``(url, bytes)`` for plain objects, and
``(member_name, bytes)`` for each regular member of tar / tar.gz / zip shards, in archive order.
How the work is split (see :mod:`awsio.sharding`):

* URLs are expanded and prefixes listed once, in ``__init__`` (so DataLoader workers inherit the
  listing instead of listing again); rank, world size and worker are read when iteration starts.
* The item order is shuffled from ``(seed, epoch)`` when ``shuffle_urls`` (same on every rank),
  then split across ``ranks x workers`` slots: whole shards round-robin when there are enough,
  otherwise (or in equal-work mode) the concatenated samples are cut into equal contiguous ranges
  using per-shard indexes (:mod:`awsio.archives.index`), so a worker reads only its byte range.
  A sample (members sharing a key) is never split.
* ``equal_work="drop"|"repeat"`` makes every slot, hence every rank, yield the same number of
  samples per epoch (so DDP collectives never wait on a rank that ran dry).

Failures of a whole shard/object follow ``handler`` (:mod:`awsio.handlers`): ``"raise"``
(default), ``"warn"`` (log and go on), ``"skip"`` (go on quietly) or a callable; skips are
counted (stage ``"read"``) in :attr:`S3IterableDataset.stats` ``.skips``. Members yielded before
the damage in a shard are kept. Under ``equal_work`` a skipped shard makes its slot come short.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, Sequence

from torch.utils.data import Dataset, IterableDataset

from awsio.archives import ARCHIVE_SUFFIXES, archive_kind
from awsio.archives.index import INDEX_SUFFIX, RangedStream, load_index
from awsio.archives.tar import TarMember, iter_tar
from awsio.archives.zip import ZipEntry, iter_zip, read_zip_directory
from awsio.config import S3Config
from awsio.errors import AwsioError, ConfigError, EmptyPrefixError, S3Error
from awsio.grouping import Record, sample_key
from awsio.handlers import HandlerSpec, SkipStats, resolve_handler
from awsio.pipeline import PipelineMixin  # the fluent .dataproc()/.decode()/... methods
from awsio.s3.url import S3URL, ObjectURL, expand_urls
from awsio.sharding import Piece, Plan, plan_counted, plan_uncounted
from awsio.shuffle import buffer_shuffle, make_rng, shuffled
from awsio.world import World, current_world, pass_epoch

__all__ = ["DatasetStats", "Record", "S3Dataset", "S3IterableDataset", "ShuffleDataset"]

log = logging.getLogger(__name__)


@dataclass
class DatasetStats:
    """What the last iteration in this process did (each DataLoader worker has its own)."""

    epoch: int = 0
    rank: int = 0
    world_size: int = 1
    worker: int = 0
    num_workers: int = 1
    pieces: int = 0
    records: int = 0
    planned_samples: int | None = None
    dropped: int = 0
    repeated: int = 0
    skips: SkipStats = field(default_factory=SkipStats)

    @property
    def skipped(self) -> int:
        """Shards/objects skipped under the ``warn``/``skip`` policy in this iteration."""
        return self.skips.total

    @property
    def errors(self) -> list[str]:
        """A few example messages of what was skipped."""
        return self.skips.examples


class _HasClient:
    config: S3Config | None
    _client: Any

    def _listing(self, urls: Any, suffixes: Mapping[str, str],
                 allow_empty: bool) -> list[tuple[str, int | None, str | None]]:
        """The ``[(url, size, etag)]`` the dataset reads (see :func:`_resolve`)."""
        return _resolve(urls, self.client, suffixes, allow_empty)

    @property
    def client(self) -> Any:
        """The S3 client (created on first use; the client itself is fork- and pickle-safe)."""
        if self._client is None:
            from awsio.s3.client import S3Client

            self._client = S3Client(self.config)
        return self._client


def _resolve(urls: str | S3URL | Iterable[str | S3URL], client: Any, suffixes: Mapping[str, str],
             allow_empty: bool = False) -> list[tuple[str, int | None, str | None]]:
    """Expand patterns and list prefixes: ``[(url, size, etag)]`` (None where not listed), in order.

    A URL ending in ``/`` is a prefix. A URL from a brace pattern or from a listing
    (:class:`~awsio.s3.url.ObjectURL`), or whose name has an extension (``train-0.tar``,
    ``img.jpg``), is an object, taken without a request. Any other URL (``s3://b/data/files``)
    is listed once: the object itself if it exists, else the "folder" under it. Sidecar indexes
    (``*.idx.json`` next to their shard) are left out of listings. A listing that finds nothing
    raises :class:`EmptyPrefixError` (a FileNotFoundError) unless ``allow_empty``.
    """
    raw = [urls] if isinstance(urls, (str, S3URL)) else list(urls)
    out: list[tuple[str, int | None, str | None]] = []
    for item in raw:
        named = isinstance(item, ObjectURL) or (isinstance(item, str) and "{" in item)
        for url in expand_urls(item):
            text = str(url)
            if not url.is_prefix and (named or "." in url.name or archive_kind(text, dict(suffixes))):
                out.append((text, None, None))
                continue
            listed = [(o.url, o.size, o.etag) for o in client.list(text)]
            if not url.is_prefix:
                exact = [x for x in listed if x[0] == text]
                listed = exact or [x for x in listed if x[0].startswith(text + "/")]
            if not listed and not allow_empty:
                raise EmptyPrefixError(f"The directory {text} does not contain any objects.", url=text)
            names = {x[0] for x in listed}
            out.extend(x for x in listed
                       if not (x[0].endswith(INDEX_SUFFIX) and x[0][:-len(INDEX_SUFFIX)] in names))
    return out


class S3IterableDataset(PipelineMixin, _HasClient, IterableDataset):  # type: ignore[type-arg]
    """Stream objects and archive members from S3; see the module docstring.

    Args:
        urls: one URL or a list: ``s3://bucket/prefix/``, ``s3://bucket/key``, brace patterns.
        shuffle_urls: shuffle the object/shard order each epoch from ``(seed, epoch)``.
        seed: base seed of every shuffle.
        config: :class:`S3Config` (default: from the environment).
        client: an object with the :class:`awsio.s3.client.S3Client` API (default: a new S3Client).
        archives: lower-cased suffix -> ``"tar"``/``"tgz"``/``"zip"``; ``{}`` treats everything
            as plain objects (default: ``.tar``, ``.tar.gz``, ``.tgz``, ``.zip``).
        equal_work: None, ``"drop"`` or ``"repeat"`` (see :func:`awsio.sharding.plan_counted`).
        use_index: ``"auto"``: load per-shard indexes only when needed (fewer shards than slots,
            equal work); True: always (gives ``len()``); False: never (fewer shards than slots
            are then split by sample index modulo, each piece streaming the whole shard).
        handler: ``"raise"`` | ``"warn"`` | ``"skip"`` | callable(exc) -> bool (True: skip).
        num_workers: the DataLoader's num_workers, used only by ``len()`` under equal work.
        chunk_size, prefetch: streaming read size and read-ahead depth for archives.
        allow_empty: accept URLs that list no objects (default: :class:`EmptyPrefixError`).

    Zip shards yield their files; directory entries and ``__...__`` metadata are skipped (the
    original plugin's import path yields every entry, see ``awsio.python.lib.io.s3.s3dataset``).

    Epochs: each iteration uses :attr:`epoch` and then advances it; ``set_epoch(n)`` sets it.
    Without ``set_epoch``, a non-persistent DataLoader worker (which iterates a fresh copy each
    pass) adds the loader's base seed of the pass, so every pass still gets a new order,
    reproducible under ``torch.manual_seed`` (see :func:`awsio.world.pass_epoch`). Under
    torchrun call ``set_epoch`` each epoch, as with ``DistributedSampler``.

    Raises:
        awsio.errors.InvalidURLError, S3 errors from listing, EmptyPrefixError for a URL that
        lists nothing, ConfigError for bad options. A missing object raises NoSuchKeyError (a
        FileNotFoundError) when the iteration reaches it, under the ``handler`` policy.
    """

    _every_zip_entry = False  # True: zip directory entries and metadata too (the original's zipdata)

    def __init__(self, urls: str | S3URL | Iterable[str | S3URL], *, shuffle_urls: bool = False,
                 seed: int = 0, config: S3Config | None = None, client: Any = None,
                 archives: Mapping[str, str] | None = None, equal_work: str | None = None,
                 use_index: bool | str = "auto", handler: HandlerSpec = "raise", num_workers: int = 1,
                 chunk_size: int = 8 << 20, prefetch: int = 2, allow_empty: bool = False) -> None:
        super().__init__()
        if equal_work not in (None, "drop", "repeat"):
            raise ConfigError("equal_work must be None, 'drop' or 'repeat'", field="equal_work",
                              value=equal_work)
        if use_index not in (True, False, "auto"):
            raise ConfigError("use_index must be True, False or 'auto'", field="use_index", value=use_index)
        try:
            resolved = resolve_handler(handler)
        except ValueError as exc:
            raise ConfigError(str(exc), field="handler", value=handler) from exc
        self.shuffle_urls = shuffle_urls
        self.seed = seed
        self.config = config
        self.equal_work = equal_work
        self.use_index = use_index
        self.handler = resolved
        self.num_workers = num_workers
        self.chunk_size = chunk_size
        self.prefetch = prefetch
        self._suffixes = dict(ARCHIVE_SUFFIXES if archives is None else archives)
        self._client = client
        self._epoch = 0
        self._epoch_set = False
        self.stats = DatasetStats()
        self._items = self._listing(urls, self._suffixes, allow_empty)
        self._sizes = {u: s for u, s, _ in self._items}
        self._etags = {u: e for u, _, e in self._items}
        self._counts: dict[str, int] = {}
        if equal_work or use_index is True:
            self._load_counts(self.urls)

    # -- public ------------------------------------------------------------------------------
    @property
    def urls(self) -> list[str]:
        """Every object/shard URL, listed and expanded, in the given (unshuffled) order."""
        return [x[0] for x in self._items]

    def kind(self, url: str) -> str | None:
        """``"tar"``/``"tgz"``/``"zip"`` for archives, None for plain objects."""
        return archive_kind(url, self._suffixes)

    def set_epoch(self, epoch: int) -> None:
        """Use ``epoch`` for the next iteration (later iterations count on from it)."""
        self._epoch = int(epoch)
        self._epoch_set = True

    @property
    def epoch(self) -> int:
        """The epoch the next iteration will use."""
        return self._epoch

    def plan(self, epoch: int | None = None, *, world: World | None = None) -> Plan:
        """The work plan of an epoch for ``world`` (default: the current one). Pure given the
        listing and indexes; every rank computes the same plan."""
        world = world or current_world()
        epoch = self._epoch if epoch is None else epoch
        urls = self._order(self.urls, epoch)
        archives = [u for u in urls if self.kind(u)]
        need_counts = self.equal_work is not None or self.use_index is True or (
            self.use_index == "auto" and archives and len(urls) < world.slots)
        # The choice depends only on (options, listing, world), never on what happens to be
        # cached, so every rank picks the same kind of plan.
        if need_counts or not archives:
            self._load_counts(archives)
            counts = [(u, self._counts[u] if self.kind(u) else 1) for u in urls]
            return plan_counted(counts, world.slots, self.equal_work)
        return plan_uncounted(urls, world.slots)

    def _order(self, urls: list[str], epoch: int) -> list[str]:
        """The object/shard order of ``epoch``: shuffled from ``(seed, epoch)`` if ``shuffle_urls``."""
        return shuffled(urls, self.seed, epoch) if self.shuffle_urls else urls

    def __len__(self) -> int:
        """Samples this rank yields per epoch (objects, or samples of indexed shards).

        Raises TypeError when archive sample counts are not loaded (``use_index=True`` or
        ``equal_work`` load them)."""
        if any(self.kind(u) and u not in self._counts for u in self.urls):
            raise TypeError("len() of this S3IterableDataset is unknown: its archive shards have no "
                            "loaded sample counts (pass use_index=True or equal_work=...)")
        w = current_world()
        world = World(w.rank, w.world_size, 0, max(1, self.num_workers))
        slots = self.plan(world=world).slots[w.rank * world.num_workers:(w.rank + 1) * world.num_workers]
        return sum(self._piece_count(p) for pieces in slots for p in pieces)

    def _piece_count(self, piece: Piece) -> int:
        n = self._counts[piece.url] if self.kind(piece.url) else 1
        stop = n if piece.stop is None else min(piece.stop, n)
        return len(range(piece.start + (piece.part - piece.start) % piece.parts, stop, piece.parts))

    def iter_records(self) -> Iterator[Record]:
        """:class:`Record` ``(source, name, data)`` for this rank/worker, split and shuffled."""
        world = current_world()
        epoch = pass_epoch(self._epoch, self._epoch_set, world)
        self._epoch += 1
        plan = self.plan(epoch, world=world)
        pieces = plan.slots[world.slot]
        stats = DatasetStats(epoch, world.rank, world.world_size, world.worker, world.num_workers,
                             len(pieces), 0, plan.counts[world.slot], plan.dropped, plan.repeated)
        self.stats = stats
        if plan.dropped or plan.repeated:
            if world.slot == 0:
                log.info("equal_work=%s epoch %d: %d samples in total, %d per worker; dropped %d, "
                         "repeated %d", self.equal_work, epoch, plan.total, plan.counts[0],
                         plan.dropped, plan.repeated)
        for record in self._run(pieces, stats):
            stats.records += 1
            yield record

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        for record in self.iter_records():
            yield record.name, record.data

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["stats"] = DatasetStats()
        return state

    # -- internals ---------------------------------------------------------------------------
    def _load_counts(self, urls: Sequence[str]) -> None:
        for url in urls:
            kind = self.kind(url)
            if kind and url not in self._counts:
                index = load_index(self.client, url, size=self._sizes.get(url), kind=kind,
                                   etag=self._etags.get(url))
                assert index is not None
                self._counts[url] = index.sample_count

    def _run(self, pieces: Sequence[Piece], stats: DatasetStats) -> Iterator[Record]:
        i = 0
        while i < len(pieces):
            if self.kind(pieces[i].url) is None:
                j = i
                while j < len(pieces) and self.kind(pieces[j].url) is None:
                    j += 1
                yield from self._plain([p.url for p in pieces[i:j]], stats)
                i = j
                continue
            piece = pieces[i]
            try:
                yield from self._archive(piece, self.kind(piece.url) or "tar")
            except (AwsioError, OSError) as exc:
                self.handler.handle(exc, stage="read", stats=stats.skips, where=piece.url)
            i += 1

    def _plain(self, urls: list[str], stats: DatasetStats) -> Iterator[Record]:
        rest = list(urls)
        while rest:
            done = 0
            try:
                for url, data in self.client.get_many(rest, ordered=True):
                    done += 1
                    yield Record(str(url), str(url), data)
                return
            except (S3Error, OSError) as exc:
                # one bad object spoils a batch: apply the policy to it, then fetch the rest again
                rest = rest[done:]
                bad = str(getattr(exc, "url", None))
                at = rest.index(bad) if bad in rest else 0
                self.handler.handle(exc, stage="read", stats=stats.skips, where=rest[at])
                rest = rest[:at] + rest[at + 1:]

    def _archive(self, piece: Piece, kind: str) -> Iterator[Record]:
        url = piece.url
        client = self.client
        size = self._sizes.get(url)
        members: Iterator[TarMember]
        if piece.whole:
            members = self._stream(url, kind, size)
        elif kind == "zip":
            members = iter_zip(client, url, entries=self._zip_entries(url, size, piece),
                               every_entry=self._every_zip_entry)
        elif kind == "tar" and piece.parts == 1 and self.use_index is not False:
            index = load_index(client, url, size=size, kind=kind, etag=self._etags.get(url))
            assert index is not None
            stop = index.sample_count if piece.stop is None else piece.stop
            if piece.start >= stop:
                return
            a, b = index.byte_range(piece.start, stop)
            stream = RangedStream(client, url, a, b, chunk=min(self.chunk_size, 4 << 20),
                                  ahead=max(1, self.prefetch))
            members = iter_tar(stream, url=url, start_offset=a)
        else:
            members = _select(self._stream(url, kind, size), piece)
        for m in members:
            yield Record(url, m.name, m.data)

    def _stream(self, url: str, kind: str, size: int | None) -> Iterator[TarMember]:
        if kind == "zip":
            return iter_zip(self.client, url, size=size, every_entry=self._every_zip_entry)
        reader = self.client.open(url, chunk_size=self.chunk_size, prefetch=self.prefetch, size=size)
        return iter_tar(reader, url=url, gzip=kind == "tgz", chunk_size=min(self.chunk_size, 1 << 20))

    def _zip_entries(self, url: str, size: int | None, piece: Piece) -> list[ZipEntry]:
        if size is None:
            size = self.client.head(url).size
        files = [e for e in read_zip_directory(self.client, url, size)
                 if e.is_file or self._every_zip_entry]
        out: list[ZipEntry] = []
        for idx, (_, group) in enumerate(itertools.groupby(files, key=lambda e: sample_key(e.name)[0])):
            if _wanted(idx, piece):
                out.extend(group)
            elif piece.stop is not None and idx >= piece.stop:
                break
        return out


def _wanted(idx: int, piece: Piece) -> bool:
    return (piece.start <= idx and (piece.stop is None or idx < piece.stop)
            and idx % piece.parts == piece.part)


def _select(members: Iterator[TarMember], piece: Piece) -> Iterator[TarMember]:
    """The members of the samples of ``piece`` from a whole-shard stream (never cutting a sample)."""
    idx = -1
    last: str | None = None
    for m in members:
        key = sample_key(m.name)[0]
        if key != last:
            idx += 1
            last = key
            if piece.stop is not None and idx >= piece.stop:
                return
        if _wanted(idx, piece):
            yield m


class S3Dataset(_HasClient, Dataset):  # type: ignore[type-arg]
    """Map-style dataset of S3 objects: ``ds[i] -> (url, bytes)``.

    Lists once in ``__init__``; works with any sampler (``DistributedSampler`` included);
    ``__getitems__`` fetches a whole DataLoader batch concurrently through ``client.get_many``.
    Use ``collate_fn=list`` (or your own) since the default collate cannot batch bytes.
    A URL that lists nothing raises :class:`EmptyPrefixError` unless ``allow_empty=True``.
    """

    def __init__(self, urls: str | S3URL | Iterable[str | S3URL], *, config: S3Config | None = None,
                 client: Any = None, allow_empty: bool = False) -> None:
        self.config = config
        self._client = client
        self._urls = [x[0] for x in self._listing(urls, {}, allow_empty)]

    @property
    def urls(self) -> list[str]:
        return list(self._urls)

    def __len__(self) -> int:
        return len(self._urls)

    def __getitem__(self, index: int) -> tuple[str, bytes]:
        url = self._urls[index]
        return url, self.client.get(url)

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[str, bytes]]:
        urls = [self._urls[i] for i in indices]
        return [(u, data) for u, (_, data) in zip(urls, self.client.get_many(urls, ordered=True))]


class ShuffleDataset(IterableDataset):  # type: ignore[type-arg]
    """A bounded shuffle buffer over any iterable dataset, seeded from (seed, epoch, rank, worker).

    Memory holds ``buffer_size`` items. ``set_epoch`` is forwarded to the wrapped dataset; without
    it each pass gets a new epoch, like :class:`S3IterableDataset`.
    """

    def __init__(self, dataset: Iterable[Any], buffer_size: int, *, seed: int = 0) -> None:
        super().__init__()
        if buffer_size < 0:
            raise ConfigError("buffer_size must be >= 0", field="buffer_size", value=buffer_size)
        self.dataset = dataset
        self.buffer_size = buffer_size
        self.seed = seed
        self._epoch = 0
        self._epoch_set = False

    def set_epoch(self, epoch: int) -> None:
        self._epoch = int(epoch)
        self._epoch_set = True
        inner = getattr(self.dataset, "set_epoch", None)
        if inner is not None:
            inner(epoch)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[Any]:
        world = current_world()
        rng = make_rng(self.seed, pass_epoch(self._epoch, self._epoch_set, world), world.rank, world.worker)
        self._epoch += 1
        return buffer_shuffle(iter(self.dataset), self.buffer_size, rng)
