"""The native S3 backend: the libcurl reader in ``awsio._native`` behind the :class:`Backend` contract.

Transfers run in C++ with the GIL released, many at once over a pool of keep-alive connections
(``S3Config.max_connections``), signed by libcurl (SigV4), retried with backoff inside the
transfer loop. Bodies arrive as ``bytes`` allocated once and filled in place.

Errors are reported as the same :mod:`awsio.errors` exceptions as the Python backend, built
with :func:`awsio.errors.s3_error` / :class:`EndpointConnectionError`. Listing is not a hot path
and is delegated to the Python backend's listing code.

Every reply is checked as the Python backend checks it (:mod:`awsio.s3.integrity`): a 206 must
be for the range asked (``RangeMismatch``), lengths and ``Content-Range`` totals must agree with
each other and with the size the caller knows (``SizeMismatch``), and a GET of a whole object
asks for the stored checksum (``x-amz-checksum-mode``) and checks the body against it, computed
as the bytes arrive (``ChecksumMismatch``). Each is retried, then raised as IntegrityError. S3
sends no checksum for a ranged GET, so ranges, and the parts of a large GET split into parts
(``part_size``), are not checksummed; a whole GET whose known ``size`` fits in two parts is sent
as one plain GET, and is.

Each native client is used by one call at a time (a small pool serves concurrent threads and
nested calls). A forked child abandons the parent's clients without touching their sockets.
"""

from __future__ import annotations

import concurrent.futures.thread  # noqa: F401 - registers its exit hook before ours (see below)
import logging
import os
import sys
import threading
import weakref
from collections import deque
from typing import Any, Iterable, Iterator, Optional, Tuple

from awsio.config import Credentials, S3Config, credentials_provider
from awsio.errors import EndpointConnectionError, IntegrityError, S3Error, s3_error
from awsio.metrics import CAUSES, Metrics
from awsio.s3.backend import Body, ObjectInfo, Request, body_len, check_cuts, cut_body, request_bytes

__all__ = ["NativeBackend", "native_available", "native_client"]

log = logging.getLogger(__name__)

try:
    from awsio import _native
except ImportError:  # built without libcurl headers: S3Client falls back to the Python backend
    _native = None

# Longest a native wait runs before Python gets control back (so Ctrl-C is seen promptly).
_TICK = 0.5

# At interpreter exit, a GET waiting in another thread must neither hold the exit up (a body
# stalled mid-transfer, retried for minutes) nor come back from the engine in a daemon thread
# once the interpreter is finalizing (taking the GIL back then ends the thread inside C++ frames:
# std::terminate, the process aborts). threading runs this hook when the main thread is done,
# before it joins threads; hooks run in the reverse order of registration, so this one runs
# before concurrent.futures joins its workers. GETs in daemon threads (Python never waits for
# them) are abandoned at every exit; after Ctrl-C (the main thread ended in KeyboardInterrupt),
# GETs in every thread are.
_exit_mode: Optional[str] = None  # None: running; "daemon" or "all": which threads' GETs are abandoned
_daemon_waits = 0  # daemon threads inside a native wait
_waits_cond = threading.Condition()


def _abandon_waits_at_exit() -> None:
    global _exit_mode
    with _waits_cond:
        _exit_mode = "all" if isinstance(getattr(sys, "last_value", None), KeyboardInterrupt) else "daemon"
        _waits_cond.wait_for(lambda: _daemon_waits == 0, timeout=4 * _TICK)


_register_atexit = getattr(threading, "_register_atexit", None)
if _register_atexit is not None:
    _register_atexit(_abandon_waits_at_exit)


def _wait(client: Any, url: str) -> Any:
    """One tick of ``client.wait``; RuntimeError once the interpreter exits (see above)."""
    global _daemon_waits
    if not threading.current_thread().daemon:
        if _exit_mode == "all":
            raise RuntimeError(f"the interpreter is exiting after Ctrl-C: GET of {url} abandoned")
        return client.wait(_TICK)
    with _waits_cond:
        if _exit_mode is not None:
            raise RuntimeError(f"the interpreter is exiting: GET of {url} in a daemon thread abandoned")
        _daemon_waits += 1
    try:
        return client.wait(_TICK)
    finally:
        with _waits_cond:
            _daemon_waits -= 1
            _waits_cond.notify_all()


_LIVE: "weakref.WeakSet[NativeBackend]" = weakref.WeakSet()


def native_available() -> bool:
    """True when the compiled extension ``awsio._native`` could be imported."""
    return _native is not None


def native_client(config: S3Config, *, pool: Any = None, limiter: Any = None, **options: Any) -> Any:
    """An ``awsio._native.Client`` for ``config``: its native settings (``S3Config`` fields marked
    ``native``) and ``endpoint`` go into one ``_native.Options`` by name, then ``options`` (engine
    names, e.g. ``deadline``, ``part_size``). ``pool``: a ``BufferPool``; ``limiter``: a
    ``RateLimiter`` shared with other clients (None: no pacing). Raises AttributeError for a name
    the engine does not know."""
    opts = _native.Options()
    for name, value in {**config.native_options(), "endpoint": config.endpoint, **options}.items():
        if not hasattr(opts, name):
            raise AttributeError(f"the native engine has no option {name!r}")
        setattr(opts, name, value)
    return _native.Client(opts, pool, limiter)


def _forget_after_fork() -> None:
    # The child shares the parent's sockets (and TLS state): never close or reuse them here.
    for backend in list(_LIVE):
        backend._abandon()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def _number(value: Optional[str]) -> Any:
    """A size the engine reports as text, as an int (as the Python backend reports it)."""
    return int(value) if value is not None and value.isdigit() else value


class _Handle:
    """One native client plus the credentials last pushed to it."""

    __slots__ = ("client", "creds", "__weakref__")

    def __init__(self, client: Any) -> None:
        self.client = client
        self.creds: Optional[Credentials] = None


_END = object()  # a _Pump's last item


class _Pump:
    """Drives one ``get_many`` in a daemon thread: submits ``requests`` (at most ``max_connections``
    in flight, at most ``2 x max_connections`` and, as far as their sizes are known,
    ``max_inflight_bytes`` not yet taken by the caller), waits on the engine,
    and hands results over in order (``ordered``) or as they complete. The thread stops after the
    last result, after an error (handed over as the last item: in order, at the failed request's
    turn), or when the caller stops it; stopping wakes the engine, so the transfers left are
    cancelled at once."""

    def __init__(self, backend: "NativeBackend", requests: Iterator[Request], ordered: bool,
                 ramp: bool = False) -> None:
        self.backend, self.requests, self.ordered = backend, requests, ordered
        self.full = backend._config.max_connections
        self.window = 1 if ramp else self.full  # grows to full as results are taken (ramp)
        self.span = 2 * self.full
        self.budget = backend._config.max_inflight_bytes
        self.cond = threading.Condition(threading.Lock())
        self.out: "deque[Any]" = deque()  # (index, data), then _END or an exception
        self.taken = 0                    # results the caller took
        self.held = 0                     # known bytes of the requests sent and not taken
        self.sizes: dict[int, int] = {}   # index -> its known bytes, until taken
        self.stopped = False
        # The process this pump's thread runs in: a forked child has no such thread (and the
        # backend's own _pid becomes the child's once it forgets the parent's clients).
        self.pid = os.getpid()
        self.handle = backend._acquire()
        self.thread = threading.Thread(target=self._run, name="awsio-get-many", daemon=True)
        self.thread.start()

    def take(self) -> Any:
        """The next ``(index, data)``, or _END; raises the error that ended the transfers."""
        if os.getpid() != self.pid:  # its thread is in the parent: waiting here would never end
            raise RuntimeError("a NativeBackend.get_many iterator cannot be resumed in a forked child")
        with self.cond:
            while not self.out:
                self.cond.wait()
            item = self.out.popleft()
            grown = False
            if isinstance(item, tuple):
                self.taken += 1
                self.held -= self.sizes.pop(item[0], 0)
                if self.window < self.full:
                    self.window, grown = min(self.full, 2 * self.window), True
                self.cond.notify_all()
        if grown:  # (this is the backend's process: checked above)
            self.handle.client.wakeup()  # submit the next ones now, not when a transfer ends
        if isinstance(item, BaseException):
            self.thread.join()  # it is past its last request: the caller may reuse their source
            raise item
        return item

    def stop(self) -> None:
        with self.cond:
            if self.stopped:
                return
            self.stopped = True
            self.cond.notify_all()
        if os.getpid() == self.pid:
            self.handle.client.wakeup()  # out of its wait now, not a tick later

    def _put(self, item: Any) -> None:
        with self.cond:
            self.out.append(item)
            self.cond.notify_all()

    def _room(self, submitted: int, n: int) -> bool:
        """Whether a request of ``n`` known bytes may go out now (under ``cond``)."""
        return submitted - self.taken < self.span and (self.held == 0 or self.held + n <= self.budget)

    def _run(self) -> None:
        b, handle = self.backend, self.handle
        client = handle.client
        names: dict[int, Request] = {}
        parked: dict[int, Body] = {}
        next_submit = next_put = inflight = 0
        waiting: Optional[Request] = None  # the next request, when it did not fit
        exhausted = False
        # Ordered: the earliest failed request (index, error). It is raised at its turn, once every
        # result before it was handed over (those still in flight are waited for); nothing after
        # it is sent, and what comes back after it is dropped.
        failed: Optional[Tuple[int, BaseException]] = None
        try:
            while not self.stopped:
                while failed is None and not exhausted and inflight < self.window:
                    if waiting is None:
                        try:
                            waiting = Request(*next(self.requests))
                        except StopIteration:
                            exhausted = True
                            break
                    n = request_bytes(waiting)
                    if n and client.budget()[1]:
                        # a body of unknown size waits in the engine for budget: a request of
                        # known size would take the freed budget first (its body counts from
                        # submit on), and a stream of them would keep the other waiting
                        break
                    with self.cond:
                        if not self._room(next_submit, n):
                            break
                        self.held += n
                        self.sizes[next_submit] = n
                    req, waiting = waiting, None
                    bucket, key, start, end, size, cuts, if_match = req
                    check_cuts(req)
                    try:
                        b._check_range(bucket, key, start, end)
                    except ValueError as exc:  # the Python backend raises it at its turn too
                        if not self.ordered:
                            raise
                        failed = (next_submit, exc)
                        break
                    # (allocate: the body now, under the GIL this thread holds anyway; the
                    # known bytes submitted and not taken stay within the budget, see _room)
                    client.submit(next_submit, bucket, key, start, -1 if end is None else end, False,
                                  -1 if size is None else size, cuts or (), "", if_match or "", True)
                    names[next_submit] = req
                    next_submit += 1
                    inflight += 1
                if failed is not None and next_put == failed[0]:
                    raise failed[1]
                if inflight == 0:
                    if exhausted:
                        self._put(_END)
                        return
                    n = request_bytes(waiting) if waiting is not None else 0
                    with self.cond:  # the caller has results to take first
                        self.cond.wait_for(lambda: self.stopped or self._room(next_submit, n), _TICK)
                    continue
                b._refresh(handle)
                batch: list[Tuple[Any, Request, Optional[Body]]] = []
                for r in _wait(client, "a batch"):  # all counted before one is raised or handed over
                    inflight -= 1
                    req = names.pop(r.tag)
                    data = b._body(r, req.start, req.end, req.cuts)
                    b._count("get", r, data)
                    batch.append((r, req, data))
                for r, req, data in batch:
                    if not self.ordered:
                        if data is None:
                            raise b._error(req.bucket, req.key, r)
                        self._put((r.tag, data))
                    elif failed is not None and r.tag > failed[0]:
                        continue  # after the error: never handed over
                    elif data is None:
                        failed = (r.tag, b._error(req.bucket, req.key, r))
                    else:
                        parked[r.tag] = data
                if self.ordered:
                    while next_put in parked:
                        self._put((next_put, parked.pop(next_put)))
                        next_put += 1
                    if failed is not None:
                        for tag in [t for t in parked if t > failed[0]]:
                            del parked[tag]  # finished before the earlier error was known
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, raised there
            self._put(exc)
        finally:
            if os.getpid() == b._pid:
                if inflight:  # an error or a stopped caller: the rest is not wanted
                    b._cancel(client, "get")
                b._release(handle)


class NativeBackend:
    """The :class:`awsio.s3.backend.Backend` over libcurl. Raises ImportError if not built."""

    name = "native"

    def __init__(self, config: S3Config, metrics: Optional[Metrics] = None) -> None:
        if _native is None:
            raise ImportError("awsio._native is not built (libcurl development files were missing)")
        self._config = config
        self.metrics = metrics if metrics is not None else Metrics()
        self._creds = credentials_provider(config)
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._idle: list[_Handle] = []
        # Every handle alive, idle or in use: a forked child must abandon them all.
        self._handles: "weakref.WeakSet[_Handle]" = weakref.WeakSet()
        self._closed = False
        # Retries may start until this many seconds after a request began.
        self._deadline = max(30.0, 2.0 * (config.connect_timeout + config.read_timeout))
        # Freed large bodies kept for reuse, shared by this backend's clients (see S3Config).
        self._pool = _native.BufferPool(config.buffer_pool_bytes)
        # Paces every attempt of this backend's clients once S3 throttles (awsio.s3.ratelimit).
        self._limiter = _native.RateLimiter()
        _LIVE.add(self)

    def __reduce__(self) -> Tuple[Any, ...]:
        return (NativeBackend, (self._config,))

    # -- client pool -------------------------------------------------------------------------

    def _new_client(self) -> Any:
        return native_client(self._config, pool=self._pool, limiter=self._limiter, deadline=self._deadline)

    def _acquire(self) -> _Handle:
        if self._closed:
            raise RuntimeError("NativeBackend is closed")
        if os.getpid() != self._pid:
            self._abandon()
        with self._lock:
            handle = self._idle.pop() if self._idle else None
        if handle is None:
            handle = _Handle(self._new_client())
            self._handles.add(handle)
        self._refresh(handle)
        return handle

    def _refresh(self, handle: _Handle) -> None:
        """Push the current credentials to the engine when they changed. Called before every wait
        tick of a long read, so requests submitted (or retried) later are signed with keys that
        botocore renewed before they expired."""
        creds = self._creds()  # refreshable credentials are renewed here by botocore
        if creds is not None and creds != handle.creds:
            handle.client.set_credentials(creds.access_key, creds.secret_key, creds.token or "")
            handle.creds = creds

    def _release(self, handle: _Handle) -> None:
        if os.getpid() != self._pid or self._closed:
            return
        with self._lock:
            self._idle.append(handle)

    def _abandon(self) -> None:
        # The child shares the parent's sockets and TLS sessions: leak the clients rather than
        # let their destructors close (or send TLS close_notify on) the parent's connections.
        for handle in list(self._handles):
            handle.client.abandon()
        self._handles = weakref.WeakSet()
        self._idle = []
        # and a pool of its own: the abandoned clients keep the bodies they were given (those
        # prepared at submit too) in use for good, where they would fill the pool's limit
        self._pool = _native.BufferPool(self._config.buffer_pool_bytes)
        self._lock = threading.Lock()
        self._pid = os.getpid()

    # -- results -----------------------------------------------------------------------------

    def _count(self, op: str, r: Any, data: Optional[Body]) -> None:
        """Feed one result's requests, retries by cause and TTFB into ``metrics`` (a "cancelled"
        result: what abandoned requests cost; they are not errors)."""
        m = self.metrics
        m.request(op, 0 if data is None else body_len(data), n=r.requests)
        for cause, n in zip(CAUSES, r.retries):
            if n:
                m.retry(cause, n)
        if r.kind in ("ok", "whole", "head"):
            if r.ttfb is not None:
                m.ttfb(r.ttfb)
        elif r.kind != "cancelled":
            m.add("errors")

    def _cancel(self, client: Any, op: str) -> None:
        """Abandon every request of ``client``, counting the attempts they had sent."""
        self._count(op, client.cancel_all(), None)

    def _error(self, bucket: str, key: str, r: Any) -> S3Error:
        """The awsio error of a failed result (``kind`` http, integrity or conn)."""
        url = f"s3://{bucket}/{key}"
        if r.kind == "http":
            return s3_error(url, r.status, r.code, r.message, r.request_id, r.region)
        if r.kind == "integrity":  # the same message and fields as awsio.s3.integrity's
            return IntegrityError(r.reason, url=url, status=r.status, code=r.code, request_id=r.request_id,
                                  expected=_number(r.expected), got=_number(r.got))
        endpoint = self._config.endpoint
        return EndpointConnectionError(
            f"no response from the endpoint URL {endpoint} after {r.attempts} attempt(s): {r.reason}",
            url=url, status=None, code=None, request_id=None, endpoint=endpoint, reason=r.reason,
        )

    @staticmethod
    def _body(r: Any, start: int, end: Optional[int], cuts: Optional[Tuple[int, ...]] = None) -> Optional[Body]:
        """The bytes asked for of a GET result (None for a failure or a HEAD), in pieces when
        asked for (the engine cut them as they came, unless the reply was not exactly the range)."""
        if r.kind not in ("ok", "whole"):
            return None
        data = r.data[start:end] if r.kind == "whole" else r.data  # "whole": the server ignored Range
        if cuts is None or isinstance(data, tuple):
            return data  # type: ignore[no-any-return]
        return cut_body(data, cuts)

    # -- Backend protocol --------------------------------------------------------------------

    @staticmethod
    def _check_range(bucket: str, key: str, start: int, end: Optional[int]) -> None:
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"invalid range [{start}, {end}) for s3://{bucket}/{key}")

    def _one(self, bucket: str, key: str, start: int, end: Optional[int], head: bool,
             size: Optional[int] = None, query: str = "", if_match: Optional[str] = None) -> Any:
        """One request, retried by the engine: a GET or HEAD of ``key``, or with ``query`` a GET
        of the bucket (a listing; ``key`` then names the listed prefix in errors)."""
        self._check_range(bucket, key, start, end)
        op = "list" if query else "head" if head else "get"
        handle = self._acquire()
        try:
            client = handle.client
            client.submit(0, bucket, "" if query else key, start, -1 if end is None else end, head,
                          -1 if size is None else size, (), query, if_match or "", True)
            while True:
                self._refresh(handle)
                results = _wait(client, f"s3://{bucket}/{key}")
                for r in results:
                    data = self._body(r, start, end)
                    self._count(op, r, data)
                    if r.kind == "head":
                        return r
                    if data is not None:
                        return data
                    raise self._error(bucket, key, r)
                if not results and not client.pending():  # pragma: no cover - a bug guard
                    raise RuntimeError("native client lost a request")
        except BaseException:
            self._cancel(handle.client, op)
            raise
        finally:
            self._release(handle)

    def get(self, bucket: str, key: str, start: int = 0, end: Optional[int] = None,
            size: Optional[int] = None, if_match: Optional[str] = None) -> bytes:
        """One object or one half-open range of it, as ``bytes``.

        Raises the :mod:`awsio.errors` exception of the failure after the last attempt;
        :class:`IntegrityError` when every reply contradicted the range, ``size`` or checksum.
        """
        return self._one(bucket, key, start, end, head=False, size=size,  # type: ignore[no-any-return]
                         if_match=if_match)

    def head(self, bucket: str, key: str) -> ObjectInfo:
        """Size, ETag and Last-Modified; NoSuchKeyError if the object is absent."""
        r = self._one(bucket, key, 0, None, head=True)
        return ObjectInfo(
            url=f"s3://{bucket}/{key}", size=int(r.size), etag=r.etag,
            last_modified=float(r.last_modified) if r.last_modified is not None else None,
        )

    def get_many(self, requests: Iterable[Request], ordered: bool = True,
                 ramp: bool = False) -> Iterator[Tuple[int, bytes]]:
        """Up to ``max_connections`` GETs in flight; yields ``(index, data)``. See Backend.get_many.

        The transfers progress in a daemon thread (:class:`_Pump`) while the caller works on what
        it got (the engine moves only inside ``wait``: driven from the caller's thread it would
        stand still whenever the caller parses or decodes). ``requests`` is consumed in that
        thread. Finished bodies not yet taken, plus transfers in flight, stay under
        ``2 x max_connections``; an error ends the iteration. Ordered, it is raised at the failed
        request's turn, after every earlier result (those still in flight when it failed are
        waited for), as the Python backend does; unordered, after the results that finished
        before it."""
        pump = _Pump(self, iter(requests), ordered, ramp)
        try:
            while True:
                item = pump.take()
                if item is _END:
                    return
                yield item  # (take() refuses to go on in a forked child)
        finally:
            pump.stop()

    def list(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        """Every object under ``prefix`` (ListObjectsV2, 1,000 keys a page), in key order: the
        engine's GETs (signed, retried, counted as LISTs) and :mod:`awsio.s3.list_page`, so a
        listing needs no botocore (its import and client cost ~0.3 s at start-up)."""
        from awsio.s3.list_page import list_query_params, malformed_listing, parse_list_page

        where = f"s3://{bucket}/{prefix}"
        token: Optional[str] = None
        while True:
            query = _native.canonical_query(list_query_params(prefix, token))
            body = self._one(bucket, prefix, 0, None, head=False, query=query)
            try:
                page = parse_list_page(body, bucket, where, token)
            except ValueError as exc:
                raise malformed_listing(where, str(exc)) from None
            yield from page.objects
            if page.next_token is None:
                return
            token = page.next_token

    def close(self) -> None:
        """Release connections. Safe to call twice; in a forked child nothing is touched."""
        if os.getpid() != self._pid:
            self._abandon()
        self._closed = True
        with self._lock:
            idle, self._idle = self._idle, []
        del idle  # dropping the clients closes their connections
        self._pool.clear()  # free buffers go now; ones still held by callers go with them
        _LIVE.discard(self)
