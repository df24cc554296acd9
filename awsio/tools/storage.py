"""Write and read whole files at a local path or an ``s3://`` URL (shards, indexes, checkpoints).

The S3 side goes through :class:`awsio.s3.client.S3Client` (``put`` streams large bodies as a
multipart upload); the client is made on first use and again after a fork.
"""

from __future__ import annotations

import logging
import contextlib
import os
from typing import IO, Any

from awsio.config import S3Config

__all__ = ["Storage", "is_s3", "join"]

log = logging.getLogger(__name__)


def is_s3(location: str) -> bool:
    """True for ``s3://`` URLs, False for local paths."""
    return str(location).startswith("s3://")


def join(base: str, name: str) -> str:
    """``base/name`` for both local folders and S3 prefixes."""
    if is_s3(base):
        return base.rstrip("/") + "/" + name
    return os.path.join(base, name)


class Storage:
    """Tiny put/get/exists over local paths and S3 URLs. Picklable (holds the config only)."""

    def __init__(self, config: S3Config | None = None) -> None:
        self.config = config
        self._client: Any = None
        self._pid = -1

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["config"])  # type: ignore[misc]

    def _s3(self) -> Any:
        if self._client is None or self._pid != os.getpid():
            from awsio.s3.client import S3Client

            self._client = S3Client(self.config if self.config is not None else S3Config())
            self._pid = os.getpid()
        return self._client

    def put(self, location: str, data: bytes | IO[bytes]) -> None:
        """Write ``data`` (bytes or a readable binary file) to ``location``; creates local folders."""
        if is_s3(location):
            self._s3().put(location, data)
            return
        parent = os.path.dirname(os.path.abspath(location))
        os.makedirs(parent, exist_ok=True)
        # a name of its own (writers on one shared volume may share a pid: containers' pid 1)
        tmp = f"{location}.tmp{os.getpid()}.{os.urandom(6).hex()}"
        try:
            with open(tmp, "wb") as out:
                if isinstance(data, (bytes, bytearray, memoryview)):
                    out.write(data)
                else:
                    while True:
                        chunk = data.read(8 << 20)
                        if not chunk:
                            break
                        out.write(chunk)
                out.flush()
                os.fsync(out.fileno())  # on disk before it takes the name: a power loss leaves the old file
            os.replace(tmp, location)  # readers never see a half-written checkpoint or shard
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(tmp)  # nor a partial one left beside it
            raise

    def get(self, location: str) -> bytes:
        """The whole file. Raises FileNotFoundError (an awsio NoSuchKeyError for S3) if absent."""
        if is_s3(location):
            return bytes(self._s3().get(location))
        with open(location, "rb") as f:
            return f.read()

    def size(self, location: str) -> int:
        """Size in bytes. Raises FileNotFoundError (an awsio NoSuchKeyError for S3) if absent."""
        if is_s3(location):
            return int(self._s3().head(location).size)
        return os.path.getsize(location)

    def exists(self, location: str) -> bool:
        if is_s3(location):
            return bool(self._s3().exists(location))
        return os.path.exists(location)

    def delete(self, location: str) -> None:
        """Remove a file or object; nothing to do if it is not there."""
        if is_s3(location):
            self._s3().delete(location)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(location)

    def close(self) -> None:
        if self._client is not None and self._pid == os.getpid():
            self._client.close()
        self._client = None
