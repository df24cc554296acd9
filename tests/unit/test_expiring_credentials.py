"""Credentials that expire mid-read (role, container, SSO): both backends refresh them before
they expire, also between the requests of one long ``get_many`` and before a retry inside the
native engine, so no request is signed with a key past its expiry."""

from __future__ import annotations

import datetime
import itertools
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
    t0 = time.monotonic()
    got = [d for _, d in client.get_many(f"s3://bkt/o{i}" for i in range(30))]
    elapsed = time.monotonic() - t0
    assert got == [BODY] * 30
    assert elapsed > 2 * LIFETIME  # the read outlived several sets of keys
    assert len(set(used)) >= 3
