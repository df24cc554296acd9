"""Keep freed memory in the process (glibc), so that reading samples does not fault in fresh pages.

Every sample's bytes are a new ``bytes`` object (a tar member cut out of a ranged read, an object's
body), and a batch of them is dropped at once. With glibc's default thresholds, memory freed at the
top of the heap beyond 128 KiB goes straight back to the kernel, and blocks of 128 KiB or more are
mapped and unmapped one by one, so the next batch is written into fresh pages: a page fault and
the kernel zeroing each 4 KiB page (about 1 s per GiB on this project's VMs, more than cutting
the bytes costs). glibc raises those thresholds itself, up to 32 MiB and 64 MiB, but only after a
large mapped block has been freed, which a stream of small samples never does.

:func:`keep_freed_memory` sets them to those ceilings from the start (``mallopt``): blocks under
32 MiB come from the heap, and up to 64 MiB of free memory at its top stays in the process for the
next batch. The process gives that back to the kernel later than it would have, and no more than
that. It is called when an :class:`~awsio.s3.client.S3Client` makes its backend (so in each
DataLoader worker too); ``S3Config(keep_freed_memory=False)`` / ``AWSIO_KEEP_FREED_MEMORY=0``
leaves glibc's defaults. Elsewhere (musl, macOS) nothing changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["keep_freed_memory"]

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc's own ceilings for its adaptive thresholds on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX, and
# twice that for trimming)
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 64 << 20

_done = False


def keep_freed_memory() -> bool:
    """Set glibc's thresholds (once per process; a forked child inherits them). True when they
    are set, False where there is no glibc."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # glibc only: musl's mallopt does nothing
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _done
