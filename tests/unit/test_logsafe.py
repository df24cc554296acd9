"""botocore's and urllib3's DEBUG logs never show the access key id, the secret, the session
token or a signature once awsio made a client (``AWSIO_REDACT_LOGS=0`` turns that off)."""

from __future__ import annotations

import logging

import pytest

from awsio import S3Client
from awsio.config import S3Config
from awsio.logsafe import redact
from awsio.testing.local_s3 import REGION

AK = "AKIAIOSFODNN7EXAMPLE"
SK = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TOKEN = "FwoGZXIvYXdzEXAMPLESESSIONTOKEN/abc+def=="


def _debug_log_of_requests(moto_server: str, bucket: str, caplog: pytest.LogCaptureFixture) -> str:
    client = S3Client(S3Config(endpoint_url=moto_server, region=REGION, path_style=True, backend="python",
                               static_credentials=(AK, SK, TOKEN)))
    with caplog.at_level(logging.DEBUG):
        client.put(f"s3://{bucket}/k", b"data")
        assert client.get(f"s3://{bucket}/k") == b"data"
        assert [o.size for o in client.list(f"s3://{bucket}/")] == [4]
        client.head(f"s3://{bucket}/k")
    return "\n".join(r.getMessage() for r in caplog.records)


def test_debug_logs_of_real_requests_hold_no_credentials(moto_server, moto_bucket, caplog, monkeypatch):
    monkeypatch.delenv("AWSIO_REDACT_LOGS", raising=False)
    text = _debug_log_of_requests(moto_server, moto_bucket, caplog)
    assert "Credential=***/" in text and "Authorization" in text  # the dumps are there, masked
    for secret in (AK, SK, TOKEN, TOKEN[:20]):
        assert secret not in text


def test_redaction_can_be_turned_off(moto_server, moto_bucket, caplog, monkeypatch):
    monkeypatch.setenv("AWSIO_REDACT_LOGS", "0")
    try:
        text = _debug_log_of_requests(moto_server, moto_bucket, caplog)
    finally:
        monkeypatch.delenv("AWSIO_REDACT_LOGS")
        S3Client(S3Config(endpoint_url=moto_server, region=REGION, backend="python",
                          static_credentials=(AK, SK, None))).backend  # filters back on
    assert f"Credential={AK}/" in text  # what the filter is there to hide


@pytest.mark.parametrize("line,hidden", [
    ("Authorization': b'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20260101/us-east-1/s3/aws4_request, "
     "SignedHeaders=host;x-amz-date, Signature=0123abcd'", ["AKIAIOSFODNN7EXAMPLE", "0123abcd"]),
    ("{'X-Amz-Security-Token': b'FwoGZXIvYXdz/abc+def==', 'Range': b'bytes=0-9'}", ["FwoGZXIvYXdz"]),
    ("x-amz-security-token:FwoGZXIvYXdz/abc\nx-amz-date:20260101T000000Z", ["FwoGZXIvYXdz"]),
    ("Signature:\n0f1e2d3c4b5a", ["0f1e2d3c4b5a"]),
    ('"GET /b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20260101%2Fus-east-1'
     '&X-Amz-Security-Token=FwoGZX&X-Amz-Signature=9f8e HTTP/1.1" 200 4',
     ["AKIAIOSFODNN7EXAMPLE", "FwoGZX", "9f8e"]),
    ("https://b.s3.amazonaws.com/k?AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Expires=1&Signature=abc%2B",
     ["AKIAIOSFODNN7EXAMPLE", "abc%2B"]),
    ("assumed role key ASIAIOSFODNN7EXAMPLE", ["ASIAIOSFODNN7EXAMPLE"]),
])
def test_redact_masks_keys_tokens_signatures_and_presigned_queries(line, hidden):
    clean = redact(line)
    assert "***" in clean
    for value in hidden:
        assert value not in clean
    assert redact("GET /bucket/key HTTP/1.1 200 Range: bytes=0-9") == "GET /bucket/key HTTP/1.1 200 Range: bytes=0-9"
