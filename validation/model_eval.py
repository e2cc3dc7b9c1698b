"""Evaluate a P[Love] model on a held-out split and write its pictures and model card.

One function used by the retrain loop (candidate and current production model on the same
split) and by the benchmarks, so every reported AUROC/ECE is computed the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.store.text_features import is_refusal
from validation.evaluation import EvaluationReport, evaluate_scores
from validation.model_card import IMAGE_CALIBRATION, IMAGE_LOSS, IMAGE_SCORES, write_model_card
from validation.plots import reliability_diagram, score_histogram

__all__ = ["ModelEvaluation", "evaluate_model", "headline_metrics", "write_card"]

logger = logging.getLogger(__name__)


@dataclass
class ModelEvaluation:
    """Scores and metrics of one model on one split, plus the images drawn from them."""

    report: EvaluationReport
    scores: np.ndarray
    images: dict[str, Path] = field(default_factory=dict)

    @property
    def metrics(self) -> dict[str, Any]:
        return headline_metrics(self.report)


def headline_metrics(report: EvaluationReport) -> dict[str, Any]:
    """The flat numbers registered with a model and used by the promotion gate."""
    d = report.as_dict()
    keys = ("n", "base_rate", "auroc", "pr_auc", "log_loss", "brier", "ece", "mean_score", "length_rho",
            "mean_score_refusals", "n_refusals", "preference_accuracy")
    return {k: d.get(k) for k in keys}


def evaluate_model(scorer: Any, frame: pd.DataFrame, out_dir: Path | None = None, *, batch_size: int = 64
                   ) -> ModelEvaluation:
    """Score ``frame`` (context, response, label[, weight]) with ``scorer`` (a `PLove`).

    Args:
        scorer: Anything with ``score(contexts, responses, batch_size=...)`` -> probabilities.
        frame: The held-out rows.
        out_dir: Where to draw the reliability diagram and score histogram (None: no images).
    """
    scores = np.asarray(scorer.score(list(frame["context"]), list(frame["response"]), batch_size=batch_size),
                        dtype=float)
    labels = frame["label"].to_numpy(dtype=int)
    weights = frame["weight"].to_numpy(dtype=float) if "weight" in frame.columns else None
    texts = [str(t) for t in frame["response"]]
    report = evaluate_scores(scores, labels, weights=weights, texts=texts,
                             refusals=[is_refusal(t) for t in texts])
    images: dict[str, Path] = {}
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        images[IMAGE_CALIBRATION] = reliability_diagram(report, out_dir / "reliability.png")
        images[IMAGE_SCORES] = score_histogram(scores, labels, out_dir / "scores.png")
    return ModelEvaluation(report=report, scores=scores, images=images)


def write_card(path: Path, *, name: str, version: str, evaluation: ModelEvaluation, config: Mapping[str, Any],
               data: Mapping[str, Any], notes: list[str], loss_curve_png: Path | None = None) -> Path:
    """Write the HTML model card (pictures embedded) for one evaluated version."""
    images = dict(evaluation.images)
    if loss_curve_png is not None and loss_curve_png.is_file():
        images[IMAGE_LOSS] = loss_curve_png
    return write_model_card(path, name=name, version=version, metrics=evaluation.report.as_dict(), config=config,
                            data=data, images=images, notes=notes)
