"""Fixtures for the training integration tests: real DeepSpeed in subprocesses.

These tests run the entry point (``python -m training.reward_entrypoint``) the way users and
launchers do, so DeepSpeed initialises normally, including its ``deepspeed_shm_comm`` op.
That op is JIT-built once per machine (~30 s on 2 cores) into ``$TORCH_EXTENSIONS_DIR``;
the ``shm_comm_op`` fixture builds it up front so no single test pays for it.
"""

from __future__ import annotations

import os

os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[3]
VOCAB = REPO / "tests" / "fixtures" / "tiny_vocab.txt"
_RENDEZVOUS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture(scope="session")
def shm_comm_op() -> None:
    """Build (or find cached) DeepSpeed's shm_comm op once, in a subprocess."""
    code = ("from deepspeed.accelerator import get_accelerator\n"
            "get_accelerator().create_op_builder('ShareMemCommBuilder').load()\n")
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    logger.info("deepspeed_shm_comm ready in %.1f s", time.perf_counter() - started)


def run_module(args: list[str], *, timeout: float) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``python <args>`` from the repository root; return the process and its wall time."""
    # in-process unit tests may have set this process's rendezvous variables (and hold MASTER_PORT):
    # a child must pick its own
    env = {k: v for k, v in os.environ.items() if k not in _RENDEZVOUS}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**env, "PYTHONPATH": str(REPO)})
    return proc, time.perf_counter() - started


def summary_of(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The JSON summary the entry point prints last on rank 0."""
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    last = [line for line in proc.stdout.splitlines() if line.startswith("{")][-1]
    return json.loads(last)
