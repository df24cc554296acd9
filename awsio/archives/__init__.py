"""Archive expanders: members out of tar / tar.gz streams and out of zip files by ranged reads."""

from __future__ import annotations

from awsio.archives.tar import TarMember, iter_tar
from awsio.archives.zip import ZipEntry, iter_zip, read_zip_directory

__all__ = ["ARCHIVE_SUFFIXES", "TarMember", "ZipEntry", "archive_kind", "iter_tar", "iter_zip", "read_zip_directory"]

# lower-cased suffix -> kind
ARCHIVE_SUFFIXES: dict[str, str] = {".tar": "tar", ".tar.gz": "tgz", ".tgz": "tgz", ".zip": "zip"}


def archive_kind(url: str, suffixes: dict[str, str] | None = None) -> str | None:
    """``"tar"``, ``"tgz"``, ``"zip"`` or None (a plain object), from the URL's extension, ignoring case."""
    lowered = url.lower()
    table = ARCHIVE_SUFFIXES if suffixes is None else suffixes
    for suffix in sorted(table, key=len, reverse=True):
        if lowered.endswith(suffix.lower()):
            return table[suffix]
    return None
