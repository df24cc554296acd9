"""The training job as a workload: ``torchrun --standalone --nproc_per_node=<nproc> -m
awsio.cli.train`` (SmallCNN, the project's default config) over the images data set, one pass =
one training run of ``epochs`` epochs. The job itself measures samples/s and the fraction of step
time spent waiting for data, per epoch (``metrics.jsonl``); the figures are their medians over the
epochs after the first (the first pays for worker and process-group start-up). ``OMP_NUM_THREADS=1``
per rank, as the demo runs it; on a GPU ``trainer.device=cuda`` brings nccl, AMP, pinned memory
and non-blocking copies (see ``awsio.cli.train``).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from awsio.bench.engine import Counted

if TYPE_CHECKING:
    from awsio.bench.engine import Job


def expected(job: Job) -> None:
    return None  # the job counts its own samples (equal-work mode may drop a few per rank)


def brace_pattern(urls: list[str]) -> str:
    """``[.../shard-000000.tar, .../shard-000001.tar]`` -> ``.../shard-{000000..000001}.tar``
    (the shard maker's numbering); the single URL when there is one. ValueError otherwise."""
    if len(urls) == 1:
        return urls[0]
    head, _, tail = urls[0].rpartition("-")
    number, dot, ext = tail.partition(".")
    want = [f"{head}-{i:0{len(number)}d}{dot}{ext}" for i in range(int(number), int(number) + len(urls))]
    if urls != want:
        raise ValueError("the training workload needs consecutively numbered shards")
    return f"{head}-{{{number}..{int(number) + len(urls) - 1:0{len(number)}d}}}{dot}{ext}"


class _Train:
    def __init__(self, job: Job) -> None:
        self.job = job
        self.epochs: list[dict[str, Any]] = []

    def __iter__(self) -> Iterator[Counted]:
        job = self.job
        run_dir = os.path.join(job.cache_dir, f"run{len(self.epochs)}")
        nproc = int(job.extra.get("nproc", 2))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "awsio.cli.train", f'data.urls="{brace_pattern(job.urls)}"',
               f"trainer.epochs={int(job.extra.get('epochs', 3))}", f"trainer.run_dir={run_dir}",
               f"trainer.checkpoint={run_dir}/checkpoint.pt", "trainer.progress=false",
               f"trainer.device={job.device}", f"data.num_workers={job.workers}",
               f"data.batch_size={job.batch_size}", f"data.image_size={job.image_size}",
               f"data.num_classes={int(job.extra.get('classes', 10))}"]
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        if job.endpoint:
            env["AWS_ENDPOINT_URL"] = job.endpoint
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if proc.returncode != 0:
            lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
            raise RuntimeError(f"training failed ({proc.returncode}): {lines[-1] if lines else ''}")
        with open(os.path.join(run_dir, "metrics.jsonl")) as f:
            epochs = [json.loads(line) for line in f if line.strip()]
        self.epochs.extend(epochs)
        for m in epochs:
            yield Counted(int(m["samples"]))

    def extras(self) -> dict[str, Any]:
        warm = self.epochs[1:] or self.epochs
        return {"samples_per_s": statistics.median(m["samples_per_s"] for m in warm),
                "data_wait": statistics.median(m["data_wait_fraction"] for m in warm),
                "epochs": len(self.epochs)}


def make(job: Job) -> Iterable[Counted]:
    return _Train(job)
