"""Loader benchmark on your own shards (Hydra job): awsio and its peers, measured by the one
benchmark engine (:mod:`awsio.bench.engine`).

    python -m awsio.cli.bench 'urls="s3://bucket/train-{000000..000007}.tar"' num_workers=2
    python -m awsio.cli.bench --multirun num_workers=0,2 decode=false,true

The shards hold ``.jpg`` + ``.cls`` samples (the shard maker's format). Every loader in ``loaders``
reads them with ``num_workers`` DataLoader workers into batches of ``batch_size`` (decoded, resized
to ``image_size`` and made tensors when ``decode=true``, JPEG bytes otherwise). The engine warms up
(requests counted), then runs ``rounds`` rounds in alternating order, each run reading at least
``min_mib`` MiB (passes added; at least ``epochs`` passes). Writes ``results.csv``, ``results.json``
and ``chart.png`` to the run folder (``bench_results/...``); with ``--multirun`` each job also
refreshes the same three files aggregated over the sweep folder. Loaders that cannot run here are
listed as skipped with the reason. The benchmark code lives in ``awsio/bench`` (a source checkout;
it is not part of the library wheel).
"""

from __future__ import annotations

import glob
import json
import logging
import os
import sys
from typing import Any, Sequence

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from awsio.cli.common import CONF_DIR, ConfigValueError, check, check_positive_int, die, s3_config, url_list
from awsio.config import S3Config
from awsio.errors import AwsioError

__all__ = ["main", "run", "validate", "write_outputs"]

log = logging.getLogger("awsio.bench")
MiB = 1 << 20


def _loaders() -> list[str]:
    from awsio.bench import peers

    return peers.names("images")


def _expand(urls: Sequence[str], config: S3Config) -> list[str]:
    """Shard URLs: braces expanded, prefixes (ending in ``/``) listed to their tar objects."""
    from awsio.s3.client import S3Client
    from awsio.s3.url import braceexpand

    out: list[str] = []
    with S3Client(config) as client:
        for pattern in urls:
            for url in braceexpand(pattern):
                if url.endswith("/"):
                    out += [o.url for o in client.list(url) if o.url.lower().endswith((".tar", ".tgz", ".tar.gz"))]
                else:
                    out.append(url)
    return out


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
    return f"{name or 'unknown'} at {config.endpoint.split('://', 1)[-1]}"


def validate(cfg: DictConfig) -> list[str]:
    """The loaders to run; :class:`ConfigValueError` naming the key for a bad value."""
    url_list(cfg.urls)
    known = _loaders()
    loaders = [cfg.loaders] if isinstance(cfg.loaders, str) else list(cfg.loaders)
    check(bool(loaders), "loaders", cfg.loaders, f"expected a list of {', '.join(known)}")
    for name in loaders:
        check(name in known, "loaders", name, f"unknown loader; known: {', '.join(known)}")
    check_positive_int("num_workers", cfg.num_workers, minimum=0)
    check_positive_int("batch_size", cfg.batch_size)
    check_positive_int("epochs", cfg.epochs)
    check_positive_int("rounds", cfg.rounds)
    check_positive_int("min_mib", cfg.min_mib, minimum=0)
    check_positive_int("image_size", cfg.image_size, minimum=8)
    check(isinstance(cfg.decode, bool), "decode", cfg.decode, "expected true or false")
    check(isinstance(cfg.warmup, bool), "warmup", cfg.warmup, "expected true or false")
    return loaders


def run(cfg: DictConfig, out_dir: str) -> list[dict[str, Any]]:
    """Benchmark every configured loader; write the results under ``out_dir`` and return the rows."""
    from awsio.bench import report
    from awsio.bench.data import from_urls
    from awsio.bench.endpoint import Endpoint
    from awsio.bench.engine import Case, Engine

    loaders = validate(cfg)
    config = s3_config(cfg.s3)
    urls = _expand(url_list(cfg.urls), config)
    if not urls:
        raise ConfigValueError(f"urls={cfg.urls!r} matched no objects")
    endpoint = Endpoint(url=config.endpoint_url, region=str(config.region),
                        env={"AWS_ENDPOINT_URL": config.endpoint_url} if config.endpoint_url else {},
                        label=_server(config, str(cfg.server)))
    manifest = from_urls(urls, endpoint)
    job = {"batch_size": int(cfg.batch_size), "image_size": int(cfg.image_size), "decode": bool(cfg.decode),
           "connections": int(config.max_connections)}
    engine = Engine(endpoint, manifest, rounds=int(cfg.rounds), warmup=bool(cfg.warmup), min_bytes=int(cfg.min_mib) * MiB,
                    passes=int(cfg.epochs), progress=lambda s: print(f"bench: {s.strip()}", flush=True), **job)
    results = engine.run([Case(name, int(cfg.num_workers)) for name in loaders])
    rows = report.rows(results, manifest, workload="images")
    for r in rows:
        r.update(num_workers=int(cfg.num_workers), batch_size=int(cfg.batch_size), decode=bool(cfg.decode))
    cond = report.conditions(endpoint, manifest, engine, **job)
    write_outputs(rows, cond, out_dir, chart=bool(cfg.chart))
    report.print_table(rows, f"{manifest.description}, decode={'on' if cfg.decode else 'off'}, "
                             f"{engine.passes} pass(es) per run, {engine.rounds} rounds")
    return rows


def write_outputs(rows: list[dict[str, Any]], cond: dict[str, Any], out_dir: str, title: str = "",
                  chart: bool = True) -> None:
    """results.csv, results.json and (``chart``) chart.png in ``out_dir``."""
    from awsio.bench import report

    title = title or f"awsio loader benchmark: {cond.get('data')}"
    report.write(rows, cond, out_dir, "results", title=title, chart=chart, png="chart.png")


def _aggregate_sweep(sweep_dir: str) -> None:
    """The sweep's jobs in one table and chart; the loader names carry each job's condition."""
    rows: list[dict[str, Any]] = []
    cond: dict[str, Any] = {}
    for path in sorted(glob.glob(os.path.join(sweep_dir, "*", "results.json"))):
        with open(path) as f:
            got = json.load(f)
        cond = got["conditions"]
        for r in got["rows"]:
            r["loader"] = f"{r['loader']} {'decode' if r.get('decode') else 'bytes'} b={r.get('batch_size')}"
            rows.append(r)
    if rows:
        write_outputs(rows, cond, sweep_dir, title=f"awsio loader benchmark sweep ({len(rows)} rows)")


@hydra.main(version_base=None, config_path=CONF_DIR, config_name="bench")
def main(cfg: DictConfig) -> None:
    logging.basicConfig(level=logging.WARNING)
    hc = HydraConfig.get()
    out_dir = hc.runtime.output_dir
    try:
        import awsio.bench.engine  # noqa: F401
    except ImportError:
        die("bench", "the benchmark code (awsio/bench) is not in this awsio installation: it ships with the "
                     "source tree, not the wheel; run it from a checkout (pip install -e '.[harness,peers]')", code=1)
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
