"""Training benchmark: samples/s and data-wait % of the torchrun x2 SmallCNN job over S3.

    python -m awsio.bench.train [--images 8000 --size 128x128 --image-size 32] [--nproc 2] [--epochs 3]
                                [--workers 1] [--device cpu|cuda]

Runs ``torchrun --standalone --nproc_per_node=2 -m awsio.cli.train`` (the project's default
SmallCNN config) over an images data set, ``--rounds`` times in fresh processes, and reports the
job's own figures: samples/s and the fraction of step time spent waiting for data, medians over the
epochs after the first, then over the rounds (with their range). ``--device cuda`` trains on the
GPU (nccl, AMP, pinned memory, non-blocking copies). Measured by :mod:`awsio.bench.engine`.
"""

from __future__ import annotations

import argparse
import sys

from awsio.bench.data import DataSet
from awsio.bench.engine import Case
from awsio.bench.run import Workload, add_options, measure


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m awsio.bench.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=8000)
    p.add_argument("--size", default="128x128", help="WIDTHxHEIGHT of the stored JPEGs")
    p.add_argument("--shards", type=int, default=8)
    p.add_argument("--image-size", type=int, default=32, help="the model's input side (data.image_size)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--workers", type=int, default=1, help="DataLoader workers per rank (data.num_workers)")
    p.add_argument("--device", default="cpu")
    add_options(p, min_mib=0)
    args = p.parse_args(argv)
    args.list = False
    width, _, height = args.size.partition("x")
    data = DataSet("images", args.images, width=int(width), height=int(height), shards=args.shards)
    job = {"batch_size": args.batch_size, "image_size": args.image_size, "device": args.device,
           "extra": {"nproc": args.nproc, "epochs": args.epochs}}
    workload = Workload("training", data, [Case("train", args.workers, f"torchrun x{args.nproc} w={args.workers}")],
                        job=job, kind="train")
    measure(args, [workload], program="train")
    return 0


if __name__ == "__main__":
    sys.exit(main())
