"""Smoke tests of the benchmark programs (tiny sizes; checks they run and print figures)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.native]


def test_bench_reader_runs(s3_server, tmp_path):
    pytest.importorskip("awsio._native", reason="awsio._native is not built")
    env = dict(os.environ, **s3_server.env())
    out_csv = tmp_path / "reader.csv"
    proc = subprocess.run(
        [sys.executable, "-m", "awsio.bench.reader", "--small-count", "30", "--small-size", "2048",
         "--large-count", "2", "--large-size", str(1 << 20), "--rounds", "1", "--bucket", "awsio-bench-smoke",
         "--methods", "awsio-native,boto3-8,curl", "--passes", "2", "--csv", str(out_csv)],
        env=env, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "target native/curl" in proc.stdout
    assert "warm MiB/s" in proc.stdout and "(warm passes:" in proc.stdout
    assert env["AWS_SECRET_ACCESS_KEY"] not in proc.stdout + proc.stderr  # never print credentials
    rows = out_csv.read_text().splitlines()
    assert rows[0].startswith("set,method,")
    assert {r.split(",")[1] for r in rows[1:]} >= {"awsio-native", "boto3-8"}


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
