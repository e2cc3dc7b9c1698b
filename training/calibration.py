"""Calibration of P[Love] scores: prior shift and temperature scaling (pure numpy).

The reward model is trained on data where positives were upsampled (to ~10% by default, as
in the paper) because real Love rates are low and a model sees too few positives otherwise.
A classifier trained on the resampled data is calibrated for the *resampled* base rate, so its
probabilities overstate P[Love]. Bayes' rule undoes that exactly when only the class prior
changed (``p(x | y)`` untouched), which is what upsampling positives does:

    logit_true(x) = logit_train(x) + log odds(true_rate) - log odds(train_rate)

Temperature scaling (one scalar ``T`` fitted on the untouched validation split) then fixes the
usual over-confidence of fine-tuned transformers. The order is ``sigmoid(z / T + shift)``: the
temperature corrects the model's own sharpness (a property of the training distribution), the
shift moves the prior.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize_scalar
from scipy.special import expit

__all__ = [
    "Calibration",
    "log_odds",
    "weighted_rate",
    "prior_shift",
    "fit_temperature",
    "apply_calibration",
    "binary_log_loss",
]

logger = logging.getLogger(__name__)

_EPS = 1e-12


@dataclass(frozen=True)
class Calibration:
    """How raw model logits become calibrated P[Love]; saved with the model.

    Attributes:
        train_rate: Weighted positive rate the model was trained on (after upsampling);
            None when no prior shift applies.
        true_rate: Weighted positive rate of the training split before upsampling.
        temperature: Logits are divided by this before the shift (1.0 = no scaling).
    """

    train_rate: float | None = None
    true_rate: float | None = None
    temperature: float = 1.0

    def __post_init__(self) -> None:
        for name in ("train_rate", "true_rate"):
            value = getattr(self, name)
            if value is not None and not 0.0 < value < 1.0:
                raise ValueError(f"`{name}` must be in (0, 1), got {value}")
        if (self.train_rate is None) != (self.true_rate is None):
            raise ValueError("set both `train_rate` and `true_rate`, or neither")
        if not self.temperature > 0.0:
            raise ValueError(f"`temperature` must be > 0, got {self.temperature}")

    @property
    def shift(self) -> float:
        """Additive logit correction log odds(true) - log odds(train); 0 without a prior shift."""
        if self.train_rate is None or self.true_rate is None:
            return 0.0
        return float(log_odds(self.true_rate) - log_odds(self.train_rate))

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (the derived ``shift`` included, for readers of the file)."""
        return {**asdict(self), "shift": self.shift}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        """Inverse of `to_dict` (``shift`` is recomputed, not trusted)."""
        return cls(
            train_rate=data.get("train_rate"),
            true_rate=data.get("true_rate"),
            temperature=float(data.get("temperature", 1.0)),
        )


def log_odds(p: ArrayLike) -> NDArray[np.float64]:
    """Return log(p / (1 - p)), with p clipped away from 0 and 1."""
    q = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1.0 - _EPS)
    return np.asarray(np.log(q) - np.log1p(-q), dtype=np.float64)


def weighted_rate(labels: ArrayLike, weights: ArrayLike | None = None) -> float:
    """Return the (weighted) share of positives, the base rate a weighted loss actually sees.

    Falls back to the unweighted share when all weights are zero.
    """
    y = np.asarray(labels, dtype=np.float64)
    if y.size == 0:
        raise ValueError("no labels to compute a rate from")
    w = np.ones_like(y) if weights is None else np.asarray(weights, dtype=np.float64)
    total = float(w.sum())
    if total <= 0.0:
        return float(y.mean())
    return float((w * y).sum() / total)


def prior_shift(
    scores: ArrayLike,
    train_rate: float,
    true_rate: float,
    *,
    kind: Literal["logits", "probs"] = "logits",
) -> NDArray[np.float64]:
    """Move scores calibrated for base rate ``train_rate`` to base rate ``true_rate``.

    Args:
        scores: Logits (``kind="logits"``) or probabilities (``kind="probs"``).
        train_rate: Positive rate of the data the scores are calibrated for, in (0, 1).
        true_rate: Positive rate of the population to score, in (0, 1).
        kind: What ``scores`` holds; the result is of the same kind.

    Returns:
        ``logit + log odds(true_rate) - log odds(train_rate)`` (or its sigmoid for probabilities).
    """
    for name, rate in (("train_rate", train_rate), ("true_rate", true_rate)):
        if not 0.0 < rate < 1.0:
            raise ValueError(f"`{name}` must be in (0, 1), got {rate}")
    delta = float(log_odds(true_rate) - log_odds(train_rate))
    if kind == "probs":
        return np.asarray(expit(log_odds(scores) + delta), dtype=np.float64)
    return np.asarray(scores, dtype=np.float64) + delta


def binary_log_loss(
    logits: ArrayLike, labels: ArrayLike, weights: ArrayLike | None = None
) -> float:
    """Return the weighted mean binary cross-entropy of logits (nats), computed stably."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    w = np.ones_like(z) if weights is None else np.asarray(weights, dtype=np.float64)
    per = np.logaddexp(0.0, z) - y * z
    total = float(w.sum())
    return float((w * per).sum() / total) if total > 0 else float(per.mean())


def fit_temperature(
    logits: ArrayLike,
    labels: ArrayLike,
    weights: ArrayLike | None = None,
    *,
    offset: float = 0.0,
    bounds: tuple[float, float] = (0.05, 20.0),
) -> float:
    """Fit the temperature T minimising the weighted log loss of ``sigmoid(z / T + offset)``.

    A 1-D bounded search over log T (Brent): the loss is smooth and unimodal in practice, and a
    single scalar cannot change the ranking, so AUROC is untouched.

    Args:
        logits: Raw model logits on a held-out split (not the one the model trained on).
        labels: 0/1 labels of the same rows.
        weights: Row weights (default 1).
        offset: Fixed additive logit term applied after the temperature (the prior shift).
        bounds: Search range for T.

    Returns:
        The fitted temperature (1.0 when the split has a single class: nothing to fit).
    """
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if z.shape != y.shape or z.ndim != 1:
        raise ValueError(f"`logits` and `labels` must be 1-D of equal length, got {z.shape} and {y.shape}")
    if y.min(initial=0.0) == y.max(initial=0.0) or z.size < 2:
        logger.warning("temperature not fitted: the split has a single class (%d rows)", z.size)
        return 1.0

    def nll(log_t: float) -> float:
        return binary_log_loss(z / np.exp(log_t) + offset, y, weights)

    res = minimize_scalar(nll, bounds=(np.log(bounds[0]), np.log(bounds[1])), method="bounded",
                          options={"xatol": 1e-5})
    temperature = float(np.exp(res.x))
    if min(abs(temperature / bounds[0] - 1.0), abs(temperature / bounds[1] - 1.0)) < 0.01:
        logger.warning("fitted temperature %.4f sits at the search bound %s: the validation split is too small "
                       "or the model is far from calibrated", temperature, bounds)
    logger.info("fitted temperature %.4f (log loss %.5f -> %.5f)", temperature, nll(0.0), float(res.fun))
    return temperature


def apply_calibration(
    logits: ArrayLike,
    calibration: Calibration,
    *,
    output: Literal["probs", "logits"] = "probs",
) -> NDArray[np.float64]:
    """Turn raw model logits into calibrated P[Love] (or calibrated logits).

    Returns:
        ``sigmoid(z / T + shift)`` for ``output="probs"``, else ``z / T + shift``.
    """
    z = np.asarray(logits, dtype=np.float64) / calibration.temperature + calibration.shift
    return np.asarray(expit(z), dtype=np.float64) if output == "probs" else z
