"""Process-level plumbing for DeepSpeed runs: env defaults, seeds, rank helpers.

DeepSpeed discovers its process group from ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/
``MASTER_ADDR``/``MASTER_PORT``; a plain ``python -m training.reward_entrypoint`` sets none of them,
and DeepSpeed then falls back to MPI discovery (``ModuleNotFoundError: mpi4py``). torchrun and
the ``deepspeed`` launcher set all five, so the defaults below only ever apply to a single
process. This module is the only place in ``training/`` that writes ``os.environ``.
"""

from __future__ import annotations

import logging
import os
import random
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from rluf.localhost import free_port

__all__ = [
    "set_runtime_env_defaults",
    "ensure_process_env",
    "free_port",
    "seed_everything",
    "step_seed",
    "rank",
    "launch_rank",
    "world_size",
    "barrier",
    "all_gather_objects",
    "mean_across_ranks",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")


def set_runtime_env_defaults() -> None:
    """Default ``DS_ACCELERATOR`` (cpu without CUDA) and ``HF_HUB_OFFLINE=1``; explicit values win.

    Call before DeepSpeed or transformers are imported: both read these at import time.
    """
    if "DS_ACCELERATOR" not in os.environ:
        os.environ["DS_ACCELERATOR"] = "cuda" if torch.cuda.is_available() else "cpu"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def ensure_process_env() -> None:
    """Fill the rendezvous variables for a single process when no launcher set them."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        os.environ.setdefault("LOCAL_RANK", os.environ["RANK"])
        return
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(free_port()))
    logger.info("single process: RANK=0 WORLD_SIZE=1 MASTER_PORT=%s", os.environ["MASTER_PORT"])


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def step_seed(seed: int, micro_step: int, rank_: int) -> int:
    """Seed for the dropout masks of one micro-batch on one rank.

    Reseeding torch per micro-batch makes dropout a function of (seed, step, rank), so a run
    resumed from a checkpoint draws exactly the masks the uninterrupted run would have drawn.
    """
    return (seed * 1_000_003 + micro_step * 4_099 + rank_) % 2**63


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def launch_rank() -> int:
    """The rank a launcher gave this process (``RANK``), known before the process group exists."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def barrier() -> None:
    """Wait for every rank (no-op for one process)."""
    if world_size() > 1:
        dist.barrier()


def all_gather_objects(obj: T) -> list[T]:
    """Return every rank's ``obj`` in rank order (``[obj]`` for one process)."""
    if world_size() == 1:
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def mean_across_ranks(value: float) -> float:
    """Average a scalar over ranks (used for the logged loss)."""
    if world_size() == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / world_size()
