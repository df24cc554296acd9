"""Request counters: both backends count requests, bytes, retries by cause and time to first
byte the same way; snapshots add, subtract, pickle and carry no URL or secret."""

from __future__ import annotations

import json
import os
import pickle
from typing import Any

import pytest
from http_stub import Reply, Seen, error_xml, object_reply

from awsio import S3Client
from awsio.config import S3Config
from awsio.metrics import CAUSES, Metrics, Snapshot, Spool, merge, request_cost

BODY = os.urandom(200_000)
SECRET = "SECRETKEY-do-not-leak"


def make(stub: Any, backend: str, **kw: Any) -> S3Client:
    kw.setdefault("static_credentials", ("AKIDMETRICS", SECRET, "TOKEN-do-not-leak"))
    kw.setdefault("max_attempts", 5)
    kw.setdefault("read_timeout", 1.0)
    return S3Client(S3Config(endpoint_url=stub.endpoint, region="us-east-1", backend=backend, **kw))


FAULTS = {  # request n -> the reply that breaks it, and the cause it is counted under
    0: (Reply(503, error_xml("SlowDown")), "throttle"),
    1: (Reply(429, error_xml("TooManyRequests")), "throttle"),
    2: (Reply(500, error_xml("InternalError")), "5xx"),
    3: (Reply(200, BODY, truncate_at=1000, reset=True), "reset"),
    4: (Reply(200, BODY, stall=3.0, stall_at=1000), "timeout"),
    5: (Reply(200, BODY[:-1] + b"x", {"x-amz-checksum-crc32": "AAAAAA=="}), "integrity"),
}


def test_retries_are_counted_by_cause(stub, backend):
    def script(n: int, seen: Seen) -> Reply:
        return FAULTS[n][0] if n in FAULTS else object_reply(BODY, seen)
    stub.script = script
    client = make(stub, backend, max_attempts=8)
    assert client.get("s3://bkt/obj") == BODY
    m = client.metrics()
    assert m["get_requests"] == len(stub.seen) == 7
    assert m["get_bytes"] == len(BODY)
    assert {c: m["retries_" + c] for c in CAUSES} == {"throttle": 2, "5xx": 1, "reset": 1, "timeout": 1,
                                                     "integrity": 1}
    assert m["errors"] == 0
    assert 0 < m.ttfb_quantile(0.5) < 1.0 and m.ttfb_quantile(0.99) >= m.ttfb_quantile(0.5)


def test_requests_heads_ranges_and_failures_are_counted(stub, backend):
    def script(n: int, seen: Seen) -> Reply:
        if "missing" in seen.path:
            return Reply(404, error_xml("NoSuchKey"))
        return object_reply(BODY, seen)
    stub.script = script
    client = make(stub, backend)
    assert client.head("s3://bkt/obj").size == len(BODY)
    assert client.get_range("s3://bkt/obj", 10, 1010) == BODY[10:1010]
    assert [d for _, d in client.get_many([("s3://bkt/obj", 0, 100)] * 5)] == [BODY[:100]] * 5
    with pytest.raises(FileNotFoundError):
        client.get("s3://bkt/missing")
    m = client.metrics()
    assert (m["head_requests"], m["get_requests"], m["get_bytes"], m["errors"]) == (1, 7, 1500, 1)
    assert sum(m.ttfb) == 7  # every GET and HEAD answered with its data (not the 404)


def test_counters_hold_no_url_or_secret(stub, backend):
    stub.script = lambda n, seen: Reply(503, error_xml("SlowDown")) if n == 0 else object_reply(BODY, seen)
    client = make(stub, backend)
    client.get("s3://bkt/some-key")
    text = json.dumps(client.metrics().as_dict()) + repr(pickle.dumps(client.metrics()))
    for leak in (SECRET, "TOKEN-do-not-leak", "AKIDMETRICS", "some-key", "bkt", "127.0.0.1"):
        assert leak not in text


def test_a_forked_worker_starts_from_zero(stub):
    stub.script = lambda n, seen: object_reply(BODY, seen)
    client = make(stub, "python")
    client.get("s3://bkt/obj")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        client.get("s3://bkt/obj")
        os.write(w, str(client.metrics()["get_requests"]).encode())
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(r, 10) == b"1"
    assert client.metrics()["get_requests"] == 1


def test_snapshots_add_subtract_pickle_and_cost():
    a, b = Metrics(), Metrics()
    a.request("get", 100)
    a.ttfb(0.010)
    b.request("list", n=1000)
    b.request("get", 50, n=2)
    b.ttfb(0.020)
    b.retry("throttle")
    total = merge([a.snapshot(), pickle.loads(pickle.dumps(b)).snapshot()])
    assert (total["get_requests"], total["get_bytes"], total["list_requests"], total["retries_throttle"]) == \
        (3, 150, 1000, 1)
    assert (total - a.snapshot())["get_requests"] == 2
    assert total.cost_usd == pytest.approx(3 * 0.0004 / 1000 + 1000 * 0.005 / 1000)
    assert request_cost({"get_requests": 1_000_000}) == pytest.approx(0.4)
    assert 0.0092 < total.ttfb_quantile(0.5) < 0.0108 and 0.0185 < total.ttfb_quantile(0.99) < 0.0216
    assert "at us-east-1 list prices" in total.summary()
    assert Snapshot().ttfb_quantile(0.5) is None


def test_a_spool_sums_what_workers_published(tmp_path):
    spool = Spool(str(tmp_path / "m"))
    assert spool.collect()["get_requests"] == 0
    for i in range(3):
        m = Metrics()
        m.request("get", 10)
        spool.publish(f"w{i}", m.snapshot())
    spool.publish("w0", Snapshot({"get_requests": 5}))  # replaced, not added
    assert spool.collect()["get_requests"] == 7


@pytest.mark.parametrize("workers", [0, 2])
def test_a_dataset_sums_its_counters_over_dataloader_workers(stub, workers):
    import torch.utils.data

    from awsio.dataset import S3Dataset, S3IterableDataset

    stub.script = lambda n, seen: Reply(503, error_xml("SlowDown")) if n == 3 else object_reply(BODY, seen)
    config = S3Config(endpoint_url=stub.endpoint, backend="python", static_credentials=("a", "b", None))
    urls = [f"s3://bkt/o{i}.bin" for i in range(12)]
    ds = S3IterableDataset(urls, config=config)
    for epoch in range(2):
        loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers)
        assert sum(1 for _ in loader) == 12
        m = ds.metrics()
        assert (m["samples"], m["get_requests"], m["get_bytes"]) == (12 * (epoch + 1), 12 * (epoch + 1) + 1,
                                                                      12 * (epoch + 1) * len(BODY))
        assert m["retries_throttle"] == 1 and sum(m.ttfb) == 12 * (epoch + 1)
    pipe = ds.to_tuple("bin") if hasattr(ds, "to_tuple") else None
    if pipe is not None:
        assert sum(1 for _ in torch.utils.data.DataLoader(pipe, batch_size=None, num_workers=workers)) == 12
        assert pipe.metrics()["samples"] == 36 and pipe.metrics()["get_requests"] == 37

    mapped = S3Dataset(urls, config=config)
    loader = torch.utils.data.DataLoader(mapped, batch_size=4, num_workers=workers, collate_fn=list)
    assert sum(len(b) for b in loader) == 12  # the workers publish as they exit, at the end
    m = mapped.metrics()
    assert (m["samples"], m["get_requests"]) == (12, 12)
