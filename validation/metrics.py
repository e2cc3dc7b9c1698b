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
the metric is ``None`` and `evaluate_scores` records the reason in
`EvaluationReport.skipped`. Only programmer errors (arrays of different lengths, an
unknown option) raise ``ValueError``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar

import numpy as np
import numpy.typing as npt
from scipy import special, stats
from sklearn.metrics import average_precision_score, roc_auc_score

from features.store.text_features import is_refusal

__all__ = [
    "BinStrategy",
    "Calibration",
    "CalibrationBin",
    "Correlation",
    "EvaluationReport",
    "ScoreKind",
    "auroc",
    "brier_score",
    "evaluate_scores",
    "expected_calibration_error",
    "length_correlation",
    "log_loss",
    "mean_score_on",
    "pr_auc",
    "preference_accuracy",
]

logger = logging.getLogger(__name__)

BinStrategy = Literal["uniform", "quantile"]
ScoreKind = Literal["probability", "logit"]

_FloatArray = npt.NDArray[np.float64]
_T = TypeVar("_T")
# A metric value, or None and the reason it is undefined for these inputs.
_Outcome = tuple[_T | None, str | None]

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
class Calibration:
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
    calibration: Calibration | None = None
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

        The keys match the attribute names, so `validation.model_card.promotion_decision`
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


# ---------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------


def _as_1d(values: npt.ArrayLike, name: str) -> _FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"`{name}` must be one-dimensional, got shape {arr.shape}")
    return arr


def _same_length(**arrays: _FloatArray) -> None:
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{k}={v}" for k, v in lengths.items())
        raise ValueError(f"inputs must have the same length, got {shown}")


def _weights_or_reason(weights: npt.ArrayLike | None, n: int) -> tuple[_FloatArray, str | None]:
    if weights is None:
        return np.ones(n, dtype=np.float64), None
    w = _as_1d(weights, "weights")
    _same_length(rows=np.empty(n), weights=w)
    if not np.all(np.isfinite(w)):
        return w, "weights contain NaN or infinity"
    if np.any(w < 0):
        return w, f"weights must be >= 0, got minimum {float(w.min()):.6g}"
    if n and float(w.sum()) <= 0.0:
        return w, "total weight is zero"
    return w, None


def _labeled(
    scores: npt.ArrayLike,
    labels: npt.ArrayLike,
    weights: npt.ArrayLike | None,
    *,
    both_classes: bool,
    probabilities: bool,
) -> tuple[_FloatArray, _FloatArray, _FloatArray] | str:
    """Convert and check (scores, labels, weights); return the arrays or why they are unusable."""
    s = _as_1d(scores, "scores")
    y = _as_1d(labels, "labels")
    _same_length(scores=s, labels=y)
    w, reason = _weights_or_reason(weights, len(s))
    if reason is not None:
        return reason
    if len(s) == 0:
        return "no rows"
    if not np.all(np.isfinite(s)):
        return f"scores contain NaN or infinity ({int(np.sum(~np.isfinite(s)))} of {len(s)} rows)"
    if not np.all((y == 0) | (y == 1)):
        return "labels must be 0 or 1"
    if probabilities and (float(s.min()) < 0.0 or float(s.max()) > 1.0):
        return (
            f"scores are not probabilities (range {float(s.min()):.4g} to {float(s.max()):.4g}); "
            "pass kind='logit' for raw reward-model outputs"
        )
    if both_classes:
        pos = float(np.sum(w * y))
        neg = float(np.sum(w * (1.0 - y)))
        if pos <= 0.0 or neg <= 0.0:
            present = "positive" if pos > 0 else "negative"
            return f"only one class present (all {len(s)} weighted rows are {present})"
    return s, y, w


def _log_skip(metric: str, reason: str | None) -> None:
    if reason is not None:
        logger.debug("%s undefined: %s", metric, reason)


# ---------------------------------------------------------------------------------------
# Metrics, each as _name() -> (value, reason) and a public name() -> value
# ---------------------------------------------------------------------------------------


def _auroc(scores: npt.ArrayLike, labels: npt.ArrayLike, weights: npt.ArrayLike | None) -> _Outcome[float]:
    checked = _labeled(scores, labels, weights, both_classes=True, probabilities=False)
    if isinstance(checked, str):
        return None, checked
    s, y, w = checked
    return float(roc_auc_score(y, s, sample_weight=w)), None


def auroc(scores: npt.ArrayLike, labels: npt.ArrayLike, *, weights: npt.ArrayLike | None = None) -> float | None:
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
    value, reason = _auroc(scores, labels, weights)
    _log_skip("auroc", reason)
    return value


def _pr_auc(scores: npt.ArrayLike, labels: npt.ArrayLike, weights: npt.ArrayLike | None) -> _Outcome[float]:
    checked = _labeled(scores, labels, weights, both_classes=True, probabilities=False)
    if isinstance(checked, str):
        return None, checked
    s, y, w = checked
    return float(average_precision_score(y, s, sample_weight=w)), None


def pr_auc(scores: npt.ArrayLike, labels: npt.ArrayLike, *, weights: npt.ArrayLike | None = None) -> float | None:
    """Return the area under the precision-recall curve, as average precision.

    Loves are rare, and PR-AUC, unlike AUROC, moves with the base rate, which makes it the
    more honest number for a rare positive class. Average precision is the step-wise sum
    (no linear interpolation, which would overstate the area).

    Returns:
        Average precision in [0, 1], or None for degenerate inputs (see `auroc`).

    Raises:
        ValueError: When the inputs have different lengths.
    """
    value, reason = _pr_auc(scores, labels, weights)
    _log_skip("pr_auc", reason)
    return value


def _log_loss(
    probs: npt.ArrayLike, labels: npt.ArrayLike, weights: npt.ArrayLike | None, eps: float
) -> _Outcome[float]:
    if not 0.0 < eps < 0.5:
        raise ValueError(f"`eps` must be in (0, 0.5), got {eps}")
    checked = _labeled(probs, labels, weights, both_classes=False, probabilities=True)
    if isinstance(checked, str):
        return None, checked
    p, y, w = checked
    p = np.clip(p, eps, 1.0 - eps)
    losses = -(y * np.log(p) + (1.0 - y) * np.log1p(-p))
    return float(np.sum(w * losses) / np.sum(w)), None


def log_loss(
    probs: npt.ArrayLike,
    labels: npt.ArrayLike,
    *,
    weights: npt.ArrayLike | None = None,
    eps: float = DEFAULT_EPS,
) -> float | None:
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
    value, reason = _log_loss(probs, labels, weights, eps)
    _log_skip("log_loss", reason)
    return value


def _brier(probs: npt.ArrayLike, labels: npt.ArrayLike, weights: npt.ArrayLike | None) -> _Outcome[float]:
    checked = _labeled(probs, labels, weights, both_classes=False, probabilities=True)
    if isinstance(checked, str):
        return None, checked
    p, y, w = checked
    return float(np.sum(w * (p - y) ** 2) / np.sum(w)), None


def brier_score(
    probs: npt.ArrayLike, labels: npt.ArrayLike, *, weights: npt.ArrayLike | None = None
) -> float | None:
    """Return the weighted mean squared error between probabilities and labels.

    Returns:
        Brier score in [0, 1], or None when there are no rows or the probabilities are out
        of range.

    Raises:
        ValueError: When the inputs have different lengths.
    """
    value, reason = _brier(probs, labels, weights)
    _log_skip("brier", reason)
    return value


def _bin_edges(p: _FloatArray, n_bins: int, strategy: BinStrategy) -> _FloatArray:
    if strategy == "uniform":
        return np.linspace(0.0, 1.0, n_bins + 1)
    # Equal-count bins from the (unweighted) quantiles; ties can merge bins, so dedupe.
    edges = np.unique(np.quantile(p, np.linspace(0.0, 1.0, n_bins + 1)))
    if len(edges) == 1:  # every probability is the same: one degenerate bin
        edges = np.array([edges[0], edges[0]])
    edges[0], edges[-1] = min(0.0, edges[0]), max(1.0, edges[-1])
    return edges


def _ece(
    probs: npt.ArrayLike,
    labels: npt.ArrayLike,
    weights: npt.ArrayLike | None,
    n_bins: int,
    strategy: BinStrategy,
) -> _Outcome[Calibration]:
    if n_bins < 1:
        raise ValueError(f"`n_bins` must be >= 1, got {n_bins}")
    if strategy not in ("uniform", "quantile"):
        raise ValueError(f"`strategy` must be 'uniform' or 'quantile', got {strategy!r}")
    checked = _labeled(probs, labels, weights, both_classes=False, probabilities=True)
    if isinstance(checked, str):
        return None, checked
    p, y, w = checked
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
    return Calibration(ece=ece, mce=mce, strategy=strategy, bins=tuple(bins)), None


def expected_calibration_error(
    probs: npt.ArrayLike,
    labels: npt.ArrayLike,
    *,
    n_bins: int = 15,
    strategy: BinStrategy = "uniform",
    weights: npt.ArrayLike | None = None,
) -> Calibration | None:
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
        The `Calibration`, or None when there are no rows or the probabilities are out of
        range. One class only is fine.

    Raises:
        ValueError: When the inputs have different lengths, `n_bins` < 1 or `strategy` is unknown.
    """
    value, reason = _ece(probs, labels, weights, n_bins, strategy)
    _log_skip("ece", reason)
    return value


def _preference_accuracy(
    chosen_scores: npt.ArrayLike, rejected_scores: npt.ArrayLike, weights: npt.ArrayLike | None
) -> _Outcome[float]:
    c = _as_1d(chosen_scores, "chosen_scores")
    r = _as_1d(rejected_scores, "rejected_scores")
    _same_length(chosen_scores=c, rejected_scores=r)
    w, reason = _weights_or_reason(weights, len(c))
    if reason is not None:
        return None, reason
    if len(c) == 0:
        return None, "no pairs"
    if not (np.all(np.isfinite(c)) and np.all(np.isfinite(r))):
        return None, "pair scores contain NaN or infinity"
    wins = np.where(c > r, 1.0, np.where(c == r, 0.5, 0.0))
    return float(np.sum(w * wins) / np.sum(w)), None


def preference_accuracy(
    chosen_scores: npt.ArrayLike,
    rejected_scores: npt.ArrayLike,
    *,
    weights: npt.ArrayLike | None = None,
) -> float | None:
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
    value, reason = _preference_accuracy(chosen_scores, rejected_scores, weights)
    _log_skip("preference_accuracy", reason)
    return value


def _length_correlation(scores: npt.ArrayLike, lengths: npt.ArrayLike) -> _Outcome[Correlation]:
    s = _as_1d(scores, "scores")
    n_chars = _as_1d(lengths, "lengths")
    _same_length(scores=s, lengths=n_chars)
    if len(s) < 3:
        return None, f"needs at least 3 rows, got {len(s)}"
    if not (np.all(np.isfinite(s)) and np.all(np.isfinite(n_chars))):
        return None, "scores or lengths contain NaN or infinity"
    if np.all(s == s[0]):
        return None, "scores are constant"
    if np.all(n_chars == n_chars[0]):
        return None, "lengths are constant"
    res = stats.spearmanr(s, n_chars)
    rho, p_value = float(res.statistic), float(res.pvalue)
    if math.isnan(rho):
        return None, "correlation undefined"
    return Correlation(rho=rho, p_value=p_value, n=len(s)), None


def length_correlation(scores: npt.ArrayLike, lengths: npt.ArrayLike) -> Correlation | None:
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
    value, reason = _length_correlation(scores, lengths)
    _log_skip("length_correlation", reason)
    return value


def _mean_score_on(
    scores: npt.ArrayLike, mask: npt.ArrayLike, weights: npt.ArrayLike | None
) -> _Outcome[float]:
    s = _as_1d(scores, "scores")
    m = np.asarray(mask, dtype=bool).reshape(-1)
    _same_length(scores=s, mask=m.astype(np.float64))
    w, reason = _weights_or_reason(weights, len(s))
    if reason is not None:
        return None, reason
    if len(s) == 0:
        return None, "no rows"
    if not np.any(m):
        return None, "no rows selected"
    sel_w = w[m]
    sel_s = s[m]
    if float(sel_w.sum()) <= 0.0:
        return None, "selected rows have zero total weight"
    if not np.all(np.isfinite(sel_s)):
        return None, "selected scores contain NaN or infinity"
    return float(np.sum(sel_w * sel_s) / np.sum(sel_w)), None


def mean_score_on(
    scores: npt.ArrayLike, mask: npt.ArrayLike, *, weights: npt.ArrayLike | None = None
) -> float | None:
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
    value, reason = _mean_score_on(scores, mask, weights)
    _log_skip("mean_score_on", reason)
    return value


# ---------------------------------------------------------------------------------------
# All together
# ---------------------------------------------------------------------------------------


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
    s = _as_1d(scores, "scores")
    y = _as_1d(labels, "labels")
    _same_length(scores=s, labels=y)
    n = len(s)
    skipped: dict[str, str] = {}

    def keep(name: str, outcome: _Outcome[_T]) -> _T | None:
        value, reason = outcome
        if reason is not None:
            skipped[name] = reason
        return value

    w, w_reason = _weights_or_reason(weights, n)
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

    auroc_value = keep("auroc", _auroc(s, y, weights))
    pr_value = keep("pr_auc", _pr_auc(s, y, weights))
    ll_value = keep("log_loss", _log_loss(probs, y, weights, DEFAULT_EPS))
    brier_value = keep("brier", _brier(probs, y, weights))
    calibration = keep("ece", _ece(probs, y, weights, n_bins, strategy))
    mean_value = keep("mean_score", _mean_score_on(s, np.ones(n, dtype=bool), weights))

    pref_value: float | None = None
    n_pairs = 0
    if pairs is None:
        skipped["preference_accuracy"] = "no pairs given"
    else:
        idx = np.asarray(list(pairs), dtype=np.int64).reshape(-1, 2)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise ValueError(f"pair indices must be in [0, {n}), got {int(idx.min())}..{int(idx.max())}")
        n_pairs = len(idx)
        pref_value = keep("preference_accuracy", _preference_accuracy(s[idx[:, 0]], s[idx[:, 1]], None))

    rho = p_value = None
    if texts is None:
        skipped["length_rho"] = "no texts given"
    else:
        if len(texts) != n:
            raise ValueError(f"inputs must have the same length, got scores={n}, texts={len(texts)}")
        corr = keep("length_rho", _length_correlation(s, [len(t) for t in texts]))
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
        refusal_value = keep("mean_score_refusals", _mean_score_on(s, refusal_mask, weights))

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
