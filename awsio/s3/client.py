"""``S3Client``: the one entry point to S3, over the native or the Python backend.

The client is cheap to make and lazy: the backend (connections, threads, libcurl handles) is
built on first use *in the current process*. After ``fork`` the child builds its own, and
pickling carries only the :class:`~awsio.config.S3Config`, so a client can be handed to
spawn-started DataLoader workers.

Backend choice (``S3Config.backend`` / ``AWSIO_BACKEND``): ``native`` needs ``awsio._native``;
``python`` is botocore; ``auto`` takes native when it is built and otherwise warns once and
uses Python.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import warnings
from typing import Any, BinaryIO, Iterable, Iterator, Optional, Tuple, Union

from awsio.config import S3Config
from awsio.errors import ConfigError, NoSuchBucketError, NoSuchKeyError
from awsio.memory import keep_freed_memory
from awsio.metrics import Metrics, Snapshot
from awsio.s3.backend import Backend, Body, ObjectInfo, Request
from awsio.s3.reader import S3Reader
from awsio.s3.threads import renew_lock_after_fork
from awsio.s3.url import S3URL, ObjectURL, parse_url

__all__ = ["S3Client", "file_exists", "get_file_size", "list_files"]

log = logging.getLogger(__name__)

URLLike = Union[str, S3URL]
# A get_many item: a URL (whole object), an ObjectInfo from a listing (whole object of a known
# size), (url, start, end) for a half-open range, (url, start, end, size) with the object's size,
# or (url, start, end, size, cuts): the range's body in pieces cut at `cuts` (see backend.Request),
# or (url, start, end, size, cuts, if_match): and the ETag the object must still have.
GetItem = Union[URLLike, ObjectInfo, Tuple[URLLike, int, Optional[int]],
                Tuple[URLLike, int, Optional[int], Optional[int]],
                Tuple[URLLike, int, Optional[int], Optional[int], Optional[Tuple[int, ...]]],
                Tuple[URLLike, int, Optional[int], Optional[int], Optional[Tuple[int, ...]], Optional[str]]]

_warned_fallback = False
_warn_lock = threading.Lock()

# S3 refuses multipart parts under 5 MiB (except the last one).
_PART_SIZE = 16 << 20


def _read_part(stream: BinaryIO, size: int) -> bytes:
    """``size`` bytes of ``stream``, fewer only at its end: raw streams and pipes may return
    less per ``read`` than asked without being at the end."""
    chunks, got = [], 0
    while got < size:
        chunk = stream.read(size - got)
        if chunk is None:
            raise ValueError("the stream is non-blocking and has no data ready: pass a blocking stream")
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _unlock_after_fork() -> None:
    # A lock that another thread of the parent held at the fork stays held in the child, where no
    # thread will release it (each client's own: renew_lock_after_fork).
    global _warn_lock
    _warn_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_unlock_after_fork)


def _make_backend(config: S3Config, metrics: Metrics) -> Backend:
    global _warned_fallback
    if config.keep_freed_memory:
        keep_freed_memory()
    choice = config.backend
    if choice in ("auto", "native"):
        from awsio.s3.native_backend import NativeBackend, native_available

        if native_available():
            return NativeBackend(config, metrics)
        if choice == "native":
            raise ConfigError(
                "backend='native' but awsio._native is not built (install libcurl development files, "
                "e.g. apt-get install libcurl4-openssl-dev, and reinstall awsio)",
                field="backend", value=choice,
            )
        with _warn_lock:
            if not _warned_fallback:
                _warned_fallback = True
                warnings.warn(
                    "awsio: the native reader (awsio._native) is not built; using the slower "
                    "pure-Python backend. Install libcurl4-openssl-dev and reinstall awsio to build it.",
                    RuntimeWarning, stacklevel=3,
                )
    from awsio.s3.python_backend import PythonBackend

    return PythonBackend(config, metrics)


class S3Client:
    """Read (and, for the harness, write) S3 objects by ``s3://`` URL.

    Args:
        config: an :class:`S3Config`; by default one built from the environment.

    Every method raises :mod:`awsio.errors` exceptions naming the ``s3://bucket/key``:
    ``NoSuchKeyError``/``NoSuchBucketError`` (FileNotFoundError), ``AccessDeniedError``
    (PermissionError), ``EndpointConnectionError``/``ThrottledError``/``ServerError``
    (ConnectionError), ``InvalidURLError`` (ValueError). Reads also raise ``IntegrityError``
    (OSError) when replies contradict the object's ``size`` (when given), the range asked for,
    or S3's checksum, on every attempt.
    """

    def __init__(self, config: Optional[S3Config] = None) -> None:
        self.config = config if config is not None else S3Config()
        self._backend: Optional[Backend] = None
        self._pid = -1
        self._uploader: Optional[Tuple[int, Any]] = None  # (pid, botocore client)
        self._lock = threading.Lock()
        self._metrics = Metrics()
        self._metrics_pid = os.getpid()
        renew_lock_after_fork(self)  # (another thread may be building the backend at a fork)

    # -- lifecycle ---------------------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"S3Client(endpoint={self.config.endpoint!r}, backend={self.config.backend!r})"

    @property
    def backend(self) -> Backend:
        """The backend of this process (built on first use, rebuilt after fork)."""
        pid = os.getpid()
        if self._backend is None or self._pid != pid:
            with self._lock:
                if self._backend is None or self._pid != pid:
                    # After fork the parent's backend is abandoned, never closed: its sockets
                    # and threads belong to the parent.
                    self._backend = _make_backend(self.config, self._process_metrics())
                    self._pid = pid
        return self._backend

    def _process_metrics(self) -> Metrics:
        # A forked child starts from zero: the parent's counts are the parent's, and summing
        # workers and the main process must not count them twice.
        if self._metrics_pid != os.getpid():
            self._metrics = Metrics()
            self._metrics_pid = os.getpid()
        return self._metrics

    def metrics(self) -> Snapshot:
        """This process's counters of this client: requests by kind, bytes, retries by cause,
        time to first byte (see :mod:`awsio.metrics`). :func:`awsio.metrics.all_ranks` sums
        snapshots over ranks."""
        return self._process_metrics().snapshot()

    @property
    def backend_name(self) -> str:
        """``"native"`` or ``"python"``: the backend this client uses."""
        return self.backend.name

    def close(self) -> None:
        """Release connections and threads; the client builds new ones if used again."""
        with self._lock:
            if self._backend is not None and self._pid == os.getpid():
                self._backend.close()
            self._backend = None
            self._uploader = None

    def __enter__(self) -> S3Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- reads -------------------------------------------------------------------------------

    def get(self, url: URLLike, *, size: Optional[int] = None) -> bytes:
        """The whole object as ``bytes`` (``size``: its size when known, checked against the reply)."""
        u = parse_url(url)
        return self.backend.get(u.bucket, u.key, 0, None, size)

    def get_range(self, url: URLLike, start: int, end: Optional[int], *, size: Optional[int] = None,
                  if_match: Optional[str] = None) -> bytes:
        """Bytes ``[start, end)`` of the object (``end=None``: to the end). Clipped like S3.

        ``size``: the object's size when known; a reply that contradicts it raises IntegrityError.
        ``if_match``: the ETag it must still have (IntegrityError ``PreconditionFailed`` if not).
        """
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"invalid range [{start}, {end}) for {url}")
        u = parse_url(url)
        return self.backend.get(u.bucket, u.key, start, end, size, if_match)

    def get_many(self, urls: Iterable[GetItem], ordered: bool = True,
                 ramp: bool = False) -> Iterator[Tuple[str, Body]]:
        """Fetch many objects (or ranges) with up to ``max_connections`` requests in flight.

        Yields ``(url, bytes)``; in the input order with ``ordered=True``, else as they complete.
        An item with ``cuts`` (a 5-tuple) yields its range as a tuple of pieces instead: with the
        native backend each member of a tar range arrives in its own ``bytes``, copied once. A
        6-tuple adds ``if_match``, the ETag the object must still have (:class:`Request`).
        ``urls`` is consumed lazily, so memory is bounded by the in-flight window. Items that
        carry the object's size (an ObjectInfo, a 4-tuple) are checked against it. ``ramp``:
        one request in flight at first, the window doubling with each result taken (the first
        result sooner, little fetched before it: the start of a stream or a resume).
        """
        names: dict[int, str] = {}

        def requests() -> Iterator[Request]:
            for i, item in enumerate(urls):
                url: URLLike
                start, end, size, cuts, if_match = 0, None, None, None, None
                if isinstance(item, ObjectInfo):
                    url, size = item.url, item.size
                elif isinstance(item, tuple):
                    if not 3 <= len(item) <= 6:
                        raise ValueError("a get_many item is (url, start, end[, size[, cuts[, if_match]]]), "
                                         f"not {item!r}")
                    url, start, end, size, cuts, if_match = (*item, None, None, None)[:6]
                else:
                    url = item
                u = parse_url(url)
                names[i] = str(url) if isinstance(url, str) else str(u)
                yield Request(u.bucket, u.key, start, end, size, cuts, if_match)

        for i, data in self.backend.get_many(requests(), ordered=ordered, ramp=ramp):
            yield names.pop(i), data

    def head(self, url: URLLike) -> ObjectInfo:
        """Size, ETag and Last-Modified of one object."""
        u = parse_url(url)
        try:
            return self.backend.head(u.bucket, u.key)
        except NoSuchKeyError:
            # A HEAD 404 has no body, so a missing bucket looks like a missing key. Ask once,
            # on this error path only, with a listing that names the key as its prefix.
            try:
                next(iter(self.backend.list(u.bucket, u.key)), None)
            except NoSuchBucketError:
                raise
            except Exception:  # noqa: BLE001 - the probe must not hide the original error
                pass
            raise

    def exists(self, url: URLLike) -> bool:
        """True if the object exists (False for a missing key or bucket)."""
        try:
            self.head(url)
            return True
        except FileNotFoundError:
            return False

    def list(self, url: URLLike) -> Iterator[ObjectInfo]:
        """Every object under the prefix ``url`` (paginated ListObjectsV2), in key order.

        The prefix is raw: ``s3://b/p/test`` also lists ``p/test_x.jpg``. Folder markers
        (zero-byte keys ending in ``/``, what a console's "Create folder" makes) are left out:
        they are never data. Each ``info.url`` is an :class:`~awsio.s3.url.ObjectURL`: it names
        the key as listed, braces included, and is never read as a brace pattern again.
        """
        u = parse_url(url)
        for info in self.backend.list(u.bucket, u.key):
            if info.size == 0 and info.url.endswith("/"):
                continue
            yield ObjectInfo(ObjectURL(info.url), info.size, info.etag, info.last_modified)

    def open(self, url: URLLike, *, chunk_size: int = 8 << 20, prefetch: int = 2,
             size: Optional[int] = None, start: int = 0, end: Optional[int] = None,
             etag: Optional[str] = None) -> S3Reader:
        """A streaming file object over the object (or its range), reading ahead ``prefetch``
        chunks, every chunk from one version of it (``etag``, else the one HEAD gives when the
        size is not known either: :class:`~awsio.s3.reader.S3Reader`)."""
        u = parse_url(url)
        return S3Reader(self.backend, u.bucket, u.key, size=size, chunk_size=chunk_size,
                        prefetch=prefetch, start=start, end=end, etag=etag)

    # -- writes (shard maker, checkpoints) ---------------------------------------------------

    def _botocore(self) -> Any:
        """The botocore client for writes (botocore's own retries), one per process."""
        pid = os.getpid()
        if self._uploader is None or self._uploader[0] != pid:
            from awsio.s3.python_backend import make_botocore_client

            self._uploader = (pid, make_botocore_client(self.config, retries=True))
        return self._uploader[1]

    def put(self, url: URLLike, data: Union[bytes, bytearray, memoryview, BinaryIO],
            *, part_size: int = _PART_SIZE) -> None:
        """Upload ``data`` (bytes or a readable binary stream) to ``url``.

        Streams go up as a multipart upload, ``part_size`` bytes at a time, so memory stays
        bounded; a failed multipart upload is aborted so no parts are left behind.
        """
        from botocore import exceptions as bex

        from awsio.s3.python_backend import translate_botocore_error

        u = parse_url(url)
        s3 = self._botocore()
        endpoint = self.config.endpoint
        if part_size < 5 << 20:
            raise ValueError("part_size must be at least 5 MiB")
        stream: BinaryIO = io.BytesIO(data) if isinstance(data, (bytes, bytearray, memoryview)) else data
        try:
            first = _read_part(stream, part_size)
            nxt = _read_part(stream, part_size) if len(first) == part_size else b""
            metrics = self._process_metrics()
            if not nxt:
                metrics.request("put", len(first))
                s3.put_object(Bucket=u.bucket, Key=u.key, Body=first)
                return
            metrics.request("put")
            upload_id = s3.create_multipart_upload(Bucket=u.bucket, Key=u.key)["UploadId"]
        except (bex.BotoCoreError, bex.ClientError) as exc:
            raise translate_botocore_error(exc, str(u), endpoint) from exc
        parts = []
        try:
            number, chunk = 1, first
            while chunk:
                metrics.request("put", len(chunk))
                resp = s3.upload_part(Bucket=u.bucket, Key=u.key, UploadId=upload_id,
                                      PartNumber=number, Body=chunk)
                parts.append({"ETag": resp["ETag"], "PartNumber": number})
                number += 1
                chunk, nxt = nxt, (_read_part(stream, part_size) if len(nxt) == part_size else b"")
            metrics.request("put")
            s3.complete_multipart_upload(Bucket=u.bucket, Key=u.key, UploadId=upload_id,
                                         MultipartUpload={"Parts": parts})
        except BaseException as exc:
            try:
                s3.abort_multipart_upload(Bucket=u.bucket, Key=u.key, UploadId=upload_id)
            except Exception:  # the original error matters more than a failed cleanup
                log.warning("could not abort the multipart upload of %s", u)
            if isinstance(exc, (bex.BotoCoreError, bex.ClientError)):
                raise translate_botocore_error(exc, str(u), endpoint) from exc
            raise

    def delete(self, url: URLLike) -> None:
        """Delete one object (no error if it is already gone)."""
        from botocore import exceptions as bex

        from awsio.s3.python_backend import translate_botocore_error

        u = parse_url(url)
        try:
            self._botocore().delete_object(Bucket=u.bucket, Key=u.key)
        except (bex.BotoCoreError, bex.ClientError) as exc:
            raise translate_botocore_error(exc, str(u), self.config.endpoint) from exc


# -- the original plugin's module-level helpers -------------------------------------------------

_default_clients: dict[Tuple[int, S3Config], S3Client] = {}


def _client(config: Optional[S3Config]) -> S3Client:
    # config=None means "the environment as it is now": build the config on every call so that
    # AWS_* / AWSIO_BACKEND set after the first call are honoured, and share one client per
    # (process, config) so connections are reused.
    cfg = config if config is not None else S3Config()
    key = (os.getpid(), cfg)
    client = _default_clients.get(key)
    if client is None:
        client = _default_clients[key] = S3Client(cfg)
    return client


def list_files(url: str, config: Optional[S3Config] = None) -> list[str]:
    """The ``s3://`` URLs of every object whose key starts with ``url``'s key (a raw prefix, as
    the original plugin listed), folder markers left out (see :meth:`S3Client.list`)."""
    return [info.url for info in _client(config).list(url)]


def file_exists(url: str, config: Optional[S3Config] = None) -> bool:
    """True if the object exists."""
    return _client(config).exists(url)


def get_file_size(url: str, config: Optional[S3Config] = None) -> int:
    """The object's size in bytes (NoSuchKeyError if it does not exist)."""
    return _client(config).head(url).size

