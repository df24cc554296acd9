"""One exception tree for everything awsio raises.

Every concrete error derives from :class:`AwsioError` *and* from the matching built-in, so
``except FileNotFoundError`` works as users expect. Errors carry their context as fields
(``url``, ``code``, ``request_id``, ``member``...) and pickle, because DataLoader workers send
them back to the main process.

Both S3 backends (native and Python) report failures through :func:`s3_error`, so the same
S3 response becomes the same exception whichever backend made the request.
"""

from __future__ import annotations

import re
from typing import Any

from awsio.logsafe import redact

__all__ = [
    "AccessDeniedError",
    "ArchiveError",
    "AwsioError",
    "ConfigError",
    "DecodeError",
    "EmptyPrefixError",
    "EndpointConnectionError",
    "IntegrityError",
    "InvalidURLError",
    "NoSuchBucketError",
    "NoSuchKeyError",
    "RedirectError",
    "S3Error",
    "ServerError",
    "SkippedSamples",
    "StateError",
    "ThrottledError",
    "s3_error",
]


class AwsioError(Exception):
    """Base class of every error awsio raises.

    Subclasses declare their context fields in ``_fields``; the message is built from them,
    and ``__reduce__`` rebuilds the error from them so it survives pickling.
    """

    _fields: tuple[str, ...] = ()

    def __init__(self, message: str = "", **fields: Any) -> None:
        if not fields and _WORKER_MARK in message:
            message, fields = _parse_worker_message(type(self), message)
        for name in self._fields:
            value = fields.pop(name, None)
            setattr(self, name, redact(value) if isinstance(value, str) else value)
        if fields:
            raise TypeError(f"{type(self).__name__} got unexpected fields {sorted(fields)}")
        self.message = redact(message)  # (a presigned URL given as an object's name, ...)
        super().__init__(self._render())

    def _render(self) -> str:
        parts = [self.message] if self.message else []
        for name in self._fields:
            value = getattr(self, name)
            if value not in (None, ""):
                parts.append(f"{name}={value}")
        return "; ".join(parts)

    def __str__(self) -> str:
        return self._render()

    def __reduce__(self) -> tuple[Any, ...]:
        fields = {name: getattr(self, name) for name in self._fields}
        return (_rebuild, (type(self), self.message, fields))


def _rebuild(cls: type[AwsioError], message: str, fields: dict[str, Any]) -> AwsioError:
    return cls(message, **fields)


# torch's DataLoader does not pickle a worker's exception: it sends the formatted traceback and
# the main process calls ``type(exc)(text)``, text being "Caught X in DataLoader worker process N.
# Original Traceback ...". The fields are recovered from the traceback's last line, where
# ``_render`` wrote them as "; name=value" in ``_fields`` order.
_WORKER_MARK = "Original Traceback (most recent call last):"


def _parse_worker_message(cls: type[AwsioError], text: str) -> tuple[str, dict[str, Any]]:
    prefix = f"{cls.__module__}.{cls.__qualname__}: "
    lines = [ln for ln in text.splitlines() if ln.startswith(prefix)]
    if not lines:
        return text, {}
    rendered = lines[-1][len(prefix):]
    fields: dict[str, Any] = {}
    # Peel fields off the end, last declared first, so a value may itself contain "; ".
    for name in reversed(cls._fields):
        m = re.search(rf"(?:^|; ){re.escape(name)}=(.*)$", rendered)
        if m is None:
            continue
        value: Any = m.group(1)
        if re.fullmatch(r"-?\d+", value):
            value = int(value)
        fields[name] = value
        rendered = rendered[: m.start()]
    # Keep torch's context (which worker, the traceback) in front of the original message.
    head = text.split(_WORKER_MARK, 1)[0].rstrip()
    message = f"{rendered} [{head}]" if rendered else text
    return message, fields


class ConfigError(AwsioError, ValueError):
    """An invalid configuration value (S3Config, a pipeline option, a Hydra override)."""

    _fields = ("field", "value")


class InvalidURLError(AwsioError, ValueError):
    """A string that is not a usable ``s3://bucket/key`` URL or brace pattern."""

    _fields = ("url",)


class EmptyPrefixError(AwsioError, FileNotFoundError):
    """A dataset URL lists no objects: an empty prefix ("folder"), or a name that is neither an
    object nor a folder. The message uses the original S3 plugin's words, ``The directory {url}
    does not contain any objects.``; datasets take ``allow_empty=True`` to accept it."""

    _fields = ("url",)


class S3Error(AwsioError):
    """A request to S3 failed. Carries the object URL, HTTP status, S3 error code and request id."""

    _fields: tuple[str, ...] = ("url", "status", "code", "request_id")
    url: str | None
    status: int | None
    code: str | None
    request_id: str | None


class NoSuchKeyError(S3Error, FileNotFoundError):
    """The object does not exist (404 NoSuchKey, or a HEAD 404)."""


class NoSuchBucketError(S3Error, FileNotFoundError):
    """The bucket does not exist (404 NoSuchBucket)."""


class AccessDeniedError(S3Error, PermissionError):
    """403: access denied, a bad signature, an invalid or expired access key."""


class RedirectError(S3Error, ValueError):
    """The bucket lives in another region (301/307); ``region`` names it when S3 said so."""

    _fields = S3Error._fields + ("region",)


class ThrottledError(S3Error, ConnectionError):
    """S3 kept answering 429/503 SlowDown after every retry."""


class ServerError(S3Error, ConnectionError):
    """S3 kept answering 5xx after every retry."""


class EndpointConnectionError(S3Error, ConnectionError):
    """The endpoint could not be reached (DNS, refused, TLS, timeout) after every retry."""

    _fields = S3Error._fields + ("endpoint", "reason")


class IntegrityError(S3Error, OSError):
    """S3 answered, but the bytes did not match what is known of the object on every attempt.

    ``code`` says which check failed: ``SizeMismatch`` (the reply's length, ``Content-Length`` or
    ``Content-Range`` disagrees with the object size from the listing or the first reply: the
    object was replaced, or a proxy cut it), ``RangeMismatch`` (a 206 for another range than the
    one asked for), ``ChecksumMismatch`` (the body's CRC32 / CRC32C / CRC64NVME / SHA-1 / SHA-256
    differs from the ``x-amz-checksum-*`` header). ``expected`` and ``got`` hold the two values.
    """

    _fields = S3Error._fields + ("expected", "got")


class ArchiveError(AwsioError, ValueError):
    """A tar / tar.gz / zip shard is corrupt or truncated. Names the shard and, if known, the member."""

    _fields = ("url", "member", "offset")


class DecodeError(AwsioError, ValueError):
    """A sample field could not be decoded. Names the shard URL, the sample key and the field."""

    _fields = ("url", "key", "field")


class StateError(AwsioError, ValueError):
    """A saved data state that does not fit: another listing or other options (``field`` names what
    differs, ``saved`` and ``current`` its two values), or not an awsio state at all."""

    _fields = ("field", "saved", "current")


class SkippedSamples(AwsioError, RuntimeError):
    """Raised by strict consumers when a run skipped samples under a skip policy and must not."""

    _fields = ("count", "where")


# S3 error codes whose meaning does not depend on the HTTP status.
_CODE_TO_CLASS: dict[str, type[S3Error]] = {
    "NoSuchKey": NoSuchKeyError,
    "NotFound": NoSuchKeyError,
    "NoSuchBucket": NoSuchBucketError,
    "AccessDenied": AccessDeniedError,
    "AllAccessDisabled": AccessDeniedError,
    "InvalidAccessKeyId": AccessDeniedError,
    "SignatureDoesNotMatch": AccessDeniedError,
    "ExpiredToken": AccessDeniedError,
    "InvalidToken": AccessDeniedError,
    "TokenRefreshRequired": AccessDeniedError,
    "AuthorizationHeaderMalformed": AccessDeniedError,
    "RequestTimeTooSkewed": AccessDeniedError,
    "PermanentRedirect": RedirectError,
    "TemporaryRedirect": RedirectError,
    "Redirect": RedirectError,
    "SlowDown": ThrottledError,
    "Throttling": ThrottledError,
    "ThrottlingException": ThrottledError,
    "RequestLimitExceeded": ThrottledError,
    "TooManyRequests": ThrottledError,
    "InternalError": ServerError,
    "ServiceUnavailable": ServerError,
    "PreconditionFailed": IntegrityError,  # If-Match: the object was replaced while it was read
}


def s3_error(
    url: str,
    status: int | None,
    code: str | None = None,
    message: str | None = None,
    request_id: str | None = None,
    region: str | None = None,
) -> S3Error:
    """Build the exception for a failed S3 request, the same way for every backend.

    ``status`` is the HTTP status (None when no response arrived); ``code``/``message`` come from
    the S3 XML error body when there was one. Requests that got no response at all are reported
    with :class:`EndpointConnectionError` by the backend itself.
    """
    cls = _CODE_TO_CLASS.get(code or "")
    if cls is None:
        if status == 404:
            cls = NoSuchKeyError
        elif status in (401, 403):
            cls = AccessDeniedError
        elif status in (301, 302, 307, 308):
            cls = RedirectError
        elif status == 412:  # (a HEAD's 412 has no body, so no code)
            cls = IntegrityError
        elif status == 429 or (status == 503 and not code):
            # (a 503 without a body, e.g. a HEAD's, is S3's SlowDown: both backends retry and
            # count it as throttling)
            cls = ThrottledError
        elif status is not None and status >= 500:
            cls = ServerError
        else:
            cls = S3Error
    text = message or code or (f"HTTP {status}" if status else "request failed")
    if cls is RedirectError:
        hint = f"the bucket is in region {region!r}; set AWS_REGION or S3Config(region=...)" if region else (
            "the bucket is in another region; set AWS_REGION or S3Config(region=...)"
        )
        return RedirectError(f"{text} ({hint})", url=url, status=status, code=code,
                             request_id=request_id, region=region)
    return cls(text, url=url, status=status, code=code, request_id=request_id)
