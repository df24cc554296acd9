"""S3Client without a server: backend choice, laziness, pickling, fork, argument checks."""

from __future__ import annotations

import os
import pickle
import warnings

import pytest

import awsio.s3.client as client_mod
import awsio.s3.native_backend as native_mod
from awsio import S3Client
from awsio.config import S3Config
from awsio.errors import ConfigError, InvalidURLError

ENDPOINT = "http://127.0.0.1:9"  # never contacted: these tests make no requests


def config(**kw: object) -> S3Config:
    return S3Config(endpoint_url=ENDPOINT, region="us-east-1", static_credentials=("ak", "sk", None), **kw)


@pytest.fixture
def no_native(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend awsio._native is not built, and forget any earlier fallback warning."""
    monkeypatch.setattr(native_mod, "native_available", lambda: False)
    monkeypatch.setattr(client_mod, "_warned_fallback", False)


def test_auto_falls_back_to_python_with_one_warning(no_native: None) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = S3Client(config(backend="auto"))
        assert first.backend_name == "python"
        second = S3Client(config(backend="auto"))
        assert second.backend_name == "python"
    fallback = [w for w in caught if "native" in str(w.message)]
    assert len(fallback) == 1
    assert issubclass(fallback[0].category, RuntimeWarning)


def test_native_requested_but_not_built_is_a_clear_error(no_native: None) -> None:
    with pytest.raises(ConfigError, match="libcurl") as info:
        S3Client(config(backend="native")).backend_name
    assert isinstance(info.value, ValueError) and info.value.field == "backend"


def test_python_backend_never_warns(no_native: None) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert S3Client(config(backend="python")).backend_name == "python"


def test_auto_prefers_native_when_built() -> None:
    if not native_mod.native_available():
        pytest.skip("awsio._native is not built")
    assert S3Client(config(backend="auto")).backend_name == "native"


def test_environment_picks_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWSIO_BACKEND", "python")
    assert S3Client(S3Config(endpoint_url=ENDPOINT, static_credentials=("a", "b", None))).backend_name == "python"


def test_backend_is_lazy_and_reused() -> None:
    c = S3Client(config(backend="python"))
    assert c._backend is None  # nothing built (no threads, no sockets) until first use
    b = c.backend
    assert c.backend is b
    c.close()
    assert c._backend is None
    assert c.backend is not b  # usable again after close


@pytest.mark.parametrize("backend", ["python", "native"])
def test_pickle_carries_only_the_config(backend: str) -> None:
    if backend == "native" and not native_mod.native_available():
        pytest.skip("awsio._native is not built")
    c = S3Client(config(backend=backend, max_connections=7))
    c.backend  # built: must not travel
    clone = pickle.loads(pickle.dumps(c))
    assert clone.config == c.config
    assert clone._backend is None
    assert clone.backend_name == backend
    assert b"sk" not in repr(clone).encode()


@pytest.mark.parametrize("backend", ["python", "native"])
def test_forked_child_builds_its_own_backend(backend: str) -> None:
    if backend == "native" and not native_mod.native_available():
        pytest.skip("awsio._native is not built")
    c = S3Client(config(backend=backend))
    parent_backend = c.backend
    pid = os.fork()
    if pid == 0:  # child: report through the exit status only
        try:
            ok = c.backend is not parent_backend and c.backend is c.backend and c._pid == os.getpid()
            os._exit(0 if ok else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert c.backend is parent_backend  # the parent's backend is untouched


def test_argument_checks() -> None:
    c = S3Client(config(backend="python"))
    with pytest.raises(ValueError):
        c.get_range("s3://bucket/key", 10, 5)
    with pytest.raises(ValueError):
        c.get_range("s3://bucket/key", -1, 5)
    with pytest.raises(InvalidURLError):
        c.get("http://bucket/key")
    with pytest.raises(ValueError):
        c.put("s3://bucket/key", b"x", part_size=1 << 20)


def test_module_helpers_follow_the_current_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9001")
    first = client_mod._client(None)
    assert client_mod._client(None) is first  # one shared client while nothing changes
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9002")
    second = client_mod._client(None)
    assert second.config.endpoint_url == "http://127.0.0.1:9002"
    explicit = config(backend="python")
    assert client_mod._client(explicit).config is explicit
