"""Where credentials come from: the environment without botocore, else the botocore chain."""

from __future__ import annotations

import subprocess
import sys

import pytest

from awsio import config as config_module
from awsio.config import Credentials, S3Config, credentials_provider

ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE")


@pytest.fixture
def env(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_env_credentials_follow_botocore_token_order(env):
    env.setenv("AWS_ACCESS_KEY_ID", "AK1")
    env.setenv("AWS_SECRET_ACCESS_KEY", "SK1")
    env.setenv("AWS_SESSION_TOKEN", "SESSION")
    env.setenv("AWS_SECURITY_TOKEN", "SECURITY")
    get = credentials_provider(S3Config(endpoint_url="http://127.0.0.1:1"))
    assert get() == Credentials("AK1", "SK1", "SECURITY")
    env.setenv("AWS_SECURITY_TOKEN", "")
    assert get() == Credentials("AK1", "SK1", "SESSION")
    env.setenv("AWS_ACCESS_KEY_ID", "AK2")  # re-read on each call, as botocore does
    assert get().access_key == "AK2"


def test_env_credentials_vanishing_falls_back_to_the_chain(env):
    env.setenv("AWS_ACCESS_KEY_ID", "AK1")
    env.setenv("AWS_SECRET_ACCESS_KEY", "SK1")
    calls = []

    def fake_chain(config):
        calls.append(config)
        return lambda: Credentials("CHAIN", "CHAINSK")

    env.setattr(config_module, "_chain_provider", fake_chain)
    get = credentials_provider(S3Config(endpoint_url="http://127.0.0.1:1"))
    assert get().access_key == "AK1" and not calls
    env.delenv("AWS_SECRET_ACCESS_KEY")
    assert get() == Credentials("CHAIN", "CHAINSK")
    assert len(calls) == 1


def test_a_named_profile_uses_the_chain(env):
    env.setenv("AWS_ACCESS_KEY_ID", "AK1")
    env.setenv("AWS_SECRET_ACCESS_KEY", "SK1")
    sentinel = lambda: None  # noqa: E731
    env.setattr(config_module, "_chain_provider", lambda config: sentinel)
    assert credentials_provider(S3Config(endpoint_url="http://127.0.0.1:1", profile="someone")) is sentinel


@pytest.mark.parametrize("kw,expected", [({"static_credentials": ("S", "T", None)}, Credentials("S", "T", None)),
                                         ({"unsigned": True}, None)])
def test_static_or_unsigned_ignore_the_environment(env, kw, expected):
    env.setenv("AWS_ACCESS_KEY_ID", "AK1")
    env.setenv("AWS_SECRET_ACCESS_KEY", "SK1")
    assert credentials_provider(S3Config(endpoint_url="http://127.0.0.1:1", **kw))() == expected


def test_env_credentials_do_not_import_botocore(env):
    code = ("import sys\nfrom awsio.config import S3Config, credentials_provider\n"
            "c = credentials_provider(S3Config(endpoint_url='http://127.0.0.1:1', region='us-east-1'))()\n"
            "print(c.access_key, 'botocore' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"AWS_ACCESS_KEY_ID": "AK9", "AWS_SECRET_ACCESS_KEY": "SK9", "PATH": "/usr/bin:/bin"})
    assert out.stdout.split() == ["AK9", "False"]
