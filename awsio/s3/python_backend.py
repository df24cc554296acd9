"""The pure-Python S3 backend on botocore: the same contract as the native reader.

Used where ``awsio._native`` is not built, when ``S3Config(backend="python")`` asks for it, and
for listing by both backends (listing is one request per 1,000 keys, not a hot path).
Concurrency comes from a pool of daemon threads over one botocore client whose connection pool
holds ``max_connections`` keep-alive connections.

Retries are this module's, not botocore's (whose retries end when the headers arrive): one loop
around request *and* body, with the native engine's policy (``max_attempts`` attempts in all,
full-jitter backoff, a per-request deadline), so a reset, a stall or a short body mid-body is
retried, and both backends count attempts the same way. Every reply is checked by
:func:`awsio.s3.integrity.check_reply`. Uploads (``S3Client.put``) use a botocore client with
botocore's own retries (:func:`make_botocore_client` with ``retries=True``).
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import time
import weakref
from collections import deque
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future, wait
from typing import Any, Callable, Iterable, Iterator, Optional, Tuple, TypeVar

from awsio.config import S3Config
from awsio.errors import AccessDeniedError, EndpointConnectionError, IntegrityError, S3Error, s3_error
from awsio.logsafe import redact_aws_logs
from awsio.metrics import Metrics
from awsio.s3.backend import Body, ObjectInfo, Request, check_cuts, cut_body, request_bytes
from awsio.s3.integrity import check_reply, parse_content_range
from awsio.s3.list_page import malformed_listing, next_page_token
from awsio.s3.ratelimit import RateLimiter
from awsio.s3.threads import DaemonPool

__all__ = ["PythonBackend", "drop_expect_for_empty_body", "make_botocore_client", "translate_botocore_error"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_READ_STEP = 1 << 20  # body bytes per read: a cancelled GET stops within one step


def _connection_error(url: str, endpoint: str, reason: str, attempts: Optional[int] = None) -> EndpointConnectionError:
    after = f" after {attempts} attempt(s)" if attempts is not None else ""
    return EndpointConnectionError(f"no response from the endpoint URL {endpoint}{after}: {reason}",
                                   url=url, status=None, code=None, request_id=None, endpoint=endpoint,
                                   reason=reason)


def translate_botocore_error(exc: BaseException, url: str, endpoint: str) -> BaseException:
    """Map a botocore exception to the :mod:`awsio.errors` exception the native backend raises too."""
    from botocore import exceptions as bex

    if isinstance(exc, bex.ClientError):
        err = exc.response.get("Error", {}) or {}
        meta = exc.response.get("ResponseMetadata", {}) or {}
        headers = meta.get("HTTPHeaders", {}) or {}
        status = meta.get("HTTPStatusCode")
        code = err.get("Code") or None
        if code is not None and code.isdigit():  # HEAD responses carry no body, only the status
            code = None
        region = headers.get("x-amz-bucket-region") or err.get("Region") or None
        return s3_error(url, status, code, err.get("Message") or None,
                        meta.get("RequestId") or headers.get("x-amz-request-id"), region)
    if isinstance(exc, bex.NoCredentialsError):
        return AccessDeniedError(
            "no AWS credentials found (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, "
            "or use S3Config(unsigned=True) for public buckets)",
            url=url, status=None, code="NoCredentials", request_id=None,
        )
    if isinstance(exc, (bex.EndpointConnectionError, bex.ConnectTimeoutError, bex.ReadTimeoutError,
                        bex.ConnectionClosedError, bex.ConnectionError, bex.HTTPClientError)):
        return _connection_error(url, endpoint, type(exc).__name__)
    return exc


def _connect_retry_delay(max_attempts: int) -> Any:
    """A ``needs-retry`` hook for the upload client: short backoff for connection failures.

    botocore's default backoff (up to 1+2+4+8 s) would make an unreachable endpoint take ~15 s
    to report; a refused or timed-out connect is retried after at most 0.5 s instead. Other
    errors (5xx, throttling) keep botocore's standard backoff (this hook returns None for them).
    """
    from botocore import exceptions as bex

    def hook(attempts: int, caught_exception: Optional[BaseException] = None, **_: Any) -> Optional[float]:
        if not isinstance(caught_exception, bex.EndpointConnectionError) or attempts >= max_attempts:
            return None
        return min(0.05 * 2 ** (attempts - 1), 0.5) * (0.5 + random.random() / 2)

    return hook


def drop_expect_for_empty_body(request: Any, **_: Any) -> None:
    """A ``before-send`` hook: no ``Expect: 100-continue`` on a PUT with an empty body.

    With an empty body the server answers at once (no 100 Continue); botocore then leaves the
    keep-alive connection out of step (seen with SeaweedFS), and the next upload on it waits
    the whole read timeout before a retry. ``Expect`` is never signed, so dropping it is safe.
    """
    headers = request.headers
    if "Expect" in headers and str(headers.get("Content-Length", "")) == "0":
        del headers["Expect"]


def _ask_for_checksum(request: Any, **_: Any) -> None:
    """A ``before-sign`` hook on GetObject: a whole-object GET asks S3 for its stored checksum.

    Sent as a header rather than botocore's ``ChecksumMode`` parameter, which would also make
    botocore check the body (twice the CPU, and its own error instead of IntegrityError).
    """
    if "Range" not in request.headers:
        request.headers["x-amz-checksum-mode"] = "ENABLED"


def make_botocore_client(config: S3Config, *, retries: bool) -> Any:
    """A botocore S3 client for ``config``.

    ``retries=False`` (the backend's reads, retried by :class:`PythonBackend` itself): one attempt
    per call, whole-object GETs ask for checksums. ``retries=True`` (uploads, deletes): botocore
    retries ``max_attempts`` times in all. Installs the log redaction of :mod:`awsio.logsafe`.
    """
    import botocore.session
    from botocore import UNSIGNED
    from botocore.config import Config

    c = config
    session = botocore.session.Session(profile=c.profile)
    if c.static_credentials is not None:
        session.set_credentials(*c.static_credentials)
    bc = Config(
        region_name=c.region,
        max_pool_connections=c.max_connections,
        connect_timeout=c.connect_timeout,
        read_timeout=c.read_timeout,
        # total_max_attempts counts the first try, like the native reader's max_attempts.
        retries={"total_max_attempts": c.max_attempts if retries else 1, "mode": "standard"},
        s3={"addressing_style": "path" if c.path_style else "virtual"},
        signature_version=UNSIGNED if c.unsigned else None,
        # Always send x-amz-content-sha256 and do not add checksum headers some S3-compatible
        # servers reject; response checksums are checked by awsio.s3.integrity.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    verify: Any = c.ca_bundle if (c.verify and c.ca_bundle) else c.verify
    client = session.create_client("s3", endpoint_url=c.endpoint_url, region_name=c.region,
                                   verify=verify, config=bc)
    if retries:
        client.meta.events.register_first("needs-retry.s3", _connect_retry_delay(c.max_attempts))
    else:
        client.meta.events.register("before-sign.s3.GetObject", _ask_for_checksum)
    client.meta.events.register("before-send.s3", drop_expect_for_empty_body)
    redact_aws_logs()  # after create_client: botocore's and urllib3's loggers exist by now
    return client


def _range_header(start: int, end: Optional[int]) -> Optional[str]:
    if start == 0 and end is None:
        return None
    return f"bytes={start}-" if end is None else f"bytes={start}-{end - 1}"


class _TransferError(Exception):
    """A body that did not arrive whole (closed, reset or stalled mid-body): retried."""


class _Cancelled(Exception):
    """The GET was abandoned (its get_many iterator was closed): nobody waits for the result."""


class _Cancel:
    """Lets a get_many iterator abandon a GET that another thread is running.

    Stops further attempts, and shuts down the socket of a body being read, so the worker is
    free at once instead of after the read timeout.
    """

    def __init__(self) -> None:
        self.event = threading.Event()
        self._lock = threading.Lock()
        self._body: Any = None

    def track(self, body: Any) -> None:
        with self._lock:
            self._body = body
        if self.event.is_set():
            self._abort(body)

    def cancel(self) -> None:
        self.event.set()
        with self._lock:
            body = self._body
        if body is not None:
            self._abort(body)

    @staticmethod
    def _abort(body: Any) -> None:
        sock = getattr(getattr(getattr(body, "_raw_stream", None), "connection", None), "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _read_body(body: Any, expected: int, cancel: Optional[_Cancel]) -> bytes:
    """The whole body of a reply of ``expected`` bytes (its Content-Length); _TransferError if cut."""
    from botocore import exceptions as bex

    parts: list[bytes] = []
    got = 0
    try:
        while True:
            if cancel is not None and cancel.event.is_set():
                raise _Cancelled()
            chunk = body.read(_READ_STEP)
            if not chunk:  # botocore checks the total against Content-Length here
                return b"".join(parts)
            parts.append(chunk)
            got += len(chunk)
    except bex.ReadTimeoutError as exc:
        raise _TransferError(f"read timed out after {got} of {expected} body bytes") from exc
    except (bex.IncompleteReadError, bex.ResponseStreamingError, bex.ConnectionClosedError) as exc:
        raise _TransferError(f"connection closed after {got} of {expected} body bytes") from exc


_LIVE: "weakref.WeakSet[PythonBackend]" = weakref.WeakSet()  # every backend of this process
_ABANDONED: list[Any] = []  # the parent's botocore clients, in a forked child


def _forget_after_fork() -> None:
    # The child shares the parent's kept-alive sockets: a request sent on one of them by both
    # processes gets a reply that either may read (bodies swapped between them).
    for backend in list(_LIVE):
        backend._abandon()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


class PythonBackend:
    """The :class:`awsio.s3.backend.Backend` on botocore (daemon threads for ``get_many``).

    A forked child abandons the parent's connections (never reads, writes or closes them) and
    opens its own, as the native backend does; pickling carries only the config. After
    :meth:`close`, every request raises RuntimeError (in a forked child too)."""

    name = "python"

    def __init__(self, config: S3Config, metrics: Optional[Metrics] = None) -> None:
        self._config = config
        self._pid = os.getpid()
        self._client: Any = make_botocore_client(config, retries=False)
        self.metrics = metrics if metrics is not None else Metrics()
        self._limiter = RateLimiter()
        # Retries may start until this many seconds after a request began (as in the native engine).
        self._deadline = max(30.0, 2.0 * (config.connect_timeout + config.read_timeout))
        self._rng = random.Random()
        self._pool: Optional[DaemonPool] = None
        self._pool_lock = threading.Lock()
        self._closed = False
        _LIVE.add(self)

    def __reduce__(self) -> Tuple[Any, ...]:
        return (PythonBackend, (self._config,))

    def _abandon(self) -> None:
        """In a forked child (the only thread there): drop the parent's client, pool and locks
        (a closed backend stays closed)."""
        if self._client is not None:  # kept, so that no destructor closes the parent's sockets
            _ABANDONED.append(self._client)
        self._client = None
        self._pool = None
        self._pool_lock = threading.Lock()
        self._limiter = RateLimiter()
        self._pid = os.getpid()

    @property
    def client(self) -> Any:
        """The botocore client of the reads (one attempt per call: retried by this backend);
        a forked child builds its own on first use. RuntimeError once closed."""
        self._check_open()
        client = self._client
        if client is None:
            with self._pool_lock:
                if self._client is None:
                    self._client = make_botocore_client(self._config, retries=False)
                client = self._client
        return client

    def _check_open(self) -> None:
        if self._closed:  # (the same error as the native backend's)
            raise RuntimeError("PythonBackend is closed")

    def _url(self, bucket: str, key: str) -> str:
        return f"s3://{bucket}/{key}"

    # -- one retry loop for every request ----------------------------------------------------

    def _classify(self, exc: Exception, url: str) -> Tuple[BaseException, Optional[str]]:
        """The awsio error for a failed attempt, and the retry cause (one of
        :data:`awsio.metrics.CAUSES`) when another attempt may fix it, else None."""
        from botocore import exceptions as bex

        endpoint = self._config.endpoint
        if isinstance(exc, IntegrityError):
            return exc, "integrity"
        if isinstance(exc, _TransferError):
            cause = "timeout" if isinstance(exc.__cause__, bex.ReadTimeoutError) else "reset"
            return _connection_error(url, endpoint, str(exc)), cause
        err = translate_botocore_error(exc, url, endpoint)
        if isinstance(err, EndpointConnectionError):
            if isinstance(exc, bex.SSLError):
                return err, None  # a bad certificate stays bad
            return err, "timeout" if isinstance(exc, (bex.ConnectTimeoutError, bex.ReadTimeoutError)) else "reset"
        if isinstance(err, S3Error) and err.status is not None:
            if err.status in (429, 503):
                return err, "throttle"
            return err, "5xx" if err.status >= 500 else None
        return err, None

    def _pause(self, seconds: float, cancel: Optional[_Cancel]) -> None:
        if cancel is None:
            if seconds > 0:
                time.sleep(seconds)
        elif cancel.event.wait(max(0.0, seconds)):
            raise _Cancelled()

    def _retrying(self, url: str, op: str, attempt: Callable[[], T], cancel: Optional[_Cancel] = None) -> T:
        """``attempt()`` until it succeeds, fails for good, or ``max_attempts`` / the deadline run out.

        Every attempt waits for its slot from the client's :class:`RateLimiter` (which a
        throttled reply slows down) and is counted in ``metrics`` as a request of ``op``, every
        retry by its cause. Raises the :mod:`awsio.errors` exception of the last attempt
        (EndpointConnectionError names the number of attempts), or ``_Cancelled`` once ``cancel``
        is set.
        """
        self._check_open()  # before anything is counted: a closed backend sends nothing
        from botocore import exceptions as bex

        started = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            send_at, generation = self._limiter.reserve()
            self._pause(send_at - time.monotonic(), cancel)
            self.metrics.request(op)
            try:
                result = attempt()
                self._limiter.succeeded()
                return result
            except (bex.BotoCoreError, bex.ClientError, _TransferError, IntegrityError) as exc:
                if cancel is not None and cancel.event.is_set():
                    raise _Cancelled() from None
                err, cause = self._classify(exc, url)
                if cause == "throttle":
                    self._limiter.throttled(generation)
                delay = self._rng.uniform(0.0, min(5.0, 0.05 * 2 ** (attempts - 1)))
                if (cause is None or attempts >= self._config.max_attempts
                        or time.monotonic() - started + delay > self._deadline):
                    self.metrics.add("errors")
                    if isinstance(err, EndpointConnectionError):
                        err = _connection_error(url, self._config.endpoint, getattr(err, "reason", ""), attempts)
                    raise err from exc
                self.metrics.retry(cause)
                log.debug("retrying %s in %.3f s after attempt %d: %s", url, delay, attempts, err)
            self._pause(delay, cancel)

    # -- Backend protocol --------------------------------------------------------------------

    def get(self, bucket: str, key: str, start: int = 0, end: Optional[int] = None,
            size: Optional[int] = None, if_match: Optional[str] = None) -> bytes:
        """One object or one half-open range of it (``size``, ``if_match``: see :class:`Request`)."""
        return self._get(bucket, key, start, end, size, None, if_match)

    def _get(self, bucket: str, key: str, start: int, end: Optional[int], size: Optional[int],
             cancel: Optional[_Cancel], if_match: Optional[str] = None) -> bytes:
        self._check_open()  # (an empty range too, as the native backend)
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"invalid range [{start}, {end}) for s3://{bucket}/{key}")
        if end is not None and end == start:
            return b""
        url = self._url(bucket, key)
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if if_match:
            kwargs["IfMatch"] = if_match
        rng = _range_header(start, end)
        if rng:
            kwargs["Range"] = rng

        def attempt() -> bytes:
            sent = time.monotonic()
            try:
                resp = self.client.get_object(**kwargs)
            except Exception as exc:  # a 416 for a range inside the known size: the object shrank
                status = (getattr(exc, "response", None) or {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
                if status == 416 and size is not None and size > start:
                    total = parse_content_range(exc.response.get("ResponseMetadata", {})  # type: ignore[attr-defined]
                                                .get("HTTPHeaders", {}).get("content-range"))
                    raise IntegrityError("a 416 reply (range past the end) for a range inside the known size",
                                         url=url, status=416, code="SizeMismatch", request_id=None,
                                         expected=size, got=total.total if total and total.total is not None
                                         else 416) from exc
                raise
            self.metrics.ttfb(time.monotonic() - sent)
            body = resp["Body"]
            try:
                if cancel is not None:
                    cancel.track(body)
                data = _read_body(body, int(resp.get("ContentLength") or 0), cancel)
            finally:
                body.close()
            meta = resp["ResponseMetadata"]
            checked = check_reply(url, meta["HTTPStatusCode"], meta.get("HTTPHeaders", {}), data, start, end, size,
                                  bool(self._config.verify_checksums))
            self.metrics.add("get_bytes", len(checked))
            return checked

        try:
            return self._retrying(url, "get", attempt, cancel)
        except S3Error as exc:
            if exc.status == 416 and not isinstance(exc, IntegrityError):  # past the end: "nothing there"
                return b""
            raise

    def _executor(self) -> DaemonPool:
        self._check_open()
        with self._pool_lock:
            if self._pool is None:
                self._pool = DaemonPool(self._config.max_connections, "awsio-get")
            return self._pool

    def get_many(self, requests: Iterable[Request], ordered: bool = True,
                 ramp: bool = False) -> Iterator[Tuple[int, Body]]:
        """Up to ``max_connections`` GETs in flight over a lazily consumed request iterator
        (``ramp``: see Backend.get_many; a request with ``cuts``: its body cut once received).

        Closing the iterator early abandons the GETs in flight (their sockets are shut down).
        """
        pool = self._executor()
        pid = os.getpid()  # its GETs run on this process's threads: a forked child has none
        full, budget = self._config.max_connections, self._config.max_inflight_bytes
        window = 1 if ramp else full
        it = enumerate(requests)
        inflight: deque[Tuple[int, Future[bytes], _Cancel, int, Request]] = deque()
        held = 0  # known bytes of the requests in `inflight` and `finished`
        finished: deque[Tuple[int, Future[bytes], _Cancel, int, Request]] = deque()  # not yet taken
        waiting: Optional[Tuple[int, Request]] = None  # the next request, when it did not fit
        exhausted = False

        def refill() -> None:
            nonlocal exhausted, held, waiting
            while not exhausted and len(inflight) < window:
                if waiting is None:
                    nxt = next(it, None)
                    if nxt is None:
                        exhausted = True
                        return
                    waiting = (nxt[0], Request(*nxt[1]))
                i, req = waiting
                n = request_bytes(req)
                if (inflight or finished) and held + n > budget:
                    return
                waiting = None
                check_cuts(req)
                cancel = _Cancel()
                fut = pool.submit(self._get, req.bucket, req.key, req.start, req.end, req.size, cancel,
                                  req.if_match)
                inflight.append((i, fut, cancel, n, req))
                held += n

        def body(fut: Future[bytes], req: Request) -> Body:
            try:
                data = fut.result()
            except CancelledError:  # close() dropped it from the pool's queue
                raise RuntimeError(f"the PythonBackend was closed while s3://{req.bucket}/{req.key} "
                                   "was in flight") from None
            return data if req.cuts is None else cut_body(data, req.cuts)

        def resumed() -> None:
            if os.getpid() != pid:  # the GETs in flight run in the parent: waiting would never end
                raise RuntimeError("a PythonBackend.get_many iterator cannot be resumed in a forked child")

        try:
            refill()
            while inflight:
                if ordered:
                    i, fut, _, n, req = inflight.popleft()
                    data = body(fut, req)
                    held -= n
                    window = min(full, 2 * window)
                    refill()
                    yield i, data
                    resumed()
                else:
                    done, _ = wait([item[1] for item in inflight], return_when=FIRST_COMPLETED)
                    for item in [item for item in inflight if item[1] in done]:
                        inflight.remove(item)
                        finished.append(item)
                    while finished:  # each one's bytes count until the caller takes it
                        i, fut, _, n, req = finished.popleft()
                        held -= n
                        window = min(full, 2 * window)
                        refill()
                        yield i, body(fut, req)
                        resumed()
        finally:
            if os.getpid() == pid:  # (a child must not shut down the parent's sockets)
                for _, fut, cancel, _, _ in inflight:  # on error or early close: abandon the rest
                    fut.cancel()
                    cancel.cancel()

    def head(self, bucket: str, key: str) -> ObjectInfo:
        """Size, ETag and Last-Modified of one object."""
        url = self._url(bucket, key)
        def attempt() -> Any:
            sent = time.monotonic()
            resp = self.client.head_object(Bucket=bucket, Key=key)
            self.metrics.ttfb(time.monotonic() - sent)
            return resp

        resp = self._retrying(url, "head", attempt)
        lm = resp.get("LastModified")
        return ObjectInfo(url, int(resp["ContentLength"]), resp.get("ETag"),
                          lm.timestamp() if lm is not None else None)

    def list(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        """Every object under ``prefix`` (ListObjectsV2, 1,000 keys a page), in key order."""
        url = self._url(bucket, prefix)
        token: Optional[str] = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._retrying(url, "list", lambda: self.client.list_objects_v2(**kwargs))
            try:
                objects = [ObjectInfo(self._url(bucket, obj["Key"]), int(obj["Size"]), obj.get("ETag"),
                                      obj["LastModified"].timestamp() if obj.get("LastModified") else None)
                           for obj in page.get("Contents", ()) or ()]
                # (botocore reads any 200 as a page: what it lacks, the same rule as the native one)
                token = next_page_token(page.get("IsTruncated"), page.get("NextContinuationToken"), token, url)
            except (KeyError, ValueError) as exc:
                raise malformed_listing(url, f"malformed listing: {exc}" if isinstance(exc, KeyError)
                                        else str(exc)) from None
            yield from objects
            if token is None:
                return

    def close(self) -> None:
        """Stop the GET threads; later requests raise RuntimeError. Safe to call twice."""
        self._closed = True
        if self._pool is not None and self._pid == os.getpid():
            self._pool.shutdown()
        self._pool = None
