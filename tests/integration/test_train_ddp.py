"""Training through torchrun: 2 gloo ranks on tiny S3 shards, checkpoint to S3, resume from it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from awsio.tools import makeshards as ms
from awsio.tools.storage import Storage

pytestmark = pytest.mark.integration

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _env(s3_server) -> dict[str, str]:
    env = dict(os.environ, **s3_server.env())
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


def test_two_rank_epoch_then_resume_from_s3(tmp_path, s3_server, s3_bucket, s3_config):
    # 5 shards of 20 (uneven for 2 ranks): equal-work mode still gives both ranks the same steps.
    ms.write_shards(ms.synthetic_samples(100, classes=4, size=16, seed=2), f"s3://{s3_bucket}/d/",
                    prefix="train", maxcount=20, storage=Storage(s3_config), progress=False)
    ckpt = f"s3://{s3_bucket}/ckpt/run.pt"
    common = [f'data.urls="s3://{s3_bucket}/d/train-{{000000..000004}}.tar"', "data.num_classes=4",
              "data.image_size=16", "data.batch_size=10", "data.num_workers=0", "data.shuffle_window=0",
              f"trainer.run_dir={tmp_path}/run", f"trainer.checkpoint={ckpt}", "trainer.progress=false",
              "model.width=8"]
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "-m", "awsio.cli.train", "trainer.epochs=1", *common],
                       capture_output=True, text=True, timeout=120, env=_env(s3_server), cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(x) for x in open(tmp_path / "run" / "metrics.jsonl")]
    assert len(rows) == 1 and rows[0]["world_size"] == 2 and rows[0]["epoch"] == 0
    assert rows[0]["samples"] == 100 and rows[0]["steps"] == 5  # 50 per rank, batches of 10
    assert 0 <= rows[0]["data_wait_fraction"] <= 1 and rows[0]["samples_per_s"] > 0
    io0 = rows[0]["s3"]  # both ranks' S3 counters of the epoch
    assert io0["samples"] == 100 and io0["get_requests"] >= 5 and io0["errors"] == 0 and io0["skips"] == 0
    assert io0["ttfb_p50_ms"] > 0 and io0["request_cost_usd"] > 0
    assert "epoch 0 S3: GET " in r.stdout and "at us-east-1 list prices" in r.stdout
    assert Storage(s3_config).exists(ckpt)

    # Resume in a single process (no torchrun) from the S3 checkpoint: only epoch 1 runs.
    r = subprocess.run([sys.executable, "-m", "awsio.cli.train", "trainer.epochs=2", "trainer.resume=true",
                        *common], capture_output=True, text=True, timeout=120, env=_env(s3_server), cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"resumed from {ckpt} at epoch 1" in r.stdout
    rows = [json.loads(x) for x in open(tmp_path / "run" / "metrics.jsonl")]
    assert [x["epoch"] for x in rows] == [0, 1] and rows[1]["world_size"] == 1 and rows[1]["samples"] == 100
    import io

    import torch

    state = torch.load(io.BytesIO(Storage(s3_config).get(ckpt)), weights_only=False)
    assert state["epoch"] == 2


def test_mid_epoch_stop_resumes_on_another_world_size_without_replay(tmp_path, s3_server, s3_bucket, s3_config):
    """torchrun x2 stops mid-epoch (trainer.max_steps); one process with 2 DataLoader workers
    finishes the epoch: it trains exactly the samples not trained on yet, none again."""
    ms.write_shards(ms.synthetic_samples(100, classes=4, size=16, seed=3), f"s3://{s3_bucket}/m/",
                    prefix="train", maxcount=20, storage=Storage(s3_config), progress=False)
    ckpt = f"{tmp_path}/ckpt/run.pt"
    common = [f'data.urls="s3://{s3_bucket}/m/train-{{000000..000004}}.tar"', "data.num_classes=4",
              "data.image_size=16", "data.batch_size=10", f"trainer.run_dir={tmp_path}/run",
              f"trainer.checkpoint={ckpt}", "trainer.progress=false", "model.width=8", "trainer.epochs=1"]
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "-m", "awsio.cli.train", "trainer.max_steps=2", "data.num_workers=1", *common],
                       capture_output=True, text=True, timeout=180, env=_env(s3_server), cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "stopped after trainer.max_steps at epoch 0 step 2" in r.stdout
    r = subprocess.run([sys.executable, "-m", "awsio.cli.train", "trainer.resume=true", "data.num_workers=2",
                        *common], capture_output=True, text=True, timeout=180, env=_env(s3_server), cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "40 of 100 samples done, none read again" in r.stdout
    assert "saved with 2 process(es) x 1 worker(s), now 1 x 2" in r.stdout
    rows = [json.loads(x) for x in open(tmp_path / "run" / "metrics.jsonl")]
    assert [(x["world_size"], x["samples"], x["complete"]) for x in rows] == [(2, 40, False), (1, 60, True)]
