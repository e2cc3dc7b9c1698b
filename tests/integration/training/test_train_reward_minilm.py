"""One real run: the bundled MiniLM-L6 backbone, normal DeepSpeed, a learnable synthetic signal."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.integration.training.conftest import run_module, summary_of
from tests.unit.training.synthetic import make_triples
from training.datasets import split_frame
from training.plove_scorer import PLove


@pytest.mark.slow
def test_minilm_learns_the_signal_and_stays_calibrated(tmp_path, shm_comm_op):
    frame = make_triples(500, rate=0.05, seed=11, splits=(0.6, 0.4))
    frame.to_parquet(tmp_path / "train.parquet")
    proc, seconds = run_module([
        "-m", "training.reward_entrypoint", "--train-set", str(tmp_path / "train.parquet"),
        "--out", str(tmp_path / "out"),
        "--max-length", "64", "--batch-size", "16", "--epochs", "3", "--lr", "1e-4", "--zero-stage", "1",
        "--save-steps", "20", "--eval-steps", "20", "--progress-bar", "false"], timeout=500)
    summary = summary_of(proc)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    losses = metrics["train_losses"]
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10]), losses
    evals = metrics["evals"]
    assert evals[-1]["val_loss"] < evals[0]["val_loss"]
    assert summary["metrics"]["val_auroc"] > 0.75
    # upsampled to ~10% for training, reported at the true rate
    assert summary["train_rate"] > summary["true_rate"]
    assert summary["calibration"]["shift"] < 0
    val = split_frame(frame)["validation"]
    probs = PLove.load(tmp_path / "out").score(list(val["context"]), list(val["response"]))
    assert abs(float(probs.mean()) - float(val["label"].mean())) < 0.05
    print(f"MiniLM run: {seconds:.1f} s, {summary['steps']} steps, val AUROC {summary['metrics']['val_auroc']:.3f}")
