"""Tar-shard benchmark: samples streamed out of tar shards through a DataLoader.

    python -m awsio.bench.dataset [--shards 16 --shard-mib 64 --member-kib 100] [--workers 0,2]

16 x 64 MiB tar shards of 100 KiB members (one member per sample), read with DataLoader workers 0
and 2, in batches of 64 samples, by ``awsio`` (``S3IterableDataset(...).batched(64)``, batches made
in the pipeline as the README says to with workers), ``awsio-raw`` (whole shards from ``get_many``,
no tar parsing: the reader's ceiling on the same bytes, through the same DataLoader),
``s3torchconnector`` (+ stdlib tarfile), ``webdataset`` (through s3torchconnector, as its docs
show), ``boto3`` (+ tarfile), ``litdata`` (``optimize()``d chunks) and ``mosaic`` (MDS shards);
the peers' batches are lists of members made in the DataLoader workers (``batch_size=64,
collate_fn=list``). Conversions run once per data set and are reported apart; raw tar needs none.
Ratios and ranks compare MiB/s of the first pass. Measured by :mod:`awsio.bench.engine`;
``--help`` for options.
"""

from __future__ import annotations

import argparse
import sys

from awsio.bench.data import DataSet
from awsio.bench.engine import Case
from awsio.bench.run import Goal, Workload, add_options, measure, parse_loaders

LOADERS = ("awsio", "awsio-raw", "s3torchconnector", "webdataset", "boto3", "litdata", "mosaic")
MiB = 1 << 20


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m awsio.bench.dataset", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shards", type=int, default=16)
    p.add_argument("--shard-mib", type=int, default=64)
    p.add_argument("--member-kib", type=int, default=100)
    p.add_argument("--workers", default="0,2", help="DataLoader worker counts (default %(default)s)")
    add_options(p)
    args = p.parse_args(argv)
    loaders = parse_loaders(args, "tar", LOADERS)
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    cases = [Case(n, w) for w in workers for n in loaders]
    goals = [g for w in workers for g in (Goal(w, "s3torchconnector", 2.0), Goal(w, "awsio-raw", 0.95))]
    data = DataSet("tar", args.shards, args.shard_mib * MiB, member=args.member_kib * 1024)
    measure(args, [Workload("tar shards", data, cases, unit="MiB", goals=goals)], program="dataset")
    return 0


if __name__ == "__main__":
    sys.exit(main())
