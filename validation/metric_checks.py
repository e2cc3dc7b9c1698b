"""What every metric shares: input checks, and the one place an undefined metric becomes None.

A metric whose inputs do not define it (no rows, one class only, zero total weight, NaN
scores) raises `MetricUndefined` with a readable reason. The `metric` decorator wraps it in
a `Metric`: calling it returns None and logs the reason at DEBUG; `Metric.outcome` returns
the reason instead, which ``validation.evaluation.evaluate_scores`` records in
``EvaluationReport.skipped``. Arrays of different lengths are programmer errors and raise
``ValueError``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Generic, ParamSpec, TypeVar

import numpy as np
import numpy.typing as npt

__all__ = [
    "FloatArray",
    "Metric",
    "MetricUndefined",
    "as_1d",
    "labeled_arrays",
    "metric",
    "same_length",
    "usable_weights",
    "weights_or_reason",
]

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
_P = ParamSpec("_P")
_T = TypeVar("_T")


# ---------------------------------------------------------------------------------------
# Undefined metrics: raised once, turned into None in one place
# ---------------------------------------------------------------------------------------


class MetricUndefined(Exception):
    """Raised inside a metric when its inputs do not define it; the metric is then None."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Metric(Generic[_P, _T]):
    """A metric: returns its value, or None (and logs why at DEBUG) where the inputs do not define it.

    Args:
        name: The name logged with the reason.
        compute: The metric itself; raises `MetricUndefined` for degenerate inputs.
    """

    def __init__(self, name: str, compute: Callable[_P, _T]) -> None:
        self.name = name
        self._compute = compute
        functools.update_wrapper(self, compute)

    def __call__(self, *args: _P.args, **kwargs: _P.kwargs) -> _T | None:
        value, reason = self.outcome(*args, **kwargs)
        if reason is not None:
            logger.debug("%s undefined: %s", self.name, reason)
        return value

    def outcome(self, *args: _P.args, **kwargs: _P.kwargs) -> tuple[_T | None, str | None]:
        """Return ``(value, None)``, or ``(None, reason)`` when the inputs do not define the metric."""
        try:
            return self._compute(*args, **kwargs), None
        except MetricUndefined as exc:
            return None, exc.reason


def metric(name: str) -> Callable[[Callable[_P, _T]], Metric[_P, _T]]:
    """Decorate a metric function: it raises `MetricUndefined`; callers get None instead."""

    def wrap(compute: Callable[_P, _T]) -> Metric[_P, _T]:
        return Metric(name, compute)

    return wrap


# ---------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------


def as_1d(values: npt.ArrayLike, name: str) -> FloatArray:
    """Return ``values`` as a one-dimensional float array; ``ValueError`` for any other shape."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"`{name}` must be one-dimensional, got shape {arr.shape}")
    return arr


def same_length(**arrays: FloatArray) -> None:
    """Raise ``ValueError`` unless the aligned arrays have one length (a programmer error)."""
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{k}={v}" for k, v in lengths.items())
        raise ValueError(f"inputs must have the same length, got {shown}")


def weights_or_reason(weights: npt.ArrayLike | None, n: int) -> tuple[FloatArray, str | None]:
    """Return the row weights (ones when None) and why they are unusable, or None when they are fine."""
    if weights is None:
        return np.ones(n, dtype=np.float64), None
    w = as_1d(weights, "weights")
    same_length(rows=np.empty(n), weights=w)
    if not np.all(np.isfinite(w)):
        return w, "weights contain NaN or infinity"
    if np.any(w < 0):
        return w, f"weights must be >= 0, got minimum {float(w.min()):.6g}"
    if n and float(w.sum()) <= 0.0:
        return w, "total weight is zero"
    return w, None


def usable_weights(weights: npt.ArrayLike | None, n: int) -> FloatArray:
    """Return the row weights (ones when None); raise `MetricUndefined` when they are unusable."""
    w, reason = weights_or_reason(weights, n)
    if reason is not None:
        raise MetricUndefined(reason)
    return w


def labeled_arrays(
    scores: npt.ArrayLike,
    labels: npt.ArrayLike,
    weights: npt.ArrayLike | None,
    *,
    both_classes: bool,
    probabilities: bool,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Convert and check (scores, labels, weights); raise `MetricUndefined` when they are unusable."""
    s = as_1d(scores, "scores")
    y = as_1d(labels, "labels")
    same_length(scores=s, labels=y)
    w = usable_weights(weights, len(s))
    if len(s) == 0:
        raise MetricUndefined("no rows")
    if not np.all(np.isfinite(s)):
        raise MetricUndefined(f"scores contain NaN or infinity ({int(np.sum(~np.isfinite(s)))} of {len(s)} rows)")
    if not np.all((y == 0) | (y == 1)):
        raise MetricUndefined("labels must be 0 or 1")
    if probabilities and (float(s.min()) < 0.0 or float(s.max()) > 1.0):
        raise MetricUndefined(
            f"scores are not probabilities (range {float(s.min()):.4g} to {float(s.max()):.4g}); "
            "pass kind='logit' for raw reward-model outputs"
        )
    if both_classes:
        pos = float(np.sum(w * y))
        neg = float(np.sum(w * (1.0 - y)))
        if pos <= 0.0 or neg <= 0.0:
            present = "positive" if pos > 0 else "negative"
            raise MetricUndefined(f"only one class present (all {len(s)} weighted rows are {present})")
    return s, y, w
