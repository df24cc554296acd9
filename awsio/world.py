"""Who am I: rank / world size of the job and DataLoader worker id / count.

Read these when iteration starts (inside ``__iter__``), never in a dataset's ``__init__``: the
dataset object is usually built before ``torch.distributed`` is initialised and before the
DataLoader has forked its workers.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from awsio.errors import ConfigError

__all__ = ["ParentWorld", "World", "current_world", "in_worker", "loader_base_seed", "pass_epoch"]

log = logging.getLogger(__name__)
_warned_derived = False


@dataclass(frozen=True)
class World:
    """The position of this iterator: ``rank`` of ``world_size`` ranks, ``worker`` of ``num_workers``."""

    rank: int = 0
    world_size: int = 1
    worker: int = 0
    num_workers: int = 1

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ConfigError(f"bad rank {self.rank} of world size {self.world_size} (torch.distributed, "
                              "or the RANK / WORLD_SIZE, else SLURM_PROCID / SLURM_STEP_NUM_TASKS, environment "
                              "variables)", field="rank", value=f"{self.rank}/{self.world_size}")
        if self.num_workers < 1 or not 0 <= self.worker < self.num_workers:
            raise ConfigError(f"bad worker {self.worker} of {self.num_workers}", field="worker",
                              value=f"{self.worker}/{self.num_workers}")

    @property
    def slots(self) -> int:
        """How many iterators share the data: ranks x workers."""
        return self.world_size * self.num_workers

    @property
    def slot(self) -> int:
        """This iterator's index among :attr:`slots`, rank-major (all workers of rank 0 first)."""
        return self.rank * self.num_workers + self.worker


_parent_world: tuple[int, int] | None = None  # the training process's (rank, world size), in a worker


def _initialised_rank_world() -> tuple[int, int] | None:
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except ImportError:  # torch is optional for the pure parts of awsio
        pass
    return None


def _dist_rank_world() -> tuple[int, int]:
    found = _initialised_rank_world()
    if found is not None:
        return found
    if _parent_world is not None and in_worker():
        return _parent_world
    if os.environ.get("RANK", "").strip() or os.environ.get("WORLD_SIZE", "").strip():
        return _env_int("RANK", 0), _env_int("WORLD_SIZE", 1)
    # srun without torchrun: each task of the job step gets only SLURM's variables (the step's
    # task count, not the job's SLURM_NTASKS: a batch script's lone process is not rank 0 of N)
    return _env_int("SLURM_PROCID", 0), _env_int("SLURM_STEP_NUM_TASKS", 1)


class ParentWorld:
    """Carries the training process's rank and world size to its DataLoader workers, inside the
    dataset they unpickle: a spawned worker has no process group, and one set up without
    ``RANK`` / ``WORLD_SIZE`` in the environment (``mp.spawn`` + ``init_process_group(rank=,
    world_size=)``) would leave every rank's workers taking themselves for rank 0 of 1. Adopted
    only inside DataLoader workers."""

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return _adopt, (_initialised_rank_world(),)


def _adopt(found: tuple[int, int] | None) -> ParentWorld:
    global _parent_world
    if found is not None:
        _parent_world = found
    return ParentWorld()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"the environment variable {name} must be an integer", field=name,
                          value=value) from None


def _worker_info() -> Any:
    """torch's ``get_worker_info()``: None outside DataLoader workers (and without torch)."""
    try:
        from torch.utils.data import get_worker_info
    except ImportError:
        return None
    return get_worker_info()


def in_worker() -> bool:
    """Whether this process is a DataLoader worker."""
    return _worker_info() is not None


def _worker() -> tuple[int, int]:
    info = _worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


def current_world(*, rank: int | None = None, world_size: int | None = None) -> World:
    """The current :class:`World`. ``rank``/``world_size`` override detection (tests, custom launchers)."""
    r, w = _dist_rank_world()
    worker, num = _worker()
    return World(rank=r if rank is None else rank, world_size=w if world_size is None else world_size,
                 worker=worker, num_workers=num)


def loader_base_seed() -> int | None:
    """Inside a DataLoader worker, the loader's base seed of this pass (``seed - id``: the same in
    every worker of the pass, drawn from torch's generator, or the loader's, at each
    ``iter(loader)``); None outside workers."""
    try:
        from torch.utils.data import get_worker_info
    except ImportError:
        return None
    info = get_worker_info()
    return None if info is None else int(info.seed) - int(info.id)


def pass_epoch(counter: int, explicit: bool, world: World) -> int:
    """The epoch one pass of a dataset uses, from its pass ``counter`` (``set_epoch``'s value,
    then +1 per pass).

    After ``set_epoch`` (``explicit``) that is the epoch. Without it, the counter alone numbers
    the passes of an object that is iterated again (``num_workers=0``, persistent workers), but
    a non-persistent worker iterates a fresh copy each pass; so inside a worker the loader's
    base seed of the pass (:func:`loader_base_seed`) is added: every pass differs, all workers
    of a pass agree, and ``torch.manual_seed`` reproduces the sequence. Ranks cannot agree on a
    base seed they draw independently, so with more than one rank the counter alone is used (the
    ranks must read disjoint samples) and a job without ``set_epoch`` is warned once per process.
    """
    base = None if explicit else loader_base_seed()
    if base is None:
        return counter
    if world.world_size > 1:
        # Ranks draw their loaders' base seeds independently: deriving the epoch from them would
        # give each rank another order, and ranks would read overlapping samples and miss others.
        # The pass counter keeps ranks in agreement (passes repeat the order): warn once.
        global _warned_derived
        if world.worker == 0 and not _warned_derived:
            _warned_derived = True
            log.warning("set_epoch() was never called in a %d-rank job: every pass uses the same "
                        "order; call set_epoch(epoch) before each epoch, as with DistributedSampler",
                        world.world_size)
        return counter
    return counter + base
