"""A listing kept between runs: list a data set once, not at every start of every job.

``S3IterableDataset(..., listing_cache="/path/or/s3://bucket/prefix/")`` keeps the resolved
listing (``[(url, size, etag)]``) in ``<location>/<key>.json``, where the key is a digest of
the URL list, the options that shape the listing and the client's endpoint (one bucket name on
two servers is two data sets); the next dataset made with the same URLs on the same endpoint
reads it instead of listing again (after a restart, in another job). ``refresh_listing=True``
lists again and replaces it. An unreadable entry (not JSON, or not a list of ``[s3 URL, size or
null, etag or null]``) is logged and listed again. JSON only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from typing import Any, Callable, Optional

from awsio.s3.url import ObjectURL

__all__ = ["cached_listing"]

log = logging.getLogger(__name__)

Item = tuple[str, Optional[int], Optional[str]]


def _key(urls: list[str], options: dict[str, Any]) -> str:
    text = json.dumps({"urls": urls, **options}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _endpoint(client: Any) -> Optional[str]:
    """The endpoint ``client`` lists (None for a client without an S3Config)."""
    endpoint = getattr(getattr(client, "config", None), "endpoint", None)
    return endpoint if isinstance(endpoint, str) else None


def _items(raw: bytes, urls: list[str]) -> Optional[list[Item]]:
    """The listing an entry holds; None when it is another URL list's (a digest collision).
    ValueError when it is not an entry: a listing read from it would name wrong objects."""
    entry = json.loads(raw)
    if not isinstance(entry, dict) or not isinstance(entry.get("items"), list):
        raise ValueError("not a listing entry")
    if entry.get("urls") != urls:
        return None
    out: list[Item] = []
    for x in entry["items"]:
        if not (isinstance(x, list) and len(x) == 3 and isinstance(x[0], str) and x[0].startswith("s3://")
                and (x[1] is None or (type(x[1]) is int and x[1] >= 0))
                and (x[2] is None or isinstance(x[2], str))):
            raise ValueError(f"not a listed object: {x!r:.200}")
        out.append((ObjectURL(x[0]), x[1], x[2]))
    return out


def _read(client: Any, path: str) -> Optional[bytes]:
    if path.startswith("s3://"):
        return client.get(path) if client.exists(path) else None
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _write(client: Any, path: str, data: bytes) -> None:
    if path.startswith("s3://"):
        client.put(path, data)
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    # a name of its own: writers of one entry may share a pid (containers on one shared volume)
    tmp = f"{path}.{os.getpid()}.{os.urandom(6).hex()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def cached_listing(location: str, urls: list[str], options: dict[str, Any], client: Any,
                   resolve: Callable[[], list[Item]], refresh: bool = False) -> list[Item]:
    """The listing of ``urls`` from the cache at ``location``, else ``resolve()`` (then stored).

    Raises what ``resolve`` raises, and S3 or OSError errors writing the entry.
    """
    path = f"{location.rstrip('/')}/{_key(urls, {**options, 'endpoint': _endpoint(client)})}.json"
    if not refresh:
        try:
            raw = _read(client, path)
            items = _items(raw, urls) if raw is not None else None
            if items is not None:
                log.info("listing of %d URL(s) read from %s", len(urls), path)
                return items
        except (OSError, ValueError) as exc:
            log.warning("unusable listing cache %s (%s): listing again", path, exc)
    items = resolve()
    _write(client, path, json.dumps({"urls": urls, "items": [list(x) for x in items]}).encode())
    return items
