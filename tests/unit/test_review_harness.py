"""Review of the train job's harness (awsio/cli/train.py, conf/, scripts/): each test failed
before its fix."""

from __future__ import annotations

import logging
import multiprocessing
import os
import socket
import subprocess
import sys

import pytest
import torch
from test_train_loop import Crash, _cfg, _Synthetic, fake_data  # noqa: F401  (fake_data: a fixture)

from awsio.cli import train
from awsio.cli.common import CONF_DIR, ConfigValueError, image_pipeline

ROOT = os.path.dirname(CONF_DIR)


def test_max_steps_equal_to_max_steps_per_epoch_stops_the_run(tmp_path, fake_data):
    """trainer.max_steps=N with data.max_steps_per_epoch=N: N steps in all, not N per epoch."""
    history = train.run(_cfg(tmp_path, "trainer.epochs=3", "trainer.max_steps=3", "data.max_steps_per_epoch=3"))
    assert sum(m["steps"] for m in history) == 3


def test_max_steps_running_out_at_a_short_epochs_end_stops_the_run(tmp_path, fake_data):
    history = train.run(_cfg(tmp_path, "trainer.epochs=4", "trainer.max_steps=6", "data.max_steps_per_epoch=3"))
    assert [(m["epoch"], m["steps"]) for m in history] == [(0, 3), (1, 3)]
    state = torch.load(tmp_path / "ckpt" / "last.pt", weights_only=False)
    assert state["epoch"] == 2


def test_a_resumed_epoch_takes_only_the_rest_of_max_steps_per_epoch(tmp_path, fake_data):
    """An epoch cut to data.max_steps_per_epoch=6, interrupted after 4 steps, trains 2 more on resume
    (6 in all, as without the interruption), not 6 more."""
    fake_data.fail_after = 5
    with pytest.raises(Crash):
        train.run(_cfg(tmp_path, "trainer.epochs=1", "data.max_steps_per_epoch=6",
                       "trainer.checkpoint_every_steps=4"))
    fake_data.fail_after = None
    history = train.run(_cfg(tmp_path, "trainer.epochs=1", "data.max_steps_per_epoch=6", "trainer.resume=true"))
    assert [(m["epoch"], m["steps"]) for m in history] == [(0, 2)]


def test_max_steps_per_epoch_reads_no_batch_it_does_not_train_on(tmp_path, fake_data):
    train.run(_cfg(tmp_path, "trainer.epochs=2", "data.max_steps_per_epoch=3"))
    assert fake_data.units_read == 6


def test_log_every_zero_is_a_config_error(tmp_path, fake_data):
    with pytest.raises(ConfigValueError, match=r"trainer\.log_every"):
        train.run(_cfg(tmp_path, "trainer.epochs=1", "trainer.progress=true", "trainer.log_every=0"))


def _rank(rank: int, port: int, cfg, out, n: int = 192) -> None:
    """One gloo rank of a 2-process run over the in-memory synthetic set of ``n`` samples; puts
    (rank, [(epoch, steps)], the awsio.train warnings) or (rank, the error)."""
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    warnings: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warnings.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("awsio.train").addHandler(handler)
    ds = _Synthetic(n)
    train.build_image_dataset = lambda urls, *, batch_size, image_key, label_key, image_size, equal_work, **_: \
        image_pipeline(ds, image_key=image_key, label_key=label_key, image_size=image_size, batch_size=batch_size)
    ds.equal_work = cfg.data.equal_work
    try:
        out.put((rank, [(m["epoch"], m["steps"]) for m in train.run(cfg)], warnings))
    except BaseException as exc:  # noqa: BLE001 (reported to the test)
        out.put((rank, f"{type(exc).__name__}: {exc}", warnings))


def _two_ranks(cfgs, n: int = 192) -> dict:
    """Run ``cfgs[0]`` and ``cfgs[1]`` as ranks 0 and 1 (forked, gloo); {rank: (result, warnings)}."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_rank, args=(r, port, cfgs[r], out, n)) for r in range(2)]
    for p in procs:
        p.start()
    got = {}
    try:
        for _ in procs:
            rank, result, warnings = out.get(timeout=120)
            got[rank] = (result, warnings)
    except Exception:  # queue.Empty: a rank hung
        pass
    finally:
        for p in procs:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join()
    return got


def test_every_rank_resumes_from_rank_0s_checkpoint(tmp_path, fake_data):
    """Two nodes, trainer.checkpoint a local path: rank 0 wrote it on its disk, rank 1's node has no
    such file. Every rank must resume from rank 0's checkpoint (the one rank 0 writes): rank 1
    starting over at epoch 0 trained other data than rank 0 and then waited on collectives rank 0
    never joined."""
    train.run(_cfg(tmp_path, "trainer.epochs=1"))  # rank 0's disk: a checkpoint at epoch 1
    (tmp_path / "other").mkdir()
    got = _two_ranks([_cfg(tmp_path, "trainer.epochs=2", "trainer.resume=true"),
                      _cfg(tmp_path / "other", "trainer.epochs=2", "trainer.resume=true")])  # rank 1's: none
    assert {rank: result for rank, (result, _) in got.items()} == {0: [(1, 6)], 1: [(1, 6)]}


def test_a_rank_whose_batches_are_dropped_says_so(tmp_path, fake_data):
    """equal_work=null, 193 samples over 2 ranks in batches of 16: rank 0 has 7 batches, rank 1 has 6;
    all ranks stop together after 6 (no hang), and the sample of rank 0's 7th batch is not trained
    on: that must not go unsaid."""
    got = _two_ranks([_cfg(tmp_path / f"r{r}", "trainer.epochs=1", "data.equal_work=null") for r in range(2)], n=193)
    assert {rank: result for rank, (result, _) in got.items()} == {0: [(0, 6)], 1: [(0, 6)]}
    assert any("not trained on" in w for w in got[0][1]), got



def _script(name: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", f"{ROOT}/scripts/{name}", *args], capture_output=True, text=True,
                          timeout=120, env=env)


def test_local_s3_sh_runs_where_there_is_only_python3(tmp_path):
    """A fresh Debian/Ubuntu has python3 and no `python`: scripts/local_s3.sh must not need one."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)
    r = _script("local_s3.sh", "--help", env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": os.environ["HOME"]})
    assert r.returncode == 0, r.stderr
    assert "usage" in r.stdout.lower()


def test_scripts_take_a_python_whose_path_has_spaces(tmp_path):
    """PYTHON="/opt/my tools/python3": test.sh (and the others) must quote it."""
    spaced = tmp_path / "my tools"
    spaced.mkdir()
    (spaced / "python3").symlink_to(sys.executable)
    env = dict(os.environ, PYTHON=str(spaced / "python3"), AWSIO_SKIP_INSTALL="1")
    r = _script("test.sh", "--version", env=env)
    assert r.returncode == 0, r.stderr


def test_a_local_write_is_on_disk_before_it_takes_its_name(tmp_path, monkeypatch) -> None:
    """A checkpoint renamed into place before its bytes reached the disk is empty after a power
    loss; two writers sharing a pid (containers on one volume) must not share a temporary file."""
    import os

    from awsio.tools.storage import Storage

    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    temps: list[str] = []
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append("replace"), temps.append(a), real_replace(a, b))[2])
    dest = tmp_path / "ckpt.pt"
    Storage().put(str(dest), b"state")
    Storage().put(str(dest), b"state2")
    assert events == ["fsync", "replace", "fsync", "replace"] and dest.read_bytes() == b"state2"
    assert temps[0] != temps[1]


def test_a_run_from_scratch_starts_a_new_metrics_file_even_with_resume(tmp_path, fake_data):
    """trainer.resume=true without a checkpoint trains from scratch: its metrics.jsonl must not
    carry the rows of an earlier run before its own."""
    train.run(_cfg(tmp_path, "trainer.epochs=2"))
    (tmp_path / "ckpt" / "last.pt").unlink()
    train.run(_cfg(tmp_path, "trainer.epochs=1", "trainer.resume=true"))
    rows = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 1
