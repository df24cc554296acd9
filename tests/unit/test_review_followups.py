"""Review follow-ups: a Metrics lock held at fork, spool names reused with a pid, a closed Python
backend reused, and SLURM's rank variables.

Against the scriptable stub (``tests/http_stub.py``) where requests are made; where the native
backend behaves the same, on both backends.
"""

from __future__ import annotations

import os
import pickle
import threading
from typing import Any

import pytest
from forking import in_child, needs_fork, stub_client
from http_stub import object_reply

import awsio.metrics as metrics_mod
from awsio.errors import ConfigError
from awsio.metrics import DatasetMetrics, Metrics
from awsio.s3.backend import Request
from awsio.world import current_world



# -- 1. a Metrics lock held by another thread at fork -------------------------------------------

@needs_fork
def test_a_metrics_lock_held_by_another_thread_at_fork_is_free_in_the_child() -> None:
    """A reader thread counting when the DataLoader forks a worker: the child inherited the
    lock held, and its first count waited forever."""
    m = Metrics()
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with m._lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert held.wait(5)
    try:
        got = in_child(lambda: (m.add("samples"), m.request("get", 10), m.snapshot()["samples"])[2],
                        timeout=5)
    finally:
        release.set()
        holder.join(5)
    assert got == ("ok", 1)
    assert m.snapshot()["samples"] == 0  # the parent's counters are untouched


# -- 2. spool files of workers that get the same pid --------------------------------------------

def test_workers_with_one_pid_do_not_overwrite_each_others_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Non-persistent workers of successive epochs are new processes; one that got a pid an
    earlier worker had published under replaced that worker's counters."""
    dm = DatasetMetrics()
    path = dm.spool.path
    monkeypatch.setattr(metrics_mod, "in_worker", lambda: True)
    for n in (5, 7):  # two workers, one after the other, in one process: one pid
        worker = pickle.loads(pickle.dumps(dm))  # the dataset a spawned worker unpickles
        worker._at_exit = True  # (no exit hook in the test process)
        worker.count(None, samples=n, final=True)
        worker.count(None, samples=1, final=True)  # one worker republishing replaces its own file
    monkeypatch.setattr(metrics_mod, "in_worker", lambda: False)
    assert dm.snapshot(None)["samples"] == 14
    assert len(os.listdir(path)) == 2
    del dm, worker
    import gc

    gc.collect()
    assert not os.path.exists(path)  # the spool still goes with the dataset


# -- 3. a closed backend is closed, whichever it is ---------------------------------------------

def test_a_closed_backend_refuses_every_request(stub: Any, backend: str) -> None:
    stub.script = lambda n, seen: object_reply(b"abc", seen)
    be = stub_client(stub, backend).backend
    assert be.get("bkt", "k") == b"abc"
    be.close()
    counted = be.metrics.snapshot()
    calls = {"get": lambda: be.get("bkt", "k"), "head": lambda: be.head("bkt", "k"),
             "empty range": lambda: be.get("bkt", "k", 5, 5),
             "list": lambda: list(be.list("bkt", "")),
             "get_many": lambda: list(be.get_many([Request("bkt", "k")]))}
    for call in calls.values():
        with pytest.raises(RuntimeError, match=f"^{type(be).__name__} is closed$"):
            call()
    be.close()  # twice is fine
    assert len(stub.seen) == 1
    assert be.metrics.snapshot() == counted  # nothing sent, nothing counted


@needs_fork
def test_a_closed_backend_stays_closed_in_a_forked_child(stub: Any, backend: str) -> None:
    """The at-fork reset (the child abandons the parent's connections and opens its own) must not
    reopen a backend the user closed; one that was open still works in the child."""
    stub.script = lambda n, seen: object_reply(b"abc", seen)
    client = stub_client(stub, backend)
    open_one = client.backend
    closed = pickle.loads(pickle.dumps(open_one))  # another backend of the same config
    assert closed.get("bkt", "k") == b"abc"
    closed.close()
    kind, what = in_child(lambda: closed.get("bkt", "k"))
    assert kind == "err" and "RuntimeError" in what and "is closed" in what, (kind, what)
    assert in_child(lambda: open_one.get("bkt", "k")) == ("ok", b"abc")
    client.close()


# -- 4. SLURM's rank and task count, after RANK / WORLD_SIZE ------------------------------------

@pytest.fixture
def no_rank_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_srun_without_torchrun_gives_the_rank_from_slurm(no_rank_env: pytest.MonkeyPatch) -> None:
    no_rank_env.setenv("SLURM_PROCID", "3")
    no_rank_env.setenv("SLURM_STEP_NUM_TASKS", "4")
    no_rank_env.setenv("SLURM_LOCALID", "1")
    assert (current_world().rank, current_world().world_size) == (3, 4)


def test_rank_and_world_size_come_before_slurm(no_rank_env: pytest.MonkeyPatch) -> None:
    no_rank_env.setenv("SLURM_PROCID", "3")
    no_rank_env.setenv("SLURM_STEP_NUM_TASKS", "4")
    no_rank_env.setenv("RANK", "1")
    no_rank_env.setenv("WORLD_SIZE", "2")
    assert (current_world().rank, current_world().world_size) == (1, 2)


def test_a_batch_scripts_lone_process_is_the_whole_world(no_rank_env: pytest.MonkeyPatch) -> None:
    # sbatch --ntasks=4 exports the job's task count; a python run in the script itself (no srun)
    # is one process and must read every sample, not a quarter of them
    no_rank_env.setenv("SLURM_PROCID", "0")
    no_rank_env.setenv("SLURM_NTASKS", "4")
    assert (current_world().rank, current_world().world_size) == (0, 1)


def test_without_any_variable_the_world_is_one_process(no_rank_env: pytest.MonkeyPatch) -> None:
    assert (current_world().rank, current_world().world_size) == (0, 1)


@pytest.mark.parametrize("name", ["SLURM_PROCID", "SLURM_STEP_NUM_TASKS"])
def test_a_bad_slurm_variable_is_a_config_error_naming_it(no_rank_env: pytest.MonkeyPatch, name: str) -> None:
    no_rank_env.setenv("SLURM_PROCID", "0")
    no_rank_env.setenv("SLURM_STEP_NUM_TASKS", "2")
    no_rank_env.setenv(name, "two")
    with pytest.raises(ConfigError, match=name) as info:
        current_world()
    assert info.value.field == name


def test_a_slurm_rank_out_of_range_is_a_config_error_naming_them(no_rank_env: pytest.MonkeyPatch) -> None:
    no_rank_env.setenv("SLURM_PROCID", "4")
    no_rank_env.setenv("SLURM_STEP_NUM_TASKS", "4")
    with pytest.raises(ConfigError, match="SLURM_PROCID / SLURM_STEP_NUM_TASKS"):
        current_world()
