"""The original S3 plugin's module, kept so code written for it runs unchanged.

Same names, arguments and return types as the original's ``s3dataset.py``, and its behaviour
where code may rely on it; reading goes through awsio's readers (native or Python backend,
retries, integrity checks, typed errors). Where this path differs from the main API
(:mod:`awsio.dataset`):

* each URL is first an object (a HEAD), else a *raw* prefix: ``s3://b/p/test`` also lists
  ``p/test_x.jpg`` and ``p/testing/c.jpg``; no brace patterns (a key may contain braces);
* a URL that names no object and lists nothing (an empty prefix, a missing object) raises
  ``AssertionError("The directory {url} does not contain any objects.")`` in the constructor;
* archives are ``.tar`` and ``.zip`` keys (a ``.tar.gz`` is one plain object, as it was): a
  ``.tar`` (exact case; gzip, bzip2 or xz inside, as ``tarfile``'s ``r|*`` read) is read whole
  and yields what :func:`tardata` yields; zips yield every entry of their directory, directory
  entries (``b""``) and metadata included. Unlike the original: a name that appears twice in a
  zip yields each entry's own bytes (the original read the last one twice), ``.ZIP`` is a zip
  too, and a key ending in ``tar`` without the dot (``guitar``) is a plain object (the original
  tried to untar it and raised);
* ``shuffle_urls`` orders URLs as the original did for the same epoch
  (``random.Random(epoch).sample``, without touching the global ``random`` state);
  ``len()`` is the number of URLs.

Folder markers (zero-byte keys ending in ``/``) are skipped here as everywhere.
"""

from __future__ import annotations

import bz2
import io
import lzma
import random
import re
import zipfile
import zlib
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Mapping

from awsio import dataset as _main
from awsio.archives.tar import iter_tar
from awsio.config import S3Config
from awsio.dataset import ShuffleDataset
from awsio.errors import ArchiveError
from awsio.grouping import Record
from awsio.s3.client import file_exists, get_file_size, list_files
from awsio.s3.url import parse_url

__all__ = ["S3Dataset", "S3IterableDataset", "ShuffleDataset", "file_exists", "get_file_size",
           "list_files", "reraise_exception", "tardata", "zipdata"]

# Zips go through awsio's zip reader; a ``.tar`` key is read whole and expanded by tardata, as
# the original did (its ``r|*`` took gzip, bzip2 and xz; regular members only; skip_meta).
_ORIGINAL_ARCHIVES = {".zip": "zip"}
_Items = list[tuple[str, int | None, str | None]]


def reraise_exception(exn: BaseException) -> None:
    """The default ``handler`` of :func:`tardata` / :func:`zipdata`: raise the exception."""
    raise exn


def tardata(fileobj: BinaryIO | bytes, skip_meta: str | None = r"__[^/]*__($|/)",
            handler: Callable[[BaseException], Any] = reraise_exception) -> Iterator[tuple[str, bytes]]:
    """``(name, bytes)`` of each regular member of a tar (gzip detected) held in ``bytes`` or a
    binary stream, streamed. Skipped as the original skipped them: a top-level ``__x__`` name,
    and names that ``skip_meta`` matches. A corrupt or truncated archive raises
    :class:`awsio.errors.ArchiveError` through ``handler``; if ``handler`` returns, the
    iteration ends there."""
    try:
        yield from _tar_members(fileobj, skip_meta)
    except Exception as exn:  # noqa: BLE001 - the handler decides, as in the original
        handler(exn)


def _tar_members(fileobj: BinaryIO | bytes, skip_meta: str | None, url: str = "") -> Iterator[tuple[str, bytes]]:
    """:func:`tardata`'s members; raises :class:`ArchiveError`."""
    if isinstance(fileobj, (bytes, bytearray, memoryview)):
        fileobj = io.BytesIO(bytes(fileobj))
    stream: Any = fileobj if hasattr(fileobj, "peek") else io.BufferedReader(fileobj)  # type: ignore[arg-type]
    magic = stream.peek(6)[:6]
    gzip = magic[:2] == b"\x1f\x8b"
    if magic[:3] == b"BZh":
        stream = bz2.BZ2File(stream)
    elif magic == b"\xfd7zXZ\x00":
        stream = lzma.LZMAFile(stream)
    try:
        for member in iter_tar(stream, url=url, gzip=gzip, metadata=True):
            name = member.name
            if "/" not in name and name.startswith("__") and name.endswith("__"):
                continue
            if skip_meta is None or not re.match(skip_meta, name):
                yield name, member.data
    except (OSError, EOFError, lzma.LZMAError) as exc:  # a corrupt or truncated bzip2 / xz stream
        if isinstance(exc, ArchiveError):
            raise
        raise ArchiveError(f"corrupt compressed tar: {exc}", url=url or None) from exc


def zipdata(fileobj: BinaryIO | bytes,
            handler: Callable[[BaseException], Any] = reraise_exception) -> Iterator[tuple[str, bytes]]:
    """``(name, bytes)`` of every entry of a zip held locally (``bytes`` or a seekable file), in
    directory order: directory entries (``b""``) and metadata included, as the original yielded
    them. A corrupt zip raises :class:`awsio.errors.ArchiveError` through ``handler`` (the
    original printed it and stopped); if ``handler`` returns, the iteration ends there."""
    try:
        if isinstance(fileobj, (bytes, bytearray, memoryview)):
            fileobj = io.BytesIO(bytes(fileobj))
        with zipfile.ZipFile(fileobj) as zf:
            for info in zf.infolist():  # by entry: a name may appear twice, each with its own bytes
                yield info.filename, zf.read(info)
    except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError) as exc:
        # RuntimeError: an encrypted entry; NotImplementedError: a compression method zipfile lacks
        error = ArchiveError(f"corrupt zip: {exc}" if isinstance(exc, (zipfile.BadZipFile, zlib.error, EOFError))
                             else f"unreadable zip entry: {exc}")
        error.__cause__ = exc
        handler(error)


def _original_listing(urls_list: Any, client: Any) -> _Items:
    """The original's ``create_urls_list``: each URL is an object if HEAD finds it, else a raw
    prefix that must list something. Raises AssertionError with the original's words."""
    out: _Items = []
    for url in [urls_list] if isinstance(urls_list, str) else urls_list:
        url = str(url)
        if not parse_url(url).is_prefix:  # a folder marker is never an object to read
            try:
                info = client.head(url)
                out.append((url, info.size, info.etag))
                continue
            except FileNotFoundError:
                pass
        listed = [(o.url, o.size, o.etag) for o in client.list(url)]
        if not listed:  # not an assert statement: python -O must not drop it
            raise AssertionError(f"The directory {url} does not contain any objects.")
        out.extend(listed)
    return out


class _Original:
    """What both datasets of the original share: its listing rules and ``urls_list``."""

    client: Any
    urls: list[str]

    def _listing(self, urls: Any, suffixes: Mapping[str, str], allow_empty: bool) -> _Items:
        return _original_listing(urls, self.client)

    @property
    def urls_list(self) -> list[str]:
        """Every object URL, in listing order."""
        return self.urls


class S3IterableDataset(_Original, _main.S3IterableDataset):
    """The original ``S3IterableDataset(urls_list, shuffle_urls=False)``: yields ``(url, bytes)``
    for objects and ``(name, bytes)`` for the members of ``.tar`` and ``.zip`` shards.

    ``config``/``client`` (keyword-only) are awsio additions. Raises AssertionError for a URL
    that names no object and lists nothing.
    """

    _every_zip_entry = True

    def __init__(self, urls_list: str | Iterable[str], shuffle_urls: bool = False, *,
                 config: S3Config | None = None, client: Any = None) -> None:
        # window=0: a shuffle reorders objects and shards, never the members inside a shard
        super().__init__(urls_list, shuffle_urls=shuffle_urls, config=config, client=client,
                         archives=_ORIGINAL_ARCHIVES, window=0)

    def _shard_order(self, epoch: int) -> list[int]:
        return random.Random(epoch).sample(range(len(self.urls)), len(self.urls))

    def iter_records(self) -> Iterator[Record]:
        """Each object's record, a ``.tar`` object's replaced by its members (the original's
        ``filename[-3:] == "tar"``, with the dot; case-sensitive) as :func:`tardata` yields them
        (the default handler: an :class:`ArchiveError` naming the shard raises)."""
        for record in super().iter_records():
            if record.source == record.name and record.name.endswith(".tar"):
                for name, data in _tar_members(record.data, r"__[^/]*__($|/)", url=record.source):
                    yield Record(record.source, name, data)
            else:
                yield record

    @property
    def shuffled_list(self) -> list[str]:
        """The URL order of :attr:`epoch` (the original's ``random.seed(epoch); random.sample``)."""
        urls = self.urls
        return [urls[i] for i in self._shard_order(self.epoch)] if self.shuffle_urls else list(urls)

    @property
    def epoch(self) -> int:
        """The epoch of the next iteration; assigning it is :meth:`set_epoch`."""
        return self._epoch

    @epoch.setter
    def epoch(self, value: int) -> None:
        self.set_epoch(value)

    def __len__(self) -> int:
        """The number of URLs (objects and shards), as in the original."""
        return len(self.urls)


class S3Dataset(_Original, _main.S3Dataset):
    """The original ``S3Dataset(urls_list)``: ``ds[i] -> (url, bytes)``. ``config``/``client``
    (keyword-only) are awsio additions. Raises AssertionError for a URL that names no object and
    lists nothing."""

    def __init__(self, urls_list: str | Iterable[str], *, config: S3Config | None = None,
                 client: Any = None) -> None:
        super().__init__(urls_list, config=config, client=client)
