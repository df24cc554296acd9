"""Benchmark of resuming: ``python -m awsio.bench.resume [--shards 16 --shard-mib 64 ...]``.

On a local SeaweedFS (started here unless ``AWS_ENDPOINT_URL`` names an endpoint), over N tar
shards of ~100 KiB members (with the shard maker's index sidecars), in one run it measures:

* for a fresh start and for resumes saved at 10 %, 50 % and 90 % of an epoch: the seconds from
  ``load_state_dict`` (a new dataset object, as in a new process) to the first sample, and the
  bytes that crossed the wire from S3 in that time (counted by a proxy, so transfers in flight
  count too, not only the bodies returned). Goals: bytes flat across resume points (one read-ahead, never
  proportional to the resume point); time to first sample at most 1.2x a fresh start;
* steady-state MiB/s of a whole epoch through the dataset with its state tracking, and, with
  ``--baseline-python PATH`` (a Python whose ``awsio`` is an older checkout), the same epoch read
  by that version's ``S3IterableDataset`` in the same run: the ratio is new / old (goal >= 0.98).

Rounds alternate the order of the two loaders; the figure is the median of per-round ratios with
their spread. Everything printed is measured.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Iterator

MiB = 1 << 20

_EPOCH_SCRIPT = r"""
import json, sys, time
from awsio.config import S3Config
from awsio.dataset import S3IterableDataset
cfg = S3Config(endpoint_url=sys.argv[1])
urls = json.loads(sys.argv[2])
ds = S3IterableDataset(urls, config=cfg)
t0 = time.perf_counter(); n = 0; b = 0
for name, data in ds:
    n += 1; b += len(data)
print(json.dumps({"seconds": time.perf_counter() - t0, "members": n, "bytes": b}))
"""


def _make_shards(config: Any, bucket: str, shards: int, shard_mib: int, member_kib: int) -> list[str]:
    from awsio.tools.makeshards import write_shards
    from awsio.tools.storage import Storage
    from awsio.tools.synthetic import Sample

    per = max(1, shard_mib * 1024 // member_kib)
    block = os.urandom(member_kib * 1024)

    def samples() -> Iterator[Sample]:
        for i in range(shards * per):
            yield Sample(f"s{i:07d}", (("cls", str(i % 10).encode()), ("bin", block[i % 97:] + block[:i % 97])))

    out = f"s3://{bucket}/resume/"
    write_shards(samples(), out, prefix="train", maxcount=per, storage=Storage(config), progress=False,
                 overwrite=True)
    return [f"{out}train-{i:06d}.tar" for i in range(shards)]


def _first_sample(config: Any, urls: list[str], state: dict[str, Any] | None, unit: int,
                  proxy: Any) -> tuple[float, int]:
    """Seconds from ``load_state_dict`` (a new dataset, as in a new process) to the first unit,
    and the bytes that crossed the wire in that time (``proxy``: a CountingProxy that ``config``
    points at)."""
    from awsio.dataset import S3IterableDataset

    ds = S3IterableDataset(urls, config=config)
    proxy.take()  # what the listing and indexes cost is the same for any resume point
    t0 = time.perf_counter()
    if state is not None:
        ds.load_state_dict(state)
    it = ds.iter_units(unit)
    next(it)
    seconds = time.perf_counter() - t0
    wire = proxy.take().get("wire_bytes", 0)
    it.close()
    ds.client.close()
    return seconds, wire


def _state_at(config: Any, urls: list[str], fraction: float, unit: int) -> dict[str, Any]:
    from awsio.dataset import S3IterableDataset

    ds = S3IterableDataset(urls, config=config)
    target = int(len(ds) * fraction) // unit
    it = ds.iter_units(unit)
    for _ in range(target):
        next(it)
    state = ds.state_dict()
    it.close()
    return state


def _epoch(config: Any, urls: list[str]) -> dict[str, float]:
    from awsio.dataset import S3IterableDataset

    ds = S3IterableDataset(urls, config=config)
    t0 = time.perf_counter()
    n = b = 0
    for _, data in ds:
        n += 1
        b += len(data)
    return {"seconds": time.perf_counter() - t0, "members": n, "bytes": b}


def _baseline_epoch(python: str, endpoint: str, urls: list[str], env: dict[str, str]) -> dict[str, float]:
    out = subprocess.run([python, "-c", _EPOCH_SCRIPT, endpoint, json.dumps(urls)], capture_output=True,
                         text=True, env={**os.environ, **env}, check=True, cwd=tempfile.gettempdir())
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shards", type=int, default=16)
    ap.add_argument("--shard-mib", type=int, default=64)
    ap.add_argument("--member-kib", type=int, default=100)
    ap.add_argument("--unit", type=int, default=64, help="samples per unit (the pipeline's batch)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--baseline-python", help="a Python whose awsio is the version to compare with")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)

    from awsio.bench.endpoint import open_endpoint
    from awsio.bench.proxy import CountingProxy
    from awsio.config import S3Config

    with contextlib.ExitStack() as stack:
        ep = stack.enter_context(open_endpoint())
        env = ep.env
        os.environ.update(env)  # the credentials of a local server, for the clients made here
        config = S3Config(endpoint_url=ep.url, region=ep.region)
        bucket = "awsio-bench-resume"
        ep.ensure_bucket(bucket)
        urls = _make_shards(config, bucket, args.shards, args.shard_mib, args.member_kib)
        print(f"data: {args.shards} x {args.shard_mib} MiB tar shards of {args.member_kib} KiB members, "
              f"unit {args.unit} samples, {args.rounds} rounds", flush=True)
        points = {"fresh": None, **{f"{int(f * 100)}%": _state_at(config, urls, f, args.unit)
                                    for f in (0.1, 0.5, 0.9)}}
        proxy = stack.enter_context(CountingProxy(ep.url or ""))
        via_proxy = S3Config(endpoint_url=proxy.url, region=ep.region)
        first: dict[str, list[tuple[float, int]]] = {k: [] for k in points}
        ratios: list[float] = []
        epochs: dict[str, list[float]] = {"awsio": [], "baseline": []}
        for r in range(args.rounds):
            for name, state in (points.items() if r % 2 == 0 else reversed(points.items())):
                first[name].append(_first_sample(via_proxy, urls, state, args.unit, proxy))
            runs = [("awsio", lambda: _epoch(config, urls))]
            if args.baseline_python:
                runs.append(("baseline", lambda: _baseline_epoch(args.baseline_python, config.endpoint, urls, env)))
            got: dict[str, float] = {}
            for name, fn in (runs if r % 2 == 0 else list(reversed(runs))):
                e = fn()
                got[name] = e["bytes"] / MiB / e["seconds"]
                epochs[name].append(got[name])
            if "baseline" in got:
                ratios.append(got["awsio"] / got["baseline"])
        fresh_t = statistics.median(t for t, _ in first["fresh"])
        print(f"{'start':<8} {'s to 1st sample':>16} {'x fresh':>8} {'MiB on the wire before it':>26}")
        figures: dict[str, Any] = {"first_sample": {}, "epoch_mib_s": {}}
        for name, runs_ in first.items():
            t = statistics.median(x for x, _ in runs_)
            b = statistics.median(x for _, x in runs_) / MiB
            figures["first_sample"][name] = {"seconds": t, "mib": b, "x_fresh": t / fresh_t}
            print(f"{name:<8} {t:>16.3f} {t / fresh_t:>8.2f} {b:>26.2f}")
        for name, xs in epochs.items():
            if xs:
                figures["epoch_mib_s"][name] = max(xs)
                print(f"epoch through the dataset ({name}): {max(xs):,.0f} MiB/s (fastest of {len(xs)})")
        if ratios:
            figures["epoch_ratio"] = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
            print(f"steady state, awsio / baseline: {statistics.median(ratios):.3f}x "
                  f"(per round {min(ratios):.2f}-{max(ratios):.2f})")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(figures, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
