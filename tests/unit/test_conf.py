"""Hydra configs: composition, overrides, value validation, and clear errors for bad overrides."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from awsio.cli import bench, train
from awsio.cli.common import CONF_DIR, ConfigValueError, s3_config

ROOT = os.path.dirname(CONF_DIR)


def _compose(name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        return compose(config_name=name, overrides=overrides)


def test_train_defaults_compose_and_validate():
    cfg = _compose("train", [])
    assert set(cfg) >= {"data", "model", "optimizer", "trainer", "s3", "seed"}
    assert cfg.model._target_ == "awsio.models.SmallCNN" and cfg.model.num_classes == cfg.data.num_classes
    train.validate(cfg)
    assert isinstance(OmegaConf.to_container(cfg, resolve=True), dict)


@pytest.mark.parametrize("group,choice", [("model", "resnet18"), ("optimizer", "adamw"), ("s3", "aws"),
                                          ("s3", "minio"), ("data", "imagenet")])
def test_every_group_option_composes(group, choice):
    cfg = _compose("train", [f"{group}={choice}"])
    train.validate(cfg)
    OmegaConf.to_container(cfg, resolve=True)


def test_s3_profiles_build_s3config(monkeypatch):
    monkeypatch.setenv("MINIO_ENDPOINT", "http://minio.example:9000")
    cfg = _compose("train", ["s3=minio"])
    c = s3_config(cfg.s3)
    assert c.endpoint_url == "http://minio.example:9000" and c.path_style is True
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    aws = s3_config(_compose("train", ["s3=aws", "s3.region=eu-west-1"]).s3)
    assert aws.endpoint_url is None and aws.region == "eu-west-1"


@pytest.mark.parametrize("override,key", [
    ("trainer.epochs=0", "trainer.epochs"),
    ("data.batch_size=-4", "data.batch_size"),
    ("data.num_workers=-1", "data.num_workers"),
    ("data.urls=/local/path.tar", "data.urls"),
    ("trainer.device=tpu", "trainer.device"),
    ("optimizer.lr=0", "optimizer.lr"),
])
def test_bad_train_values_name_the_key(override, key):
    with pytest.raises(ConfigValueError, match=key.replace(".", r"\.")):
        train.validate(_compose("train", [override]))


@pytest.mark.parametrize("override,key", [("loaders=[nope]", "loaders"), ("epochs=0", "epochs"),
                                          ("batch_size=0", "batch_size"), ("decode=maybe", "decode")])
def test_bad_bench_values_name_the_key(override, key):
    with pytest.raises(ConfigValueError, match=key):
        bench.validate(_compose("bench", [override]))


def _cli(module: str, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **extra_env)
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=60,
                          env=env, cwd=ROOT)


def test_cli_bad_overrides_give_clear_messages():
    r = _cli("awsio.cli.train", "trainer.epochs=0", "hydra.run.dir=/tmp/awsio-test-unused", "hydra.output_subdir=null")
    assert r.returncode == 2
    assert "train: error: trainer.epochs=0 is invalid: expected an integer >= 1" in r.stderr
    assert "Traceback" not in r.stderr
    r = _cli("awsio.cli.train", "trainer.epoch=3")  # a typo: Hydra refuses unknown keys
    assert r.returncode != 0 and "Could not override 'trainer.epoch'" in r.stderr


def test_cli_unreachable_endpoint_is_one_clear_line(tmp_path):
    r = _cli("awsio.cli.train", "s3.endpoint_url=http://127.0.0.1:9", "s3.max_attempts=1", "s3.connect_timeout=1",
             f"trainer.run_dir={tmp_path}", "hydra.output_subdir=null", "trainer.epochs=1",
             AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test-secret")
    assert r.returncode == 1
    assert "train: error: EndpointConnectionError" in r.stderr and "127.0.0.1:9" in r.stderr
    assert "Traceback" not in r.stderr and "test-secret" not in r.stderr + r.stdout


def test_settings_are_defined_once():
    """The S3Config fields drive the README table, the known s3.* settings and the native options."""
    from dataclasses import fields

    from awsio.config import S3Config, setting_names, settings_table

    with open(os.path.join(ROOT, "README.md")) as f:
        assert settings_table() in f.read(), "regenerate the README table with awsio.config.settings_table()"
    names = setting_names()
    for profile in ("aws", "local", "minio"):
        assert set(OmegaConf.load(os.path.join(CONF_DIR, "s3", f"{profile}.yaml"))) <= set(names)
    with pytest.raises(ConfigValueError, match=r"unknown setting\(s\) max_conections; known: endpoint_url.*"
                                               r"verify_checksums"):
        s3_config({"max_conections": 3})
    assert s3_config({"verify_checksums": False}).verify_checksums is False
    native = [f.name for f in fields(S3Config) if f.metadata.get("native")]
    assert "verify_checksums" in native and "backend" not in native
    try:
        from awsio import _native
    except ImportError:
        return
    engine = {n for n in dir(_native.Options()) if not n.startswith("_")}
    assert set(native) <= engine  # every native setting reaches the engine by its name
    assert engine - set(native) == {"endpoint", "deadline", "backoff_base", "backoff_cap"}  # derived or fixed
