"""Pipeline batches from DataLoader workers to the training process through reused shared memory.

A DataLoader worker hands each batch to the training process through a pipe: tensors travel in
shared memory, but ``bytes`` (raw samples, JPEGs to decode on the GPU, tar members) are pickled,
written into the pipe, read out and unpickled: four copies and a stream of small writes and
reads, about 2.3 CPU s/GiB on this project's 2-core VM, 1.8 of them in the training process.

:func:`use_shared_memory` (called by the pipeline in each DataLoader worker) teaches
multiprocessing's pickler to send a pipeline batch's lists of ``bytes`` through a block of shared
memory instead: the worker copies the values into a block, the training process copies them out
into new ``bytes`` objects as it unpickles the batch, and marks the block free; the worker then
reuses it for a later batch (a fresh block costs a page fault and zeroing per 4 KiB page, more than
the copies). Everything else in the batch (tensors, keys, numbers) is pickled as before, and what
arrives is what was sent: the same types and the same bytes. Measured there with batches of 64
values of 100 KiB: 0.7 CPU s/GiB in all (0.36 in the training process), 3x the pipe's throughput.

A block is reused only after the training process has marked it read, and every batch carries
the sequence number written into its block's header: the training process checks it before and
after copying, so a block overwritten early is an :class:`~awsio.errors.AwsioError`, never a
silently different sample. Memory: at most :data:`POOL_BLOCKS` blocks per worker are kept, each
about the size of the largest batch sent; when every kept block is still unread, a one-off block
is used; when /dev/shm has less than twice a new block's size free (a container's default is
64 MiB) or a block cannot be made, the batch goes through the pipe. A forked child starts with
an empty pool and its own sequence numbers. ``AWSIO_SHARED_MEMORY_BATCHES=0`` turns it off.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from awsio.batching import Batch, BatchDict
from awsio.errors import AwsioError

__all__ = ["MIN_BYTES", "POOL_BLOCKS", "received", "use_shared_memory"]

MIN_BYTES = 64 << 10   # a batch with fewer bytes values than this is pickled as before
POOL_BLOCKS = 4        # blocks a worker keeps for reuse (DataLoader's prefetch_factor is 2 by default)
_HEADER = 64           # the block's header: its sequence number (int64), 0 once read
_FREE, _WRITING = 0, -1

_lock = threading.Lock()
_pool: list[Any] = []  # this process's blocks (uint8 tensors in shared memory), for reuse
_seq = [0]
_registered = [False]
received = [0]  # batches this process has rebuilt from shared memory (tests, diagnostics)


def _after_fork_in_child() -> None:
    """A forked child must not reuse its parent's blocks (both would write them) nor its
    sequence numbers, nor a lock held by another thread at the fork."""
    global _lock
    _lock = threading.Lock()
    _pool.clear()
    _seq[0] = int.from_bytes(os.urandom(4), "little") << 24  # its own range (within int64)


os.register_at_fork(after_in_child=_after_fork_in_child)


def use_shared_memory() -> bool:
    """Send pipeline batches from this process through shared memory (idempotent); False when
    :func:`_enabled` is."""
    if not _enabled():
        return False
    if not _registered[0]:
        from multiprocessing.reduction import ForkingPickler
        from multiprocessing.util import Finalize

        ForkingPickler.register(Batch, _reduce_batch)
        ForkingPickler.register(BatchDict, _reduce_batch)
        # forked workers leave through os._exit: drop the kept blocks first (torch's file_system
        # sharing strategy would otherwise leave them in /dev/shm until the training process ends)
        Finalize(None, _pool.clear, exitpriority=0)
        _registered[0] = True
    return True


def _enabled() -> bool:
    """False when ``AWSIO_SHARED_MEMORY_BATCHES=0``, and under torch's ``file_system`` sharing
    strategy (there the blocks of batches still in flight when a DataLoader iterator is dropped
    stay in /dev/shm until the training process ends: 83 MB after 10 dropped iterators in a test).
    Asked again for each batch: the reducer, once registered, stays registered in forked workers."""
    if os.environ.get("AWSIO_SHARED_MEMORY_BATCHES", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    import torch.multiprocessing

    return torch.multiprocessing.get_sharing_strategy() != "file_system"


def _bytes_list(value: Any) -> bool:
    return type(value) is list and bool(value) and all(type(v) is bytes for v in value)


def _reduce_batch(batch: Any) -> Any:
    """A pipeline batch whose lists of bytes go into one block (reduced as itself otherwise)."""
    if not _enabled():
        return _plain(batch)
    items = list(batch.items()) if isinstance(batch, BatchDict) else list(enumerate(batch))
    packed = {k: v for k, v in items if _bytes_list(v)}
    values = [b for v in packed.values() for b in v]
    if sum(map(len, values)) < MIN_BYTES:
        return _plain(batch)
    filled = _fill(values)
    if filled is None:
        return _plain(batch)
    block, seq = filled
    sizes = {k: [len(b) for b in v] for k, v in packed.items()}
    rest = [(k, v) for k, v in items if k not in packed]
    return _rebuild_batch, (type(batch) is BatchDict, [k for k, _ in items], rest, sizes, block, seq)


def _plain(batch: Any) -> Any:
    """The batch reduced as itself (pickled through the pipe)."""
    return (BatchDict, (dict(batch),)) if isinstance(batch, BatchDict) else (Batch, (tuple(batch),))


def _fill(values: list[bytes]) -> tuple[Any, int] | None:
    """Copy ``values`` one after the other into a free block; its header gets a new sequence
    number. None when no block can be had."""
    need = _HEADER + sum(len(v) for v in values)
    with _lock:
        try:
            block = _take(need)
        except Exception:  # noqa: BLE001 - e.g. /dev/shm filled since it was checked: a failure
            return None    # here would make multiprocessing drop the batch silently; use the pipe
        if block is None:
            return None
        view = memoryview(block.numpy())
        head = view[:8].cast("q")
        head[0] = _WRITING
        at = _HEADER
        for v in values:
            view[at:at + len(v)] = v
            at += len(v)
        _seq[0] += 1
        head[0] = _seq[0]
        return block, _seq[0]


def _shm_free() -> int:
    """Bytes free in /dev/shm, where torch makes its shared memory."""
    try:
        st = os.statvfs("/dev/shm")
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize


def _take(need: int) -> Any:
    """A kept block that has been read and is large enough, else a new one (kept if there is room);
    None when /dev/shm has too little room left (a container's default is 64 MiB)."""
    import torch

    for i, block in enumerate(_pool):
        if memoryview(block.numpy())[:8].cast("q")[0] == _FREE:
            if block.numel() >= need:
                return block
            del _pool[i]  # read, but too small for this batch: make room for a larger one
            break
    size = max(need + need // 4, 1 << 20)  # room for batches a little larger than this one
    if _shm_free() < 2 * size:  # leave /dev/shm to torch's own tensors when it runs low
        return None
    block = torch.empty(0, dtype=torch.uint8).set_(torch.UntypedStorage._new_shared(size))
    if len(_pool) < POOL_BLOCKS:
        _pool.append(block)
    return block


def _rebuild_batch(is_dict: bool, keys: list[Any], rest: list[tuple[Any, Any]], sizes: dict[Any, list[int]],
                   block: Any, seq: int) -> Any:
    """The batch again, its bytes copied out of ``block``; the block is then marked free."""
    view = memoryview(block.numpy())
    head = view[:8].cast("q")
    if head[0] != seq:
        raise AwsioError(f"a batch's shared-memory block holds batch {head[0]}, not {seq} (reused before "
                         "it was read)")
    fields = dict(rest)
    at = _HEADER
    for k, lengths in sizes.items():
        out = []
        for n in lengths:
            out.append(bytes(view[at:at + n]))
            at += n
        fields[k] = out
    if head[0] != seq:  # the worker started to overwrite it while it was copied
        raise AwsioError(f"a batch's shared-memory block was overwritten while it was read (batch {seq})")
    head[0] = _FREE
    received[0] += 1
    if is_dict:
        return BatchDict((k, fields[k]) for k in keys)
    return Batch(fields[k] for k in keys)
