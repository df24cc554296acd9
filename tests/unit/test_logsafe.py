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


@pytest.mark.parametrize("line,hidden", [
    # an STS AssumeRole reply, as botocore's parser logs it at DEBUG
    ("Response body: b'<AssumeRoleResult><Credentials><AccessKeyId>ASIAIOSFODNN7EXAMPLE</AccessKeyId>"
     "<SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>"
     "<SessionToken>FwoGZXIvYXdzEBYaDEXAMPLETOKEN</SessionToken></Credentials>'",
     ["ASIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY", "FwoGZXIvYXdzEBYaDEXAMPLETOKEN"]),
    # SSO / container / IMDS credentials (JSON)
    ('{"AccessKeyId": "ASIAIOSFODNN7EXAMPLE", "SecretAccessKey": "wJalrXUtnFEMIK7MDENG", "Token": "IQoJb3JpZ2lu"}',
     ["wJalrXUtnFEMIK7MDENG", "IQoJb3JpZ2lu"]),
    ('{"roleCredentials": {"accessKeyId": "minioadmin", "secretAccessKey": "s3cr3tv4lue", "sessionToken": "tok3n"}}',
     ["minioadmin", "s3cr3tv4lue", "tok3n"]),
    # an S3 SignatureDoesNotMatch error body (any key id form: MinIO, SeaweedFS)
    ("<Error><Code>SignatureDoesNotMatch</Code><AWSAccessKeyId>minioadmin</AWSAccessKeyId>"
     "<StringToSign>AWS4-HMAC-SHA256\n20260102T030405Z\nabc</StringToSign>"
     "<SignatureProvided>0123456789abcdef0123456789abcdef</SignatureProvided>"
     "<CanonicalRequest>GET\n/bkt/key\n</CanonicalRequest></Error>",
     ["minioadmin", "0123456789abcdef0123456789abcdef", "20260102T030405Z", "/bkt/key"]),
])
def test_redact_masks_credentials_in_sts_sso_and_error_bodies(line, hidden):
    clean = redact(line)
    assert not [h for h in hidden if h in clean], clean


def test_errors_never_repeat_a_presigned_url_or_an_endpoint_password():
    """A presigned https URL given where an s3:// URL is expected, an endpoint with a password:
    the error names them without the signature, token or password."""
    from awsio.errors import ConfigError, InvalidURLError
    from awsio.s3.url import parse_url

    presigned = ("https://bkt.s3.amazonaws.com/key?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE"
                 "%2F20260102%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Security-Token=FwoGZXIvYXdzTOKEN"
                 "&X-Amz-Signature=0123456789abcdef")
    with pytest.raises(InvalidURLError) as err:
        parse_url(presigned)
    for text in (str(err.value), repr(err.value)):
        assert "0123456789abcdef" not in text and "FwoGZXIvYXdzTOKEN" not in text and "AKIDEXAMPLE" not in text
    from awsio.cli.common import ConfigValueError, url_list

    with pytest.raises(ConfigValueError) as cli:
        url_list(presigned)
    assert "0123456789abcdef" not in str(cli.value) and "FwoGZXIvYXdzTOKEN" not in str(cli.value)
    from awsio.tools import cat

    import contextlib
    import io

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        assert cat.main([presigned]) == 1
    assert "0123456789abcdef" not in stderr.getvalue() and "FwoGZXIvYXdzTOKEN" not in stderr.getvalue()
    with pytest.raises(ConfigError) as bad:
        S3Config(endpoint_url="http://user:hunter2@127.0.0.1:9000")
    assert "hunter2" not in str(bad.value) and "hunter2" not in repr(bad.value)
