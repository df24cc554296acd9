"""The original S3 plugin module, kept so old code runs unchanged.

``from awsio.python.lib.io.s3.s3dataset import S3IterableDataset`` gives the same class as
``from awsio import S3IterableDataset``; ``tardata``/``zipdata`` expand an archive already open
(or in memory) into ``(name, bytes)`` pairs.
"""

from __future__ import annotations

import io
import zipfile
from typing import BinaryIO, Iterator

from awsio.archives.tar import iter_tar
from awsio.dataset import S3Dataset, S3IterableDataset, ShuffleDataset
from awsio.grouping import is_metadata
from awsio.s3.client import file_exists, get_file_size, list_files

__all__ = ["S3Dataset", "S3IterableDataset", "ShuffleDataset", "file_exists", "get_file_size",
           "list_files", "tardata", "zipdata"]


def tardata(fileobj: BinaryIO | bytes, *, gzip: bool | None = None) -> Iterator[tuple[str, bytes]]:
    """``(name, bytes)`` of each regular member of a tar (or tar.gz) stream or bytes, streamed.

    ``gzip=None`` detects gzip from the magic bytes. Raises :class:`awsio.errors.ArchiveError`.
    """
    if isinstance(fileobj, (bytes, bytearray, memoryview)):
        fileobj = io.BytesIO(bytes(fileobj))
    stream: BinaryIO = fileobj if hasattr(fileobj, "peek") else io.BufferedReader(fileobj)  # type: ignore[arg-type,type-var]
    if gzip is None:
        gzip = stream.peek(2)[:2] == b"\x1f\x8b"  # type: ignore[attr-defined]
    for member in iter_tar(stream, gzip=gzip):
        yield member.name, member.data


def zipdata(fileobj: BinaryIO | bytes) -> Iterator[tuple[str, bytes]]:
    """``(name, bytes)`` of each regular member of a zip held locally (seekable file or bytes).

    For zips on S3, :class:`S3IterableDataset` reads members with ranged GETs instead.
    """
    if isinstance(fileobj, (bytes, bytearray, memoryview)):
        fileobj = io.BytesIO(bytes(fileobj))
    with zipfile.ZipFile(fileobj) as zf:
        for info in zf.infolist():
            if not info.is_dir() and not is_metadata(info.filename):
                yield info.filename, zf.read(info)
