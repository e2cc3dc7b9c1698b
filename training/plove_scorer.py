"""Score responses with a trained P[Love] model: calibrated probabilities a user Loves them.

``PLove.load(dir).score(contexts, responses)`` reads a directory written by
`PLoveModel.save` (what `RewardTrainer` produces under ``<output_dir>/model``), encodes with
the same `encode_inputs` used in training, and returns ``sigmoid(z / T + shift)``: the
temperature and the prior shift stored with the model make the number a calibrated
probability at the true base rate, not at the upsampled training rate.

Inputs are sorted by length and padded per batch (dynamic padding), so a batch of short
answers does not pay for the longest one in the request.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from rluf.errors import ConfigError

from .calibration import Calibration, apply_calibration
from .datasets import encode_inputs, pad_inputs
from .reward_model import PLOVE_CONFIG_NAME, PLoveModel

__all__ = ["PLove"]

logger = logging.getLogger(__name__)


class PLove:
    """A loaded reward model ready to score (eval mode, no gradients).

    Args:
        model: The reward model (its ``calibration`` and ``max_length`` are used).
        tokenizer: Its tokenizer (default: the one attached to ``model``).
        device: Where to run ("cpu", "cuda", ...).
        precision: "bf16" casts the encoder's weights to bfloat16 (pooling and head stay fp32):
            ~6x faster on CPUs with AMX/AVX512-BF16 (see bench/reward.py), probabilities differ
            from fp32 by ~1e-2 relative. bf16 autocast instead of cast weights was barely faster
            than fp32 here (per-op casts), hence the cast.
    """

    def __init__(
        self,
        model: PLoveModel,
        tokenizer: PreTrainedTokenizerBase | None = None,
        *,
        device: str | torch.device = "cpu",
        precision: Literal["fp32", "bf16"] = "fp32",
    ) -> None:
        tok = tokenizer or model.tokenizer
        if tok is None:
            raise ConfigError("the P[Love] model has no tokenizer",
                              "save it with `PLoveModel.save(dir, tokenizer=...)`")
        self.tokenizer = tok
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.precision = precision
        if precision == "bf16":
            self.model.backbone.to(torch.bfloat16)  # type: ignore[arg-type]
        self._pad_id = int(tok.pad_token_id if tok.pad_token_id is not None else 0)

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        device: str | torch.device = "cpu",
        precision: Literal["fp32", "bf16"] = "fp32",
    ) -> PLove:
        """Load a saved model: a directory written by ``PLoveModel.save``, a file in it, or a training output_dir.

        To load what the registry serves (``"production"``, ``"latest"``, a version), use
        ``deploy.registry.ModelRegistry.load_plove``.

        Raises:
            ConfigError: no saved model at ``path``.
        """
        where = Path(path)
        if where.is_file():
            where = where.parent
        if not (where / PLOVE_CONFIG_NAME).is_file() and (where / "model" / PLOVE_CONFIG_NAME).is_file():
            where = where / "model"  # a training output_dir
        return cls(PLoveModel.load(where), device=device, precision=precision)

    @property
    def calibration(self) -> Calibration:
        """The calibration applied by `score`."""
        return self.model.calibration

    @property
    def max_length(self) -> int:
        """Token budget per input (as in training)."""
        return self.model.max_length

    def logits(self, contexts: Sequence[Any], responses: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """Return raw (uncalibrated) logits, one per (context, response), in input order."""
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1, got {batch_size}")
        encoded = encode_inputs(contexts, responses, self.tokenizer, max_length=self.max_length)
        out = np.empty(len(encoded), dtype=np.float64)
        if not encoded:
            return out
        order = np.argsort([-len(e["input_ids"]) for e in encoded], kind="stable")
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                rows = order[start:start + batch_size]
                batch = pad_inputs([encoded[i] for i in rows], self._pad_id)
                logits = self.model(**{k: v.to(self.device) for k, v in batch.items()})
                out[rows] = logits.float().cpu().numpy()
        return out

    def score(self, contexts: Sequence[Any], responses: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """Return calibrated P[Love] in [0, 1], one per (context, response), in input order.

        Args:
            contexts: Conversation contexts: lists of ``{"role", "content"}`` turns (or strings).
            responses: The responses to score.
            batch_size: Rows per forward pass.
        """
        return apply_calibration(self.logits(contexts, responses, batch_size=batch_size), self.calibration)
