"""Benchmark of listing economy: ``python -m awsio.bench.listing [--objects 100000 --ranks 4 --workers 2]``.

On a local SeaweedFS (started here unless ``AWS_ENDPOINT_URL`` names an endpoint), over
``--objects`` small objects under one prefix (written once, kept for the next run), in one run:

1. one process lists the prefix (``S3Client.list``): the LIST requests one listing takes;
2. a job of ``--ranks`` gloo ranks (spawned here, each with the torchrun environment), every rank
   building ``S3IterableDataset`` over the prefix after ``init_process_group`` and reading
   ``--batches`` batches through a DataLoader with ``--workers`` workers; its LIST requests are
   summed over ranks and workers (``dataset.metrics(ranks=True)``);
3. the same job with each rank building its dataset before ``init_process_group`` (so it lists on
   its own, as before awsio broadcast the listing).

Goal: the job of (2) makes one listing's worth of LIST requests (ratio 1.0), not one per rank.
Everything printed is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["main"]


def _write_objects(config: Any, prefix: str, n: int) -> float:
    """Write ``n`` 16-byte objects under ``prefix`` unless they are there; the seconds it took."""
    from awsio.s3.client import S3Client

    t0 = time.perf_counter()
    with S3Client(config) as client:
        have = sum(1 for _ in client.list(prefix))
        if have >= n:
            return 0.0
        with ThreadPoolExecutor(32) as pool:
            list(pool.map(lambda i: client.put(f"{prefix}o{i:07d}.bin", b"%016d" % i), range(n)))
    return time.perf_counter() - t0


def _rank(rank: int, world: int, init: str, endpoint: str, prefix: str, workers: int, batches: int,
          broadcast: bool, out: str) -> None:
    import torch.distributed as dist
    from torch.utils.data import DataLoader

    from awsio.config import S3Config
    from awsio.dataset import S3IterableDataset

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    config = S3Config(endpoint_url=endpoint)
    t0 = time.perf_counter()
    ds = None if broadcast else S3IterableDataset(prefix, config=config)  # lists on its own
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        if ds is None:
            ds = S3IterableDataset(prefix, config=config)
        made = time.perf_counter() - t0
        ds.set_epoch(0)
        loader = DataLoader(ds, batch_size=64, num_workers=workers, collate_fn=list)
        it = iter(loader)
        for _ in range(batches):
            next(it)
        del it  # the workers exit and publish their counters
        m = ds.metrics(ranks=True)
        if rank == 0:
            with open(out, "w") as f:
                json.dump({"list_requests": m["list_requests"], "get_requests": m["get_requests"],
                           "samples": m["samples"], "objects": len(ds.urls), "dataset_s": made}, f)
    finally:
        dist.destroy_process_group()


def _job(endpoint: str, prefix: str, ranks: int, workers: int, batches: int, broadcast: bool) -> dict[str, Any]:
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        mp.spawn(_rank, args=(ranks, f"file://{tmp}/rendezvous", endpoint, prefix, workers, batches,
                              broadcast, out), nprocs=ranks, join=True)
        with open(out) as f:
            return json.load(f)  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--objects", type=int, default=100_000)
    ap.add_argument("--ranks", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batches", type=int, default=4, help="batches each rank reads")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)

    from awsio.bench.endpoint import open_endpoint
    from awsio.config import S3Config
    from awsio.s3.client import S3Client

    with open_endpoint() as ep:
        os.environ.update(ep.env)  # the credentials of a local server, for every process made here
        config = S3Config(endpoint_url=ep.url, region=ep.region)
        bucket = "awsio-bench-listing"
        ep.ensure_bucket(bucket)
        prefix = f"s3://{bucket}/n{args.objects}/"
        wrote = _write_objects(config, prefix, args.objects)
        if wrote:
            print(f"wrote {args.objects:,} objects in {wrote:.0f} s", flush=True)
        with S3Client(config) as client:
            t0 = time.perf_counter()
            listed = sum(1 for _ in client.list(prefix))
            one = {"objects": listed, "list_requests": client.metrics()["list_requests"],
                   "seconds": time.perf_counter() - t0}
        print(f"one listing: {one['objects']:,} objects, {one['list_requests']} LIST requests, "
              f"{one['seconds']:.1f} s", flush=True)
        figures: dict[str, Any] = {"one_listing": one}
        for name, broadcast in (("job", True), ("job_each_rank_lists", False)):
            got = _job(ep.url or "", prefix, args.ranks, args.workers, args.batches, broadcast)
            got["x_one_listing"] = got["list_requests"] / max(1, one["list_requests"])
            figures[name] = got
            how = "rank 0 lists, broadcast" if broadcast else "every rank lists"
            print(f"{args.ranks} ranks x {args.workers} workers ({how}): {got['list_requests']} LIST requests "
                  f"= {got['x_one_listing']:.2f}x one listing; {got['objects']:,} objects, {got['samples']} "
                  f"samples read, dataset made in {got['dataset_s']:.1f} s (rank 0)", flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(figures, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
