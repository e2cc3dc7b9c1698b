"""Train the P[Love] reward model through DeepSpeed (one CPU process, torchrun/gloo, or GPUs).

An explicit ``deepspeed.initialize`` loop (style rule 9: one plain config dataclass, one
trainer) rather than the HF Trainer: the loop is short, and owning it keeps three things
exact that the paper's setup depends on:

* the loss is weighted BCE-with-logits on UNPAIRED (context, response, label, weight) rows,
  after positives are upsampled to ``positive_rate`` (training split only);
* calibration afterwards: the prior shift from the upsampled training rate back to the true
  (unsampled) base rate, then optionally a temperature fitted on the validation split;
* resume after a kill reproduces the uninterrupted run: data order is a pure function of
  (seed, step) through a seeded `DistributedSampler`, dropout is reseeded per micro-batch,
  and model/optimizer/LR-schedule state come from ``engine.load_checkpoint``.

Only rank 0 writes the model, the PNG and ``metrics.json``; every rank writes its share of a
DeepSpeed checkpoint (ZeRO shards).

Why one module of ~470 lines: one trainer class (TRL's ``reward_trainer.py`` is ~800 lines);
its loop, evaluation, calibration and checkpoint/resume share the DeepSpeed engine and the run
state, and the short helpers below serve only it.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, DistributedSampler
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from rluf.errors import ConfigError, DataQualityError
from validation import metrics
from validation.plots import loss_curve

from .calibration import (
    Calibration,
    apply_calibration,
    binary_log_loss,
    fit_temperature,
    weighted_rate,
)
from .checkpoints import RunState, checkpoint_tags, load_latest, save_checkpoint
from .datasets import TRIPLE_COLUMNS, PLoveCollator, TripleDataset, check_columns, upsample_positives
from .distributed import (
    all_gather_objects,
    barrier,
    ensure_process_env,
    mean_across_ranks,
    rank,
    seed_everything,
    set_runtime_env_defaults,
    step_seed,
    world_size,
)
from .reward_config import RewardTrainingConfig, load_deepspeed_config
from .reward_model import PLoveModel

__all__ = ["RewardTrainer", "TrainResult", "weighted_bce"]

logger = logging.getLogger(__name__)

Batch = dict[str, torch.Tensor]
Outputs = dict[str, np.ndarray]


@dataclass
class TrainResult:
    """What a `RewardTrainer.train` call did and produced (identical on every rank).

    Attributes:
        steps: Optimizer steps done in total (including those before a resume).
        total_steps: Steps the LR schedule spans.
        completed: False when ``stop_after_steps`` ended the run early (no final model then).
        resumed_from_step: Step of the checkpoint the run resumed from, if any.
        train_losses: Training loss of every optimizer step, index i = step i + 1.
        evals: One dict per evaluation (``step``, ``val_loss``, ``val_auroc`` or ``val_accuracy``).
        metrics: Final validation metrics after calibration (empty without a validation split).
        calibration: The calibration stored in the saved model.
        train_rate: Weighted positive rate trained on (after upsampling); None for pairwise.
        true_rate: Weighted positive rate of the unsampled training split; None for pairwise.
        model_dir: The saved model (rank 0 of a completed run), loadable with `PLove.load`.
        loss_curve: The PNG (rank 0 of a completed run).
        seconds: Wall time of this call.
        samples_per_s: Training rows per second over the optimizer steps run in this call (forward,
            backward, step; not set-up, evaluation or checkpoints), all ranks; a pairwise row is a pair.
    """

    steps: int
    total_steps: int
    completed: bool
    resumed_from_step: int | None
    train_losses: list[float]
    evals: list[dict[str, float]]
    metrics: dict[str, float]
    calibration: Calibration
    train_rate: float | None
    true_rate: float | None
    checkpoint_dir: Path
    model_dir: Path | None = None
    loss_curve: Path | None = None
    seconds: float = 0.0
    samples_per_s: float = 0.0
    world_size: int = 1

    def summary(self) -> dict[str, Any]:
        """Return a JSON-ready summary (no per-step history)."""
        out = {k: v for k, v in asdict(self).items() if k not in ("train_losses", "evals", "calibration")}
        out["calibration"] = self.calibration.to_dict()
        out["final_train_loss"] = self.train_losses[-1] if self.train_losses else None
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in out.items()}


@dataclass
class _Prepared:
    train: Dataset[dict[str, Any]]
    val: Dataset[dict[str, Any]] | None
    train_rate: float | None = None
    true_rate: float | None = None
    info: dict[str, Any] = field(default_factory=dict)


def weighted_bce(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``weight * BCE-with-logits`` (weights in [0, 1] down-weight rows)."""
    return (weights * F.binary_cross_entropy_with_logits(logits, labels, reduction="none")).mean()


def _auroc(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Weighted ROC AUC (validation.metrics); NaN when the split has a single class."""
    value = metrics.auroc(scores, labels, weights=weights)
    return float("nan") if value is None else value


def _ece(probs: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> float:
    cal = metrics.expected_calibration_error(probs, labels, weights=weights)
    return float("nan") if cal is None else cal.ece


class RewardTrainer:
    """Pointwise P[Love] training (weighted BCE on unpaired triples) through DeepSpeed.

    Args:
        config: The run's options.
        model: A `PLoveModel` (e.g. ``PLoveModel.from_backbone(path)`` or ``PLoveModel.tiny(...)``).
        tokenizer: The backbone's tokenizer; saved with the model.

    Example:
        >>> model = PLoveModel.from_backbone()                        # bundled MiniLM-L6
        >>> trainer = RewardTrainer(RewardTrainingConfig(output_dir="build/plove"), model, model.tokenizer)
        >>> result = trainer.train(frames["train"], frames["validation"])
        >>> PLove.load(result.model_dir).score(contexts, responses)
    """

    objective = "pointwise"
    eval_metric = "val_auroc"

    def __init__(self, config: RewardTrainingConfig, model: PLoveModel, tokenizer: PreTrainedTokenizerBase) -> None:
        if config.objective != self.objective:
            raise ConfigError(f"`objective={config.objective}` does not fit {type(self).__name__}",
                              "use training.pairwise.PairwiseTrainer for objective='pairwise'")
        if tokenizer.pad_token_id is None:
            raise ConfigError("the tokenizer has no pad token", "set `tokenizer.pad_token` before training")
        self.config = config
        self.model = model
        self.tokenizer = tokenizer
        model.tokenizer = tokenizer
        model.max_length = config.max_length
        self.collate: Callable[[Sequence[Mapping[str, Any]]], Batch] = PLoveCollator(int(tokenizer.pad_token_id))

    # ------------------------------------------------------------------ hooks (overridden for pairwise)

    def _prepare(self, train_df: pd.DataFrame, val_df: pd.DataFrame | None) -> _Prepared:
        """Upsample the training split and tokenize both splits."""
        cfg = self.config
        check_columns(train_df, [c for c in TRIPLE_COLUMNS if c != "split"], what="training split")
        if "split" in train_df and not train_df["split"].eq("train").all():
            raise DataQualityError("`train_df` holds non-training rows; pass `split_frame(df)['train']`")
        weights = train_df.get("weight")
        true_rate = weighted_rate(train_df["label"], weights)
        if not 0.0 < true_rate < 1.0:  # before upsampling, which cannot work on one class
            raise DataQualityError(f"training split has a single class (weighted positive rate {true_rate:.4f}); "
                                   "P[Love] needs both loved and not-loved responses")
        if cfg.positive_rate is not None:
            upsampled, train_rate = upsample_positives(train_df, cfg.positive_rate, seed=cfg.seed)
        else:
            upsampled, train_rate = train_df, true_rate
        val = None
        if val_df is not None and len(val_df):
            check_columns(val_df, ["context", "response", "label"], what="validation split")
            val = TripleDataset(val_df, self.tokenizer, max_length=cfg.max_length)
        logger.info("training rows %d (%d after upsampling), true rate %.4f, train rate %.4f, validation rows %d",
                    len(train_df), len(upsampled), true_rate, train_rate, 0 if val is None else len(val))
        info = {"train_rows": len(train_df), "train_rows_upsampled": len(upsampled)}
        train = TripleDataset(upsampled.reset_index(drop=True), self.tokenizer, max_length=cfg.max_length)
        return _Prepared(train, val, train_rate, true_rate, info)

    def _loss(self, engine: Any, batch: Batch) -> torch.Tensor:
        logits = engine(**_model_inputs(batch))
        return weighted_bce(logits, batch["labels"], batch["weights"])

    def _eval_batch(self, engine: Any, batch: Batch) -> Outputs:
        logits = engine(**_model_inputs(batch)).float().cpu().numpy()
        return {"index": batch["index"].cpu().numpy(), "logits": logits,
                "labels": batch["labels"].cpu().numpy(), "weights": batch["weights"].cpu().numpy()}

    def _eval_metrics(self, out: Outputs, calibration: Calibration) -> dict[str, float]:
        z = apply_calibration(out["logits"], calibration, output="logits")
        return {"val_loss": binary_log_loss(z, out["labels"], out["weights"]),
                "val_auroc": _auroc(out["logits"], out["labels"], out["weights"])}

    def _calibrate(self, out: Outputs | None, prepared: _Prepared) -> tuple[Calibration, dict[str, float]]:
        """Prior shift (train -> true rate), then a temperature on validation if asked."""
        cfg = self.config
        base = Calibration()
        if cfg.calibration != "none" and prepared.train_rate is not None and prepared.true_rate is not None:
            base = Calibration(train_rate=prepared.train_rate, true_rate=prepared.true_rate)
        if out is None:
            if cfg.calibration == "prior_shift+temperature":
                logger.warning("no validation split: temperature not fitted, prior shift only")
            return base, {}
        temperature = 1.0
        if cfg.calibration == "prior_shift+temperature":
            temperature = fit_temperature(out["logits"], out["labels"], out["weights"], offset=base.shift)
        cal = Calibration(base.train_rate, base.true_rate, temperature)
        probs = apply_calibration(out["logits"], cal)
        metrics = {
            "val_rows": float(len(out["logits"])),
            "val_auroc": _auroc(out["logits"], out["labels"], out["weights"]),
            "val_log_loss_raw": binary_log_loss(out["logits"], out["labels"], out["weights"]),
            "val_log_loss_prior_shift": binary_log_loss(out["logits"] + base.shift, out["labels"], out["weights"]),
            "val_log_loss": binary_log_loss(apply_calibration(out["logits"], cal, output="logits"),
                                            out["labels"], out["weights"]),
            "val_ece": _ece(probs, out["labels"], out["weights"]),
            "val_base_rate": weighted_rate(out["labels"], out["weights"]),
            "val_mean_p": float(np.average(probs, weights=out["weights"]) if out["weights"].sum() > 0
                                else probs.mean()),
        }
        return cal, metrics

    # ------------------------------------------------------------------ the loop

    def train(
        self,
        train_df: pd.DataFrame,
        val_df: pd.DataFrame | None = None,
        *,
        provenance: Mapping[str, Any] | None = None,
    ) -> TrainResult:
        """Train, calibrate, and (rank 0) save the model, ``metrics.json`` and the loss curve.

        Args:
            train_df: Training rows (``split == "train"``), before upsampling.
            val_df: Validation rows at the true base rate; evaluation, temperature fit.
            provenance: Where the data came from (e.g. the Delta version); saved with the model.

        Raises:
            DataQualityError: missing columns or a single-class training split.
            ConfigError: a checkpoint to resume from was written with other data-order settings.
        """
        set_runtime_env_defaults()
        ensure_process_env()
        import deepspeed

        cfg = self.config
        started = time.perf_counter()
        seed_everything(cfg.seed)
        prepared = self._prepare(train_df, val_df)
        deepspeed.init_distributed()
        r, ws = rank(), world_size()
        gas, bs = cfg.gradient_accumulation_steps, cfg.batch_size
        n_train = len(prepared.train)  # type: ignore[arg-type]
        micro_per_epoch = math.ceil(math.ceil(n_train / ws) / bs)
        total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * micro_per_epoch) // gas)
        stop_at = min(total_steps, cfg.stop_after_steps or total_steps)
        ds_config = load_deepspeed_config(cfg)
        optimizer = torch.optim.AdamW(_param_groups(self.model, cfg.weight_decay), lr=cfg.lr)
        warmup = int(cfg.warmup_ratio * total_steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _linear_schedule(warmup, total_steps))
        engine, _, _, _ = deepspeed.initialize(model=self.model, optimizer=optimizer, lr_scheduler=scheduler,
                                               config=ds_config)
        order = {"seed": cfg.seed, "world_size": ws, "batch_size": bs, "gradient_accumulation_steps": gas,
                 "train_examples": n_train, "total_steps": total_steps}
        ckpt_dir = cfg.checkpoint_path
        state = (load_latest(engine, ckpt_dir, order=order) if cfg.resume else None) or RunState()
        resumed_from = state.step or None
        if not cfg.resume and r == 0 and checkpoint_tags(ckpt_dir):
            logger.warning("%s already holds checkpoints and resume is off: starting from step 0", ckpt_dir)
        train_losses, evals = state.train_losses, state.evals

        def checkpoint(step: int) -> None:
            save_checkpoint(engine, ckpt_dir, RunState(step, train_losses, evals), order=order,
                            objective=self.objective, keep=cfg.keep_checkpoints)

        orders: dict[int, list[int]] = {}

        def micro_batch(m: int) -> Batch:
            epoch, pos = divmod(m, micro_per_epoch)
            if epoch not in orders:
                orders.clear()
                sampler: DistributedSampler[Any] = DistributedSampler(
                    prepared.train, num_replicas=ws, rank=r, shuffle=True, seed=cfg.seed)
                sampler.set_epoch(epoch)
                orders[epoch] = list(sampler)
            idx = orders[epoch][pos * bs:(pos + 1) * bs]
            batch = self.collate([prepared.train[i] for i in idx])
            return {k: v.to(engine.device) for k, v in batch.items()}

        cal_now = Calibration(prepared.train_rate, prepared.true_rate) if prepared.train_rate else Calibration()
        engine.train()
        bar = tqdm(total=total_steps, initial=state.step, disable=not (cfg.progress_bar and r == 0),
                   desc=f"P[Love] {self.objective}", unit="step", dynamic_ncols=True)
        step, ran = state.step, 0
        step_seconds = 0.0  # the optimizer steps alone: set-up, evaluation and checkpoints excluded
        last_saved = state.step if resumed_from else -1
        last_eval_out: Outputs | None = None
        last_eval_step = -1
        try:
            while step < stop_at:
                losses = []
                step_started = time.perf_counter()
                for micro in range(gas):
                    m = step * gas + micro
                    torch.manual_seed(step_seed(cfg.seed, m, r))
                    loss = self._loss(engine, micro_batch(m))
                    engine.backward(loss)
                    engine.step()
                    losses.append(float(loss.detach().item()))
                step_seconds += time.perf_counter() - step_started
                step += 1
                ran += 1
                train_losses.append(mean_across_ranks(float(np.mean(losses))))
                bar.update(1)
                bar.set_postfix(loss=f"{train_losses[-1]:.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
                if prepared.val is not None and self._eval_due(step, total_steps, gas, micro_per_epoch):
                    last_eval_out = self._evaluate(engine, prepared.val)
                    last_eval_step = step
                    evals.append({"step": float(step), **self._eval_metrics(last_eval_out, cal_now)})
                    logger.info("step %d/%d: %s", step, total_steps,
                                ", ".join(f"{k} {v:.4f}" for k, v in evals[-1].items() if k != "step"))
                if (cfg.save_steps and step % cfg.save_steps == 0) or step in (stop_at, total_steps):
                    checkpoint(step)
                    last_saved = step
        finally:
            bar.close()
        if last_saved != step:  # resumed at/after the end: make sure `latest` is this step
            checkpoint(step)
        elapsed = time.perf_counter() - started
        result = TrainResult(
            steps=step, total_steps=total_steps, completed=step >= total_steps, resumed_from_step=resumed_from,
            train_losses=train_losses, evals=evals, metrics={}, calibration=cal_now,
            train_rate=prepared.train_rate, true_rate=prepared.true_rate, checkpoint_dir=ckpt_dir,
            seconds=elapsed, samples_per_s=ran * gas * bs * ws / step_seconds if step_seconds > 0 else 0.0,
            world_size=ws,
        )
        if not result.completed:
            logger.info("stopped after step %d of %d (stop_after_steps); resume with resume=True", step, total_steps)
            barrier()
            return result
        val_out = None
        if prepared.val is not None:
            val_out = last_eval_out if last_eval_step == step else self._evaluate(engine, prepared.val)
        result.calibration, result.metrics = self._calibrate(val_out, prepared)
        self.model.calibration = result.calibration
        self._write_outputs(engine, result, prepared, provenance)
        result.seconds = time.perf_counter() - started
        barrier()
        self.model.eval()
        return result

    # ------------------------------------------------------------------ helpers

    def _eval_due(self, step: int, total_steps: int, gas: int, micro_per_epoch: int) -> bool:
        if step == total_steps:
            return True
        if self.config.eval_steps:
            return step % self.config.eval_steps == 0
        return (step * gas) // micro_per_epoch != ((step - 1) * gas) // micro_per_epoch  # crossed an epoch

    def _evaluate(self, engine: Any, dataset: Dataset[dict[str, Any]]) -> Outputs:
        """Score ``dataset`` on all ranks (each a shard), gather, and return rows in dataset order."""
        r, ws = rank(), world_size()
        sampler: DistributedSampler[Any] = DistributedSampler(dataset, num_replicas=ws, rank=r, shuffle=False)
        idx = list(sampler)
        chunks: list[Outputs] = []
        engine.eval()
        with torch.no_grad():
            for s in range(0, len(idx), self.config.eval_batch_size):
                batch = self.collate([dataset[i] for i in idx[s:s + self.config.eval_batch_size]])
                chunks.append(self._eval_batch(engine, {k: v.to(engine.device) for k, v in batch.items()}))
        engine.train()
        local = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]} if chunks else {}
        parts = [p for p in all_gather_objects(local) if p]
        merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        _, first = np.unique(merged["index"], return_index=True)  # the sampler pads by repeating rows
        return {k: v[first] for k, v in merged.items()}

    def _write_outputs(self, engine: Any, result: TrainResult, prepared: _Prepared,
                       provenance: Mapping[str, Any] | None) -> None:
        """Rank 0 writes model, metrics and PNG; under ZeRO-3 every rank first gathers the weights."""
        import deepspeed

        cfg = self.config
        out = Path(cfg.output_dir)
        extra = {
            "objective": self.objective,
            "training": cfg.to_dict(),
            "train_rate": prepared.train_rate,
            "true_rate": prepared.true_rate,
            "metrics": result.metrics,
            "steps": result.steps,
            "world_size": result.world_size,
            "deepspeed_version": deepspeed.__version__,
            "data": {**prepared.info, **(dict(provenance) if provenance else {})},
        }
        params = list(self.model.parameters())
        with deepspeed.zero.GatheredParameters(params, modifier_rank=None, enabled=cfg.zero_stage == 3):
            if rank() == 0:
                result.model_dir = self.model.save(out / "model", tokenizer=self.tokenizer, extra=extra)
        if rank() != 0:
            return
        if cfg.loss_curve:
            result.loss_curve = loss_curve(result.train_losses, result.evals, out / "loss_curve.png",
                                                title=f"P[Love] reward model ({self.objective})",
                                                metric=self.eval_metric)
        (out / "metrics.json").write_text(json.dumps(
            {**result.summary(), "evals": result.evals, "train_losses": result.train_losses},
            indent=2, default=_json_default))


def _model_inputs(batch: Batch) -> dict[str, torch.Tensor]:
    return {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: no weight decay on biases and normalisation weights (the usual BERT recipe)."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _linear_schedule(warmup: int, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
