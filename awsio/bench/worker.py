"""The subprocess side of the benchmark engine: ``python -m awsio.bench.worker JOB.json`` runs one
:class:`~awsio.bench.engine.Job` (one loader, one timed run) and prints its
:class:`~awsio.bench.engine.Run` as one JSON line.

Imports (the library under test, torch, PIL) happen before the clock starts; then the loader is
made and iterated ``job.passes`` times, counting samples and bytes (:func:`count`), with the client
CPU time of the process tree (rusage of the process and its reaped children: DataLoader workers,
curl) and its peak memory (:class:`_MemorySampler`) measured around it.
"""

from __future__ import annotations

import importlib
import json
import logging
import resource
import sys
import threading
import time
from dataclasses import asdict
from typing import Any, Iterable, Sequence

from awsio.bench import peers
from awsio.bench.engine import Counted, Job, Run

__all__ = ["count", "main", "work"]

MiB = 1 << 20
_BYTES = (bytes, bytearray, memoryview)


class _MemorySampler(threading.Thread):
    """Peak memory of this process and its children (DataLoader workers, curl): the sum of their
    PSS (proportional set size, so pages a forked worker shares with its parent count once),
    sampled every 100 ms."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        import psutil

        self.proc = psutil.Process()
        self.peak = 0
        self.cpu_s = 0.0
        self.stop = threading.Event()

    def _now(self) -> int:
        import psutil

        total = 0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                info = p.memory_full_info()
                total += getattr(info, "pss", info.rss)
            except psutil.Error:
                pass
        return total

    def run(self) -> None:
        t0 = time.thread_time()
        while not self.stop.is_set():
            self.peak = max(self.peak, self._now())
            self.cpu_s = time.thread_time() - t0  # its own cost, taken off the loader's CPU time
            self.stop.wait(0.1)

    def finish(self) -> float:
        self.stop.set()
        self.join()
        return max(self.peak, self._now()) / MiB


def _cpu_s() -> float:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def count(item: Any) -> tuple[int, int]:
    """(samples, payload bytes) in one item a loader yielded.

    A sample: its bytes, its size (int), a ``(name, bytes)`` pair, or a dict of fields. A batch:
    a list of objects' bytes, a list of samples (tuples), a dict of columns (lists), or an ``(images, labels)`` pair whose
    second element is a sequence (tensor or list); the images' bytes count when they are bytes.
    """
    if isinstance(item, Counted):
        return item.samples, item.nbytes
    if isinstance(item, int):
        return 1, item
    if isinstance(item, (bytes, bytearray, memoryview)):
        return 1, len(item)
    if isinstance(item, (list, tuple)) and item and all(isinstance(v, (bytes, bytearray, memoryview)) for v in item):
        return len(item), sum(len(v) for v in item)  # a batch of objects' bytes
    if isinstance(item, dict):
        cols = [v for k, v in item.items() if not str(k).startswith("__")]
        if cols and all(isinstance(v, (list, tuple)) for v in cols):
            return len(cols[0]), sum(count(v)[1] for v in cols if isinstance(v, list))
        return 1, sum(len(v) for v in cols if isinstance(v, (bytes, bytearray, memoryview)))
    if isinstance(item, list) and item and all(isinstance(v, tuple) for v in item):  # a list of samples
        return len(item), sum(count(v)[1] for v in item)
    if isinstance(item, (tuple, list)) and len(item) == 2:  # a DataLoader turns tuples into lists
        first, last = item
        if isinstance(last, (bytes, bytearray, memoryview)):
            return 1, len(last)
        if hasattr(last, "__len__") and not isinstance(last, str):
            raw = isinstance(first, list) or (isinstance(first, tuple) and all(isinstance(v, _BYTES) for v in first))
            return len(last), count(first)[1] if raw and first else 0  # a pipeline's bytes: a tuple
        return 1, 0
    raise TypeError(f"cannot count samples in a {type(item).__name__}")


def _to_device(item: Any, device: Any) -> None:
    import torch

    if isinstance(item, (tuple, list)):
        for v in item:
            if isinstance(v, torch.Tensor):
                v.to(device, non_blocking=True)


_IMPORTS = {"objects": ("botocore.session",), "tar": ("botocore.session", "torch.utils.data"),
            "images": ("botocore.session", "torch.utils.data", "numpy", "PIL.Image")}


def work(job: Job) -> Run:
    """One timed run of ``job`` in this process (the subprocess side of :meth:`Engine._spawn`).

    Raises RuntimeError when a pass yields another number of samples than the data set holds, or
    (a loader that yields bytes) other than ``job.payload`` bytes.
    """
    peer = peers.get(job.peer)
    mod = peer.load()
    job.options = {**peer.options, **job.options}
    # Imports are not the loader's throughput: everything the run needs is imported untimed.
    for name in _IMPORTS.get(job.kind, _IMPORTS["tar"]) + getattr(mod, "IMPORTS", ()):
        importlib.import_module(name)
    if hasattr(mod, "setup"):
        job.state = mod.setup(job)
    device = None
    if job.device != "cpu":
        import torch

        device = torch.device(job.device)
    expected = mod.expected(job) if hasattr(mod, "expected") else job.items
    payload = job.payload if job.payload is not None or job.kind != "objects" else job.nbytes  # objects: whole
    sampler = _MemorySampler()
    sampler.start()
    cpu0 = _cpu_s()
    t0 = time.perf_counter()
    loader: Iterable[Any] = mod.make(job)
    pass_s, items, nbytes, first = [], [], [], None
    for p in range(job.passes):
        tp = t0 if p == 0 else time.perf_counter()
        n = b = 0
        for item in loader:
            if first is None:
                first = time.perf_counter() - t0
            k, nb = count(item)
            n += k
            b += nb
            if device is not None:
                _to_device(item, device)
        if device is not None and device.type == "cuda":
            import torch

            torch.cuda.synchronize(device)
        pass_s.append(time.perf_counter() - tp)
        if expected is not None and n != expected:
            raise RuntimeError(f"{job.peer} yielded {n} samples in pass {p + 1}, the data set holds {expected}")
        if payload is not None and b and n == job.items and b != payload:
            raise RuntimeError(f"{job.peer} yielded {b} bytes in pass {p + 1}, a pass holds {payload}")
        items.append(n)
        nbytes.append(b)
    cpu = _cpu_s() - cpu0
    rss = sampler.finish()
    cpu -= sampler.cpu_s
    extras = loader.extras() if hasattr(loader, "extras") else {}
    return Run(pass_s=pass_s, items=items, nbytes=nbytes, first_s=first, cpu_s=cpu, rss_peak_mib=rss, extras=extras)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m awsio.bench.worker JOB.json (run by the benchmark engine)", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING)
    with open(args[0]) as f:
        job = Job(**json.load(f))
    run = work(job)
    sys.stdout.flush()
    print(json.dumps(asdict(run)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
