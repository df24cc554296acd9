"""The training loop in one process on an in-memory synthetic set: metrics, checkpoint, resume."""

from __future__ import annotations

import io
import json
import os

import pytest
import torch
from hydra import compose, initialize_config_dir

from awsio.cli import train
from awsio.cli.common import CONF_DIR, ImageToTensor
from awsio.models import SmallCNN, torchvision_model
from awsio.tools.makeshards import synthetic_samples


class _Synthetic(torch.utils.data.IterableDataset):
    def __init__(self, n: int) -> None:
        super().__init__()
        to_tensor = ImageToTensor(32)
        self.items = [(to_tensor(dict(s.fields)["jpg"]), int(dict(s.fields)["cls"]))
                      for s in synthetic_samples(n, classes=4, size=32, seed=1)]
        self.epochs: list[int] = []

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)

    def __iter__(self):
        return iter(self.items)


@pytest.fixture
def fake_data(monkeypatch):
    ds = _Synthetic(192)
    monkeypatch.setattr(train, "build_image_dataset", lambda *a, **k: ds)
    return ds


def _cfg(tmp_path, *overrides: str):
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        return compose(config_name="train", overrides=[
            f"trainer.run_dir={tmp_path}/run", f"trainer.checkpoint={tmp_path}/ckpt/last.pt",
            "data.num_workers=0", "data.batch_size=16", "data.num_classes=4", "trainer.progress=false",
            "optimizer=adamw", "model.width=8", *overrides])


def test_train_records_metrics_and_learns(tmp_path, fake_data):
    history = train.run(_cfg(tmp_path, "trainer.epochs=3"))
    assert [m["epoch"] for m in history] == [0, 1, 2] and fake_data.epochs == [0, 1, 2]
    assert all(m["samples"] == 192 and m["steps"] == 12 for m in history)
    assert history[-1]["accuracy"] > history[0]["accuracy"] and history[-1]["accuracy"] > 0.5
    assert all(0.0 <= m["data_wait_fraction"] <= 1.0 and m["samples_per_s"] > 0 for m in history)
    lines = [json.loads(x) for x in open(tmp_path / "run" / "metrics.jsonl")]
    assert [x["epoch"] for x in lines] == [0, 1, 2]
    state = torch.load(tmp_path / "ckpt" / "last.pt", weights_only=False)
    assert state["epoch"] == 3 and set(state) >= {"model", "optimizer", "config", "metrics"}


def test_max_steps_per_epoch(tmp_path, fake_data):
    history = train.run(_cfg(tmp_path, "trainer.epochs=1", "data.max_steps_per_epoch=3"))
    assert history[0]["steps"] == 3 and history[0]["samples"] == 48


def test_resume_restores_model_optimizer_and_epoch(tmp_path, fake_data):
    train.run(_cfg(tmp_path, "trainer.epochs=1"))
    first = torch.load(tmp_path / "ckpt" / "last.pt", weights_only=False)
    loaded = {}
    real_load = SmallCNN.load_state_dict

    def spy(self, state, *a, **k):
        loaded.update(state)
        return real_load(self, state, *a, **k)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(SmallCNN, "load_state_dict", spy)
        history = train.run(_cfg(tmp_path, "trainer.epochs=2", "trainer.resume=true"))
    assert [m["epoch"] for m in history] == [1]
    assert all(torch.equal(loaded[k], first["model"][k]) for k in first["model"])
    second = torch.load(tmp_path / "ckpt" / "last.pt", weights_only=False)
    assert second["epoch"] == 2
    assert second["optimizer"]["state"][0]["step"] > first["optimizer"]["state"][0]["step"]
    assert [json.loads(x)["epoch"] for x in open(tmp_path / "run" / "metrics.jsonl")] == [0, 1]
    # Already done: nothing more to train.
    assert train.run(_cfg(tmp_path, "trainer.epochs=2", "trainer.resume=true")) == []


def test_resume_without_checkpoint_starts_fresh(tmp_path, fake_data):
    history = train.run(_cfg(tmp_path, "trainer.epochs=1", "trainer.resume=true"))
    assert [m["epoch"] for m in history] == [0]


def test_models():
    out = SmallCNN(num_classes=7)(torch.zeros(2, 3, 32, 32))
    assert out.shape == (2, 7)
    assert SmallCNN(num_classes=3)(torch.zeros(1, 3, 64, 64)).shape == (1, 3)
    with pytest.raises(ValueError):
        SmallCNN(num_classes=0)
    try:
        import torchvision  # noqa: F401
    except Exception:
        with pytest.raises(ImportError, match="model=smallcnn"):
            torchvision_model("resnet18")
    else:
        assert torchvision_model("resnet18", num_classes=5)(torch.zeros(1, 3, 64, 64)).shape == (1, 5)


def test_mid_epoch_checkpoint_resumes_at_that_step(tmp_path, fake_data):
    # The data fails after 6 batches (a crash mid-epoch); a checkpoint was written every 5 steps.
    class Crash(RuntimeError):
        pass

    def failing():
        for i, item in enumerate(fake_data.items):
            if i == 6 * 16:
                raise Crash("storage went away")
            yield item

    fake_data.__class__ = type("_Failing", (type(fake_data),), {"__iter__": lambda self: failing()})
    with pytest.raises(Crash):
        train.run(_cfg(tmp_path, "trainer.epochs=1", "trainer.checkpoint_every_steps=5"))
    state = torch.load(tmp_path / "ckpt" / "last.pt", weights_only=False)
    assert (state["epoch"], state["step"]) == (0, 5)
    # A resume replays (skips) those 5 batches and trains the remaining 7 of epoch 0.
    fake_data.__class__ = _Synthetic
    history = train.run(_cfg(tmp_path, "trainer.epochs=1", "trainer.resume=true"))
    assert [(m["epoch"], m["resumed_at_step"], m["steps"], m["samples"]) for m in history] == [(0, 5, 7, 112)]
    state = torch.load(tmp_path / "ckpt" / "last.pt", weights_only=False)
    assert (state["epoch"], state["step"]) == (1, 0)
