"""Every metric the inputs allow, in one report: what model evaluation and the model card read.

`evaluate_scores` runs each metric of ``validation.metrics`` that its inputs allow and
records why the others are missing (``EvaluationReport.skipped``), so a model card can say
"n/a (only one class present ...)" instead of showing a blank. `reported_metric` reads one
number back from the report's dict, the form the registry and the promotion gate keep.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import numpy as np
import numpy.typing as npt
from scipy import special

from features.store.text_features import is_refusal
from validation.metric_checks import as_1d, same_length, weights_or_reason
from validation.metrics import (
    DEFAULT_EPS,
    BinStrategy,
    CalibrationReport,
    auroc,
    brier_score,
    expected_calibration_error,
    length_correlation,
    log_loss,
    mean_score_on,
    pr_auc,
    preference_accuracy,
)

__all__ = ["EvaluationReport", "ScoreKind", "evaluate_scores", "reported_metric"]

ScoreKind = Literal["probability", "logit"]

_T = TypeVar("_T")


@dataclass(frozen=True)
class EvaluationReport:
    """Everything `evaluate_scores` could compute from its inputs.

    A metric is None when its inputs did not allow it; `skipped` then maps the metric's
    name to a readable reason ("only one class present ..."), which the model card shows.

    Attributes:
        n: Rows evaluated.
        total_weight: Sum of row weights (equals `n` when unweighted).
        base_rate: Weighted fraction of positive labels.
        auroc: Area under the ROC curve.
        pr_auc: Area under the precision-recall curve (average precision).
        log_loss: Weighted mean binary cross-entropy, nats, probabilities clipped.
        brier: Weighted mean squared error of the probabilities.
        ece: Expected calibration error (same as ``calibration.ece``).
        calibration: ECE with its reliability table.
        mean_score: Weighted mean score over all rows, in the scores' own units.
        preference_accuracy: Fraction of pairs where the chosen answer scores higher.
        n_pairs: Pairs behind `preference_accuracy`.
        length_rho: Spearman correlation between score and answer length in characters.
        length_p_value: Its two-sided p-value.
        mean_score_refusals: Weighted mean score over refusals, in the scores' own units.
        n_refusals: Rows counted as refusals.
        skipped: Metric name (a key of `as_dict`) to the reason it is None.
    """

    n: int
    total_weight: float
    base_rate: float | None = None
    auroc: float | None = None
    pr_auc: float | None = None
    log_loss: float | None = None
    brier: float | None = None
    ece: float | None = None
    calibration: CalibrationReport | None = None
    mean_score: float | None = None
    preference_accuracy: float | None = None
    n_pairs: int = 0
    length_rho: float | None = None
    length_p_value: float | None = None
    mean_score_refusals: float | None = None
    n_refusals: int = 0
    skipped: Mapping[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Return a flat, JSON-friendly dict: scalar metrics, ``calibration_bins`` and ``skipped``.

        The keys match the attribute names, so `validation.promotion_gate.promotion_decision`
        can read ``auroc`` and ``ece`` from it directly.
        """
        return {
            "n": self.n,
            "total_weight": self.total_weight,
            "base_rate": self.base_rate,
            "auroc": self.auroc,
            "pr_auc": self.pr_auc,
            "log_loss": self.log_loss,
            "brier": self.brier,
            "ece": self.ece,
            "mce": None if self.calibration is None else self.calibration.mce,
            "calibration_strategy": None if self.calibration is None else self.calibration.strategy,
            "calibration_bins": None if self.calibration is None else [b.as_dict() for b in self.calibration.bins],
            "mean_score": self.mean_score,
            "preference_accuracy": self.preference_accuracy,
            "n_pairs": self.n_pairs,
            "length_rho": self.length_rho,
            "length_p_value": self.length_p_value,
            "mean_score_refusals": self.mean_score_refusals,
            "n_refusals": self.n_refusals,
            "skipped": dict(self.skipped),
        }


def evaluate_scores(
    scores: npt.ArrayLike,
    labels: npt.ArrayLike,
    *,
    weights: npt.ArrayLike | None = None,
    texts: Sequence[str] | None = None,
    pairs: Sequence[tuple[int, int]] | None = None,
    refusals: Sequence[bool] | None = None,
    kind: ScoreKind = "probability",
    n_bins: int = 15,
    strategy: BinStrategy = "uniform",
) -> EvaluationReport:
    """Compute every metric that the inputs allow, recording why the others are missing.

    Args:
        scores: One score per row: probabilities, or raw reward-model outputs with
            ``kind="logit"`` (then passed through a sigmoid for the calibration metrics;
            ranking metrics and means use them as given).
        labels: 0 or 1 per row.
        weights: Optional non-negative row weights, applied to every weight-aware metric.
        texts: The answers, aligned with `scores`; enables the length correlation and,
            unless `refusals` is given, the refusal slice (`features.store.text_features.is_refusal`).
        pairs: ``(chosen_row, rejected_row)`` index pairs into `scores`; enables the
            preference accuracy (unweighted: a pair has no single row weight).
        refusals: Optional per-row mask of (valid) refusals, overriding the text heuristic.
        kind: What the scores are.
        n_bins: Bins for the expected calibration error.
        strategy: Bin strategy for the expected calibration error.

    Returns:
        An `EvaluationReport`; metrics the inputs do not allow are None, with a reason in
        ``skipped``.

    Raises:
        ValueError: When aligned inputs have different lengths, a pair index is out of
            range, or an option is unknown.
    """
    if kind not in ("probability", "logit"):
        raise ValueError(f"`kind` must be 'probability' or 'logit', got {kind!r}")
    s = as_1d(scores, "scores")
    y = as_1d(labels, "labels")
    same_length(scores=s, labels=y)
    n = len(s)
    skipped: dict[str, str] = {}

    def keep(name: str, outcome: tuple[_T | None, str | None]) -> _T | None:
        value, reason = outcome
        if reason is not None:
            skipped[name] = reason
        return value

    w, w_reason = weights_or_reason(weights, n)
    total_weight = float(w.sum()) if w_reason is None else 0.0
    probs = special.expit(s) if kind == "logit" else s

    base_rate: float | None = None
    if w_reason is not None:
        skipped["base_rate"] = w_reason
    elif n == 0:
        skipped["base_rate"] = "no rows"
    elif not np.all((y == 0) | (y == 1)):
        skipped["base_rate"] = "labels must be 0 or 1"
    else:
        base_rate = float(np.sum(w * y) / total_weight)

    auroc_value = keep("auroc", auroc.outcome(s, y, weights=weights))
    pr_value = keep("pr_auc", pr_auc.outcome(s, y, weights=weights))
    ll_value = keep("log_loss", log_loss.outcome(probs, y, weights=weights, eps=DEFAULT_EPS))
    brier_value = keep("brier", brier_score.outcome(probs, y, weights=weights))
    calibration = keep("ece", expected_calibration_error.outcome(probs, y, n_bins=n_bins, strategy=strategy,
                                                                           weights=weights))
    mean_value = keep("mean_score", mean_score_on.outcome(s, np.ones(n, dtype=bool), weights=weights))

    pref_value: float | None = None
    n_pairs = 0
    if pairs is None:
        skipped["preference_accuracy"] = "no pairs given"
    else:
        idx = np.asarray(list(pairs), dtype=np.int64).reshape(-1, 2)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise ValueError(f"pair indices must be in [0, {n}), got {int(idx.min())}..{int(idx.max())}")
        n_pairs = len(idx)
        pref_value = keep("preference_accuracy", preference_accuracy.outcome(s[idx[:, 0]], s[idx[:, 1]], weights=None))

    rho = p_value = None
    if texts is None:
        skipped["length_rho"] = "no texts given"
    else:
        if len(texts) != n:
            raise ValueError(f"inputs must have the same length, got scores={n}, texts={len(texts)}")
        corr = keep("length_rho", length_correlation.outcome(s, [len(t) for t in texts]))
        if corr is not None:
            rho, p_value = corr.rho, corr.p_value

    refusal_mask: npt.NDArray[np.bool_] | None = None
    if refusals is not None:
        refusal_mask = np.asarray(refusals, dtype=bool).reshape(-1)
        if len(refusal_mask) != n:
            raise ValueError(f"inputs must have the same length, got scores={n}, refusals={len(refusal_mask)}")
    elif texts is not None:
        refusal_mask = np.fromiter((is_refusal(t) for t in texts), dtype=bool, count=n)
    refusal_value: float | None = None
    n_refusals = 0
    if refusal_mask is None:
        skipped["mean_score_refusals"] = "no texts or refusal mask given"
    else:
        n_refusals = int(refusal_mask.sum())
        refusal_value = keep("mean_score_refusals", mean_score_on.outcome(s, refusal_mask, weights=weights))

    return EvaluationReport(
        n=n,
        total_weight=total_weight,
        base_rate=base_rate,
        auroc=auroc_value,
        pr_auc=pr_value,
        log_loss=ll_value,
        brier=brier_value,
        ece=None if calibration is None else calibration.ece,
        calibration=calibration,
        mean_score=mean_value,
        preference_accuracy=pref_value,
        n_pairs=n_pairs,
        length_rho=rho,
        length_p_value=p_value,
        mean_score_refusals=refusal_value,
        n_refusals=n_refusals,
        skipped=skipped,
    )


def reported_metric(metrics: Mapping[str, Any], key: str) -> float | None:
    """Return ``metrics[key]`` (e.g. from ``EvaluationReport.as_dict()``) as a number, or None.

    None for a missing key, None, a bool, a value that is no number, or NaN: a reader that
    needs the number (the promotion gate, the model card's risk rows) treats those alike.
    """
    value = metrics.get(key)
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number
