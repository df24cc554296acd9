"""Image-pipeline benchmark: decode, resize, to tensor, batches, through a DataLoader.

    python -m awsio.bench.pipeline [--images 8000 --size 128x128 --resize 96 --batch-size 64]
                                   [--profile imagenet] [--workers 0,2] [--device cuda]

JPEGs in tar shards (``.jpg`` + ``.cls``), the same decode and transform in every loader (PIL; see
:class:`awsio.bench.peers.common.ImageTransform`), batches of 64, DataLoader workers 0 and 2:
``memory`` (the same stages over the records already in RAM: the ceiling), ``awsio``, ``litdata``,
``mosaic``, ``webdataset``, ``s3torchconnector`` and ``boto3``. ``--profile imagenet``: ~400x350
JPEGs, RandomResizedCrop to 224, flip, normalise. Each run makes two passes: the first (a fresh
process, the headline) and a second, which litdata and mosaicml-streaming serve from their local
cache ("later"). A decode-bound pass of thousands of images lasts seconds, far longer than any
start-up, so no 256 MiB floor is applied here (``--min-mib`` sets one). ``--device cuda`` moves
every batch to the GPU (pinned memory, non-blocking copies). Measured by :mod:`awsio.bench.engine`.
"""

from __future__ import annotations

import argparse
import sys

from awsio.bench.data import DataSet
from awsio.bench.engine import Case
from awsio.bench.run import Goal, Workload, add_options, measure, parse_loaders

LOADERS = ("memory", "awsio", "litdata", "mosaic", "webdataset", "s3torchconnector", "boto3")
# profile -> (images, WIDTHxHEIGHT, output side, transform)
PROFILES: dict[str, tuple[int, str, int, str]] = {"small": (8000, "128x128", 96, "resize"),
                                                   "imagenet": (4000, "400x350", 224, "imagenet")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m awsio.bench.pipeline", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", choices=sorted(PROFILES), default="small")
    p.add_argument("--images", type=int, help="number of JPEGs (default: the profile's)")
    p.add_argument("--size", help="WIDTHxHEIGHT of the JPEGs (default: the profile's)")
    p.add_argument("--shards", type=int, default=8)
    p.add_argument("--resize", type=int, help="output side in pixels (default: the profile's)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", default="0,2", help="DataLoader worker counts (default %(default)s)")
    p.add_argument("--decode", choices=("on", "off"), default="on", help="off: batches of JPEG bytes")
    p.add_argument("--device", default="cpu", help="cpu, or cuda to move every batch to the GPU")
    add_options(p, min_mib=0, passes=2)
    args = p.parse_args(argv)
    images, size, resize, transform = PROFILES[args.profile]
    loaders = parse_loaders(args, "images", LOADERS)
    width, _, height = (args.size or size).partition("x")
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    cases = [Case(n, w) for w in workers for n in loaders]
    if args.profile == "imagenet":
        goals = [g for w in workers for g in (Goal(w, "litdata", 1.5), Goal(w, "mosaic", 1.5))]
    else:
        goals = [g for w in workers for g in (Goal(w, "memory", 0.97), Goal(w, "mosaic", 1.7),
                                               Goal(w, "litdata", 1.0, f"awsio >= litdata's cached epoch at {w} "
                                                    "workers", later=True))]
    data = DataSet("images", args.images or images, width=int(width), height=int(height), shards=args.shards)
    job = {"batch_size": args.batch_size, "image_size": args.resize or resize, "transform": transform,
           "decode": args.decode == "on", "device": args.device}
    measure(args, [Workload(f"image pipeline ({args.profile})", data, cases, goals=goals, job=job)], program="pipeline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
