"""Failures come back fast and retries are bounded by ``max_attempts`` (no S3 server needed)."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest

from awsio import S3Client
from awsio.config import S3Config
from awsio.errors import EndpointConnectionError, ServerError
from awsio.testing.local_s3 import free_port

CREDS = ("awsio", "secret", None)


def _refused_endpoint() -> str:
    return f"http://127.0.0.1:{free_port()}"  # nothing listens there: connections are refused


@pytest.mark.parametrize("op", ["get", "head", "list"])
def test_unreachable_endpoint_default_attempts_fails_in_seconds(backend: str, op: str) -> None:
    # Default max_attempts (5): botocore's own backoff would take ~15 s here.
    client = S3Client(S3Config(endpoint_url=_refused_endpoint(), backend=backend, static_credentials=CREDS))
    t0 = time.monotonic()
    with pytest.raises(EndpointConnectionError) as info:
        if op == "list":
            list(client.list("s3://bucket/prefix/"))
        else:
            getattr(client, op)("s3://bucket/key")
    assert time.monotonic() - t0 < 5.0
    assert isinstance(info.value, ConnectionError)
    assert info.value.endpoint == client.config.endpoint


class _Always500(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    count = 0

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        type(self).count += 1
        body = b"<Error><Code>InternalError</Code><Message>boom</Message><RequestId>R1</RequestId></Error>"
        self.send_response(500)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def always_500() -> Iterator[type[_Always500]]:
    handler = type("Handler", (_Always500,), {"count": 0})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    handler.endpoint = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    yield handler
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("attempts", [1, 2])
def test_python_backend_server_errors_retry_exactly_max_attempts(always_500: type[_Always500],
                                                                 attempts: int) -> None:
    client = S3Client(S3Config(endpoint_url=always_500.endpoint,  # type: ignore[attr-defined]
                               backend="python", static_credentials=CREDS, max_attempts=attempts))
    with pytest.raises(ServerError) as info:
        client.get("s3://bucket/key")
    assert always_500.count == attempts  # max_attempts counts the first try, as in the native reader
    assert info.value.code == "InternalError" and info.value.status == 500
    assert info.value.url == "s3://bucket/key"
