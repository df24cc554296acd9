"""awsio.handlers: the raise / warn / skip / callable policy and the skip counts."""

from __future__ import annotations

import logging
import pickle

import pytest

from awsio.errors import DecodeError
from awsio.handlers import Handler, SkipStats, resolve_handler


def _fail(handler: Handler, stats: SkipStats, exc: BaseException, stage: str = "decode") -> None:
    try:
        raise exc
    except Exception as caught:
        handler.handle(caught, stage=stage, stats=stats, where="s3://b/x.tar:k1")


def test_raise_is_the_default_and_reraises_the_same_exception() -> None:
    stats = SkipStats()
    exc = DecodeError("bad", url="s3://b/x.tar", key="k1", field="jpg")
    with pytest.raises(DecodeError) as info:
        _fail(resolve_handler(None), stats, exc)
    assert info.value is exc
    assert stats.total == 0


def test_warn_logs_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    stats = SkipStats()
    with caplog.at_level(logging.WARNING, logger="awsio.handlers"):
        _fail(resolve_handler("warn"), stats, KeyError("jpg"), stage="to_tuple")
    assert stats.counts == {("to_tuple", "KeyError"): 1}
    assert "to_tuple" in caplog.text and "KeyError" in caplog.text


def test_skip_counts_quietly_by_stage_and_reason(caplog: pytest.LogCaptureFixture) -> None:
    stats = SkipStats()
    h = resolve_handler("skip")
    with caplog.at_level(logging.DEBUG, logger="awsio.handlers"):
        for _ in range(3):
            _fail(h, stats, ValueError("x"))
        _fail(h, stats, KeyError("y"), stage="map")
    assert caplog.text == ""
    assert stats.total == 4
    assert stats.counts[("decode", "ValueError")] == 3
    assert stats.by_stage() == {"decode": 3, "map": 1}
    assert stats.summary() == "skipped 4 (decode/ValueError=3, map/KeyError=1)"


def test_callable_decides_per_exception() -> None:
    stats = SkipStats()
    h = resolve_handler(lambda exc: isinstance(exc, KeyError))
    _fail(h, stats, KeyError("k"))
    with pytest.raises(ValueError):
        _fail(h, stats, ValueError("v"))
    assert stats.total == 1


def test_webdataset_style_handlers_work() -> None:
    import webdataset as wds

    stats = SkipStats()
    _fail(resolve_handler(wds.ignore_and_continue), stats, ValueError("v"))
    assert stats.total == 1
    with pytest.raises(ValueError):
        _fail(resolve_handler(wds.reraise_exception), stats, ValueError("v"))


@pytest.mark.parametrize("bad", ["ignore", "", 3])
def test_unknown_policy_is_refused(bad: object) -> None:
    with pytest.raises(ValueError):
        resolve_handler(bad)  # type: ignore[arg-type]


def test_stats_merge_pickle_and_example_cap() -> None:
    a, b = SkipStats(), SkipStats()
    for i in range(30):
        a.add("decode", ValueError(str(i)))
    b.add("map", "timeout")
    a.merge(b)
    assert a.total == 31 and a.counts[("map", "timeout")] == 1
    assert len(a.examples) == 20
    back = pickle.loads(pickle.dumps(a))
    assert back.counts == a.counts and back.total == 31
    back.add("decode", ValueError("again"))  # the lock was rebuilt
    assert back.total == 32
    a.clear()
    assert a.summary() == "skipped 0"


def test_handler_pickles_and_compares() -> None:
    for spec in ("raise", "warn", "skip"):
        h = resolve_handler(spec)
        assert pickle.loads(pickle.dumps(h)) == h
    assert resolve_handler(resolve_handler("warn")) == Handler("warn")
