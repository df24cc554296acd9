"""PyTorch datasets over S3: :class:`S3IterableDataset`, :class:`S3Dataset`, :class:`ShuffleDataset`.

``S3IterableDataset`` yields ``(name, bytes)``: ``(url, bytes)`` for plain objects, and
``(member_name, bytes)`` for each regular member of tar / tar.gz / zip shards. It is a resumable
source (:mod:`awsio.source`) over the samples of its objects:

* URLs are expanded, prefixes listed and every archive's index loaded once, in ``__init__`` (so
  DataLoader workers inherit them instead of asking again): a tar's sidecar
  ``<shard>.idx.json`` (written by the shard maker) or else a ranged scan of its headers, a zip's
  central directory, a tar.gz's sidecar or else one streamed pass. Rank, world size and worker
  are read when iteration starts.
* The epoch's global order of samples is a pure function of ``(listing, seed, epoch)``
  (:mod:`awsio.epoch`); ranks get contiguous runs of it and DataLoader workers take turns by
  unit, so the order the training loop sees does not depend on ``num_workers`` and a saved
  state resumes exactly, under any world size and worker count, without reading again what was
  consumed (:mod:`awsio.reading` fetches samples by byte range).
* ``equal_work="drop"|"repeat"`` makes every rank yield the same number of samples per epoch
  (so DDP collectives never wait on a rank that ran dry).

Failures follow ``handler`` (:mod:`awsio.handlers`): ``"raise"`` (default), ``"warn"`` (log and
go on), ``"skip"`` (go on quietly) or a callable; skipped requests and the samples they held are
counted in :attr:`S3IterableDataset.stats` (stage ``"read"``). Tar links are resolved or counted
as :func:`awsio.archives.tar.iter_tar` says (a hardlink of a ``.tar`` is read again by range; of a
``.tgz``, counted as skipped).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

import numpy as np
from torch.utils.data import Dataset, IterableDataset

from awsio.archives import ARCHIVE_SUFFIXES, archive_kind
from awsio.archives.index import INDEX_SUFFIX, ShardIndex, load_index
from awsio.config import S3Config
from awsio.epoch import Order
from awsio.errors import AwsioError, ConfigError, EmptyPrefixError
from awsio.grouping import Record
from awsio.handlers import Handler, HandlerSpec, SkipStats, resolve_handler
from awsio.metrics import DatasetMetrics, Snapshot
from awsio.pipeline import PipelineMixin  # the fluent .dataproc()/.decode()/... methods
from awsio.reading import Shard, ShardReader, ZipIndex, unread_member_skips, zip_index
from awsio.s3.url import S3URL, ObjectURL, expand_urls
from awsio.shuffle import buffer_shuffle, make_rng
from awsio.source import IndexedSource, digest
from awsio.world import current_world, pass_epoch

_T = TypeVar("_T")

__all__ = ["Record", "S3Dataset", "S3IterableDataset", "ShuffleDataset"]

log = logging.getLogger(__name__)


class _HasClient:
    config: S3Config | None
    _client: Any
    _metrics: DatasetMetrics

    def metrics(self, ranks: bool = False) -> Snapshot:
        """Counters of this dataset (see :mod:`awsio.metrics`): its client's requests, bytes,
        retries and TTFB, and the samples delivered and skipped, in this process and its
        DataLoader workers; ``ranks=True`` sums them over ``torch.distributed`` ranks (a
        collective: every rank must call it). Cumulative: subtract an earlier snapshot for a span."""
        return self._metrics.snapshot(self._client, ranks)

    def note_samples(self, samples: int = 0, skips: int = 0, final: bool = False) -> None:
        """Count samples delivered (and skipped) by a pipeline over this dataset; ``final`` at the
        end of a pass (a DataLoader worker then publishes its counters to the main process)."""
        self._metrics.count(self._client, samples, skips, final)

    def _listing(self, urls: Any, suffixes: Mapping[str, str],
                 allow_empty: bool) -> list[tuple[str, int | None, str | None]]:
        """The ``[(url, size, etag)]`` the dataset reads (see :func:`_resolve`), through the
        listing cache (:mod:`awsio.listing_cache`) when ``_listing_cache`` names one."""
        raw = [urls] if isinstance(urls, (str, S3URL)) else list(urls)
        cache: str | None = getattr(self, "_listing_cache", None)
        if cache is None:
            return _resolve(raw, self.client, suffixes, allow_empty)
        from awsio.listing_cache import cached_listing

        return cached_listing(cache, [str(u) for u in raw],
                              {"suffixes": dict(suffixes), "allow_empty": allow_empty}, self.client,
                              lambda: _resolve(raw, self.client, suffixes, allow_empty),
                              bool(getattr(self, "_refresh_listing", False)))

    @staticmethod
    def _once_per_job(work: Callable[[], _T]) -> _T:
        """``work()`` (listing, indexing) done once per job: when ``torch.distributed`` is
        initialised, rank 0 does it and broadcasts the result (or its error, raised on every
        rank), so a job lists and indexes once, not once per rank. Every rank must then build
        the dataset, as every rank already does in data-parallel training."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return work()
        box: list[Any] = [None]
        if dist.get_rank() == 0:
            try:
                box[0] = work()
            except Exception as exc:  # every rank raises it, rather than the others waiting forever
                box[0] = exc
        dist.broadcast_object_list(box, src=0)
        if isinstance(box[0], Exception):
            raise box[0]
        return box[0]  # type: ignore[no-any-return]

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


class S3IterableDataset(IndexedSource, PipelineMixin, _HasClient, IterableDataset):  # type: ignore[misc,type-arg]
    """Stream objects and archive members from S3; see the module docstring.

    Args:
        urls: one URL or a list: ``s3://bucket/prefix/``, ``s3://bucket/key``, brace patterns.
        shuffle_urls: shuffle the epoch's order (shards by ``(seed, epoch)``, then the samples
            within each window of ``window`` shards).
        seed: base seed of every shuffle.
        config: :class:`S3Config` (default: from the environment).
        client: an object with the :class:`awsio.s3.client.S3Client` API (default: a new S3Client).
        archives: lower-cased suffix -> ``"tar"``/``"tgz"``/``"zip"``; ``{}`` treats everything
            as plain objects (default: ``.tar``, ``.tar.gz``, ``.tgz``, ``.zip``).
        equal_work: None, ``"drop"`` or ``"repeat"``: every rank yields the same number of samples.
        handler: ``"raise"`` | ``"warn"`` | ``"skip"`` | callable(exc) -> bool (True: skip).
        window: shards whose samples are mixed (and read concurrently) when shuffling (0: shards
            are shuffled, samples keep their order).
        chunk_size: largest ranged GET of consecutive tar samples (a stream's first requests are
            smaller, from 4 MiB); tar.gz shards are streamed in reads of at most 8 MiB.
        prefetch: read-ahead depth of tar.gz streams.
        allow_empty: accept URLs that list no objects (default: :class:`EmptyPrefixError`).
        listing_cache: a folder or ``s3://`` prefix keeping the listing between runs, keyed by
            the URL list (:mod:`awsio.listing_cache`); ``refresh_listing=True`` lists again.

    Zip shards yield their files; directory entries and ``__...__`` metadata are skipped (the
    original plugin's import path yields every entry, see ``awsio.python.lib.io.s3.s3dataset``).

    Epochs: each iteration uses :attr:`epoch` and then advances it; ``set_epoch(n)`` sets it.
    Without ``set_epoch``, a non-persistent DataLoader worker (which iterates a fresh copy each
    pass) adds the loader's base seed of the pass, so every pass still gets a new order,
    reproducible under ``torch.manual_seed`` (see :func:`awsio.world.pass_epoch`). Under
    torchrun call ``set_epoch`` each epoch, as with ``DistributedSampler``.

    Raises:
        awsio.errors.InvalidURLError, S3 errors from listing and index loading, EmptyPrefixError
        for a URL that lists nothing, ConfigError for bad options, ArchiveError for a shard that
        cannot be indexed. A missing object raises NoSuchKeyError (a FileNotFoundError) when the
        iteration reaches it, under the ``handler`` policy.
    """

    _every_zip_entry = False  # True: zip directory entries and metadata too (the original's zipdata)
    # the counters of the client and the dataset (IndexedSource's defaults keep none)
    metrics = _HasClient.metrics
    note_samples = _HasClient.note_samples

    def __init__(self, urls: str | S3URL | Iterable[str | S3URL], *, shuffle_urls: bool = False,
                 seed: int = 0, config: S3Config | None = None, client: Any = None,
                 archives: Mapping[str, str] | None = None, equal_work: str | None = None,
                 handler: HandlerSpec = "raise", window: int = 8, chunk_size: int = 16 << 20,
                 prefetch: int = 2, allow_empty: bool = False, listing_cache: str | None = None,
                 refresh_listing: bool = False) -> None:
        try:
            resolve_handler(handler)
        except ValueError as exc:
            raise ConfigError(str(exc), field="handler", value=handler) from exc
        IndexedSource.__init__(self, seed=seed, shuffle=shuffle_urls, window=window,
                               equal_work=equal_work, handler=handler)
        IterableDataset.__init__(self)
        self.config = config
        self.chunk_size = chunk_size
        self.prefetch = prefetch
        self._suffixes = dict(ARCHIVE_SUFFIXES if archives is None else archives)
        self._client = client
        self._metrics = DatasetMetrics()
        self._listing_cache, self._refresh_listing = listing_cache, refresh_listing
        def scan() -> tuple[list[tuple[str, int | None, str | None]], dict[int, Any], SkipStats]:
            items = self._listing(urls, self._suffixes, allow_empty)
            shards = [Shard(u, archive_kind(u, self._suffixes), size, etag) for u, size, etag in items]
            skips = SkipStats()
            return items, _load_indexes(self.client, shards, self.handler, skips, self._every_zip_entry), skips

        self._items, self._indexes, self._index_skips = self._once_per_job(scan)
        # a shard's size, when no listing gave it, is the one its index describes: every read
        # then checks it (a shard rewritten since it was indexed fails, never reads short)
        self._shards = [Shard(u, archive_kind(u, self._suffixes),
                              size if size is not None else getattr(self._indexes.get(i), "size", None), etag)
                        for i, (u, size, etag) in enumerate(self._items)]
        self._counts = [self._indexes[i].sample_count if i in self._indexes
                        else (0 if self._shards[i].kind else 1) for i in range(len(self._shards))]

    # -- public ------------------------------------------------------------------------------
    @property
    def urls(self) -> list[str]:
        """Every object/shard URL, listed and expanded, in the given (unshuffled) order."""
        return [x[0] for x in self._items]

    @property
    def shuffle_urls(self) -> bool:
        """Whether the epoch's order is shuffled (the constructor's ``shuffle_urls``)."""
        return self.shuffled

    def kind(self, url: str) -> str | None:
        """``"tar"``/``"tgz"``/``"zip"`` for archives, None for plain objects."""
        return archive_kind(url, self._suffixes)

    def iter_records(self) -> Iterator[Record]:
        """:class:`Record` ``(source, name, data)`` for this rank/worker, in order."""
        for _, records in self.iter_units(1):
            yield from records

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        n = 0
        try:
            for record in self.iter_records():
                n += 1
                yield record.name, record.data
        finally:
            self.note_samples(n, self.stats.total, final=True)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["stats"] = SkipStats()
        return state

    # -- the IndexedSource contract ------------------------------------------------------------
    def _shard_counts(self) -> list[int]:
        return self._counts

    def _identity(self) -> dict[str, Any]:
        return {"objects": len(self._shards),
                "digest": digest((s.url, s.size, s.etag, n) for s, n in zip(self._shards, self._counts))}

    def _pass_skips(self) -> SkipStats:
        return self._index_skips

    def _stream_shards(self) -> list[bool]:
        return [s.kind == "tgz" for s in self._shards]

    def _read(self, order: Order, units: Iterator[np.ndarray]) -> Iterator[list[Record]]:
        reader = ShardReader(self.client, self._shards, self._indexes, handler=self.handler,
                             stats=self.stats, chunk=self.chunk_size,
                             open_chunk=min(self.chunk_size, 8 << 20), prefetch=self.prefetch,
                             streams=max(4, self.window))
        return reader.read(order, units)


def _load_indexes(client: Any, shards: Sequence[Shard], handler: Handler, skips: SkipStats,
                  every_zip_entry: bool = False) -> dict[int, ShardIndex | ZipIndex]:
    """The index of every archive shard (sidecar, zip directory, or header scan), concurrently.
    A shard that cannot be indexed raises, or under a skip policy is left out (0 samples) and
    counted in ``skips`` (stage ``"index"``)."""
    wanted = [i for i, s in enumerate(shards) if s.kind is not None]

    def one(i: int) -> ShardIndex | ZipIndex | BaseException:
        s = shards[i]
        try:
            if s.kind == "zip":
                return zip_index(client, s.url, s.size, every_entry=every_zip_entry)
            index = load_index(client, s.url, size=s.size, kind=s.kind or "tar", etag=s.etag)
            assert index is not None
            if index.sample_count == 0:  # no reader walks it: count what it holds instead
                skips.merge(unread_member_skips(client, s, index.size))
        except (AwsioError, OSError) as exc:
            return exc
        return index

    if len(wanted) <= 1:
        found = [one(i) for i in wanted]
    else:
        with ThreadPoolExecutor(min(16, len(wanted)), thread_name_prefix="awsio-index") as pool:
            found = list(pool.map(one, wanted))
    out: dict[int, ShardIndex | ZipIndex] = {}
    for i, got in zip(wanted, found):
        if isinstance(got, BaseException):
            handler.handle(got, stage="index", stats=skips, where=shards[i].url)
        else:
            out[i] = got
    return out


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
        self._metrics = DatasetMetrics()
        self._items = self._once_per_job(lambda: self._listing(urls, {}, allow_empty))
        self._urls = [x[0] for x in self._items]

    @property
    def urls(self) -> list[str]:
        return list(self._urls)

    def __len__(self) -> int:
        return len(self._urls)

    def __getitem__(self, index: int) -> tuple[str, bytes]:
        url, size, etag = self._items[index]
        # the object as listed: one rewritten since is IntegrityError (PreconditionFailed), as in
        # S3IterableDataset, never other bytes under the same index
        data = self.client.get_range(url, 0, None, size=size, if_match=etag)
        self.note_samples(1)
        return url, data

    def __getitems__(self, indices: Sequence[int]) -> list[tuple[str, bytes]]:
        items = [self._items[i] for i in indices]
        got = self.client.get_many(((u, 0, None, size, None, etag) for u, size, etag in items), ordered=True)
        out = [(u, data) for (u, _, _), (_, data) in zip(items, got)]
        self.note_samples(len(out))
        return out


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
