"""The pure-Python S3 backend on botocore: the same contract as the native reader.

Used where ``awsio._native`` is not built, when ``S3Config(backend="python")`` asks for it, and
for listing by both backends (listing is one request per 1,000 keys, not a hot path).
Concurrency comes from a thread pool over one botocore client whose connection pool holds
``max_connections`` keep-alive connections; botocore's "standard" retry mode (exponential backoff
with jitter on throttling, 5xx and connection errors) is bounded by ``max_attempts``.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Iterable, Iterator, Optional, Tuple

from awsio.config import S3Config
from awsio.errors import AccessDeniedError, EndpointConnectionError, S3Error, s3_error
from awsio.s3.backend import ObjectInfo, Request

__all__ = ["PythonBackend", "drop_expect_for_empty_body", "translate_botocore_error"]

log = logging.getLogger(__name__)


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
        reason = type(exc).__name__
        return EndpointConnectionError(
            f"no response from the endpoint URL {endpoint}: {reason}",
            url=url, status=None, code=None, request_id=None, endpoint=endpoint, reason=reason,
        )
    return exc


def _connect_retry_delay(max_attempts: int) -> Any:
    """A ``needs-retry`` hook: short backoff for connection failures.

    botocore's default backoff (up to 1+2+4+8 s) would make an unreachable endpoint take ~15 s
    to report; a refused or timed-out connect is retried after at most 0.5 s instead, so the
    whole failure takes about a second plus the connect timeouts. Other errors (5xx, throttling)
    keep botocore's standard backoff (this hook returns None for them).
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


def _range_header(start: int, end: Optional[int]) -> Optional[str]:
    if start == 0 and end is None:
        return None
    return f"bytes={start}-" if end is None else f"bytes={start}-{end - 1}"


class PythonBackend:
    """The :class:`awsio.s3.backend.Backend` on botocore (thread pool for ``get_many``)."""

    name = "python"

    def __init__(self, config: S3Config) -> None:
        self._config = config
        self._pid = os.getpid()
        self._client = self._make_client()
        self._pool: Optional[ThreadPoolExecutor] = None
        self._pool_lock = threading.Lock()

    def _make_client(self) -> Any:
        import botocore.session
        from botocore import UNSIGNED
        from botocore.config import Config

        c = self._config
        session = botocore.session.Session(profile=c.profile)
        if c.static_credentials is not None:
            session.set_credentials(*c.static_credentials)
        bc = Config(
            region_name=c.region,
            max_pool_connections=c.max_connections,
            connect_timeout=c.connect_timeout,
            read_timeout=c.read_timeout,
            # total_max_attempts counts the first try, like the native reader's max_attempts.
            retries={"total_max_attempts": c.max_attempts, "mode": "standard"},
            s3={"addressing_style": "path" if c.path_style else "virtual"},
            signature_version=UNSIGNED if c.unsigned else None,
            # Always send x-amz-content-sha256 and do not add checksum headers some
            # S3-compatible servers reject.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        verify: Any = c.ca_bundle if (c.verify and c.ca_bundle) else c.verify
        client = session.create_client("s3", endpoint_url=c.endpoint_url, region_name=c.region,
                                       verify=verify, config=bc)
        client.meta.events.register_first("needs-retry.s3", _connect_retry_delay(c.max_attempts))
        client.meta.events.register("before-send.s3", drop_expect_for_empty_body)
        return client

    @property
    def client(self) -> Any:
        """The botocore client (also used by S3Client for uploads)."""
        return self._client

    def _url(self, bucket: str, key: str) -> str:
        return f"s3://{bucket}/{key}"

    def _call(self, url: str, fn: Any, **kwargs: Any) -> Any:
        from botocore import exceptions as bex

        try:
            return fn(**kwargs)
        except (bex.BotoCoreError, bex.ClientError) as exc:
            raise translate_botocore_error(exc, url, self._config.endpoint) from exc

    # -- Backend protocol --------------------------------------------------------------------

    def get(self, bucket: str, key: str, start: int = 0, end: Optional[int] = None,
            size: Optional[int] = None) -> bytes:
        """One object or one half-open range of it."""
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"invalid range [{start}, {end}) for s3://{bucket}/{key}")
        if end is not None and end == start:
            return b""
        url = self._url(bucket, key)
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
        rng = _range_header(start, end)
        if rng:
            kwargs["Range"] = rng
        try:
            resp = self._call(url, self._client.get_object, **kwargs)
        except S3Error as exc:
            if exc.status == 416:  # range starts past the end: S3 semantics say "nothing there"
                return b""
            raise
        body = resp["Body"]
        try:
            return body.read()  # type: ignore[no-any-return]
        except Exception as exc:  # a connection dropped mid-body
            raise translate_botocore_error(exc, url, self._config.endpoint) from exc
        finally:
            body.close()

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._config.max_connections, thread_name_prefix="awsio-get")
            return self._pool

    def get_many(self, requests: Iterable[Request], ordered: bool = True) -> Iterator[Tuple[int, bytes]]:
        """Up to ``max_connections`` GETs in flight over a lazily consumed request iterator."""
        pool = self._executor()
        window = self._config.max_connections
        it = enumerate(requests)
        inflight: deque[Tuple[int, Future[bytes]]] = deque()
        exhausted = False

        def refill() -> None:
            nonlocal exhausted
            while not exhausted and len(inflight) < window:
                nxt = next(it, None)
                if nxt is None:
                    exhausted = True
                    return
                i, req = nxt
                inflight.append((i, pool.submit(self.get, *Request(*req))))

        try:
            refill()
            while inflight:
                if ordered:
                    i, fut = inflight.popleft()
                    data = fut.result()
                    refill()
                    yield i, data
                else:
                    done, _ = wait([f for _, f in inflight], return_when=FIRST_COMPLETED)
                    ready = [(i, f) for i, f in inflight if f in done]
                    for item in ready:
                        inflight.remove(item)
                    refill()
                    for i, fut in ready:
                        yield i, fut.result()
        finally:
            for _, fut in inflight:  # on error or early close: drop what has not started
                fut.cancel()

    def head(self, bucket: str, key: str) -> ObjectInfo:
        """Size, ETag and Last-Modified of one object."""
        url = self._url(bucket, key)
        resp = self._call(url, self._client.head_object, Bucket=bucket, Key=key)
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
            page = self._call(url, self._client.list_objects_v2, **kwargs)
            for obj in page.get("Contents", ()) or ():
                lm = obj.get("LastModified")
                yield ObjectInfo(self._url(bucket, obj["Key"]), int(obj["Size"]), obj.get("ETag"),
                                 lm.timestamp() if lm is not None else None)
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")
            if not token:
                return

    def close(self) -> None:
        if self._pool is not None and self._pid == os.getpid():
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = None
