"""Review of metrics / world / handlers / config / errors: each test failed before its fix."""

from __future__ import annotations

import math
import os
import threading
import types
from typing import Any

import pytest
from http_stub import object_reply

from awsio import S3Client
from awsio.config import S3Config
from awsio.errors import ConfigError, ThrottledError, s3_error
from awsio.handlers import SkipStats
from awsio.metrics import Metrics
from awsio.world import current_world


# -- config: values accepted here that failed deep inside a read with an untyped error ----------

@pytest.mark.parametrize("field,value", [
    ("connect_timeout", math.inf), ("read_timeout", math.inf), ("read_timeout", 1e10),
    ("max_attempts", 2**31), ("part_size", 2**70), ("max_inflight_bytes", 2**70),
    ("buffer_pool_bytes", 2**70), ("keep_freed_memory", "no"),
])
def test_config_rejects_values_the_backends_cannot_take(field: str, value: Any) -> None:
    with pytest.raises(ConfigError) as info:
        S3Config(region="us-east-1", **{field: value})
    assert info.value.field == field


@pytest.mark.parametrize("endpoint", ["http://host:notaport", "http://host:99999", "http://:9000"])
def test_config_rejects_an_endpoint_with_a_bad_port(endpoint: str) -> None:
    with pytest.raises(ConfigError) as info:
        S3Config(endpoint_url=endpoint)
    assert info.value.field == "endpoint_url"


@pytest.mark.parametrize("var,field", [("S3_VERIFY_SSL", "verify"), ("AWSIO_VERIFY_CHECKSUMS", "verify_checksums"),
                                       ("AWSIO_KEEP_FREED_MEMORY", "keep_freed_memory")])
def test_a_bool_variable_with_a_bad_value_is_a_config_error(monkeypatch: pytest.MonkeyPatch, var: str,
                                                            field: str) -> None:
    monkeypatch.setenv(var, "flase")  # (was read as True: TLS verification stayed on by luck)
    with pytest.raises(ConfigError) as info:
        S3Config(region="us-east-1")
    assert info.value.field == field
    monkeypatch.setenv(var, " Off ")
    assert getattr(S3Config(region="us-east-1"), field) is False


def test_the_config_limits_still_read(stub: Any, backend: str) -> None:
    body = os.urandom(3000)
    stub.script = lambda n, seen: object_reply(body, seen)
    client = S3Client(S3Config(endpoint_url=stub.endpoint, region="us-east-1", backend=backend,
                               static_credentials=("AK", "SK", None), read_timeout=86400.0,
                               connect_timeout=86400.0, max_attempts=1000, max_inflight_bytes=1 << 40))
    assert client.get("s3://bkt/obj") == body


# -- world: bad RANK / WORLD_SIZE are typed errors naming the variable ---------------------------

def test_bad_rank_variables_are_config_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "zero")
    with pytest.raises(ConfigError) as info:
        current_world()
    assert info.value.field == "RANK"
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="RANK / WORLD_SIZE"):
        current_world()
    monkeypatch.setenv("RANK", "1")
    assert (current_world().rank, current_world().world_size) == (1, 2)


# -- errors: a bodyless 503 is throttling, as both backends count it ---------------------------

def test_a_bodyless_503_is_throttled() -> None:
    assert isinstance(s3_error("s3://b/k", 503), ThrottledError)
    assert not isinstance(s3_error("s3://b/k", 503, "InternalError"), ThrottledError)


# -- metrics: a counter never raises --------------------------------------------------------------

def test_ttfb_of_nan_or_inf_does_not_raise() -> None:
    m = Metrics()
    m.ttfb(math.nan)
    m.ttfb(math.inf)
    m.request("get", ttfb=math.inf)
    assert sum(m.snapshot().ttfb) == 3


# -- handlers: SkipStats readable while another thread counts; examples bounded -------------------

def test_skipstats_can_be_read_while_a_thread_counts() -> None:
    stats = SkipStats()

    def count() -> None:
        for i in range(20_000):  # a new (stage, reason) each time: the dict grows under the reader
            stats.add(f"stage{i}", "Reason")

    t = threading.Thread(target=count)
    t.start()
    try:
        while t.is_alive():
            stats.total, stats.by_stage(), SkipStats().merge(stats)
    finally:
        t.join()
    assert stats.total == sum(stats.by_stage().values()) == 20_000
    assert stats.summary().startswith("skipped 20000 (")


def test_skipstats_examples_are_bounded_in_size() -> None:
    stats = SkipStats()
    for _ in range(30):
        stats.add("map", ValueError("x" * 1_000_000))
    assert stats.total == 30
    assert len(stats.examples) == 20 and all(len(e) < 2000 for e in stats.examples)


# -- s3: a botocore error whose ``response`` is None (HTTPClientError) is retried ---------------------

def test_python_backend_retries_a_timeout_before_the_headers(stub: Any) -> None:
    from botocore import exceptions as bex

    body = os.urandom(3000)
    stub.script = lambda n, seen: object_reply(body, seen)
    client = S3Client(S3Config(endpoint_url=stub.endpoint, region="us-east-1", backend="python",
                               static_credentials=("AK", "SK", None)))
    inner = client.backend._client  # type: ignore[attr-defined]
    real, calls = inner.get_object, [0]

    def flaky(**kw: Any) -> Any:
        calls[0] += 1
        if calls[0] == 1:
            raise bex.ReadTimeoutError(endpoint_url=stub.endpoint)
        return real(**kw)

    inner.get_object = flaky
    assert client.get("s3://bkt/obj") == body
    assert client.metrics()["retries_timeout"] == 1


def test_a_spawned_dataloader_worker_reads_its_ranks_share(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process group set up without RANK / WORLD_SIZE in the environment (mp.spawn +
    init_process_group(rank=, world_size=)) is not initialised in a spawned DataLoader worker: every
    rank's workers took themselves for rank 0 of 1 and read the same samples. The rank and world
    size travel with the dataset to the worker."""
    import pickle

    import torch.distributed as dist
    import torch.utils.data

    from awsio import world as world_mod
    from awsio.grouping import Record
    from awsio.pipeline import MemorySource

    for name in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    source = MemorySource([Record("s", f"k{i}.bin", b"x") for i in range(8)])
    with monkeypatch.context() as parent:  # the training process: rank 1 of 2
        parent.setattr(dist, "is_initialized", lambda: True)
        parent.setattr(dist, "get_rank", lambda: 1)
        parent.setattr(dist, "get_world_size", lambda: 2)
        sent = pickle.dumps(source)
    try:
        pickle.loads(sent)  # the spawned worker: no process group there
        info = types.SimpleNamespace(id=0, num_workers=1, seed=0, dataset=None)
        monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: info)
        assert world_mod.current_world() == world_mod.World(1, 2, 0, 1)
        monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: None)
        assert world_mod.current_world() == world_mod.World(0, 1, 0, 1)  # not a worker: not adopted
    finally:
        world_mod._parent_world = None
