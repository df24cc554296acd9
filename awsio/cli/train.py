"""Distributed image-classification training over S3 tar shards (Hydra config, torchrun launch).

Single process::

    python -m awsio.cli.train 'data.urls="s3://bucket/train-{000000..000007}.tar"' trainer.epochs=3

(Hydra's override grammar needs the quotes around values with braces.)

One machine, N processes (gloo on CPU, nccl on GPU)::

    torchrun --standalone --nproc_per_node=2 -m awsio.cli.train trainer.epochs=3

Several machines (run the same command on every node; node 0's address as the rendezvous host)::

    torchrun --nnodes=2 --nproc_per_node=8 --node_rank=$NODE_RANK \\
        --rdzv_backend=c10d --rdzv_endpoint=$MASTER_HOST:29500 --rdzv_id=$JOB_ID \\
        -m awsio.cli.train data=imagenet model=resnet18 s3=aws trainer.checkpoint=s3://bucket/ckpt/run1.pt

Config groups (``conf/``): ``data`` (urls, batch_size, num_workers, shuffle, equal_work, image size),
``model`` (``_target_``), ``optimizer`` (``_target_``), ``trainer`` (epochs, device, amp, resume,
checkpoint, run_dir) and ``s3`` (endpoint profiles: local, aws, minio).

Each epoch every rank takes the same number of steps: the dataset's equal-work mode gives every
rank the same number of samples, and a per-step all-reduce (MIN of "I still have a batch") stops
all ranks together if one runs dry anyway, so collectives never hang. Per epoch it records loss,
accuracy, samples/s, the fraction of step time spent waiting for data and the data's S3 counters
(``s3``: requests, bytes, retries by cause, TTFB, samples, skips, request cost; see
:mod:`awsio.metrics`, summed over ranks and DataLoader workers) in
``<run_dir>/metrics.jsonl``; rank 0 saves a checkpoint (model, optimizer, epoch) to
``trainer.checkpoint`` (a local path or ``s3://``, streamed upload; a torn upload never replaces
a good checkpoint) and ``trainer.resume=true`` continues from it. With
``trainer.checkpoint_every_steps=N`` rank 0 also saves every N steps, with the data's state
(:mod:`awsio.source`): a resume restores model, optimizer, grad scaler and data, and its first
step trains on the next batch not yet trained on. Nothing already trained on is read again, and
the resume may use another number of processes or ``data.num_workers`` (it says so in one line).
Rank 0 reads the checkpoint and hands it to every rank (other nodes need not see a local path).
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

import hydra
import torch
import torch.distributed as dist
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from awsio.cli.common import (CONF_DIR, ConfigValueError, build_image_dataset, check, check_positive_int,
                              die, s3_config, url_list)
from awsio.epoch import advance, intervals_total
from awsio.metrics import Snapshot, all_ranks
from awsio.errors import AwsioError, StateError
from awsio.tools.storage import Storage

__all__ = ["main", "run", "validate"]

log = logging.getLogger("awsio.train")


def validate(cfg: DictConfig) -> None:
    """Raise :class:`ConfigValueError` naming the key for any out-of-range value."""
    d, t = cfg.data, cfg.trainer
    url_list(d.urls)
    check_positive_int("trainer.epochs", t.epochs)
    check_positive_int("data.batch_size", d.batch_size)
    check_positive_int("data.num_workers", d.num_workers, minimum=0)
    check_positive_int("data.num_classes", d.num_classes, minimum=2)
    check_positive_int("data.image_size", d.image_size, minimum=8)
    check_positive_int("data.shuffle_window", d.shuffle_window, minimum=0)
    check(d.equal_work in (None, "drop", "repeat"), "data.equal_work", d.equal_work, "expected drop, repeat or null")
    check_positive_int("trainer.checkpoint_every_steps", t.get("checkpoint_every_steps", 0), minimum=0)
    check_positive_int("trainer.max_steps", t.get("max_steps", 0), minimum=0)
    check_positive_int("data.max_steps_per_epoch", d.get("max_steps_per_epoch", 0), minimum=0)
    check_positive_int("trainer.log_every", t.log_every)
    for key, value in (("trainer.progress", t.progress), ("data.shuffle_urls", d.shuffle_urls)):
        check(isinstance(value, bool), key, value, "expected true or false")
    check(str(t.device) in ("auto", "cpu", "cuda") or str(t.device).startswith("cuda:"), "trainer.device",
          t.device, "expected auto, cpu or cuda")
    check(t.amp in ("auto", True, False), "trainer.amp", t.amp, "expected auto, true or false")
    check(isinstance(t.resume, bool), "trainer.resume", t.resume, "expected true or false")
    check(bool(t.checkpoint), "trainer.checkpoint", t.checkpoint, "expected a local path or s3:// URL")
    check(isinstance(cfg.optimizer.get("lr", 0.1), (int, float)) and cfg.optimizer.get("lr", 0.1) > 0,
          "optimizer.lr", cfg.optimizer.get("lr"), "expected a positive number")


# -- distributed ------------------------------------------------------------------------------
def _setup(cfg: DictConfig) -> tuple[int, int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    want = str(cfg.trainer.device)
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigValueError("trainer.device=cuda but no CUDA device is available (use trainer.device=auto)")
    device = torch.device(f"cuda:{local_rank}" if want == "cuda" else want)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, local_rank, device


def _all_sum(values: list[float], device: torch.device) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_initialized():
        dist.all_reduce(t)
    return t.tolist()


def _all_have(has: bool, device: torch.device) -> bool:
    """True while every rank still has a batch (MIN across ranks): all ranks stop at the same step."""
    if not dist.is_initialized():
        return has
    t = torch.tensor([1 if has else 0], dtype=torch.int32, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def _steps_hint(loader: Any, max_steps: int) -> int | None:
    """Steps per epoch for the progress bar, when the dataset knows its length."""
    try:
        n = len(loader)
    except TypeError:
        return max_steps or None
    return min(n, max_steps) if max_steps else n


# -- checkpoints -------------------------------------------------------------------------------
def save_checkpoint(storage: Storage, location: str, state: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    storage.put(location, buf)


_CHECKPOINT_KEYS = ("model", "optimizer", "epoch")


def load_checkpoint(storage: Storage, location: str) -> dict[str, Any] | None:
    """The train job's checkpoint at ``location`` (None if there is none); StateError naming it
    when the file is not one (not a torch file, or another program's without these keys)."""
    if not storage.exists(location):
        return None
    data = storage.get(location)
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)  # our own file
    except Exception as exc:  # (unpickling errors of any kind)
        raise StateError(f"trainer.checkpoint={location} is not a checkpoint of this job: {exc}",
                         field="checkpoint", saved=None, current=None) from exc
    missing = [k for k in _CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise StateError(f"trainer.checkpoint={location} is not a checkpoint of this job: it has no "
                         f"{', '.join(missing)}", field="checkpoint", saved=None, current=None)
    return state  # type: ignore[no-any-return]


# -- the loop -----------------------------------------------------------------------------------
@dataclass
class _EpochStats:
    steps: int = 0          # steps trained in this run of the epoch
    n: int = 0
    correct: int = 0
    loss_sum: float = 0.0
    wait: float = 0.0       # seconds blocked on the loader
    elapsed: float = 0.0


def _train_epoch(model: torch.nn.Module, loader: Any, optimizer: Any, scaler: Any, loss_fn: Any,
                 device: torch.device, *, use_amp: bool, max_steps: int | None,
                 on_step: Callable[[int, _EpochStats], None]) -> _EpochStats:
    """One epoch (or what is left of it), at most ``max_steps`` steps (None: no limit). Every rank
    stops at the same step: the loop continues only while all ranks still have a batch (an
    all-reduce MIN per step), so collectives never wait on a finished rank."""
    st = _EpochStats()
    it = iter(loader)
    t0 = time.perf_counter()
    while True:
        has = max_steps is None or st.steps < max_steps  # (no batch read that is not trained on)
        tw = time.perf_counter()
        if has:
            try:
                images, labels = next(it)
            except StopIteration:
                has = False
        st.wait += time.perf_counter() - tw
        if not _all_have(has, device):
            if has:  # another rank ran dry first (data.equal_work=null): say what is dropped
                log.warning("rank %d: another rank ran out of data: this rank's batch %d and any after it are "
                            "not trained on this epoch (data.equal_work=drop or repeat gives every rank the same "
                            "number of samples)", dist.get_rank(), st.steps + 1)
            break
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
            out = model(images)
            loss = loss_fn(out, labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        b = int(labels.shape[0])
        st.steps += 1
        st.n += b
        st.loss_sum += float(loss.detach()) * b
        st.correct += int((out.argmax(1) == labels).sum())
        on_step(st.steps, st)
    del it  # stop this epoch's workers before the next epoch starts its own
    st.elapsed = time.perf_counter() - t0
    return st


def _resume_line(ckpt: str, state: dict[str, Any], world: int, workers: int) -> str:
    data = state.get("data")
    where = f"epoch {state['epoch']}"
    if data:
        total, ranks = int(data["total"]), int(data["world_size"])
        left = advance(data["remaining"], ranks, data["options"]["equal_work"], [int(data["consumed"])] * ranks,
                       total)
        where += f", {total - intervals_total(left)} of {total} samples done, none read again"
    was = (int(state.get("world_size", world)), int(state.get("num_workers", workers)))
    moved = "" if was == (world, workers) else (
        f"; saved with {was[0]} process(es) x {was[1]} worker(s), now {world} x {workers}")
    return f"train: resumed from {ckpt} at {where}{moved}"


def run(cfg: DictConfig) -> list[dict[str, Any]]:
    """Train as configured; returns the per-epoch metrics (on every rank)."""
    validate(cfg)
    rank, world, local_rank, device = _setup(cfg)
    torch.manual_seed(int(cfg.seed))
    s3 = s3_config(cfg.s3)
    storage = Storage(s3)
    run_dir = str(cfg.trainer.run_dir)
    if rank == 0:
        os.makedirs(run_dir, exist_ok=True)

    model = instantiate(cfg.model).to(device)
    optimizer = instantiate(cfg.optimizer, params=model.parameters())
    use_amp = device.type == "cuda" and cfg.trainer.amp in ("auto", True)
    # bf16 autocast needs no loss scaling; the scaler is kept (disabled) so checkpoints carry it
    scaler = torch.amp.GradScaler(device.type, enabled=False)
    d = cfg.data
    workers = int(d.num_workers)
    dataset = build_image_dataset(url_list(d.urls), config=s3, image_key=str(d.image_key),
                                  label_key=str(d.label_key), image_size=int(d.image_size),
                                  shuffle_urls=bool(d.shuffle_urls), shuffle_window=int(d.shuffle_window),
                                  equal_work=d.equal_work, seed=int(cfg.seed), batch_size=int(d.batch_size))
    start_epoch = 0
    done = 0  # steps already trained in the resumed epoch (a mid-epoch checkpoint's)
    resumed = False
    ckpt_loc = str(cfg.trainer.checkpoint)
    if cfg.trainer.resume:
        # rank 0's checkpoint (the one it writes) for every rank: another node may not see the file
        # (a local path), and a rank starting elsewhere would train other data and hang collectives
        state = load_checkpoint(storage, ckpt_loc) if rank == 0 else None
        if dist.is_initialized():
            shared = [state]
            dist.broadcast_object_list(shared, src=0, device=device if device.type == "cuda" else None)
            state = shared[0]
        if state is None:
            if rank == 0:
                log.warning("trainer.resume=true but no checkpoint at %s: starting from scratch", ckpt_loc)
        else:
            resumed = True
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            start_epoch = int(state["epoch"])
            dataset.set_epoch(start_epoch)
            if state.get("data"):
                dataset.load_state_dict(state["data"])  # StateError if the data set changed
                start_epoch = dataset.epoch  # the next one when the saved epoch was all consumed
                done = int(state.get("step", 0)) if start_epoch == int(state["epoch"]) else 0
            if rank == 0:
                print(_resume_line(ckpt_loc, state, world, workers), flush=True)
    ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) \
        if world > 1 else model
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=workers,
                                         pin_memory=device.type == "cuda",
                                         prefetch_factor=4 if workers > 0 else None)
    loss_fn = torch.nn.CrossEntropyLoss()
    max_steps = int(d.get("max_steps_per_epoch", 0) or 0)
    every = int(cfg.trainer.get("checkpoint_every_steps", 0) or 0)

    def checkpoint(epoch: int, data: dict[str, Any] | None, metrics: dict[str, Any] | None,
                   step: int = 0) -> None:  # step: steps of the epoch trained (a mid-epoch state)
        save_checkpoint(storage, ckpt_loc, {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(),
            "epoch": epoch, "step": step, "data": data, "world_size": world, "num_workers": workers,
            "config": OmegaConf.to_container(cfg, resolve=False), "metrics": metrics})
    history: list[dict[str, Any]] = []
    metrics_path = os.path.join(run_dir, "metrics.jsonl")
    if rank == 0 and not resumed and os.path.exists(metrics_path):
        os.remove(metrics_path)  # a run from scratch (resume=true without a checkpoint too) starts a new file

    budget = int(cfg.trainer.get("max_steps", 0) or 0)  # steps this run may take in all (0: no limit)
    io_seen = Snapshot()  # the data's S3 counters so far (epoch 0 also gets the listing and indexes)
    for epoch in range(start_epoch, int(cfg.trainer.epochs)):
        if epoch != start_epoch or not cfg.trainer.resume:
            dataset.set_epoch(epoch)  # (a resumed epoch keeps what load_state_dict set)
        ddp.train()
        bar = None
        if rank == 0 and cfg.trainer.progress:
            from tqdm import tqdm

            bar = tqdm(desc=f"epoch {epoch}", unit="step", file=sys.stderr, leave=False, mininterval=0.5,
                       total=_steps_hint(loader, max_steps), disable=None)  # None: off when not a terminal

        base, done = done, 0  # steps of this epoch trained before this run (a resumed epoch's)
        cap = max(max_steps - base, 0) if max_steps else None  # steps left in the epoch (None: all)

        def on_step(steps: int, st: _EpochStats, epoch: int = epoch, bar: Any = bar, base: int = base) -> None:
            if every and rank == 0 and steps % every == 0:  # the ranks are in lockstep: one state
                checkpoint(epoch, dataset.state_dict(delivered=steps), None, base + steps)
            if bar is not None:
                bar.update(1)
                if st.n and st.steps % int(cfg.trainer.log_every) == 0:
                    bar.set_postfix(loss=f"{st.loss_sum / st.n:.3f}", acc=f"{st.correct / st.n:.3f}")

        limits = [x for x in (cap, budget or None) if x is not None]
        st = _train_epoch(ddp, loader, optimizer, scaler, loss_fn, device, use_amp=use_amp,
                          max_steps=min(limits) if limits else None, on_step=on_step)
        spent = bool(budget) and st.steps >= budget  # trainer.max_steps used up: this run ends here
        stopped = spent and st.steps != cap  # ... inside the epoch (not at data.max_steps_per_epoch)
        budget = budget - st.steps if budget else 0
        if bar is not None:
            bar.close()
        steps, elapsed = st.steps, st.elapsed
        tot_n, tot_correct, tot_loss, tot_wait, tot_elapsed = _all_sum(
            [st.n, st.correct, st.loss_sum, st.wait, st.elapsed], device)
        m = {
            "epoch": epoch,
            "steps": steps,
            "complete": not stopped,
            "samples": int(tot_n),
            "loss": tot_loss / tot_n if tot_n else math.nan,
            "accuracy": tot_correct / tot_n if tot_n else math.nan,
            "seconds": round(elapsed, 3),
            "samples_per_s": tot_n / (tot_elapsed / world) if tot_elapsed > 0 else 0.0,
            "data_wait_fraction": (tot_wait / tot_elapsed) if tot_elapsed > 0 else 0.0,
            "world_size": world,
        }
        io_now = dataset.metrics()
        io = all_ranks(io_now - io_seen)  # every rank's requests this epoch (a collective)
        io_seen = io_now
        m["s3"] = io.as_dict()
        history.append(m)
        if rank == 0:
            print(f"epoch {epoch}: loss {m['loss']:.4f}  acc {m['accuracy']:.3f}  "
                  f"{m['samples']} samples in {steps} steps/rank  {m['samples_per_s']:.0f} samples/s  "
                  f"data wait {100 * m['data_wait_fraction']:.0f}%", flush=True)
            print(f"epoch {epoch} S3: {io.summary()}", flush=True)
            with open(metrics_path, "a") as f:
                f.write(json.dumps(m) + "\n")
            if stopped:  # trainer.max_steps ran out inside the epoch: save where the data is
                checkpoint(epoch, dataset.state_dict(delivered=st.steps), m, base + st.steps)
                print(f"train: stopped after trainer.max_steps at epoch {epoch} step {base + st.steps}; "
                      f"trainer.resume=true continues from the next batch", flush=True)
            else:
                checkpoint(epoch + 1, None, m)
                if spent:
                    print(f"train: stopped after trainer.max_steps at the end of epoch {epoch}; "
                          f"trainer.resume=true continues with epoch {epoch + 1}", flush=True)
        if dist.is_initialized():
            dist.barrier()  # nobody starts the next epoch (or exits) before the checkpoint is written
        if spent:
            break
    if rank == 0 and not history:
        print(f"train: nothing to do: checkpoint already at epoch {start_epoch} >= trainer.epochs", flush=True)
    storage.close()
    if dist.is_initialized():
        dist.destroy_process_group()
    return history


@hydra.main(version_base=None, config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> None:
    logging.basicConfig(level=logging.INFO)
    try:
        run(cfg)
    except ConfigValueError as e:
        die("train", str(e))
    except ImportError as e:
        die("train", str(e))
    except AwsioError as e:  # a missing shard, no credentials, an unreachable endpoint...
        die("train", f"{type(e).__name__}: {e}", code=1)


if __name__ == "__main__":
    main()
