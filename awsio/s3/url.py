"""Parse ``s3://`` URLs and expand brace patterns. No I/O here."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

from awsio.errors import InvalidURLError

__all__ = ["S3URL", "braceexpand", "expand_urls", "parse_url"]

# S3 bucket names: 3-63 chars of lowercase letters, digits, dots and hyphens. Some S3-compatible
# stores are laxer (uppercase, underscores), so accept those too and let the server decide.
_BUCKET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
_BRACE_RE = re.compile(r"\{([^{}]*)\}")
_RANGE_RE = re.compile(r"^(-?\d+)\.\.(-?\d+)$")


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
    """Parse ``s3://bucket/key``. Raises :class:`InvalidURLError` naming the URL and the cause."""
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
    if "{" in key or "}" in key:
        raise InvalidURLError("unexpanded brace pattern; use expand_urls()", url=url)
    return S3URL(bucket, key)


def braceexpand(pattern: str) -> list[str]:
    """Expand ``{a,b}`` alternatives and ``{000..127}`` zero-padded numeric ranges, left to right.

    >>> braceexpand("s3://b/train-{000..002}.tar")
    ['s3://b/train-000.tar', 's3://b/train-001.tar', 's3://b/train-002.tar']
    """
    m = _BRACE_RE.search(pattern)
    if m is None:
        if "{" in pattern or "}" in pattern:
            raise InvalidURLError("unbalanced braces", url=pattern)
        return [pattern]
    head, body, tail = pattern[: m.start()], m.group(1), pattern[m.end():]
    rng = _RANGE_RE.match(body)
    if rng:
        lo_s, hi_s = rng.groups()
        lo, hi = int(lo_s), int(hi_s)
        width = len(lo_s) if lo_s.startswith("0") and len(lo_s) > 1 else 0
        step = 1 if hi >= lo else -1
        choices = [str(i).zfill(width) for i in range(lo, hi + step, step)]
    else:
        choices = body.split(",")
    out: list[str] = []
    for choice in choices:
        out.extend(braceexpand(head + choice + tail))
    return out


def expand_urls(urls: str | S3URL | Iterable[str | S3URL]) -> list[S3URL]:
    """Turn one URL, a list of URLs, or brace patterns into parsed :class:`S3URL` objects, in order."""
    if isinstance(urls, (str, S3URL)):
        urls = [urls]
    out: list[S3URL] = []
    for u in urls:
        if isinstance(u, S3URL):
            out.append(u)
            continue
        for expanded in braceexpand(u) if isinstance(u, str) else [u]:
            out.append(parse_url(expanded))
    if not out:
        raise InvalidURLError("no URLs given", url="")
    return out
