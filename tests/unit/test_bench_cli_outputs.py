"""Bench output writers without a server: CSV/JSON/PNG, sweep aggregation, the loader registry."""

from __future__ import annotations

import csv
import json

import pytest

from awsio.bench import peers
from awsio.cli import bench


def _row(loader, workers, rate, status="ok"):
    return {"loader": loader, "peer": loader, "status": status, "workers": workers, "num_workers": workers,
            "batch_size": 8, "decode": True, "rate": rate, "rate_lo": rate, "rate_hi": rate, "rounds": 1,
            "unit": "samples/s", "reason": "" if status == "ok" else "why"}


def test_write_outputs_and_sweep_aggregation(tmp_path):
    cond = {"data": "2 shards", "cores": 2, "server": "test", "versions": {"torch": "x"}, "rounds": 1}
    for i, workers in enumerate((0, 2)):
        bench.write_outputs([_row("awsio", workers, 100.0 + i), _row("boto3", workers, 50.0),
                             _row("webdataset", workers, None, status="skipped")], cond, str(tmp_path / str(i)))
    bench._aggregate_sweep(str(tmp_path))
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert [(r["loader"], r["workers"], r["status"]) for r in rows] == [
        ("awsio decode b=8", "0", "ok"), ("boto3 decode b=8", "0", "ok"), ("webdataset decode b=8", "0", "skipped"),
        ("awsio decode b=8", "2", "ok"), ("boto3 decode b=8", "2", "ok"), ("webdataset decode b=8", "2", "skipped")]
    got = json.load(open(tmp_path / "results.json"))
    assert len(got["rows"]) == 6 and got["conditions"]["cores"] == 2
    for d in (tmp_path, tmp_path / "0", tmp_path / "1"):
        assert (d / "chart.png").read_bytes()[:4] == b"\x89PNG"


def test_loader_registry():
    assert {"awsio", "awsio-python", "memory", "s3torchconnector", "boto3", "webdataset", "litdata",
            "mosaic"} <= set(peers.names("images"))
    assert "curl" in peers.names("objects") and "curl" not in peers.names("images")
    with pytest.raises(ValueError, match="unknown loader"):
        peers.get("nope")
    assert peers.get("curl").unavailable("images") == "curl has no images workload"
    for p in peers.PEERS.values():  # every module exists and has make()
        assert callable(p.load().make), p.name


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
