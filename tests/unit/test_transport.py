"""Pipeline batches from DataLoader workers through reused shared memory (awsio.transport): the
bytes that arrive are the bytes sent, blocks are reused only once read, a block overwritten early
is an error, and the pipe is used when the feature is off or the batch is small."""

from __future__ import annotations

import os
from multiprocessing.reduction import ForkingPickler

import pytest
import torch
from torch.utils.data import DataLoader

from awsio import transport
from awsio.batching import Batch, BatchDict
from awsio.errors import AwsioError
from awsio.grouping import Record
from awsio.pipeline import MemorySource, Pipeline


def records(n: int = 40, size: int = 20_000) -> list[Record]:
    out = []
    for i in range(n):
        key = f"d/s{i:04d}"
        out.append(Record("s3://b/t-0.tar", f"{key}.cls", str(i).encode()))
        out.append(Record("s3://b/t-0.tar", f"{key}.bin", os.urandom(size + i)))  # sizes differ
    return out


def delivered(loader: DataLoader) -> dict[str, bytes]:
    got: dict[str, bytes] = {}
    for batch in loader:
        assert isinstance(batch, BatchDict)
        assert all(type(v) is bytes for v in batch["bin"])
        for key, cls, data in zip(batch["__key__"], batch["cls"], batch["bin"]):
            assert key not in got
            assert cls == str(int(key[-4:])).encode()
            got[key] = data
    return got


@pytest.mark.parametrize("enabled", ["1", "0"])
def test_worker_batches_arrive_with_exactly_their_bytes(monkeypatch: pytest.MonkeyPatch, enabled: str) -> None:
    monkeypatch.setenv("AWSIO_SHARED_MEMORY_BATCHES", enabled)
    recs = records()
    want = {r.name.rsplit(".", 1)[0]: r.data for r in recs if r.name.endswith(".bin")}
    before = transport.received[0]
    loader = DataLoader(Pipeline(MemorySource(recs)).batched(8), batch_size=None, num_workers=2)
    for _ in range(2):  # two epochs: fresh workers, fresh blocks
        assert delivered(loader) == want
    # 5 batches of 8 samples per epoch, each about 160 KB of bytes: over MIN_BYTES
    assert transport.received[0] - before == (10 if enabled == "1" else 0)


def test_persistent_workers_reuse_their_blocks() -> None:
    recs = records(64)
    want = {r.name.rsplit(".", 1)[0]: r.data for r in recs if r.name.endswith(".bin")}
    before = transport.received[0]
    loader = DataLoader(Pipeline(MemorySource(recs)).batched(4), batch_size=None, num_workers=1,
                        persistent_workers=True)
    for _ in range(3):
        assert delivered(loader) == want
    assert transport.received[0] - before == 48


def _fresh_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transport, "_pool", [])
    transport.use_shared_memory()


def test_a_block_is_reused_once_read_and_the_pool_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    _fresh_pool(monkeypatch)
    batch = BatchDict(__key__=["a", "b"], bin=[os.urandom(100_000), os.urandom(50_000)], n=torch.arange(2))
    for _ in range(3):
        back = ForkingPickler.loads(ForkingPickler.dumps(batch))
        assert type(back) is BatchDict and list(back) == list(batch)
        assert back["bin"] == batch["bin"] and back["__key__"] == ["a", "b"]
        assert torch.equal(back["n"], batch["n"])
    assert len(transport._pool) == 1  # read each time, so the same block served every batch
    unread = [ForkingPickler.dumps(batch) for _ in range(transport.POOL_BLOCKS + 3)]
    assert len(transport._pool) == transport.POOL_BLOCKS  # one-off blocks beyond the pool
    for data in unread:
        assert ForkingPickler.loads(data)["bin"] == batch["bin"]


def test_tuple_batches_keep_their_fields_and_types(monkeypatch: pytest.MonkeyPatch) -> None:
    _fresh_pool(monkeypatch)
    batch = Batch(([os.urandom(70_000), b""], torch.ones(2, 3), ["x", "y"], [b"small"]))
    back = ForkingPickler.loads(ForkingPickler.dumps(batch))
    assert type(back) is Batch and len(back) == 4
    assert back[0] == batch[0] and back[2] == ["x", "y"] and back[3] == [b"small"]
    assert torch.equal(back[1], batch[1])


def test_a_small_batch_is_pickled_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    _fresh_pool(monkeypatch)
    before = transport.received[0]
    batch = BatchDict(bin=[b"x" * 1000] * 3)
    assert ForkingPickler.loads(ForkingPickler.dumps(batch)) == batch
    assert transport.received[0] == before and transport._pool == []


def test_a_block_overwritten_before_it_is_read_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _fresh_pool(monkeypatch)
    data = ForkingPickler.dumps(BatchDict(bin=[os.urandom(100_000)]))
    block = transport._pool[0]
    memoryview(block.numpy())[:8].cast("q")[0] = -1  # the worker has started to write another batch
    with pytest.raises(AwsioError, match="not 1|reused before"):
        ForkingPickler.loads(data)


def test_a_full_dev_shm_sends_batches_through_the_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    _fresh_pool(monkeypatch)
    monkeypatch.setattr(transport, "_shm_free", lambda: 3 << 20)  # less than twice a 2 MiB block
    before = transport.received[0]
    batch = BatchDict(bin=[os.urandom(1 << 20), os.urandom(1 << 20)])
    assert ForkingPickler.loads(ForkingPickler.dumps(batch)) == batch
    assert transport.received[0] == before and transport._pool == []


@pytest.mark.parametrize("persistent", [False, True])
def test_an_epoch_left_early_leaves_no_wrong_bytes_behind(persistent: bool) -> None:
    recs = records(100)
    want = {r.name.rsplit(".", 1)[0]: r.data for r in recs if r.name.endswith(".bin")}
    loader = DataLoader(Pipeline(MemorySource(recs)).batched(5), batch_size=None, num_workers=2,
                        persistent_workers=persistent, prefetch_factor=4)  # more in flight than the pool
    for _ in range(2):
        for i, batch in enumerate(loader):
            assert all(want[k] == v for k, v in zip(batch["__key__"], batch["bin"]))
            if i == 3:
                break  # batches are left in flight, some of them in blocks never read
    assert delivered(loader) == want


def test_a_block_that_cannot_be_made_sends_the_batch_through_the_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    # torch raises when /dev/shm fills between the check and the allocation; raised in the queue's
    # feeder thread, that would drop the batch silently
    _fresh_pool(monkeypatch)

    def full(size: int) -> None:
        raise RuntimeError("unable to allocate shared memory: No space left on device (28)")

    monkeypatch.setattr(torch.UntypedStorage, "_new_shared", staticmethod(full))
    before = transport.received[0]
    batch = BatchDict(bin=[os.urandom(1 << 20)])
    assert ForkingPickler.loads(ForkingPickler.dumps(batch)) == batch
    assert transport.received[0] == before


def test_a_forked_child_does_not_reuse_its_parents_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    _fresh_pool(monkeypatch)
    ForkingPickler.loads(ForkingPickler.dumps(BatchDict(bin=[os.urandom(100_000)])))  # a free block kept
    seq = transport._seq[0]
    pid = os.fork()
    if pid == 0:  # the child: an empty pool and other sequence numbers, or exit code 1
        os._exit(0 if transport._pool == [] and transport._seq[0] != seq else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(transport._pool) == 1
