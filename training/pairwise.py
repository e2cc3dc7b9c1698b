"""Bradley-Terry (pairwise) training of the same reward model, for the paper's Appendix E.

RLUF trains P[Love] pointwise on unpaired feedback because Love reactions are sparse and
rarely come in pairs. When paired data exists (two responses to one context, one preferred),
the classic reward-model loss ``-log sigmoid(r_chosen - r_rejected)`` is the baseline to
compare against. It reuses `PLoveModel`, `encode_inputs` and the whole `RewardTrainer` loop
(DeepSpeed, checkpoints, resume, loss curve); only data, loss and metrics differ. BT rewards
are unnormalised scores, not probabilities, so no calibration is stored.

Paired data: a DataFrame with ``pair_id``, ``context``, ``chosen``, ``rejected``, ``split``
(and optionally ``weight``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from transformers import PreTrainedTokenizerBase

from rluf.errors import DataQualityError

from .calibration import Calibration
from .datasets import PAIR_COLUMNS, check_columns, encode_inputs, pad_inputs
from .reward_trainer import Batch, Outputs, RewardTrainer, _model_inputs, _Prepared

__all__ = ["PairDataset", "PairCollator", "bradley_terry_loss", "PairwiseTrainer"]

logger = logging.getLogger(__name__)


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor,
                       weights: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of ``-log sigmoid(r_chosen - r_rejected)`` (optionally weighted per pair)."""
    per = -F.logsigmoid(chosen - rejected)
    return (per * weights).mean() if weights is not None else per.mean()


class PairDataset(Dataset[dict[str, Any]]):
    """(context, chosen, rejected) pairs, both sides encoded with `encode_inputs`."""

    def __init__(self, frame: pd.DataFrame, tokenizer: PreTrainedTokenizerBase, *, max_length: int) -> None:
        contexts = list(frame["context"])
        self.chosen = encode_inputs(contexts, list(frame["chosen"]), tokenizer, max_length=max_length)
        self.rejected = encode_inputs(contexts, list(frame["rejected"]), tokenizer, max_length=max_length)
        self.weights = (frame["weight"].to_numpy(dtype=np.float32) if "weight" in frame
                        else np.ones(len(frame), dtype=np.float32))

    def __len__(self) -> int:
        return len(self.chosen)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"chosen": self.chosen[index], "rejected": self.rejected[index],
                "weight": float(self.weights[index]), "index": index}


class PairCollator:
    """One padded batch of 2B rows: the B chosen responses first, then the B rejected ones."""

    def __init__(self, pad_token_id: int) -> None:
        self.pad_token_id = pad_token_id

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        rows = [f["chosen"] for f in features] + [f["rejected"] for f in features]
        batch = pad_inputs(rows, self.pad_token_id)
        batch["weights"] = torch.tensor([f["weight"] for f in features], dtype=torch.float32)
        batch["index"] = torch.tensor([f["index"] for f in features], dtype=torch.long)
        return batch


class PairwiseTrainer(RewardTrainer):
    """`RewardTrainer` with the Bradley-Terry objective (config ``objective="pairwise"``)."""

    objective = "pairwise"
    eval_metric = "val_accuracy"

    def __init__(self, config: Any, model: Any, tokenizer: PreTrainedTokenizerBase) -> None:
        super().__init__(config, model, tokenizer)
        self.collate = PairCollator(int(tokenizer.pad_token_id or 0))

    def _prepare(self, train_df: pd.DataFrame, val_df: pd.DataFrame | None) -> _Prepared:
        cfg = self.config
        check_columns(train_df, [c for c in PAIR_COLUMNS if c != "split"], what="paired training split")
        if "split" in train_df and not train_df["split"].eq("train").all():
            raise DataQualityError("`train_df` holds non-training pairs; pass `split_frame(pairs)['train']`")
        val = None
        if val_df is not None and len(val_df):
            check_columns(val_df, [c for c in PAIR_COLUMNS if c != "split"], what="paired validation split")
            val = PairDataset(val_df.reset_index(drop=True), self.tokenizer, max_length=cfg.max_length)
        logger.info("pairwise: %d training pairs, %d validation pairs", len(train_df), 0 if val is None else len(val))
        return _Prepared(PairDataset(train_df.reset_index(drop=True), self.tokenizer, max_length=cfg.max_length),
                         val, None, None, {"train_pairs": len(train_df)})

    def _margins(self, engine: Any, batch: Batch) -> torch.Tensor:
        rewards = engine(**_model_inputs(batch))
        half = rewards.shape[0] // 2
        return rewards[:half] - rewards[half:]

    def _loss(self, engine: Any, batch: Batch) -> torch.Tensor:
        margin = self._margins(engine, batch)
        return bradley_terry_loss(margin, torch.zeros_like(margin), batch["weights"])

    def _eval_batch(self, engine: Any, batch: Batch) -> Outputs:
        margin = self._margins(engine, batch).float().cpu().numpy()
        return {"index": batch["index"].cpu().numpy(), "margin": margin, "weights": batch["weights"].cpu().numpy()}

    def _eval_metrics(self, out: Outputs, calibration: Calibration) -> dict[str, float]:
        per = np.logaddexp(0.0, -out["margin"])
        return {"val_loss": float(np.average(per, weights=out["weights"]) if out["weights"].sum() > 0 else per.mean()),
                "val_accuracy": float(np.mean(out["margin"] > 0))}

    def _calibrate(self, out: Outputs | None, prepared: _Prepared) -> tuple[Calibration, dict[str, float]]:
        if out is None:
            return Calibration(), {}
        return Calibration(), {"val_pairs": float(len(out["margin"])), **self._eval_metrics(out, Calibration())}
