"""Credentials that expire mid-read (role, container, SSO): both backends refresh them before
they expire, also between the requests of one long ``get_many`` and before a retry inside the
native engine, so no request is signed with a key past its expiry.

The read lasts about 6 s by default; ``AWSIO_CREDENTIALS_READ_S=180`` makes it a multi-minute read
(keys still expire every 2 s)."""

from __future__ import annotations

import datetime
import itertools
import os
import re
import threading
import time
from typing import Any

import botocore.credentials
import botocore.session
import pytest
from http_stub import Reply, Seen, error_xml, object_reply

from awsio import S3Client
from awsio.config import S3Config

LIFETIME = 2.0  # seconds each set of keys is valid
READ_S = float(os.environ.get("AWSIO_CREDENTIALS_READ_S", "6"))  # how long the read lasts, about
BODY = b"y" * 200_000
KEY = re.compile(r"Credential=(AKIDROT\d+)/")


class Rotating(botocore.credentials.RefreshableCredentials):
    """Keys that expire LIFETIME seconds after they are issued; refreshed 1 s before that."""

    _advisory_refresh_timeout = 1.0
    _mandatory_refresh_timeout = 0.5


class Issuer:
    def __init__(self) -> None:
        self.numbers = itertools.count()
        self.expiry: dict[str, float] = {}
        self.lock = threading.Lock()

    def refresh(self) -> dict[str, Any]:
        with self.lock:
            key = f"AKIDROT{next(self.numbers)}"
            self.expiry[key] = time.monotonic() + LIFETIME
        expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=LIFETIME)
        return {"access_key": key, "secret_key": "s" + key, "token": "t" + key, "expiry_time": expires.isoformat()}


@pytest.fixture
def issuer(monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                 "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    iss = Issuer()
    monkeypatch.setattr(botocore.session.Session, "get_credentials",
                        lambda self: Rotating.create_from_metadata(iss.refresh(), iss.refresh, "rotating"))
    return iss


def test_keys_are_refreshed_before_they_expire_during_a_long_read(stub, backend, issuer):
    used: list[str] = []

    def script(n: int, seen: Seen) -> Reply:
        m = KEY.search(seen.headers.get("authorization", ""))
        key = m.group(1) if m else "?"
        used.append(key)
        if key not in issuer.expiry or time.monotonic() > issuer.expiry[key]:
            return Reply(400, error_xml("ExpiredToken", "The provided token has expired."))
        if n % 7 == 3:  # some requests fail once: their retries must be signed with a live key
            return Reply(500, error_xml("InternalError"))
        return object_reply(BODY, seen, chunk_delay=0.1)  # ~0.4 s per object

    stub.script = script
    client = S3Client(S3Config(endpoint_url=stub.endpoint, backend=backend, max_connections=2))
    n = max(30, int(READ_S / 0.4 * 2 * 6 / 7))  # 2 connections, ~0.4 s an object, 1 in 7 retried
    t0 = time.monotonic()
    got = [d for _, d in client.get_many(f"s3://bkt/o{i}" for i in range(n))]
    elapsed = time.monotonic() - t0
    assert got == [BODY] * n
    assert elapsed > max(2 * LIFETIME, READ_S / 2)  # the read outlived many sets of keys
    assert len(set(used)) >= max(3, READ_S / LIFETIME / 2)
    print(f"{backend}: {n} objects in {elapsed:.1f} s, {len(used)} requests signed with {len(set(used))} "
          f"sets of keys, none expired")
