"""Loader benchmark: samples/s and MiB/s of awsio (native, python) and its peers on the same shards.

    python -m awsio.cli.bench 'urls="s3://bucket/train-{000000..000007}.tar"' num_workers=2
    python -m awsio.cli.bench --multirun num_workers=0,2 decode=false,true

Writes ``results.csv``, ``results.json`` and ``chart.png`` to the run folder (``bench_results/...``);
with ``--multirun`` each job also refreshes the same three files aggregated over the sweep folder.
Loaders that cannot run here (peer not installed, native not built) are listed as skipped with the
reason. Conditions are recorded with every row: versions, object count and sizes, cores, server.

Figures: ``samples_per_s`` is the median over the epochs after the first (the first pays for
worker start-up and connections; it is kept as ``first_epoch_s``), ``mib_per_s`` the shard bytes
over the mean warm epoch time, ``ratio_vs_boto3`` the samples/s ratio to the boto3 baseline of
the same run. Loaders run one after the other on a possibly shared machine: compare ratios from
one run, and repeat runs (``--multirun``) before trusting small differences. awsio's rows also
carry its S3 counters over the whole run (``get_requests``, ``list_requests``, ``retries``,
``errors``, ``ttfb_p50_ms``, ``ttfb_p99_ms``, ``request_cost_usd`` at us-east-1 list prices).
"""

from __future__ import annotations

import csv
import glob
import json
import logging
import os
import platform
import statistics
import sys
import time
from typing import Any, Sequence

import hydra
import torch.utils.data
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from awsio.cli.common import CONF_DIR, ConfigValueError, check, check_positive_int, die, s3_config, url_list
from awsio.cli.loaders import LOADERS, LoaderUnavailable, make_loader
from awsio.config import S3Config
from awsio.errors import AwsioError

__all__ = ["main", "run", "write_outputs"]

log = logging.getLogger("awsio.bench")

FIELDS = ["loader", "status", "num_workers", "batch_size", "decode", "epochs", "samples_per_s", "mib_per_s",
          "samples", "seconds", "first_epoch_s", "ratio_vs_boto3", "objects", "object_mib_mean",
          "cores", "server", "backend", "versions", "get_requests", "list_requests", "retries", "errors",
          "ttfb_p50_ms", "ttfb_p99_ms", "request_cost_usd", "reason"]


def _expand(urls: Sequence[str], config: S3Config) -> list[tuple[str, int]]:
    """Shard URLs (braces expanded, prefixes listed to their .tar/.tgz objects) with their sizes."""
    from awsio.s3.url import braceexpand
    from awsio.tools.storage import Storage

    out: list[tuple[str, int]] = []
    storage = Storage(config)
    try:
        for pattern in urls:
            for url in braceexpand(pattern):
                if url.endswith("/"):
                    from awsio.s3.client import S3Client

                    client = S3Client(config)
                    out += [(o.url, o.size) for o in client.list(url)
                            if o.url.lower().endswith((".tar", ".tgz", ".tar.gz"))]
                    client.close()
                else:
                    out.append((url, storage.size(url)))
    finally:
        storage.close()
    return out


def _versions() -> str:
    import importlib.metadata as md

    parts = [f"python={platform.python_version()}"]
    for dist in ("awsio", "torch", "botocore", "boto3", "s3torchconnector", "webdataset", "pillow"):
        try:
            parts.append(f"{dist}={md.version(dist)}")
        except md.PackageNotFoundError:
            pass
    return " ".join(parts)


def _server(config: S3Config, label: str) -> str:
    if label and label != "auto":
        return label
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(config.endpoint, timeout=3) as r:
            name = r.headers.get("Server")
    except urllib.error.HTTPError as e:  # an anonymous request is refused, but the header is there
        name = e.headers.get("Server")
    except OSError:
        name = None
    host = config.endpoint.split("://", 1)[-1]
    return f"{name or 'unknown'} at {host}"


def _measure(ds: Any, cfg: DictConfig, total_bytes: int) -> dict[str, Any]:
    workers, max_samples = int(cfg.num_workers), int(cfg.max_samples)
    loader = torch.utils.data.DataLoader(ds, batch_size=int(cfg.batch_size), num_workers=workers,
                                         prefetch_factor=4 if workers else None)
    per_epoch: list[tuple[int, float]] = []
    for epoch in range(int(cfg.epochs)):
        if hasattr(ds, "set_epoch"):
            ds.set_epoch(epoch)
        n = 0
        t0 = time.perf_counter()
        for _, labels in loader:
            n += len(labels)
            if max_samples and n >= max_samples:
                break
        per_epoch.append((n, time.perf_counter() - t0))
    # Warm epochs only when there are several: the first pays for process start and connections.
    warm = per_epoch[1:] if len(per_epoch) > 1 else per_epoch
    rates = [n / s for n, s in warm if s > 0]
    samples = per_epoch[0][0]
    full = not max_samples
    secs = statistics.mean(s for _, s in warm)
    return {**_request_counters(ds),"samples_per_s": round(statistics.median(rates), 1) if rates else 0.0,
            "mib_per_s": round(total_bytes / (1 << 20) / secs, 2) if full and secs > 0 else None,
            "samples": samples, "seconds": round(secs, 3), "first_epoch_s": round(per_epoch[0][1], 3),
            "epoch_samples": [n for n, _ in per_epoch]}


def _request_counters(ds: Any) -> dict[str, Any]:
    """awsio's S3 counters of the whole run (every epoch, workers included; see awsio.metrics):
    requests, retries, errors, time to first byte and the request cost at us-east-1 list prices.
    Empty for loaders that keep none (the peers)."""
    metrics = getattr(ds, "metrics", None)
    if metrics is None:
        return {}
    from awsio.metrics import CAUSES

    d = metrics().as_dict()
    return {"get_requests": d.get("get_requests", 0), "list_requests": d.get("list_requests", 0),
            "retries": sum(d.get(f"retries_{c}", 0) for c in CAUSES), "errors": d.get("errors", 0),
            "ttfb_p50_ms": d["ttfb_p50_ms"], "ttfb_p99_ms": d["ttfb_p99_ms"],
            "request_cost_usd": d["request_cost_usd"]}


def validate(cfg: DictConfig) -> list[str]:
    url_list(cfg.urls)
    loaders = [cfg.loaders] if isinstance(cfg.loaders, str) else list(cfg.loaders)
    check(bool(loaders), "loaders", cfg.loaders, f"expected a list of {', '.join(LOADERS)}")
    for name in loaders:
        check(name in LOADERS, "loaders", name, f"unknown loader; known: {', '.join(LOADERS)}")
    check_positive_int("num_workers", cfg.num_workers, minimum=0)
    check_positive_int("batch_size", cfg.batch_size)
    check_positive_int("epochs", cfg.epochs)
    check_positive_int("max_samples", cfg.max_samples, minimum=0)
    check_positive_int("image_size", cfg.image_size, minimum=8)
    check(isinstance(cfg.decode, bool), "decode", cfg.decode, "expected true or false")
    return loaders


def run(cfg: DictConfig, out_dir: str) -> list[dict[str, Any]]:
    """Benchmark every configured loader; write the results under ``out_dir`` and return the rows."""
    loaders = validate(cfg)
    config = s3_config(cfg.s3)
    shards = _expand(url_list(cfg.urls), config)
    if not shards:
        raise ConfigValueError(f"urls={cfg.urls!r} matched no objects")
    urls = [u for u, _ in shards]
    total = sum(s for _, s in shards)
    common = {"num_workers": int(cfg.num_workers), "batch_size": int(cfg.batch_size), "decode": bool(cfg.decode),
              "epochs": int(cfg.epochs), "objects": len(shards),
              "object_mib_mean": round(total / len(shards) / (1 << 20), 3), "cores": os.cpu_count(),
              "server": _server(config, str(cfg.server)), "backend": config.backend, "versions": _versions()}
    rows: list[dict[str, Any]] = []
    for name in loaders:
        row: dict[str, Any] = {"loader": name, **common}
        try:
            ds = make_loader(name, urls, config, decode=bool(cfg.decode), size=int(cfg.image_size))
            row.update(_measure(ds, cfg, total), status="ok", reason="")
        except LoaderUnavailable as e:
            row.update(status="skipped", reason=str(e))
        except Exception as e:  # one loader failing must not lose the others' figures
            log.exception("loader %s failed", name)
            lines = [x for x in str(e).splitlines() if x.strip()]  # worker errors carry a traceback
            row.update(status="failed", reason=f"{type(e).__name__}: {lines[-1] if lines else ''}")
        rows.append(row)
        shown = f"{row['samples_per_s']:.0f} samples/s" if row["status"] == "ok" else f"{row['status']}: {row['reason']}"
        print(f"bench: {name:18s} {shown}", flush=True)
    base = next((r for r in rows if r["loader"] == "boto3" and r["status"] == "ok"), None)
    for r in rows:
        if base and r["status"] == "ok" and base["samples_per_s"]:
            r["ratio_vs_boto3"] = round(r["samples_per_s"] / base["samples_per_s"], 2)
    write_outputs(rows, out_dir)
    return rows


def write_outputs(rows: list[dict[str, Any]], out_dir: str, title: str = "") -> None:
    """results.json, results.csv and chart.png (samples/s per loader, one bar group per condition)."""
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(rows, f, indent=1)
    with open(os.path.join(out_dir, "results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)
    _chart(rows, os.path.join(out_dir, "chart.png"), title)


def _chart(rows: list[dict[str, Any]], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r.get("status") == "ok"]
    loaders = list(dict.fromkeys(r["loader"] for r in rows))
    conds = list(dict.fromkeys(_cond(r) for r in rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(loaders) * max(1, len(conds)) ** 0.5 + 3), 4.2))
    width = 0.8 / max(1, len(conds))
    for j, cond in enumerate(conds):
        values = [next((r["samples_per_s"] for r in ok if r["loader"] == ld and _cond(r) == cond), 0.0)
                  for ld in loaders]
        xs = [i + (j - (len(conds) - 1) / 2) * width for i in range(len(loaders))]
        ax.bar(xs, values, width, label=cond)
        for x, v in zip(xs, values):
            ax.annotate("n/a" if v == 0 else f"{v:.0f}", (x, v), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(loaders)), loaders, rotation=15)
    ax.set_ylabel("samples/s")
    first = rows[0] if rows else {}
    ax.set_title((title or "awsio loader benchmark") + f": {first.get('objects', '?')} shards x "
                 f"{first.get('object_mib_mean', '?')} MiB, {first.get('cores', '?')} cores, "
                 f"{first.get('server', '?')}", fontsize=9)
    if conds:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _cond(r: dict[str, Any]) -> str:
    return f"workers={r['num_workers']} batch={r['batch_size']} decode={'on' if r['decode'] else 'off'}"


def _aggregate_sweep(sweep_dir: str) -> None:
    rows: list[dict[str, Any]] = []
    for path in sorted(glob.glob(os.path.join(sweep_dir, "*", "results.json"))):
        with open(path) as f:
            rows.extend(json.load(f))
    if rows:
        write_outputs(rows, sweep_dir, title=f"awsio loader benchmark sweep ({len(rows)} rows)")


@hydra.main(version_base=None, config_path=CONF_DIR, config_name="bench")
def main(cfg: DictConfig) -> None:
    logging.basicConfig(level=logging.WARNING)
    hc = HydraConfig.get()
    out_dir = hc.runtime.output_dir
    try:
        run(cfg, out_dir)
    except ConfigValueError as e:
        die("bench", str(e))
    except AwsioError as e:  # e.g. a shard URL that does not exist, or no credentials
        die("bench", f"{type(e).__name__}: {e}", code=1)
    print(f"bench: results in {out_dir}/results.csv, results.json, chart.png", flush=True)
    if str(hc.mode) == "RunMode.MULTIRUN":
        _aggregate_sweep(hc.sweep.dir)
        print(f"bench: sweep table in {hc.sweep.dir}/results.csv", flush=True)


if __name__ == "__main__":
    sys.exit(main())
