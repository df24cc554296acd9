"""The embedded SeaweedFS server itself: port clashes, the command line, stopping everything.

These start their own short-lived servers on purpose (they test starting and stopping); every
other test uses the session ``s3_server`` fixture.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from awsio import S3Client
from awsio.testing.local_s3 import LocalS3

pytestmark = pytest.mark.integration


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # Zombies (exited, not yet reaped by init) count as gone. Read from /proc: slim images have no `ps`.
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _ppid, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except OSError:
            continue  # exited meanwhile
        if int(pgrp) == pgid and state != "Z":
            return True
    return False


def _wait_gone(pgid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _group_alive(pgid):
            return True
        time.sleep(0.1)
    return False


def test_picked_port_taken_meanwhile_is_replaced(tmp_path: Path) -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)  # accepts connections, never answers: the worst kind of squatter
    server = LocalS3(tmp_path)
    server.s3_port = blocker.getsockname()[1]  # as if another process took our free port
    try:
        t0 = time.monotonic()
        server.start(timeout=60)
        assert time.monotonic() - t0 < 30
        assert server.s3_port != blocker.getsockname()[1]
        client = S3Client(server.config(backend="python"))
        server.create_bucket("clash-check")
        client.put("s3://clash-check/k", b"v")
        assert client.get("s3://clash-check/k") == b"v"
        pgid = server.pid
        assert pgid is not None
    finally:
        server.stop()
        blocker.close()
    assert _wait_gone(pgid)


def test_given_port_taken_fails_quickly(tmp_path: Path) -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    server = LocalS3(tmp_path, s3_port=blocker.getsockname()[1])
    try:
        t0 = time.monotonic()
        with pytest.raises(RuntimeError, match="SeaweedFS"):
            server.start(timeout=60)
        assert time.monotonic() - t0 < 30
    finally:
        server.stop()
        blocker.close()


def test_command_line_start_env_status_stop(tmp_path: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "awsio.testing.local_s3", *args, "--dir", str(tmp_path)],
                              capture_output=True, text=True, timeout=120)

    started = cli("start", "--bucket", "cli-bucket")
    assert started.returncode == 0, started.stderr
    try:
        state = LocalS3.from_state(tmp_path)
        assert state is not None and state.pid is not None
        pgid = state.pid
        env = cli("env")
        assert env.returncode == 0
        exports = dict(line[len("export "):].split("=", 1) for line in env.stdout.splitlines())
        assert exports["AWS_ENDPOINT_URL"] == state.endpoint
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"} <= set(exports)
        # The exported environment alone is enough to use the server, with signatures checked.
        probe = ("import os; from awsio import S3Client; c = S3Client(); "
                 "c.put('s3://cli-bucket/k', b'v'); assert c.get('s3://cli-bucket/k') == b'v'")
        child_env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
        child_env.update(exports, AWSIO_BACKEND="python")
        ran = subprocess.run([sys.executable, "-c", probe], env=child_env, capture_output=True, text=True,
                             timeout=60)
        assert ran.returncode == 0, ran.stderr
        again = cli("start")
        assert again.returncode == 0 and "already running" in again.stderr
        assert cli("status").returncode == 0
    finally:
        stopped = cli("stop")
    assert stopped.returncode == 0
    assert _wait_gone(pgid)
    assert cli("status").returncode == 1
