"""The training loop in one process on an in-memory synthetic set: metrics, checkpoint, resume."""

from __future__ import annotations

import io
import json
import os

import pytest
import torch
from hydra import compose, initialize_config_dir

from awsio.cli import train
from awsio.cli.common import CONF_DIR, image_pipeline
from awsio.pipeline import MemorySource
from awsio.models import SmallCNN, torchvision_model
from awsio.tools.makeshards import synthetic_samples


class _Synthetic(MemorySource):
    """The synthetic set in memory, as 4 shards; counts the units it reads; can fail on purpose."""

    def __init__(self, n: int) -> None:
        records = [(f"mem://s{i % 4}", f"k{i:05d}.{ext}", data)
                   for i, s in enumerate(synthetic_samples(n, classes=4, size=32, seed=1))
                   for ext, data in s.fields]
        records.sort(key=lambda r: r[0])
        super().__init__(records)
        self.epochs: list[int] = []
        self.epochs_read: list[int] = []  # the epoch of each pass that read
        self.units_read = 0
        self.fail_after: int | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)
        super().set_epoch(epoch)

    def _read(self, order, units):
        self.epochs_read.append(self._progress.epoch)
        for unit in super()._read(order, units):
            if self.fail_after is not None and self.units_read == self.fail_after:
                raise Crash("storage went away")
            self.units_read += 1
            yield unit


class Crash(RuntimeError):
    pass


@pytest.fixture
def fake_data(monkeypatch):
    ds = _Synthetic(192)

    def build(urls, *, batch_size, image_key, label_key, image_size, shuffle_urls, seed, **_):
        ds.shuffled, ds.seed = shuffle_urls, seed
        return image_pipeline(ds, image_key=image_key, label_key=label_key, image_size=image_size,
                              batch_size=batch_size)

    monkeypatch.setattr(train, "build_image_dataset", build)
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
    assert all(x["s3"]["request_cost_usd"] == 0 for x in lines)  # the synthetic source reads nothing
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


def test_mid_epoch_checkpoint_resumes_at_the_next_batch_without_replay(tmp_path, fake_data):
    # The data fails after 6 batches (a crash mid-epoch); a checkpoint was written every 5 steps.
    fake_data.fail_after = 6
    with pytest.raises(Crash):
        train.run(_cfg(tmp_path, "trainer.epochs=1", "trainer.checkpoint_every_steps=5"))
    state = torch.load(tmp_path / "ckpt" / "last.pt", weights_only=False)
    assert state["epoch"] == 0 and state["data"]["consumed"] == 5 * 16
    # The resume trains the remaining 7 batches of epoch 0 and reads only those: no replay.
    fake_data.fail_after = None
    fake_data.units_read = 0
    history = train.run(_cfg(tmp_path, "trainer.epochs=1", "trainer.resume=true"))
    assert [(m["epoch"], m["steps"], m["samples"]) for m in history] == [(0, 7, 112)]
    assert fake_data.units_read == 7
    state = torch.load(tmp_path / "ckpt" / "last.pt", weights_only=False)
    assert state["epoch"] == 1 and state["data"] is None


def test_resume_says_what_changed(tmp_path, fake_data, capsys):
    fake_data.fail_after = 4
    with pytest.raises(Crash):
        train.run(_cfg(tmp_path, "trainer.epochs=1", "trainer.checkpoint_every_steps=2"))
    fake_data.fail_after = None
    state = torch.load(tmp_path / "ckpt" / "last.pt", weights_only=False)
    state["num_workers"] = 3  # as if saved by a run with 3 DataLoader workers
    torch.save(state, tmp_path / "ckpt" / "last.pt")
    train.run(_cfg(tmp_path, "trainer.epochs=1", "trainer.resume=true"))
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("train: resumed")][0]
    assert "64 of 192 samples done, none read again" in line
    assert "saved with 1 process(es) x 3 worker(s), now 1 x 0" in line


def test_a_budget_that_ends_with_the_epoch_resumes_at_the_next_epoch(tmp_path, fake_data):
    """trainer.max_steps running out exactly at an epoch's last batch saves a complete data state:
    the resume starts the next epoch once, in its own order, and runs trainer.epochs in all."""
    first = train.run(_cfg(tmp_path, "data.shuffle_urls=true", "trainer.epochs=3", "trainer.max_steps=12"))
    assert [(m["epoch"], m["steps"]) for m in first] == [(0, 12)]  # 192 samples / 16: 12 steps
    fake_data.epochs_read.clear()
    second = train.run(_cfg(tmp_path, "data.shuffle_urls=true", "trainer.epochs=3", "trainer.resume=true"))
    assert [(m["epoch"], m["steps"]) for m in second] == [(1, 12), (2, 12)]
    assert fake_data.epochs_read == [1, 2]


@pytest.mark.parametrize("content", ["garbage", "another program's"])
def test_a_checkpoint_that_is_not_ours_is_a_typed_error_naming_it(tmp_path, fake_data, content):
    """A checkpoint file that is not a torch file, or one without the train job's keys (another
    program's state_dict): StateError naming trainer.checkpoint, not a bare unpickling error or KeyError."""
    from awsio.errors import StateError

    (tmp_path / "ckpt").mkdir()
    where = tmp_path / "ckpt" / "last.pt"
    if content == "garbage":
        where.write_bytes(b"\x80\x04not a torch file")
    else:
        torch.save({"weight": torch.zeros(2)}, where)
    with pytest.raises(StateError) as err:
        train.run(_cfg(tmp_path, "trainer.epochs=1", "trainer.resume=true"))
    assert str(where) in str(err.value)
