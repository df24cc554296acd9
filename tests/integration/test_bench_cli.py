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


FAST = ("epochs=1", "rounds=1", "min_mib=0", "num_workers=0", "batch_size=8", "image_size=16")


def test_bench_writes_table_and_chart(tmp_path, s3_server, shards):
    r = _run(s3_server, f'urls="{shards}"', "loaders=[awsio-python,boto3,webdataset]", *FAST,
             f"hydra.run.dir={tmp_path}")
    assert r.returncode == 0, r.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert [x["loader"] for x in rows] == ["awsio-python", "boto3", "webdataset"]
    ok = [x for x in rows if x["status"] == "ok"]
    assert {"awsio-python", "boto3"} <= {x["loader"] for x in ok}
    assert all(x["status"] in ("ok", "skipped") for x in rows), [x["reason"] for x in rows]
    # 3 shards, one GET each; awsio also reads each shard's index sidecar (its samples' byte ranges)
    assert all(float(x["samples_s"]) > 0 and x["GET"] == ("6" if x["loader"].startswith("awsio") else "3")
               for x in ok), [(x["loader"], x["GET"]) for x in ok]
    got = json.load(open(tmp_path / "results.json"))
    assert got["rows"][0]["loader"] == "awsio-python"
    assert got["conditions"]["cores"] and "torch" in got["conditions"]["versions"]
    assert (tmp_path / "chart.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_multirun_aggregates_the_sweep(tmp_path, s3_server, shards):
    r = _run(s3_server, "--multirun", f'urls="{shards}"', "loaders=[awsio-python,boto3]", *FAST,
             "decode=false,true", f"hydra.sweep.dir={tmp_path}")
    assert r.returncode == 0, r.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert sorted((x["loader"], x["decode"]) for x in rows) == [
        ("awsio-python bytes b=8", "False"), ("awsio-python decode b=8", "True"), ("boto3 bytes b=8", "False"),
        ("boto3 decode b=8", "True")]
    assert (tmp_path / "chart.png").exists() and (tmp_path / "0" / "results.csv").exists()
