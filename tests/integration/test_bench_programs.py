"""The dataset and pipeline benchmark programs on tiny data (one round, two loaders each)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def _run(s3_server, tmp_path, module: str, *args: str) -> dict:
    env = dict(os.environ, **s3_server.env())
    proc = subprocess.run([sys.executable, "-m", module, *args, "--rounds", "1", "--min-mib", "0",
                           "--bucket", "awsio-bench-programs", "--out", str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"stdout": proc.stdout}


def test_dataset_program(s3_server, tmp_path):
    out = _run(s3_server, tmp_path, "awsio.bench.dataset", "--shards", "2", "--shard-mib", "1", "--member-kib", "16",
               "--workers", "0", "--loaders", "awsio,boto3", "--no-chart")
    rows = {r["loader"]: r for r in json.load(open(tmp_path / "dataset-tar_shards.json"))["rows"]}
    assert rows["awsio"]["status"] == rows["boto3"]["status"] == "ok"
    assert rows["boto3"]["GET"] == 2 and rows["boto3"]["ratio"] > 0
    assert "goal: awsio >= 2.0x s3torchconnector at 0 workers: not measured" in out["stdout"]


def test_pipeline_program_writes_a_chart(s3_server, tmp_path):
    _run(s3_server, tmp_path, "awsio.bench.pipeline", "--images", "48", "--size", "32x32", "--shards", "2",
         "--resize", "16", "--batch-size", "8", "--workers", "0", "--loaders", "memory,awsio")
    got = json.load(open(tmp_path / "pipeline-image_pipeline_(small).json"))
    rows = {r["loader"]: r for r in got["rows"]}
    assert rows["memory"]["GET"] is None  # reads only in its untimed set-up
    assert rows["memory"]["samples_s"] > 0 and rows["awsio"]["later_rate"] > 0  # two passes
    assert (tmp_path / "pipeline-image_pipeline_(small).png").read_bytes()[:4] == b"\x89PNG"
