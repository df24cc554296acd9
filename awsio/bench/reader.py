"""Reader benchmark: whole objects read in one process, by awsio and every object-reading peer.

    python -m awsio.bench.reader [--small 2000x102400] [--large 16x67108864] [--rounds 3] [--loaders ...]

Two sets: 2,000 x 100 KiB objects (request-bound) and 16 x 64 MiB objects (bandwidth-bound), each
read by ``awsio`` (native ``get_many``), ``awsio-python``, ``boto3`` (16 threads), ``torchdata``
(nodes + boto3), ``s3torchconnector`` (sequential and range-based readers), ``obstore``,
``litdata-raw`` (``StreamingRawDataset``) and ``curl --parallel`` (the ceiling). Ratios and ranks
compare MiB/s of the first pass in a fresh process; the small set (195 MiB) is read twice per run
so that a run reads at least 256 MiB, and the second pass shows the warm client. Measured by
:mod:`awsio.bench.engine` (rounds in alternating order, requests counted in an untimed warm-up);
a local SeaweedFS is started unless ``AWS_ENDPOINT_URL`` names a server. ``--help`` for options.
"""

from __future__ import annotations

import argparse
import sys

from awsio.bench.data import DataSet
from awsio.bench.engine import Case
from awsio.bench.run import Goal, Workload, add_options, measure, parse_loaders

LOADERS = ("awsio", "awsio-python", "boto3", "torchdata", "s3torchconnector", "s3torchconnector-range", "obstore",
           "litdata-raw", "curl")


def _shape(text: str) -> tuple[int, int]:
    count, _, size = text.lower().partition("x")
    return int(count), int(size)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m awsio.bench.reader", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--small", type=_shape, default=(2000, 100 * 1024), help="COUNTxBYTES (0x0: skip)")
    p.add_argument("--large", type=_shape, default=(16, 64 << 20), help="COUNTxBYTES (0x0: skip)")
    p.add_argument("--connections", type=int, default=32, help="concurrent requests for awsio, obstore, curl")
    add_options(p)
    args = p.parse_args(argv)
    loaders = parse_loaders(args, "objects", LOADERS)
    cases = [Case(n) for n in loaders]
    job = {"connections": args.connections, "batch_size": 64}
    workloads = []
    for name, (count, size), goals in (
            ("small objects", args.small, [Goal(0, "curl", 1.0), Goal(0, "boto3", 3.0),
                                           Goal(0, "s3torchconnector", 2.5)]),
            ("large objects", args.large, [Goal(0, "curl", 0.95), Goal(0, "boto3", 1.3)])):
        if count:
            workloads.append(Workload(name, DataSet("objects", count, size), cases, unit="MiB", goals=goals, job=job))
    measure(args, workloads, program="reader")
    return 0


if __name__ == "__main__":
    sys.exit(main())
