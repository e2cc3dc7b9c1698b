"""Options of P[Love] reward-model training (`RewardTrainer`), one dataclass.

Every field carries ``metadata={"help": ...}`` so `training.reward_entrypoint` turns them into CLI
flags with `transformers.HfArgumentParser`. `config_from_settings` is the one function that
maps ``Settings.training`` onto it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rluf.errors import ConfigError
from rluf.settings import TrainingSettings

__all__ = ["RewardTrainingConfig", "config_from_settings", "bundled_deepspeed_config", "load_deepspeed_config"]

logger = logging.getLogger(__name__)

_DEEPSPEED_DIR = Path(__file__).resolve().parent / "deepspeed"
_DEFAULT_SETTINGS_DS = "training/deepspeed/zero1.json"


@dataclass
class RewardTrainingConfig:
    """Everything `RewardTrainer` needs besides the model, the tokenizer and the data."""

    # ---------------------------------------------------------------- model
    backbone: str | None = field(default=None, metadata={
        "help": "Local Hugging Face checkpoint directory of the encoder (default: bundled all-MiniLM-L6-v2)."})
    max_length: int = field(default=128, metadata={
        "help": "Token budget per (context, response); the context is truncated from the left."})
    dropout: float = field(default=0.1, metadata={"help": "Dropout before the scalar head."})
    objective: Literal["pointwise", "pairwise"] = field(default="pointwise", metadata={
        "help": "pointwise: weighted BCE on unpaired triples (the paper's P[Love]); pairwise: Bradley-Terry "
                "on (chosen, rejected) pairs, for comparison."})

    # ---------------------------------------------------------------- data
    positive_rate: float | None = field(default=0.10, metadata={
        "help": "Upsample training positives to this share (paper: 0.10); None/0 disables upsampling."})
    calibration: Literal["none", "prior_shift", "prior_shift+temperature"] = field(
        default="prior_shift+temperature", metadata={
            "help": "How reported P[Love] is calibrated after training: undo the upsampling (prior shift) and "
                    "optionally fit a temperature on the validation split."})

    # ---------------------------------------------------------------- optimisation
    batch_size: int = field(default=16, metadata={
        "help": "Micro-batch size per process (train_micro_batch_size_per_gpu)."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Micro-batches per optimizer step."})
    epochs: float = field(default=1.0, metadata={
        "help": "Passes over the (upsampled) training split; fractions allowed."})
    max_steps: int | None = field(default=None, metadata={
        "help": "Optimizer steps to run; overrides `epochs` when set (the LR schedule spans these steps)."})
    lr: float = field(default=5e-5, metadata={"help": "Peak AdamW learning rate."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay (not on biases/LayerNorm)."})
    warmup_ratio: float = field(default=0.06, metadata={
        "help": "Share of steps with linear LR warm-up, then linear decay."})
    seed: int = field(default=13, metadata={
        "help": "Seeds init, data order, upsampling and dropout (python/numpy/torch)."})

    # ---------------------------------------------------------------- DeepSpeed
    zero_stage: int = field(default=1, metadata={"help": "ZeRO stage 0-3; overrides the stage in the JSON config."})
    deepspeed_config: str | None = field(default=None, metadata={
        "help": "DeepSpeed JSON config; default: training/deepspeed/zero<stage>.json. "
                "train_micro_batch_size_per_gpu and gradient_accumulation_steps are filled in from this config."})

    # ---------------------------------------------------------------- outputs, checkpoints, evaluation
    output_dir: str = field(default="build/plove", metadata={
        "help": "Where the final model (model/), the loss curve PNG and metrics.json go."})
    checkpoint_dir: str | None = field(default=None, metadata={
        "help": "DeepSpeed checkpoints (default: <output_dir>/checkpoints)."})
    save_steps: int = field(default=50, metadata={"help": "Checkpoint every N optimizer steps (0: only at the end)."})
    keep_checkpoints: int = field(default=2, metadata={"help": "How many recent checkpoints to keep (0 keeps all)."})
    resume: bool = field(default=False, metadata={
        "help": "Resume from the latest checkpoint in checkpoint_dir (same data order: step count + seed)."})
    eval_steps: int = field(default=0, metadata={
        "help": "Evaluate on the validation split every N steps (0: once per epoch and at the end)."})
    eval_batch_size: int = field(default=64, metadata={"help": "Batch size for evaluation and scoring."})
    stop_after_steps: int | None = field(default=None, metadata={
        "help": "Stop after this step as if killed (checkpoint written, no final model); for resume tests."})
    progress_bar: bool = field(default=True, metadata={"help": "Show a tqdm progress bar on rank 0."})
    loss_curve: bool = field(default=True, metadata={
        "help": "Write loss_curve.png (train loss, validation loss/AUROC)."})

    def __post_init__(self) -> None:
        """Reject option combinations that cannot work, before any model or data is touched."""
        if self.zero_stage not in (0, 1, 2, 3):
            raise ConfigError(f"`zero_stage` must be 0, 1, 2 or 3, got {self.zero_stage}")
        if self.positive_rate == 0:
            self.positive_rate = None
        if self.positive_rate is not None and not 0.0 < self.positive_rate < 1.0:
            raise ConfigError(f"`positive_rate` must be in (0, 1), got {self.positive_rate}",
                              "use e.g. 0.1, or None to train on the natural rate")
        if self.max_length < 8:
            raise ConfigError(f"`max_length` must be >= 8, got {self.max_length}")
        for name in ("batch_size", "gradient_accumulation_steps", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"`{name}` must be >= 1, got {getattr(self, name)}")
        if not self.epochs > 0:
            raise ConfigError(f"`epochs` must be > 0, got {self.epochs}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"`max_steps` must be >= 1, got {self.max_steps}")
        if not self.lr > 0:
            raise ConfigError(f"`lr` must be > 0, got {self.lr}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigError(f"`warmup_ratio` must be in [0, 1), got {self.warmup_ratio}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"`dropout` must be in [0, 1), got {self.dropout}")
        if self.save_steps < 0 or self.eval_steps < 0 or self.keep_checkpoints < 0:
            raise ConfigError("`save_steps`, `eval_steps` and `keep_checkpoints` must be >= 0")
        if self.stop_after_steps is not None:
            if self.stop_after_steps < 1:
                raise ConfigError(f"`stop_after_steps` must be >= 1, got {self.stop_after_steps}")
            if self.max_steps is not None and self.stop_after_steps > self.max_steps:
                raise ConfigError(f"`stop_after_steps` ({self.stop_after_steps}) exceeds `max_steps` "
                                  f"({self.max_steps})")
        if self.objective == "pairwise":
            if self.calibration != "none":
                raise ConfigError(f"`calibration={self.calibration}` needs probabilities; Bradley-Terry rewards "
                                  "are not", "set calibration='none' with objective='pairwise'")
            if self.positive_rate is not None:
                raise ConfigError("`positive_rate` upsamples unpaired positives; pairs have none",
                                  "set positive_rate=None with objective='pairwise'")
        if self.deepspeed_config is not None and not resolve_path(self.deepspeed_config).is_file():
            raise ConfigError(f"DeepSpeed config {self.deepspeed_config!r} not found",
                              f"use one of {sorted(p.name for p in _DEEPSPEED_DIR.glob('*.json'))} in "
                              f"{_DEEPSPEED_DIR}")

    @property
    def checkpoint_path(self) -> Path:
        """Directory of the DeepSpeed checkpoints."""
        return Path(self.checkpoint_dir) if self.checkpoint_dir else Path(self.output_dir) / "checkpoints"

    def replace(self, **changes: Any) -> RewardTrainingConfig:
        """Return a copy with ``changes`` applied (and checked again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Return the options as a JSON-ready dict (stored with the model)."""
        return dataclasses.asdict(self)


def resolve_path(path: str | Path) -> Path:
    """Resolve a path as given, else relative to the repository (``training/..``)."""
    p = Path(path)
    if p.is_absolute() or p.exists():
        return p
    return Path(__file__).resolve().parent.parent / p


def bundled_deepspeed_config(zero_stage: int) -> Path:
    """Return the bundled ``training/deepspeed/zero<stage>.json``."""
    return _DEEPSPEED_DIR / f"zero{zero_stage}.json"


def load_deepspeed_config(config: RewardTrainingConfig) -> dict[str, Any]:
    """Load the DeepSpeed JSON for ``config`` and fill in what the run decides.

    Sets ``train_micro_batch_size_per_gpu``, ``gradient_accumulation_steps`` and the ZeRO stage
    from ``config``, and drops ``train_batch_size`` (DeepSpeed derives it from the world size),
    so one JSON file serves 1 CPU process and N GPUs alike.
    """
    path = resolve_path(config.deepspeed_config) if config.deepspeed_config else bundled_deepspeed_config(
        config.zero_stage)
    try:
        ds: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read DeepSpeed config {str(path)!r} ({exc})") from exc
    ds.pop("train_batch_size", None)
    ds["train_micro_batch_size_per_gpu"] = config.batch_size
    ds["gradient_accumulation_steps"] = config.gradient_accumulation_steps
    zero = dict(ds.get("zero_optimization") or {})
    if zero.get("stage", config.zero_stage) != config.zero_stage:
        logger.info("ZeRO stage %s from %s overridden by zero_stage=%d", zero.get("stage"), path.name,
                    config.zero_stage)
    zero["stage"] = config.zero_stage
    ds["zero_optimization"] = zero
    if "optimizer" in ds:
        raise ConfigError(f"{path.name} declares an optimizer; RewardTrainer passes torch AdamW itself",
                          "remove the `optimizer` block")
    return ds


def config_from_settings(settings: TrainingSettings, **overrides: Any) -> RewardTrainingConfig:
    """Map ``Settings.training`` to a `RewardTrainingConfig` (the only place that does).

    The settings' default DeepSpeed file (``training/deepspeed/zero1.json``) is treated as
    "the bundled file for `zero_stage`", so ``RLUF_TRAINING__ZERO_STAGE=2`` alone is enough.

    Args:
        settings: The training slice of `rluf.settings.Settings`.
        overrides: Any `RewardTrainingConfig` field, e.g. ``output_dir`` or ``max_steps``.
    """
    ds = None if settings.deepspeed_config == _DEFAULT_SETTINGS_DS else settings.deepspeed_config
    values: dict[str, Any] = {
        "backbone": settings.backbone,
        "max_length": settings.max_length,
        "batch_size": settings.batch_size,
        "epochs": settings.epochs,
        "lr": settings.lr,
        "positive_rate": settings.positive_rate,
        "zero_stage": settings.zero_stage,
        "deepspeed_config": ds,
        "seed": settings.seed,
        "max_steps": settings.max_steps,
    }
    values.update(overrides)
    return RewardTrainingConfig(**values)
