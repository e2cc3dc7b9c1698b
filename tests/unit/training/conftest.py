"""Fixtures for the training unit tests: tiny models built in code, DeepSpeed on CPU.

DeepSpeed's one-time JIT build of ``deepspeed_shm_comm`` (~30 s) is skipped here with the
documented unit-test shortcut (deps.md, option c); the integration tests use normal DeepSpeed.
"""

from __future__ import annotations

import os

os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pytest

from training.reward_model import PLoveModel

VOCAB = Path(__file__).resolve().parents[2] / "fixtures" / "tiny_vocab.txt"


@pytest.fixture(scope="session")
def vocab_file() -> Path:
    """The tiny WordPiece vocabulary in tests/fixtures."""
    return VOCAB


@pytest.fixture
def tiny_model() -> PLoveModel:
    """A 2-layer, hidden-32 BERT reward model with a fixed seed."""
    return PLoveModel.tiny(VOCAB, seed=0)


@pytest.fixture
def no_shm_comm() -> None:
    """Skip the shm_comm JIT build (collectives fall back to plain gloo); unit tests only."""
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
