"""Uploads against SeaweedFS: an empty object must not stall the uploads after it."""

from __future__ import annotations

import io
import os
import time
from typing import Any

import pytest

from awsio import S3Client

pytestmark = pytest.mark.integration


def test_empty_put_does_not_stall_next_request(s3_server: Any, s3_bucket: str, backend: str) -> None:
    # A short read timeout turns a stalled keep-alive connection into a visible delay.
    c = S3Client(s3_server.config(backend=backend, read_timeout=4))
    bodies = {"a": b"abc", "empty": b"", "b": os.urandom(170_000), "empty2": b"", "c": b"x" * 10}
    t0 = time.monotonic()
    for key, body in bodies.items():
        c.put(f"s3://{s3_bucket}/{key}", body)
    c.put(f"s3://{s3_bucket}/stream", io.BytesIO(b""))
    assert time.monotonic() - t0 < 3.0
    for key, body in bodies.items():
        assert c.head(f"s3://{s3_bucket}/{key}").size == len(body)
        assert c.get(f"s3://{s3_bucket}/{key}") == body
    assert c.get(f"s3://{s3_bucket}/stream") == b""


def test_test_setup_client_survives_empty_put(s3_server: Any, s3_bucket: str) -> None:
    boto = s3_server.boto_client()
    t0 = time.monotonic()
    boto.put_object(Bucket=s3_bucket, Key="x", Body=b"abc")
    boto.put_object(Bucket=s3_bucket, Key="empty", Body=b"")
    boto.put_object(Bucket=s3_bucket, Key="y", Body=os.urandom(50_000))
    assert time.monotonic() - t0 < 5.0  # botocore's read timeout is 60 s
    assert boto.head_object(Bucket=s3_bucket, Key="empty")["ContentLength"] == 0
