"""A listing kept between runs: list a data set once, not at every start of every job.

``S3IterableDataset(..., listing_cache="/path/or/s3://bucket/prefix/")`` keeps the resolved
listing (``[(url, size, etag)]``) in ``<location>/<key>.json``, where the key is a digest of
the URL list and the options that shape the listing; the next dataset made with the same URLs
reads it instead of listing again (after a restart, in another job). ``refresh_listing=True``
lists again and replaces it. An unreadable entry is logged and listed again. JSON only.
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
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def cached_listing(location: str, urls: list[str], options: dict[str, Any], client: Any,
                   resolve: Callable[[], list[Item]], refresh: bool = False) -> list[Item]:
    """The listing of ``urls`` from the cache at ``location``, else ``resolve()`` (then stored).

    Raises what ``resolve`` raises, and S3 or OSError errors writing the entry.
    """
    path = f"{location.rstrip('/')}/{_key(urls, options)}.json"
    if not refresh:
        try:
            raw = _read(client, path)
            if raw is not None:
                entry = json.loads(raw)
                if entry.get("urls") == urls:
                    log.info("listing of %d URL(s) read from %s", len(urls), path)
                    return [(ObjectURL(u), size, etag) for u, size, etag in entry["items"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("unusable listing cache %s (%s): listing again", path, exc)
    items = resolve()
    _write(client, path, json.dumps({"urls": urls, "items": [list(x) for x in items]}).encode())
    return items
