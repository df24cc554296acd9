"""Parse ``s3://`` URLs and expand brace patterns. No I/O here.

A brace pattern (``s3://b/train-{000..127}.tar``, ``{a,b}``) is read only by :func:`expand_urls`
/ :func:`braceexpand`, and only in a plain string the user wrote. :func:`parse_url` takes braces
as the characters they are, because S3 keys may contain them, and URLs that came out of a listing
(:class:`ObjectURL`) or an :class:`S3URL` are never expanded. A pattern that would give more than
:data:`MAX_BRACE_NAMES` names (``AWSIO_MAX_BRACE_NAMES``) is refused before anything is expanded.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass
from typing import Iterable, Iterator

from awsio.errors import ConfigError, InvalidURLError

__all__ = ["MAX_BRACE_NAMES", "ObjectURL", "S3URL", "brace_count", "braceexpand", "expand_urls",
           "max_brace_names", "parse_url"]

# S3 bucket names: 3-63 chars of lowercase letters, digits, dots and hyphens. Some S3-compatible
# stores are laxer (uppercase, underscores), so accept those too and let the server decide.
_BUCKET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
_BRACE_RE = re.compile(r"\{([^{}]*)\}")
_RANGE_RE = re.compile(r"^(-?\d+)\.\.(-?\d+)$")

MAX_BRACE_NAMES = 10_000_000
"""Default limit of the names one brace pattern may expand to (``AWSIO_MAX_BRACE_NAMES``)."""


class ObjectURL(str):
    """An ``s3://bucket/key`` string that names one object as listed: never a brace pattern.

    :func:`awsio.s3.client.list_files` and listings return these, so a key containing ``{`` or
    ``}`` can be handed back to a dataset and is read as the key it is.
    """

    __slots__ = ()


@dataclass(frozen=True, order=True)
class S3URL:
    """A parsed ``s3://bucket/key`` location. ``key`` may be empty (the whole bucket) or a prefix."""

    bucket: str
    key: str = ""

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def is_prefix(self) -> bool:
        """True when the URL names a "folder": the bucket root or a key ending in '/'."""
        return self.key == "" or self.key.endswith("/")

    @property
    def name(self) -> str:
        """The last path component of the key (the "file name")."""
        return self.key.rsplit("/", 1)[-1]


def parse_url(url: str | S3URL) -> S3URL:
    """Parse ``s3://bucket/key``; the key is taken as it is (braces included: they are legal in
    S3 keys, and patterns are :func:`expand_urls`' business). Raises :class:`InvalidURLError`
    naming the URL and the cause."""
    if isinstance(url, S3URL):
        return url
    if not isinstance(url, str):
        raise InvalidURLError(f"expected an s3:// URL string, got {type(url).__name__}", url=repr(url))
    if not url.startswith("s3://"):
        raise InvalidURLError("not an s3:// URL", url=url)
    rest = url[5:]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise InvalidURLError("the URL names no bucket", url=url)
    if not _BUCKET_RE.match(bucket):
        raise InvalidURLError(f"invalid bucket name {bucket!r}", url=url)
    return S3URL(bucket, key)


def max_brace_names() -> int:
    """The limit in force: ``AWSIO_MAX_BRACE_NAMES`` if set, else :data:`MAX_BRACE_NAMES`.
    Raises :class:`ConfigError` for a value that is not a positive integer."""
    raw = os.environ.get("AWSIO_MAX_BRACE_NAMES")
    if not raw:
        return MAX_BRACE_NAMES
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError("AWSIO_MAX_BRACE_NAMES must be a positive integer",
                          field="AWSIO_MAX_BRACE_NAMES", value=raw)
    return value


def _choices(body: str) -> tuple[int, Iterable[str]]:
    """How many alternatives a brace body has, and a lazy iterable of them."""
    rng = _RANGE_RE.match(body)
    if rng is None:
        parts = body.split(",")
        return len(parts), parts
    lo_s, hi_s = rng.groups()
    lo, hi = int(lo_s), int(hi_s)
    width = len(lo_s) if lo_s.startswith("0") and len(lo_s) > 1 else 0
    step = 1 if hi >= lo else -1
    numbers = range(lo, hi + step, step)
    return len(numbers), (str(i).zfill(width) for i in numbers)


def brace_count(pattern: str) -> int | None:
    """How many names ``pattern`` expands to, found without expanding it; None when its braces
    nest or do not pair up (then only expanding tells)."""
    rest = _BRACE_RE.sub("", pattern)
    if "{" in rest or "}" in rest:
        return None
    count = 1
    for m in _BRACE_RE.finditer(pattern):
        count *= _choices(m.group(1))[0]
    return count


def _expand(pattern: str) -> Iterator[str]:
    m = _BRACE_RE.search(pattern)
    if m is None:
        if "{" in pattern or "}" in pattern:
            raise InvalidURLError("unbalanced braces", url=pattern)
        yield pattern
        return
    head, tail = pattern[: m.start()], pattern[m.end():]
    for choice in _choices(m.group(1))[1]:
        yield from _expand(head + choice + tail)


def braceexpand(pattern: str, *, max_names: int | None = None) -> list[str]:
    """Expand ``{a,b}`` alternatives and ``{000..127}`` zero-padded numeric ranges, left to right.

    >>> braceexpand("s3://b/train-{000..002}.tar")
    ['s3://b/train-000.tar', 's3://b/train-001.tar', 's3://b/train-002.tar']

    Raises :class:`InvalidURLError` naming the pattern for unbalanced braces, or when it gives more
    than ``max_names`` names (default :func:`max_brace_names`), before expanding it where it can
    be counted (memory stays bounded by the limit either way).
    """
    limit = max_brace_names() if max_names is None else max_names
    count = brace_count(pattern)
    if count is not None and count > limit:
        raise InvalidURLError(f"brace pattern expands to {count:,} names, over the limit of "
                              f"{limit:,} (set AWSIO_MAX_BRACE_NAMES to raise it)", url=pattern)
    out = list(itertools.islice(_expand(pattern), limit + 1))
    if len(out) > limit:
        raise InvalidURLError(f"brace pattern expands to more than {limit:,} names, over the limit "
                              f"(set AWSIO_MAX_BRACE_NAMES to raise it)", url=pattern)
    return out


def expand_urls(urls: str | S3URL | Iterable[str | S3URL], *,
                max_names: int | None = None) -> list[S3URL]:
    """Turn one URL, a list of URLs, or brace patterns into parsed :class:`S3URL` objects, in order.

    Only plain strings are read as patterns (each bounded by ``max_names``, see
    :func:`braceexpand`); an :class:`S3URL` or an :class:`ObjectURL` names its key as it is.
    Raises :class:`InvalidURLError`.
    """
    if isinstance(urls, (str, S3URL)):
        urls = [urls]
    out: list[S3URL] = []
    for u in urls:
        if isinstance(u, (S3URL, ObjectURL)) or not isinstance(u, str):
            out.append(parse_url(u))
            continue
        out.extend(parse_url(x) for x in braceexpand(u, max_names=max_names))
    if not out:
        raise InvalidURLError("no URLs given", url="")
    return out
