"""The native backend lists with its own engine (ListObjectsV2 GETs): pages, encoded keys,
retries, errors, and no botocore. Parity with the Python backend against a real server is in
test_native_parity.py."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from urllib.parse import parse_qs, quote_plus, urlsplit

import pytest

from awsio.errors import NoSuchBucketError, S3Error

from .conftest import Reply, error_xml
from .test_native_parts import make

pytestmark = pytest.mark.native


def page(keys: list[str], token: str | None = None) -> bytes:
    contents = "".join(
        f"<Contents><Key>{quote_plus(k)}</Key><LastModified>2026-01-02T03:04:05.000Z</LastModified>"
        f"<ETag>&quot;e{i}&quot;</ETag><Size>{10 + i}</Size><StorageClass>STANDARD</StorageClass></Contents>"
        for i, k in enumerate(keys))
    more = f"<IsTruncated>true</IsTruncated><NextContinuationToken>{token}</NextContinuationToken>" if token \
        else "<IsTruncated>false</IsTruncated>"
    return (f'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<Name>bkt</Name><Prefix>p/</Prefix><EncodingType>url</EncodingType>{more}{contents}"
            "</ListBucketResult>").encode()


def test_pages_are_followed_and_keys_decoded(stub):
    first, second = ["p/a b+c.bin", "p/ünï/%41.txt"], ["p/z\x01ctl"]

    def script(n, seen):
        q = parse_qs(urlsplit(seen.path).query)
        assert q["list-type"] == ["2"] and q["prefix"] == ["p/"] and q["encoding-type"] == ["url"]
        return Reply(200, page(second) if q.get("continuation-token") == ["t/1+="] else page(first, "t/1+="))

    stub.script = script
    b = make(stub)
    got = list(b.list("bkt", "p/"))
    assert [o.url for o in got] == [f"s3://bkt/{k}" for k in first + second]
    assert [(o.size, o.etag) for o in got] == [(10, '"e0"'), (11, '"e1"'), (10, '"e0"')]
    assert got[0].last_modified == 1767323045.0
    assert len(stub.seen) == 2 and all(s.method == "GET" for s in stub.seen)
    assert all("range" not in s.headers and "x-amz-checksum-mode" not in s.headers for s in stub.seen)
    assert "Signature=" in stub.seen[0].headers["authorization"]
    assert b.metrics.snapshot().counts["list_requests"] == 2
    b.close()


def test_a_throttled_listing_is_retried_then_errors_are_typed(stub):
    stub.script = lambda n, seen: Reply(503, error_xml("SlowDown")) if n == 0 else Reply(200, page(["p/x"]))
    b = make(stub)
    assert [o.url for o in b.list("bkt", "p/")] == ["s3://bkt/p/x"]
    assert b.metrics.snapshot().counts["retries_throttle"] == 1
    stub.script = lambda n, seen: Reply(404, error_xml("NoSuchBucket", "The specified bucket does not exist"))
    with pytest.raises(NoSuchBucketError) as err:
        list(b.list("bkt", "p/"))
    assert err.value.url == "s3://bkt/p/"
    stub.script = lambda n, seen: Reply(200, b"<html>a proxy's page</html>")
    with pytest.raises(S3Error, match="s3://bkt/p/") as err:
        list(b.list("bkt", "p/"))
    assert err.value.code == "MalformedListing"
    b.close()


def test_a_native_job_needs_no_botocore(stub):
    """Listing used to go through botocore (~0.3 s of import and client at start-up). (A config
    without a region still asks botocore for the profile's.)"""
    stub.script = lambda n, seen: (Reply(200, page(["p/a.bin"])) if "list-type" in seen.path
                                   else Reply(200, b"abc", {"ETag": '"e"'}))
    code = textwrap.dedent(f"""
        import sys
        from awsio.config import S3Config
        from awsio.s3.client import S3Client
        c = S3Client(S3Config(endpoint_url={stub.endpoint!r}, backend="native", region="us-east-1",
                              static_credentials=("AKIDTEST", "secret", None)))
        assert [o.url for o in c.list("s3://bkt/p/")] == ["s3://bkt/p/a.bin"]
        assert c.get("s3://bkt/p/a.bin") == b"abc"
        print("botocore" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
