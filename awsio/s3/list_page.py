"""One page of a ListObjectsV2 reply, read from its XML (the native backend's listing; the Python
backend has botocore parse it). Asked with ``encoding-type=url``, so every key arrives
URL-encoded and any key survives XML (control characters included), as botocore asks too."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import NamedTuple, Optional
from urllib.parse import unquote_plus
from xml.etree import ElementTree

from awsio.errors import S3Error
from awsio.s3.backend import ObjectInfo

__all__ = ["ListPage", "list_query_params", "malformed_listing", "next_page_token", "parse_list_page"]

_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


class ListPage(NamedTuple):
    objects: list[ObjectInfo]
    next_token: Optional[str]  # None: this was the last page


def list_query_params(prefix: str, token: Optional[str]) -> list[tuple[str, str]]:
    """The query of one ListObjectsV2 request (1,000 keys a page, S3's default and most)."""
    params = [("list-type", "2"), ("prefix", prefix), ("encoding-type", "url")]
    if token:
        params.append(("continuation-token", token))
    return params


def _timestamp(text: Optional[str]) -> Optional[float]:
    if not text:
        return None
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def malformed_listing(where: str, why: str) -> S3Error:
    """The error of a listing reply that cannot be used (both backends raise it)."""
    return S3Error(why, url=where, status=200, code="MalformedListing", request_id=None)


def next_page_token(truncated: Optional[bool], token: Optional[str], asked: Optional[str], where: str) -> Optional[str]:
    """The continuation token of the page after one that says ``truncated`` and ``token``
    (``asked``: the token it was asked with); None after the last page. ValueError naming
    ``where`` for a page that cannot be followed: no IsTruncated (not a ListObjectsV2 result),
    truncated without a token (the listing would end early, keys lost), or the token it was
    asked with (it would repeat keys and never end). Both backends list by this rule."""
    if truncated is None:
        raise ValueError(f"the listing of {where} has no IsTruncated: not a ListObjectsV2 result")
    if not truncated:
        return None
    if not token:
        raise ValueError(f"the listing of {where} says it is truncated but gives no continuation token")
    if token == asked:
        raise ValueError(f"the listing of {where} gives back the continuation token it was asked with")
    return token


def parse_list_page(body: bytes, bucket: str, where: str, asked: Optional[str] = None) -> ListPage:
    """The objects of one page (asked with the token ``asked``) and the token of the next.
    ValueError naming ``where`` (the listed ``s3://bucket/prefix``) when the reply is not a
    ListObjectsV2 result or cannot be followed (:func:`next_page_token`)."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as exc:
        raise ValueError(f"the listing of {where} is not XML: {exc}") from None
    ns = _NS if root.tag.startswith(_NS) else ""
    if root.tag != f"{ns}ListBucketResult":
        raise ValueError(f"the listing of {where} is a {root.tag!r}, not a ListBucketResult")
    encoded = (root.findtext(f"{ns}EncodingType") or "").lower() == "url"
    objects = []
    try:
        for c in root.iterfind(f"{ns}Contents"):
            key = c.findtext(f"{ns}Key") or ""
            size = c.findtext(f"{ns}Size")
            if size is None:
                raise ValueError(f"{key!r} has no Size")
            objects.append(ObjectInfo(f"s3://{bucket}/{unquote_plus(key) if encoded else key}",
                                      int(size), c.findtext(f"{ns}ETag"),
                                      _timestamp(c.findtext(f"{ns}LastModified"))))
    except ValueError as exc:
        raise ValueError(f"the listing of {where} has a malformed entry: {exc}") from None
    truncated = root.findtext(f"{ns}IsTruncated")
    return ListPage(objects, next_page_token(None if truncated is None else truncated.strip().lower() == "true",
                                             root.findtext(f"{ns}NextContinuationToken"), asked, where))
