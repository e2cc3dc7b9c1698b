"""From feature-store triples to model inputs: rendering, truncation, upsampling, batching.

`encode_inputs` is the ONE place where a (context, response) becomes token ids; training,
validation, scoring and the pairwise path all call it, so the model never sees a different
input layout at serving time than in training.

Layout: the tokenizer's own pair template, ``[CLS] context [SEP] response [SEP]`` for BERT.
The context is the conversation rendered one turn a line (``user: ...`` / ``assistant: ...``)
and is truncated from the LEFT: the latest turns matter most for judging the response, the
oldest are dropped first. The response is kept whole; only a response that alone exceeds the
token budget loses its tail (and then no context is left).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset
from transformers import PreTrainedTokenizerBase

from rluf.errors import DataQualityError, InputFileError

from .calibration import weighted_rate

__all__ = [
    "TRIPLE_COLUMNS",
    "PAIR_COLUMNS",
    "render_context",
    "encode_inputs",
    "TripleDataset",
    "PLoveCollator",
    "pad_inputs",
    "upsample_positives",
    "split_frame",
    "check_columns",
    "read_training_set",
]

logger = logging.getLogger(__name__)

TRIPLE_COLUMNS: tuple[str, ...] = ("context", "response", "label", "weight", "split")
"""Columns the trainer needs (the feature store writes more: ids, timestamps, policy version)."""
PAIR_COLUMNS: tuple[str, ...] = ("context", "chosen", "rejected", "split")

Encoded = dict[str, list[int]]


def render_context(context: Any) -> str:
    """Render a conversation context as one ``role: content`` line per turn.

    Accepts what the pipeline produces: a list (or numpy array, after parquet) of
    ``{"role", "content"}`` dicts or `rluf.schemas.Message` objects; a plain string passes
    through unchanged and None means no context.
    """
    if context is None:
        return ""
    if isinstance(context, str):
        return context
    lines: list[str] = []
    for turn in _iter_turns(context):
        if isinstance(turn, Mapping):
            role, content = turn.get("role", "user"), turn.get("content", "")
        else:
            role, content = getattr(turn, "role", "user"), getattr(turn, "content", "")
        lines.append(f"{role}: {content}")
    return "\n".join(lines)


def _iter_turns(context: Any) -> Iterable[Any]:
    if isinstance(context, np.ndarray):
        return list(context.tolist())
    if isinstance(context, Iterable):
        return context
    raise TypeError(f"context must be a list of turns or a string, got {type(context).__name__}")


def encode_inputs(
    contexts: Sequence[Any],
    responses: Sequence[str],
    tokenizer: PreTrainedTokenizerBase,
    *,
    max_length: int,
) -> list[Encoded]:
    """Encode (context, response) pairs into at most ``max_length`` tokens each.

    Args:
        contexts: Conversation contexts (see `render_context`), one per response.
        responses: Response texts.
        tokenizer: A fast (Rust-backed) Hugging Face tokenizer with a pair template.
        max_length: Token budget per input, special tokens included.

    Returns:
        One dict per pair with ``input_ids``, ``attention_mask`` and, where the tokenizer makes
        them, ``token_type_ids`` (unpadded Python lists).
    """
    if len(contexts) != len(responses):
        raise ValueError(f"{len(contexts)} contexts but {len(responses)} responses")
    if not responses:
        return []
    budget = max_length - tokenizer.num_special_tokens_to_add(pair=True)
    if budget < 2:
        raise ValueError(f"`max_length` {max_length} leaves no room for a context and a response")
    texts = [render_context(c) for c in contexts]
    resp = [str(r) for r in responses]
    enc = tokenizer(resp, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    for i, (ids, offsets) in enumerate(zip(enc["input_ids"], enc["offset_mapping"], strict=True)):
        if len(ids) >= budget:  # the response alone fills the budget: cut its tail, no context
            resp[i] = resp[i][: offsets[budget - 1][1]]
            texts[i] = ""
    previous_side = tokenizer.truncation_side
    tokenizer.truncation_side = "left"  # with "only_first": drop the OLDEST context tokens
    try:
        out = tokenizer(texts, resp, truncation="only_first", max_length=max_length)
    finally:
        tokenizer.truncation_side = previous_side
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in out]
    return [{k: list(out[k][i]) for k in keys} for i in range(len(resp))]


def pad_inputs(features: Sequence[Mapping[str, Sequence[int]]], pad_token_id: int,
               *, pad_to_multiple_of: int | None = None) -> dict[str, torch.Tensor]:
    """Right-pad encoded inputs to the longest in the batch (dynamic padding) and stack them."""
    longest = max(len(f["input_ids"]) for f in features)
    if pad_to_multiple_of:
        longest = -(-longest // pad_to_multiple_of) * pad_to_multiple_of
    batch: dict[str, torch.Tensor] = {}
    for key, pad in (("input_ids", pad_token_id), ("attention_mask", 0), ("token_type_ids", 0)):
        if key not in features[0]:
            continue
        rows = [list(f[key]) + [pad] * (longest - len(f[key])) for f in features]
        batch[key] = torch.tensor(rows, dtype=torch.long)
    return batch


class TripleDataset(Dataset[dict[str, Any]]):
    """Unpaired (context, response, label, weight) rows, tokenized once up front.

    Args:
        frame: Rows with ``context``, ``response`` and, for training, ``label`` and ``weight``
            (a missing ``weight`` means 1; a missing ``label`` means unlabeled, scoring only).
        tokenizer: The model's tokenizer.
        max_length: Token budget per row.
    """

    def __init__(self, frame: pd.DataFrame, tokenizer: PreTrainedTokenizerBase, *, max_length: int) -> None:
        self.encoded = encode_inputs(list(frame["context"]), list(frame["response"]), tokenizer,
                                     max_length=max_length)
        n = len(frame)
        self.labels = frame["label"].to_numpy(dtype=np.float32) if "label" in frame else np.full(n, np.nan, np.float32)
        self.weights = frame["weight"].to_numpy(dtype=np.float32) if "weight" in frame else np.ones(n, np.float32)

    def __len__(self) -> int:
        return len(self.encoded)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**self.encoded[index], "label": float(self.labels[index]), "weight": float(self.weights[index]),
                "index": index}


class PLoveCollator:
    """Batch `TripleDataset` items: dynamic padding plus ``labels``/``weights``/``index`` tensors."""

    def __init__(self, pad_token_id: int, *, pad_to_multiple_of: int | None = None) -> None:
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        batch = pad_inputs(features, self.pad_token_id, pad_to_multiple_of=self.pad_to_multiple_of)
        batch["labels"] = torch.tensor([f["label"] for f in features], dtype=torch.float32)
        batch["weights"] = torch.tensor([f["weight"] for f in features], dtype=torch.float32)
        batch["index"] = torch.tensor([f["index"] for f in features], dtype=torch.long)
        return batch


def upsample_positives(frame: pd.DataFrame, rate: float, *, seed: int) -> tuple[pd.DataFrame, float]:
    """Resample training positives (with replacement) until they are ``rate`` of training rows.

    Only rows with ``split == "train"`` (all rows when there is no ``split`` column) are
    touched; validation and test keep the true base rate, which calibration and evaluation
    need. All original rows are kept and ``round(rate * n_neg / (1 - rate)) - n_pos`` drawn
    copies of positives are appended, so the positive share is ``rate`` to within one example.
    Nothing is added when positives are already at or above ``rate``.

    Args:
        frame: Triples with ``label`` (0/1) and optionally ``weight`` and ``split``.
        rate: Target share of positives among training rows, in (0, 1).
        seed: Seeds the draw, so a resumed run sees the same rows.

    Returns:
        The new frame and the effective training base rate: the weighted positive share of
        its training rows (what the weighted loss sees; prior shift needs exactly this).
    """
    if not 0.0 < rate < 1.0:
        raise ValueError(f"`rate` must be in (0, 1), got {rate}")
    is_train = frame["split"].eq("train").to_numpy() if "split" in frame else np.ones(len(frame), dtype=bool)
    train = frame[is_train]
    if train.empty:
        raise ValueError("no training rows to upsample")
    pos_idx = np.flatnonzero(is_train & (frame["label"].to_numpy() == 1))
    n_pos, n_neg = len(pos_idx), int(len(train) - len(pos_idx))
    target = round(rate * n_neg / (1.0 - rate))
    weights = train.get("weight")
    if n_pos == 0:
        raise ValueError("the training split has no positives; nothing to upsample (need at least one Love)")
    if target <= n_pos:
        logger.info("no upsampling: positives already %.4f of training rows (asked %.4f)", n_pos / len(train), rate)
        return frame, weighted_rate(train["label"], weights)
    rng = np.random.default_rng(seed)
    extra = frame.iloc[rng.choice(pos_idx, size=target - n_pos, replace=True)]
    out = pd.concat([frame, extra], ignore_index=True)
    out_train = out[out["split"].eq("train")] if "split" in out else out
    effective = weighted_rate(out_train["label"], out_train.get("weight"))
    logger.info("upsampled positives %d -> %d of %d training rows (weighted rate %.4f)",
                n_pos, target, len(out_train), effective)
    return out, effective


def split_frame(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Return ``{"train", "validation", "test"}`` sub-frames by the ``split`` column (index reset)."""
    if "split" not in frame:
        raise DataQualityError("training set has no `split` column; the feature store export adds it")
    return {name: frame[frame["split"] == name].reset_index(drop=True) for name in ("train", "validation", "test")}


def check_columns(frame: pd.DataFrame, required: Sequence[str], *, what: str = "training set") -> None:
    """Raise `DataQualityError` naming the missing columns, before any work starts."""
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataQualityError(f"{what} lacks columns {missing}; export it with the feature store (has "
                               f"{sorted(map(str, frame.columns))})")


def read_training_set(path: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a training-set parquet file (or directory) and the metadata stored beside it.

    Metadata (e.g. the Delta version the set was read at) is gathered from the parquet
    key-value metadata and from a JSON sidecar ``<path>.meta.json``, ``<path>.json`` or
    ``metadata.json`` in the same folder, whichever exist; it ends up in the saved model.

    Raises:
        InputFileError: nothing readable at ``path``.
    """
    src = Path(path)
    if not src.exists():
        raise InputFileError(str(src), "no training set here; export one with the feature store")
    try:
        frame = pd.read_parquet(src)
    except Exception as exc:  # pyarrow raises several unrelated types for unreadable files
        raise InputFileError(str(src), f"not a readable parquet training set ({exc})") from exc
    meta: dict[str, Any] = {}
    try:
        import pyarrow.parquet as pq

        files = [src] if src.is_file() else sorted(src.glob("*.parquet"))[:1]
        for f in files:
            for key, value in (pq.read_schema(f).metadata or {}).items():
                name = key.decode(errors="replace")
                if name in ("pandas", "ARROW:schema"):
                    continue
                text = value.decode(errors="replace")
                try:
                    meta[name] = json.loads(text)
                except ValueError:
                    meta[name] = text
    except (OSError, ValueError) as exc:
        logger.warning("could not read parquet metadata of %s: %s", src, exc)
    base = src if src.is_file() else src / "data"
    for sidecar in (Path(f"{src}.meta.json"), Path(f"{src}.json"), base.parent / "metadata.json"):
        if sidecar.is_file() and sidecar != src:
            try:
                loaded = json.loads(sidecar.read_text())
            except ValueError as exc:
                raise InputFileError(str(sidecar), f"bad JSON metadata ({exc})") from exc
            if isinstance(loaded, dict):
                meta.update(loaded)
    meta.setdefault("path", str(src))
    meta.setdefault("rows", len(frame))
    return frame, meta
