"""What the benchmark programs share: their common options, and one call that opens the endpoint,
makes (or finds) the data, runs the engine, prints the table, checks the goals and writes the files.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass
from typing import Any, Sequence

from awsio.bench import peers, report
from awsio.bench.data import DataSet, Manifest, ensure
from awsio.bench.endpoint import Endpoint, open_endpoint
from awsio.bench.engine import Case, Engine

__all__ = ["Goal", "Workload", "add_options", "check_goals", "measure", "parse_loaders"]

log = logging.getLogger("awsio.bench")
MiB = 1 << 20


@dataclass(frozen=True)
class Goal:
    """The subject must run at least ``at_least`` x ``other`` (median of paired ratios)."""

    workers: int
    other: str
    at_least: float
    label: str = ""
    later: bool = False  # compare against the other's later passes (its cached epoch) instead


@dataclass
class Workload:
    """One table: a data set, the cases to run on it, what ratios compare, and the goals."""

    name: str
    data: DataSet
    cases: list[Case]
    unit: str = "samples"
    goals: Sequence[Goal] = ()
    job: dict[str, Any] | None = None
    kind: str | None = None  # run as another kind than the data's (the training job reads images)


def add_options(p: argparse.ArgumentParser, *, rounds: int = 3, min_mib: int = 256, passes: int = 1) -> None:
    p.add_argument("--endpoint", help="S3 endpoint (default: AWS_ENDPOINT_URL, else a local SeaweedFS is started)")
    p.add_argument("--data-dir", help="keep the local server's data here between runs (uploads then skipped)")
    p.add_argument("--bucket", default="awsio-bench")
    p.add_argument("--loaders", help="comma-separated subset of the loaders (see --list)")
    p.add_argument("--list", action="store_true", help="list the loaders and exit")
    p.add_argument("--rounds", type=int, default=rounds, help="timed rounds (default %(default)s)")
    p.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up (and the request counts)")
    p.add_argument("--min-mib", type=int, default=min_mib,
                   help="read at least this much per run, adding passes (default %(default)s)")
    p.add_argument("--passes", type=int, default=passes, help="passes per run at least (default %(default)s)")
    p.add_argument("--out", default="bench_results", help="folder for the CSV / JSON / PNG (default %(default)s)")
    p.add_argument("--no-chart", action="store_true")
    p.add_argument("--quiet", action="store_true", help="print the tables only")


def parse_loaders(args: argparse.Namespace, kind: str, default: Sequence[str]) -> list[str]:
    """The ``--loaders`` asked for (checked against the registry), else ``default``."""
    if args.list:
        for name in peers.names(kind):
            p = peers.get(name)
            print(f"{name:24} {p.label or ''}  {p.unavailable(kind) or ''}")
        sys.exit(0)
    if not args.loaders:
        return list(default)
    names = [n.strip() for n in args.loaders.split(",") if n.strip()]
    for n in names:
        if kind not in peers.get(n).kinds:
            raise SystemExit(f"error: loader {n!r} has no {kind} workload; see --list")
    return names


def measure(args: argparse.Namespace, workloads: Sequence[Workload], *, program: str) -> list[dict[str, Any]]:
    """Run every workload on one endpoint; print, check goals, write ``<out>/<program>-<name>.*``.
    Returns the rows of every table."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    for noisy in ("urllib3", "botocore", "litdata", "streaming"):  # conversions' pool-size chatter
        logging.getLogger(noisy).setLevel(logging.ERROR)
    say = (lambda s: None) if args.quiet else (lambda s: print(s, flush=True))
    everything: list[dict[str, Any]] = []
    with open_endpoint(args.endpoint, args.data_dir) as endpoint:
        say(f"endpoint: {endpoint.label}")
        for w in workloads:
            data = DataSet(**{**w.data.__dict__, "bucket": args.bucket})
            manifest = ensure(data, endpoint)
            manifest.kind = w.kind or manifest.kind
            made = f"made in {manifest.build_s:.1f} s" if manifest.build_s else "made by an earlier run"
            say(f"\n{w.name}: {manifest.description} ({manifest.nbytes / MiB:.0f} MiB, {made})")
            table = run_cases(endpoint, manifest, w.cases, args, say, unit=w.unit, job=w.job or {}, name=w.name,
                              program=program)
            check_goals(table, w.goals)
            everything += table
    return everything


def run_cases(endpoint: Endpoint, manifest: Manifest, cases: Sequence[Case], args: argparse.Namespace, say: Any, *,
              unit: str, job: dict[str, Any], name: str, program: str) -> list[dict[str, Any]]:
    engine = Engine(endpoint, manifest, rounds=args.rounds, warmup=not args.no_warmup,
                    min_bytes=args.min_mib * MiB, passes=args.passes, progress=say, **job)
    cond = report.conditions(endpoint, manifest, engine, **job)
    results = engine.run(cases)
    table = report.rows(results, manifest, unit=unit, workload=name)
    title = f"{name}: {manifest.description}, {engine.passes} pass(es) per run, {engine.rounds} rounds"
    report.print_table(table, title)
    stem = f"{program}-{name}".replace(" ", "_")
    paths = report.write(table, cond, args.out, stem, title=title, chart=not args.no_chart)
    say(f"  wrote {', '.join(os.path.relpath(p) for p in paths)}")
    return table


def check_goals(table: Sequence[dict[str, Any]], goals: Sequence[Goal]) -> None:
    """Print each goal as met / MISSED (or not measured) from the rows' paired ratios."""
    for g in goals:
        row = next((r for r in table if r["peer"] == g.other and r["workers"] == g.workers and r["status"] == "ok"),
                   None)
        what = g.label or f"awsio >= {g.at_least}x {g.other} at {g.workers} workers"
        if row is None or row.get("ratio") is None:
            print(f"  goal: {what}: not measured")
            continue
        got, lo, hi = row["ratio"], row.get("ratio_lo"), row.get("ratio_hi")
        if g.later:  # the median of per-round ratios, like every ratio
            if row.get("later_ratio") is None:
                print(f"  goal: {what}: not measured")
                continue
            got, lo, hi = row["later_ratio"], row.get("later_ratio_lo"), row.get("later_ratio_hi")
        spread = f" ({lo:.2f}-{hi:.2f})" if lo is not None and hi is not None and lo != hi else ""
        print(f"  goal: {what}: {got:.2f}x{spread} {'met' if got >= g.at_least else 'MISSED'}")
