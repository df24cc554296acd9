"""The contract every S3 backend (native libcurl, pure-Python botocore) implements.

Backends speak in (bucket, key) and byte ranges; URL parsing, listing policy, retries of whole
iterations and user-facing helpers live in :mod:`awsio.s3.client`. Both backends must give the
same bytes and raise the same :mod:`awsio.errors` exceptions (built with ``awsio.errors.s3_error``
or ``EndpointConnectionError``) for the same request, naming ``s3://bucket/key``.

Ranges are half-open, Python style: ``start <= offset < end``. ``end=None`` means to the end of
the object. A range past the end of the object is clipped (like S3); an empty range gives b"".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, NamedTuple, Optional, Protocol, Tuple, Union

__all__ = ["Backend", "Body", "ObjectInfo", "Request", "body_len", "check_cuts", "cut_body", "request_bytes"]


@dataclass(frozen=True)
class ObjectInfo:
    """What HEAD or a listing says of an object."""

    url: str
    size: int
    etag: Optional[str] = None
    last_modified: Optional[float] = None  # POSIX seconds, UTC


class Request(NamedTuple):
    """One GET: ``[start, end)`` of ``s3://bucket/key`` (``end=None``: to the end).

    ``size`` is the object's size when the caller knows it (from a listing or HEAD). A reply
    that contradicts it (``Content-Length`` of a whole-object 200, the total in ``Content-Range``)
    is retried and then raised as :class:`awsio.errors.IntegrityError` (``SizeMismatch``): the
    object was replaced since it was listed, or something on the way cut it.

    ``cuts`` (a range with an end only): the body comes back as a tuple of ``bytes``, cut at
    these offsets into the range (non-decreasing, each within it; see :func:`cut_body`). The
    native backend writes the bytes straight into the pieces as they arrive (a tar range into
    its members: no second copy); the Python backend cuts the body it received.

    ``if_match``: the ETag the object must still have (``If-Match``): the requests of one read
    (the ranges of a shard, the chunks of a stream) stay on one version of the object; a replaced
    object is :class:`awsio.errors.IntegrityError` (``PreconditionFailed``, HTTP 412, not retried).
    """

    bucket: str
    key: str
    start: int = 0
    end: Optional[int] = None
    size: Optional[int] = None
    cuts: Optional[Tuple[int, ...]] = None
    if_match: Optional[str] = None


#: What a GET brings: ``bytes``, or for a :class:`Request` with ``cuts`` a tuple of them.
Body = Union[bytes, Tuple[bytes, ...]]


def body_len(body: Body) -> int:
    """The bytes a body holds, in one piece or in several."""
    return sum(map(len, body)) if isinstance(body, tuple) else len(body)


def cut_body(data: bytes, cuts: Tuple[int, ...]) -> Tuple[bytes, ...]:
    """``data`` cut at ``cuts``: ``len(cuts) + 1`` pieces that join to ``data`` (a body shorter
    than the range asked, clipped at the object's end, gives short or empty last pieces)."""
    bounds = (0, *cuts, len(data))
    return tuple(data[bounds[i]:max(bounds[i], bounds[i + 1])] for i in range(len(cuts) + 1))


def check_cuts(request: Request) -> None:
    """ValueError unless ``request.cuts`` is usable: a range with an end, offsets non-decreasing
    and within it."""
    cuts = request.cuts
    if not cuts:
        return
    where = f"s3://{request.bucket}/{request.key}"
    if request.end is None:
        raise ValueError(f"cuts need a range with an end ({where})")
    last = 0
    for c in cuts:
        if c < last or c > request.end - request.start:
            raise ValueError(f"cuts must be non-decreasing offsets within [{request.start}, {request.end}) "
                             f"({where})")
        last = c


def request_bytes(request: Request) -> int:
    """The bytes a request will bring when that is known (its range, or the rest of an object of
    known size), else 0: what ``get_many`` counts against ``max_inflight_bytes``."""
    if request.end is not None:
        return max(0, request.end - request.start)
    return max(0, request.size - request.start) if request.size is not None else 0


class Backend(Protocol):
    name: str  # "native" or "python"

    def get(self, bucket: str, key: str, start: int = 0, end: Optional[int] = None,
            size: Optional[int] = None, if_match: Optional[str] = None) -> bytes:
        """One object or one range of it, as real ``bytes`` (``size``, ``if_match``: see
        :class:`Request`)."""

    def get_many(self, requests: Iterable[Request], ordered: bool = True,
                 ramp: bool = False) -> Iterator[Tuple[int, Body]]:
        """Many GETs with up to ``max_connections`` in flight; yields ``(index_in_requests, data)``
        (``data``: bytes, or the pieces of a request with ``cuts``).

        ``requests`` may be a lazy iterator: it is consumed only as far as the in-flight window
        needs, so memory stays bounded by the window, not the request count. Requests sent and
        not yet taken by the caller bring at most ``max_inflight_bytes`` between them, as far as
        their sizes are known (:func:`request_bytes`; a larger one goes out alone). With
        ``ordered=True`` results come in request order, else in completion order. The first
        failed request (after retries) raises; remaining transfers are cancelled. ``ramp``:
        start with one request in flight and double the window with each result taken, so the
        first result comes as fast as one request brings it and little else is fetched before
        it (the start of a stream, a resume).
        """

    def head(self, bucket: str, key: str) -> ObjectInfo:
        """Size, ETag and Last-Modified of one object; NoSuchKeyError if absent."""

    def list(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        """Every object under ``prefix`` (ListObjectsV2, paginated), in key order."""

    def close(self) -> None:
        """Release connections. The backend must not be used afterwards."""
