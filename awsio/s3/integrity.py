"""Checks that a GET reply holds exactly the bytes asked for: lengths, ranges, S3 checksums.

Pure functions, no I/O, shared by the backends so that the same reply gets the same verdict.
Every failed check raises :class:`awsio.errors.IntegrityError` (``SizeMismatch``,
``RangeMismatch`` or ``ChecksumMismatch``); the backend retries it like a transfer failure and
raises it once its attempts run out.
"""

from __future__ import annotations

import base64
import hashlib
import re
import zlib
from typing import Callable, Mapping, NamedTuple, Optional

from awsio.errors import IntegrityError

__all__ = ["ContentRange", "check_reply", "checksum_b64", "full_object_checksum", "parse_content_range"]

# Cheapest first: the hardware CRCs, then the SHA digests.
CHECKSUM_ALGORITHMS = ("crc64nvme", "crc32c", "crc32", "sha256", "sha1")
_COMPOSITE = re.compile(r"-\d+$")  # "<b64>-<parts>": a checksum of part checksums
_CONTENT_RANGE = re.compile(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)


class ContentRange(NamedTuple):
    """``Content-Range: bytes first-last/total`` as a half-open ``[start, end)``; total None for ``*``."""

    start: int
    end: int
    total: Optional[int]


def parse_content_range(value: Optional[str]) -> Optional[ContentRange]:
    """The range a 206 reply says it holds, or None when the header is absent or malformed."""
    m = _CONTENT_RANGE.match(value or "")
    if m is None:
        return None
    first, last = int(m.group(1)), int(m.group(2))
    total = None if m.group(3) == "*" else int(m.group(3))
    if last < first or (total is not None and last >= total):
        return None
    return ContentRange(first, last + 1, total)


def _crt(name: str) -> Callable[[bytes], bytes]:
    width = 8 if name == "crc64nvme" else 4

    def digest(data: bytes) -> bytes:
        from awscrt import checksums  # hardware CRC32C / CRC64NVME

        value: int = getattr(checksums, name)(data)
        return value.to_bytes(width, "big")

    return digest


def _sha(name: str) -> Callable[[bytes], bytes]:
    return lambda data: hashlib.new(name, data).digest()


_DIGESTS: dict[str, Callable[[bytes], bytes]] = {
    "crc64nvme": _crt("crc64nvme"), "crc32c": _crt("crc32c"),
    "crc32": lambda data: zlib.crc32(data).to_bytes(4, "big"),  # zlib's: twice awscrt's speed here
    "sha256": _sha("sha256"), "sha1": _sha("sha1"),
}


def checksum_b64(algorithm: str, data: bytes) -> str:
    """``data``'s checksum as S3 writes it in ``x-amz-checksum-<algorithm>`` (base64 of big-endian bytes)."""
    return base64.b64encode(_DIGESTS[algorithm](data)).decode("ascii")


def full_object_checksum(headers: Mapping[str, str]) -> Optional[tuple[str, str]]:
    """``(algorithm, base64 value)`` of the reply's full-object checksum, or None.

    ``headers`` has lower-case names. A composite checksum (``x-amz-checksum-type: COMPOSITE``,
    or a value ending in ``-N``) is a checksum of the parts' checksums and cannot be checked
    against the body: None.
    """
    if headers.get("x-amz-checksum-type", "").strip().upper() == "COMPOSITE":
        return None
    for algorithm in CHECKSUM_ALGORITHMS:
        value = headers.get(f"x-amz-checksum-{algorithm}")
        if value and not _COMPOSITE.search(value.strip()):
            return algorithm, value.strip()
    return None


def check_reply(url: str, status: int, headers: Mapping[str, str], body: bytes, start: int,
                end: Optional[int], size: Optional[int], verify_checksums: bool = True) -> bytes:
    """The bytes ``[start, end)`` (clipped by the object's end) that a GET reply holds.

    ``status`` is 200 or 206, ``headers`` has lower-case names, ``body`` is the whole body (its
    length already matched ``Content-Length``), ``size`` the object size known to the caller.
    A 206 must be for ``start`` and the clipped end, its body as long as its Content-Range, its
    total equal to ``size``. A 200 is the whole object (a server that ignored Range): its length
    must equal ``size``; its checksum, when S3 sent a full-object one, must match; the asked
    range is cut out of it. ``verify_checksums=False`` (``S3Config.verify_checksums``) skips the
    checksum; lengths and ranges are always checked.

    Raises:
        IntegrityError: ``RangeMismatch``, ``SizeMismatch`` or ``ChecksumMismatch``.
    """

    def fail(code: str, what: str, expected: object, got: object) -> IntegrityError:
        return IntegrityError(what, url=url, status=status, code=code,
                              request_id=headers.get("x-amz-request-id"), expected=expected, got=got)

    if status == 206:
        cr = parse_content_range(headers.get("content-range"))
        asked = f"bytes {start}-{'' if end is None else end - 1}"
        if cr is None:
            raise fail("RangeMismatch", "a 206 reply without a valid Content-Range", asked,
                       headers.get("content-range"))
        if size is not None and cr.total is not None and cr.total != size:
            raise fail("SizeMismatch", "the object size in Content-Range differs from the known size",
                       size, cr.total)
        known = cr.total if cr.total is not None else size
        want_end = end if known is None else (known if end is None else min(end, known))
        if cr.start != start or (want_end is not None and cr.end != want_end):
            raise fail("RangeMismatch", "a 206 reply for another range than asked", asked,
                       headers.get("content-range"))
        if len(body) != cr.end - cr.start:
            raise fail("SizeMismatch", "the body length differs from its Content-Range",
                       cr.end - cr.start, len(body))
        return body
    if size is not None and len(body) != size:
        raise fail("SizeMismatch", "the object's length differs from the known size", size, len(body))
    checksum = full_object_checksum(headers) if verify_checksums else None
    if checksum is not None:
        algorithm, expected = checksum
        got = checksum_b64(algorithm, body)
        if got != expected:
            raise fail("ChecksumMismatch", f"the body's {algorithm} differs from x-amz-checksum-{algorithm}",
                       expected, got)
    if start > 0 or end is not None:  # the server ignored Range and sent the whole object
        return body[start:end]
    return body
