"""Keep credentials out of botocore's and urllib3's DEBUG logs.

At DEBUG, botocore logs whole signed requests: the access key id (``Credential=AKIA...`` in the
Authorization header), the session token (``X-Amz-Security-Token``), signatures, and presigned
URLs with all of these in their query strings; urllib3 logs request lines with the query.
awsio's own loggers never log any of it. :class:`RedactFilter` masks them in the records of the
``botocore``, ``boto3``, ``s3transfer`` and ``urllib3`` loggers; awsio installs it each time it
makes a botocore client (:func:`redact_aws_logs`).

Opt out with ``AWSIO_REDACT_LOGS=0`` (for example to debug a signature mismatch locally).
"""

from __future__ import annotations

import logging
import os
import re

__all__ = ["RedactFilter", "redact", "redact_aws_logs"]

MASK = "***"
_NAMESPACES = ("botocore", "boto3", "s3transfer", "urllib3")

_PATTERNS = [
    # Authorization: AWS4-HMAC-SHA256 Credential=AKID/date/region/s3/aws4_request, ..., Signature=hex
    # and the same names in presigned query strings (X-Amz-Credential=..., X-Amz-Signature=...).
    re.compile(r"(?i)((?:X-Amz-)?Credential=)[^/&\s,'\"]+"),
    re.compile(r"(?i)((?:X-Amz-)?Signature[=:]\s*)[^&\s,'\"]+"),
    # The session token as a header ('X-Amz-Security-Token': b'...', x-amz-security-token:...)
    # or a query parameter (X-Amz-Security-Token=...).
    re.compile(r"(?i)(x-amz-security-token['\"]?\s*[:=]\s*b?['\"]?)[^'\"\s&,}]+"),
    # SigV2 presigned URLs: AWSAccessKeyId=...&Signature=...
    re.compile(r"(?i)(AWSAccessKeyId=)[^&\s'\"]+"),
    # Credentials in XML replies (STS AssumeRole*) and what an S3 SignatureDoesNotMatch error
    # body echoes (any key id form: MinIO, SeaweedFS...).
    re.compile(r"(<(?:AccessKeyId|SecretAccessKey|SessionToken|AWSAccessKeyId|SignatureProvided|"
               r"StringToSign(?:Bytes)?|CanonicalRequest(?:Bytes)?)>)[^<]*"),
    # ... and in JSON (SSO role credentials, container and instance metadata credentials).
    re.compile(r'(?i)("(?:accessKeyId|secretAccessKey|sessionToken|token)"\s*:\s*")[^"]*'),
    # Anything else that looks like an access key id.
    re.compile(r"()\b(?:AKIA|ASIA|AROA|AIDA)[A-Z0-9]{12,}\b"),
]


def redact(text: str) -> str:
    """``text`` with access key ids, session tokens and signatures replaced by ``***``."""
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + MASK, text)
    return text


class RedactFilter(logging.Filter):
    """A filter that rewrites a record's message with :func:`redact` (never drops a record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_FILTER = RedactFilter()


def redact_aws_logs() -> None:
    """Install :class:`RedactFilter` on every existing logger of botocore, boto3, s3transfer, urllib3.

    Logger filters only see records made by that very logger (not those of its children), so
    each logger gets it; call again after new ones appear (awsio does at every client it makes).
    With ``AWSIO_REDACT_LOGS`` set to ``0``/``false``/``no``/``off`` it removes the filter instead.
    """
    enabled = os.environ.get("AWSIO_REDACT_LOGS", "1").strip().lower() not in ("0", "false", "no", "off")
    names = [name for name in list(logging.Logger.manager.loggerDict)
             if name.split(".", 1)[0] in _NAMESPACES]
    for name in sorted(set(names) | set(_NAMESPACES)):
        logger = logging.getLogger(name)
        if enabled:
            if _FILTER not in logger.filters:
                logger.addFilter(_FILTER)
        else:
            logger.removeFilter(_FILTER)
