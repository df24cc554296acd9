"""Bench output writers without a server: CSV/JSON/PNG, sweep aggregation, loader registry."""

from __future__ import annotations

import csv
import json

import pytest

from awsio.cli import bench
from awsio.cli.loaders import LOADERS, LoaderUnavailable, make_loader
from awsio.config import S3Config


def _row(loader, workers, rate, status="ok"):
    return {"loader": loader, "status": status, "num_workers": workers, "batch_size": 8, "decode": True,
            "epochs": 1, "samples_per_s": rate, "objects": 2, "object_mib_mean": 1.0, "cores": 2,
            "server": "test", "backend": "auto", "versions": "x", "reason": "" if status == "ok" else "why"}


def test_write_outputs_and_sweep_aggregation(tmp_path):
    for i, workers in enumerate((0, 2)):
        bench.write_outputs([_row("awsio_python", workers, 100.0 + i), _row("boto3", workers, 50.0),
                             _row("webdataset", workers, 0.0, status="skipped")], str(tmp_path / str(i)))
    bench._aggregate_sweep(str(tmp_path))
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert [(r["loader"], r["num_workers"], r["status"]) for r in rows] == [
        ("awsio_python", "0", "ok"), ("boto3", "0", "ok"), ("webdataset", "0", "skipped"),
        ("awsio_python", "2", "ok"), ("boto3", "2", "ok"), ("webdataset", "2", "skipped")]
    assert len(json.load(open(tmp_path / "results.json"))) == 6
    for d in (tmp_path, tmp_path / "0", tmp_path / "1"):
        assert (d / "chart.png").read_bytes()[:4] == b"\x89PNG"


def test_loader_registry():
    assert set(LOADERS) == {"awsio_native", "awsio_python", "s3torchconnector", "boto3", "webdataset"}
    with pytest.raises(ValueError, match="unknown loader"):
        make_loader("nope", ["s3://b/k.tar"], S3Config(region="us-east-1"), decode=False, size=16)
    assert issubclass(LoaderUnavailable, RuntimeError)


def test_cat_and_local_storage(tmp_path, capfdbinary):
    from awsio.tools import cat
    from awsio.tools.storage import Storage

    st = Storage()
    st.put(str(tmp_path / "a" / "b.bin"), b"hello")
    with open(tmp_path / "src.bin", "wb") as f:
        f.write(b"x" * 100)
    with open(tmp_path / "src.bin", "rb") as f:
        st.put(str(tmp_path / "c.bin"), f)
    assert st.get(str(tmp_path / "a" / "b.bin")) == b"hello" and st.size(str(tmp_path / "c.bin")) == 100
    assert st.exists(str(tmp_path / "c.bin")) and not st.exists(str(tmp_path / "nope"))
    assert cat.main([str(tmp_path / "a" / "b.bin"), str(tmp_path / "c.bin")]) == 0
    assert capfdbinary.readouterr().out == b"hello" + b"x" * 100
    assert cat.main([]) == 2
