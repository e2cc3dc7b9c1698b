"""DeepSpeed checkpoints of a reward-model run: write, prune, and resume with the same data order.

A checkpoint is DeepSpeed's own folder (``<dir>/global_step<N>/`` plus ``<dir>/latest``): model,
optimizer (one shard per rank under ZeRO >= 1) and LR-schedule state. The client state adds the
step, the loss history and the settings that fix the data order; resuming with different ones
would silently train on other batches, so it is refused.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rluf.errors import ConfigError

from .distributed import barrier, rank

__all__ = ["RunState", "save_checkpoint", "load_latest", "checkpoint_tags"]

logger = logging.getLogger(__name__)

_TAG = re.compile(r"^global_step(\d+)$")


@dataclass
class RunState:
    """What a checkpoint carries besides DeepSpeed's own state."""

    step: int = 0
    train_losses: list[float] = field(default_factory=list)
    evals: list[dict[str, float]] = field(default_factory=list)


def checkpoint_tags(ckpt_dir: Path) -> list[str]:
    """Checkpoint folders in ``ckpt_dir``, oldest first."""
    if not ckpt_dir.is_dir():
        return []
    tags = [(int(m.group(1)), p.name) for p in ckpt_dir.iterdir() if p.is_dir() and (m := _TAG.match(p.name))]
    return [name for _, name in sorted(tags)]


def save_checkpoint(engine: Any, ckpt_dir: Path, state: RunState, *, order: Mapping[str, Any], objective: str,
                    keep: int) -> None:
    """Write ``global_step<N>`` on every rank (ZeRO shards), then let rank 0 keep the newest ``keep``.

    Args:
        engine: The DeepSpeed engine.
        state: Step and history at this point.
        order: The data-order settings (seed, world size, batch size, ...), checked on resume.
        objective: "pointwise" or "pairwise", for the reader.
        keep: How many checkpoints to keep (0 keeps all).
    """
    client = {"step": state.step, "order": dict(order), "train_losses": list(state.train_losses),
              "evals": list(state.evals), "objective": objective}
    engine.save_checkpoint(str(ckpt_dir), tag=f"global_step{state.step}", client_state=client)
    barrier()
    if rank() == 0 and keep:
        for old in checkpoint_tags(ckpt_dir)[:-keep]:
            shutil.rmtree(ckpt_dir / old, ignore_errors=True)
    logger.debug("checkpoint global_step%d written to %s", state.step, ckpt_dir)


def load_latest(engine: Any, ckpt_dir: Path, *, order: Mapping[str, Any]) -> RunState | None:
    """Load the latest checkpoint into ``engine``; None when there is none.

    Raises:
        ConfigError: the checkpoint cannot be read, or was written with other data-order settings.
    """
    if not (ckpt_dir / "latest").is_file():
        logger.warning("resume asked but no checkpoint in %s: starting from step 0", ckpt_dir)
        return None
    path, client = engine.load_checkpoint(str(ckpt_dir))
    if path is None or not client:
        raise ConfigError(f"cannot load the latest checkpoint in {ckpt_dir}",
                          "delete the folder to start over, or point `checkpoint_dir` elsewhere")
    saved = client.get("order", {})
    diff = {k: (saved.get(k), v) for k, v in order.items() if saved.get(k) != v}
    if diff:
        raise ConfigError(f"checkpoint {path} was written with other data-order settings ("
                          + ", ".join(f"{k}: {a} -> {b}" for k, (a, b) in diff.items()) + ")",
                          "resume with the same seed, batch size, world size, data and max_steps")
    logger.info("resumed from %s at step %d", path, int(client["step"]))
    return RunState(int(client["step"]), list(client.get("train_losses", [])), list(client.get("evals", [])))
