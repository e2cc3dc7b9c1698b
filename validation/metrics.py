"""Evaluation metrics for the reward model: discrimination, calibration and known risks.

A reward model trained on Love reactions is used two ways: to rank answers (AUROC, PR-AUC,
pairwise preference accuracy) and, in RLUF, as a probability that the user will Love the
answer, which is mixed with other rewards. The second use needs calibrated scores, so the
promotion gate looks at both AUROC and expected calibration error. The RLUF paper also
saw the reward correlate with answer length (Spearman rho about 0.10) and punish valid
refusals, so those are measured as well.

Every metric takes optional per-row ``weights`` where that makes sense: triples from
low-information users land with a weight below 1, and an evaluation that ignores it would
judge the model on data the trainer down-weighted.

Degenerate inputs (no rows, one class only, zero total weight, NaN scores) never raise:
the metric is ``None``. Each metric is written once, as a function that raises
``MetricUndefined`` with the reason; ``validation.metric_checks.Metric`` is the one place
that turns that into ``None`` plus a debug log line, and hands the reason to
``validation.evaluation.evaluate_scores``, which records it in ``EvaluationReport.skipped``.
Only programmer errors (arrays of different lengths, an unknown option) raise ``ValueError``.

Why one module of ~440 lines: every metric of the evaluation, one function each, so the whole
set reads in one place; about 40 % of it is the docstrings that define each metric and its
degenerate cases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt
from scipy import stats
from sklearn.metrics import average_precision_score, roc_auc_score

from validation.metric_checks import (
    FloatArray,
    MetricUndefined,
    as_1d,
    labeled_arrays,
    metric,
    same_length,
    usable_weights,
)

__all__ = [
    "DEFAULT_EPS",
    "BinStrategy",
    "CalibrationBin",
    "CalibrationReport",
    "Correlation",
    "auroc",
    "brier_score",
    "expected_calibration_error",
    "length_correlation",
    "log_loss",
    "mean_score_on",
    "pr_auc",
    "preference_accuracy",
]

BinStrategy = Literal["uniform", "quantile"]

DEFAULT_EPS: Final = 1e-7


# ---------------------------------------------------------------------------------------
# Result types
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CalibrationBin:
    """One row of a reliability table.

    Attributes:
        lower: Lower edge of the confidence bin (inclusive).
        upper: Upper edge (exclusive, except for the last bin, which includes 1.0).
        count: Rows that fell into the bin.
        weight: Sum of their weights (equals `count` when unweighted).
        mean_confidence: Weighted mean predicted probability; None for an empty bin.
        observed_rate: Weighted fraction of positives; None for an empty bin.
    """

    lower: float
    upper: float
    count: int
    weight: float
    mean_confidence: float | None
    observed_rate: float | None

    @property
    def gap(self) -> float | None:
        """Absolute difference between confidence and observed rate; None for an empty bin."""
        if self.mean_confidence is None or self.observed_rate is None:
            return None
        return abs(self.mean_confidence - self.observed_rate)

    def as_dict(self) -> dict[str, Any]:
        """Return the bin as a JSON-friendly dict (gap included)."""
        return {
            "lower": self.lower,
            "upper": self.upper,
            "count": self.count,
            "weight": self.weight,
            "mean_confidence": self.mean_confidence,
            "observed_rate": self.observed_rate,
            "gap": self.gap,
        }


@dataclass(frozen=True, slots=True)
class CalibrationReport:
    """Expected calibration error with the per-bin table it was computed from.

    Attributes:
        ece: Weight-averaged absolute gap between confidence and observed rate, in [0, 1].
        mce: Largest gap over non-empty bins (maximum calibration error).
        strategy: How the bin edges were chosen.
        bins: The reliability table, lowest confidence first, empty bins included.
    """

    ece: float
    mce: float
    strategy: BinStrategy
    bins: tuple[CalibrationBin, ...]

    def as_dict(self) -> dict[str, Any]:
        """Return ECE, MCE, strategy and the bins as a JSON-friendly dict."""
        return {
            "ece": self.ece,
            "mce": self.mce,
            "strategy": self.strategy,
            "bins": [b.as_dict() for b in self.bins],
        }


@dataclass(frozen=True, slots=True)
class Correlation:
    """A rank correlation with its two-sided p-value.

    Attributes:
        rho: Spearman's rank correlation, in [-1, 1].
        p_value: Two-sided p-value for the null hypothesis rho = 0.
        n: Number of rows it was computed on.
    """

    rho: float
    p_value: float
    n: int


# ---------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------


@metric("auroc")
def auroc(scores: npt.ArrayLike, labels: npt.ArrayLike, *, weights: npt.ArrayLike | None = None) -> float:
    """Return the area under the ROC curve: the chance a random Loved answer outscores a random other one.

    Ties count half. Only the ranking matters, so raw logits and probabilities give the
    same value.

    Args:
        scores: One score per row; higher means "more likely Loved".
        labels: 0 or 1 per row.
        weights: Optional non-negative row weights.

    Returns:
        AUROC in [0, 1], or None when the inputs are degenerate (no rows, one class only,
        zero total weight, non-finite scores).

    Raises:
        ValueError: When the inputs have different lengths.
    """
    s, y, w = labeled_arrays(scores, labels, weights, both_classes=True, probabilities=False)
    return float(roc_auc_score(y, s, sample_weight=w))


@metric("pr_auc")
def pr_auc(scores: npt.ArrayLike, labels: npt.ArrayLike, *, weights: npt.ArrayLike | None = None) -> float:
    """Return the area under the precision-recall curve, as average precision.

    Loves are rare, and PR-AUC, unlike AUROC, moves with the base rate, which makes it the
    more honest number for a rare positive class. Average precision is the step-wise sum
    (no linear interpolation, which would overstate the area).

    Returns:
        Average precision in [0, 1], or None for degenerate inputs (see `auroc`).

    Raises:
        ValueError: When the inputs have different lengths.
    """
    s, y, w = labeled_arrays(scores, labels, weights, both_classes=True, probabilities=False)
    return float(average_precision_score(y, s, sample_weight=w))


@metric("log_loss")
def log_loss(
    probs: npt.ArrayLike,
    labels: npt.ArrayLike,
    *,
    weights: npt.ArrayLike | None = None,
    eps: float = DEFAULT_EPS,
) -> float:
    """Return the weighted mean binary cross-entropy in nats.

    Probabilities are clipped to [eps, 1 - eps] so that one confidently wrong row gives a
    large but finite loss instead of infinity.

    Args:
        probs: Predicted probability of a Love per row, in [0, 1].
        labels: 0 or 1 per row.
        weights: Optional non-negative row weights.
        eps: Clipping margin.

    Returns:
        Mean loss, or None when there are no rows or the probabilities are out of range.
        One class only is fine: the loss is still defined.

    Raises:
        ValueError: When the inputs have different lengths or `eps` is out of range.
    """
    if not 0.0 < eps < 0.5:
        raise ValueError(f"`eps` must be in (0, 0.5), got {eps}")
    p, y, w = labeled_arrays(probs, labels, weights, both_classes=False, probabilities=True)
    p = np.clip(p, eps, 1.0 - eps)
    losses = -(y * np.log(p) + (1.0 - y) * np.log1p(-p))
    return float(np.sum(w * losses) / np.sum(w))


@metric("brier")
def brier_score(
    probs: npt.ArrayLike, labels: npt.ArrayLike, *, weights: npt.ArrayLike | None = None
) -> float:
    """Return the weighted mean squared error between probabilities and labels.

    Returns:
        Brier score in [0, 1], or None when there are no rows or the probabilities are out
        of range.

    Raises:
        ValueError: When the inputs have different lengths.
    """
    p, y, w = labeled_arrays(probs, labels, weights, both_classes=False, probabilities=True)
    return float(np.sum(w * (p - y) ** 2) / np.sum(w))


def _bin_edges(p: FloatArray, n_bins: int, strategy: BinStrategy) -> FloatArray:
    if strategy == "uniform":
        return np.linspace(0.0, 1.0, n_bins + 1)
    # Equal-count bins from the (unweighted) quantiles; ties can merge bins, so dedupe.
    edges = np.unique(np.quantile(p, np.linspace(0.0, 1.0, n_bins + 1)))
    if len(edges) == 1:  # every probability is the same: one degenerate bin
        edges = np.array([edges[0], edges[0]])
    edges[0], edges[-1] = min(0.0, edges[0]), max(1.0, edges[-1])
    return edges


@metric("ece")
def expected_calibration_error(
    probs: npt.ArrayLike,
    labels: npt.ArrayLike,
    *,
    n_bins: int = 15,
    strategy: BinStrategy = "uniform",
    weights: npt.ArrayLike | None = None,
) -> CalibrationReport:
    """Return the expected calibration error and its reliability table.

    ECE = sum over bins of (bin weight / total weight) * |mean confidence - observed rate|.
    A reward used as "probability the user Loves this" must be calibrated, or mixing it
    with other rewards silently over- or under-weights it.

    Args:
        probs: Predicted probability of a Love per row, in [0, 1].
        labels: 0 or 1 per row.
        n_bins: Number of bins (fewer may come back with ``"quantile"`` when
            probabilities tie).
        strategy: ``"uniform"`` splits [0, 1] into equal widths, which matches the usual
            reliability diagram; ``"quantile"`` gives bins with equal row counts
            (unweighted), which keeps every bin populated when the scores bunch up.
        weights: Optional non-negative row weights, used inside each bin.

    Returns:
        The `CalibrationReport`, or None when there are no rows or the probabilities are out of
        range. One class only is fine.

    Raises:
        ValueError: When the inputs have different lengths, `n_bins` < 1 or `strategy` is unknown.
    """
    if n_bins < 1:
        raise ValueError(f"`n_bins` must be >= 1, got {n_bins}")
    if strategy not in ("uniform", "quantile"):
        raise ValueError(f"`strategy` must be 'uniform' or 'quantile', got {strategy!r}")
    p, y, w = labeled_arrays(probs, labels, weights, both_classes=False, probabilities=True)
    edges = _bin_edges(p, n_bins, strategy)
    # Bin i holds [edges[i], edges[i+1]); the last bin also holds its upper edge (p = 1.0).
    idx = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, len(edges) - 2)
    n_out = len(edges) - 1
    counts = np.bincount(idx, minlength=n_out)
    w_sum = np.bincount(idx, weights=w, minlength=n_out)
    wp_sum = np.bincount(idx, weights=w * p, minlength=n_out)
    wy_sum = np.bincount(idx, weights=w * y, minlength=n_out)
    total = float(w.sum())
    bins: list[CalibrationBin] = []
    ece = 0.0
    mce = 0.0
    for i in range(n_out):
        conf: float | None = None  # stays None for an empty bin
        rate: float | None = None
        if w_sum[i] > 0:
            conf = float(wp_sum[i] / w_sum[i])
            rate = float(wy_sum[i] / w_sum[i])
            gap = abs(conf - rate)
            ece += float(w_sum[i]) / total * gap
            mce = max(mce, gap)
        bins.append(
            CalibrationBin(
                lower=float(edges[i]),
                upper=float(edges[i + 1]),
                count=int(counts[i]),
                weight=float(w_sum[i]),
                mean_confidence=conf,
                observed_rate=rate,
            )
        )
    return CalibrationReport(ece=ece, mce=mce, strategy=strategy, bins=tuple(bins))


@metric("preference_accuracy")
def preference_accuracy(
    chosen_scores: npt.ArrayLike,
    rejected_scores: npt.ArrayLike,
    *,
    weights: npt.ArrayLike | None = None,
) -> float:
    """Return the weighted fraction of pairs in which the chosen answer scores higher.

    A tie counts half, so a model that scores everything the same gets 0.5, the same as a
    coin flip, instead of 0 or 1.

    Args:
        chosen_scores: Score of the preferred answer of each pair.
        rejected_scores: Score of the other answer, aligned with `chosen_scores`.
        weights: Optional non-negative pair weights.

    Returns:
        Accuracy in [0, 1], or None when there are no pairs or the scores are not finite.

    Raises:
        ValueError: When the inputs have different lengths.
    """
    c = as_1d(chosen_scores, "chosen_scores")
    r = as_1d(rejected_scores, "rejected_scores")
    same_length(chosen_scores=c, rejected_scores=r)
    w = usable_weights(weights, len(c))
    if len(c) == 0:
        raise MetricUndefined("no pairs")
    if not (np.all(np.isfinite(c)) and np.all(np.isfinite(r))):
        raise MetricUndefined("pair scores contain NaN or infinity")
    wins = np.where(c > r, 1.0, np.where(c == r, 0.5, 0.0))
    return float(np.sum(w * wins) / np.sum(w))


@metric("length_correlation")
def length_correlation(scores: npt.ArrayLike, lengths: npt.ArrayLike) -> Correlation:
    """Return Spearman's rank correlation between scores and answer lengths.

    A reward that grows with length teaches the policy to ramble (length hacking); the
    RLUF paper measured rho of about 0.10 for its Love model. Rank correlation is used so
    that a few very long answers do not dominate. Not weighted: the p-value of a weighted
    Spearman has no standard form, and the question is about the scorer, not the users.

    Args:
        scores: One score per answer.
        lengths: Length of each answer (characters, or any other monotone unit).

    Returns:
        The `Correlation`, or None with fewer than 3 rows, non-finite values or a constant
        input.

    Raises:
        ValueError: When the inputs have different lengths.
    """
    s = as_1d(scores, "scores")
    n_chars = as_1d(lengths, "lengths")
    same_length(scores=s, lengths=n_chars)
    if len(s) < 3:
        raise MetricUndefined(f"needs at least 3 rows, got {len(s)}")
    if not (np.all(np.isfinite(s)) and np.all(np.isfinite(n_chars))):
        raise MetricUndefined("scores or lengths contain NaN or infinity")
    if np.all(s == s[0]):
        raise MetricUndefined("scores are constant")
    if np.all(n_chars == n_chars[0]):
        raise MetricUndefined("lengths are constant")
    res = stats.spearmanr(s, n_chars)
    rho, p_value = float(res.statistic), float(res.pvalue)
    if math.isnan(rho):
        raise MetricUndefined("correlation undefined")
    return Correlation(rho=rho, p_value=p_value, n=len(s))


@metric("mean_score_on")
def mean_score_on(
    scores: npt.ArrayLike, mask: npt.ArrayLike, *, weights: npt.ArrayLike | None = None
) -> float:
    """Return the weighted mean score over the rows selected by `mask`.

    Used to check how the model treats a slice, e.g. valid refusals: a reward that punishes
    them pushes the policy toward answering what it should decline.

    Args:
        scores: One score per row.
        mask: True for each row in the slice.
        weights: Optional non-negative row weights.

    Returns:
        The mean, in the scores' own units, or None when no row (or no weight) is selected.

    Raises:
        ValueError: When the inputs have different lengths.
    """
    s = as_1d(scores, "scores")
    m = np.asarray(mask, dtype=bool).reshape(-1)
    same_length(scores=s, mask=m.astype(np.float64))
    w = usable_weights(weights, len(s))
    if len(s) == 0:
        raise MetricUndefined("no rows")
    if not np.any(m):
        raise MetricUndefined("no rows selected")
    sel_w = w[m]
    sel_s = s[m]
    if float(sel_w.sum()) <= 0.0:
        raise MetricUndefined("selected rows have zero total weight")
    if not np.all(np.isfinite(sel_s)):
        raise MetricUndefined("selected scores contain NaN or infinity")
    return float(np.sum(sel_w * sel_s) / np.sum(sel_w))
