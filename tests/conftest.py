"""Shared fixtures: a real S3 server (SeaweedFS) for integration tests, moto for fast ones.

* ``s3_server`` (session): SeaweedFS on 127.0.0.1, which checks SigV4 signatures. Set
  ``AWSIO_TEST_ENDPOINT`` (+ ``AWSIO_TEST_ACCESS_KEY``/``AWSIO_TEST_SECRET_KEY``) to run the
  integration suite against another server instead (MinIO in ``compose.yaml``).
* ``s3_bucket``: a fresh bucket per test; ``s3_config``: an S3Config for the server.
* ``moto_server``/``moto_bucket``/``moto_config``: moto's threaded server (no signature checks,
  slow ranges: never benchmark against it).
* ``backend``: parametrises a test over "python" and "native" (native skipped when not built, and
  a failure when it should have been: see :func:`native_expected`).
* ``stub``/``tls_stub``: a scriptable HTTP server playing S3 and its faults (``tests/http_stub.py``).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from http_stub import Stub

from awsio.config import S3Config
from awsio.testing.local_s3 import REGION, LocalS3, free_port


class ExternalS3:
    """An S3 server someone else runs (``AWSIO_TEST_ENDPOINT``), with LocalS3's test interface."""

    def __init__(self, endpoint: str, access_key: str, secret_key: str) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.access_key, self.secret_key = access_key, secret_key

    env = LocalS3.env
    config = LocalS3.config
    boto_client = LocalS3.boto_client
    create_bucket = LocalS3.create_bucket


def _new_bucket_name() -> str:
    return "t-" + uuid.uuid4().hex[:20]


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    endpoint = os.environ.get("AWSIO_TEST_ENDPOINT")
    if endpoint:
        yield ExternalS3(endpoint, os.environ.get("AWSIO_TEST_ACCESS_KEY", "awsio"),
                         os.environ.get("AWSIO_TEST_SECRET_KEY", "awsio-local-secret"))
        return
    server = LocalS3(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: Any) -> str:
    name = _new_bucket_name()
    s3_server.create_bucket(name)
    return name


@pytest.fixture
def s3_config(s3_server: Any) -> S3Config:
    return s3_server.config()  # type: ignore[no-any-return]


def native_expected() -> bool:
    """Whether ``awsio._native`` should have been built: libcurl's development headers are here
    (``AWSIO_REQUIRE_NATIVE=1``/``0`` says so explicitly). Then native tests fail, not skip."""
    explicit = os.environ.get("AWSIO_REQUIRE_NATIVE")
    if explicit is not None:
        return explicit.strip().lower() not in ("", "0", "false", "no")
    return any(os.path.exists(os.path.join(d, "curl", "curl.h"))
               for d in ("/usr/include", "/usr/local/include", "/opt/homebrew/include"))


def skip_or_fail_without_native() -> None:
    """Skip a native test when the reader could not be built; fail it when it should have been."""
    if native_expected():
        pytest.fail("awsio._native is not built although libcurl's headers are installed "
                    "(reinstall awsio; AWSIO_REQUIRE_NATIVE=0 skips the native tests)")
    pytest.skip("awsio._native is not built (no libcurl development headers)")


@pytest.fixture(params=["python", "native"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "native":
        from awsio.s3.native_backend import native_available

        if not native_available():
            skip_or_fail_without_native()
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def moto_config(moto_server: str) -> S3Config:
    return S3Config(endpoint_url=moto_server, region=REGION, path_style=True,
                    static_credentials=("testing", "testing", None), max_attempts=2)


@pytest.fixture
def moto_bucket(moto_server: str) -> str:
    import botocore.session
    from botocore.config import Config

    client = botocore.session.Session().create_client(
        "s3", endpoint_url=moto_server, region_name=REGION, aws_access_key_id="testing",
        aws_secret_access_key="testing", config=Config(s3={"addressing_style": "path"}))
    name = _new_bucket_name()
    client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def clean_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No AWS_* / S3_* / AWSIO_* variables and no shared config files: config tests start blank."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "S3_", "AWSIO_")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    return monkeypatch


@pytest.fixture
def stub() -> Iterator[Stub]:
    s = Stub()
    yield s
    s.close()


@pytest.fixture
def tls_stub(tmp_path: Path) -> Iterator[tuple[Stub, str]]:
    """A stub behind TLS with a fresh self-signed certificate for 127.0.0.1 (yields stub, cert path)."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not available")
    pem = tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(tmp_path / "key.pem"), "-out", str(pem)],
        check=True, capture_output=True,
    )
    both = tmp_path / "both.pem"
    both.write_bytes(pem.read_bytes() + (tmp_path / "key.pem").read_bytes())
    s = Stub(certfile=str(both))
    yield s, str(pem)
    s.close()
