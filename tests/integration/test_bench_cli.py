"""The benchmark job on tiny shards: a results table (CSV + JSON) and a PNG chart, single and sweep."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from awsio.tools import makeshards as ms
from awsio.tools.storage import Storage

pytestmark = pytest.mark.integration

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(s3_server, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, **s3_server.env())
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "awsio.cli.bench", *args], capture_output=True, text=True,
                          timeout=150, env=env, cwd=ROOT)


@pytest.fixture
def shards(s3_bucket, s3_config) -> str:
    ms.write_shards(ms.synthetic_samples(60, classes=3, size=16, seed=4), f"s3://{s3_bucket}/b/",
                    prefix="train", maxcount=20, storage=Storage(s3_config), progress=False)
    return f"s3://{s3_bucket}/b/train-{{000000..000002}}.tar"


def test_bench_writes_table_and_chart(tmp_path, s3_server, shards):
    r = _run(s3_server, f'urls="{shards}"', "loaders=[awsio_python,boto3,webdataset,s3torchconnector]",
             "epochs=1", "num_workers=0", "batch_size=8", "image_size=16", f"hydra.run.dir={tmp_path}")
    assert r.returncode == 0, r.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert [x["loader"] for x in rows] == ["awsio_python", "boto3", "webdataset", "s3torchconnector"]
    ok = [x for x in rows if x["status"] == "ok"]
    assert {"awsio_python", "boto3", "webdataset"} <= {x["loader"] for x in ok}  # webdataset: a test extra
    assert all(x["status"] in ("ok", "skipped") for x in rows), [x["reason"] for x in rows]
    assert all(int(x["samples"]) == 60 and float(x["samples_per_s"]) > 0 for x in ok)  # same data everywhere
    assert all(x["objects"] == "3" and x["cores"] and "torch=" in x["versions"] for x in rows)
    ours = rows[0]  # awsio's request counters (3 shards: their index reads and bodies, no retries)
    assert int(ours["get_requests"]) >= 3 and ours["retries"] == "0" and float(ours["ttfb_p50_ms"]) > 0
    assert float(ours["request_cost_usd"]) > 0 and rows[1]["get_requests"] == ""  # peers keep none
    assert json.load(open(tmp_path / "results.json"))[0]["loader"] == "awsio_python"
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_multirun_aggregates_the_sweep(tmp_path, s3_server, shards):
    r = _run(s3_server, "--multirun", f'urls="{shards}"', "loaders=[awsio_python,boto3]", "epochs=1",
             "num_workers=0", "decode=false,true", "image_size=16", f"hydra.sweep.dir={tmp_path}")
    assert r.returncode == 0, r.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert sorted((x["loader"], x["decode"]) for x in rows) == [
        ("awsio_python", "False"), ("awsio_python", "True"), ("boto3", "False"), ("boto3", "True")]
    assert (tmp_path / "chart.png").exists() and (tmp_path / "0" / "results.csv").exists()
