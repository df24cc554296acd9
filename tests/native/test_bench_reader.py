"""Smoke tests of the benchmark programs (tiny sizes; checks they run and print figures)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.native]


def test_bench_reader_runs(s3_server, tmp_path):
    pytest.importorskip("awsio._native", reason="awsio._native is not built")
    env = dict(os.environ, **s3_server.env())
    proc = subprocess.run(
        [sys.executable, "-m", "awsio.bench.reader", "--small", "30x2048", "--large", "2x1048576", "--rounds", "1",
         "--min-mib", "0", "--passes", "2", "--bucket", "awsio-bench-smoke", "--loaders", "awsio,boto3,curl",
         "--out", str(tmp_path), "--no-chart"],
        env=env, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "goal: awsio >= 1.0x curl at 0 workers" in proc.stdout
    assert env["AWS_SECRET_ACCESS_KEY"] not in proc.stdout + proc.stderr  # never print credentials
    got = json.load(open(tmp_path / "reader-small_objects.json"))
    rows = {r["loader"]: r for r in got["rows"]}
    assert set(rows) == {"awsio", "boto3", "curl"} and all(r["status"] == "ok" for r in rows.values())
    assert rows["awsio"]["GET"] == 30 and rows["awsio"]["HEAD"] == 0  # counted by the proxy in the warm-up
    assert rows["boto3"]["ratio"] > 0 and rows["awsio"]["later_rate"] > 0
    assert got["conditions"]["cores"] and "torch" in got["conditions"]["versions"]


def test_bench_checksums_runs(s3_server):
    pytest.importorskip("awsio._native", reason="awsio._native is not built")
    env = dict(os.environ, **s3_server.env())
    proc = subprocess.run(
        [sys.executable, "-m", "awsio.bench.checksums", "--count", "2", "--size", str(1 << 20), "--rounds", "1",
         "--algorithm", "crc32c", "--bucket", "awsio-bench-checksums-smoke"],
        env=env, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "throughput crc32c / unchecked: median" in proc.stdout and "CPU added" in proc.stdout
    assert "crc64nvme" in proc.stdout.splitlines()[-1]  # the in-memory speeds of every algorithm
