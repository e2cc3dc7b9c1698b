"""PNG figures for the model card: reliability diagram, loss curve and score histogram.

Figures are drawn on matplotlib's Agg canvas directly (``Figure`` + ``FigureCanvasAgg``),
never through ``pyplot``: no display is needed, no global figure state leaks between
calls, and it works the same in a CI container, a training job and a thread of the
retrain loop. Output is deterministic for the same inputs and matplotlib version (the
PNG "Software" stamp is dropped), so a model card can be diffed between runs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from validation.evaluation import EvaluationReport
from validation.metrics import CalibrationBin, CalibrationReport

__all__ = ["loss_curve", "reliability_diagram", "score_histogram"]

logger = logging.getLogger(__name__)

_DPI: Final = 100
_PNG_METADATA: Final[dict[str, str | None]] = {"Software": None}
_OBSERVED_COLOR: Final = "#4c72b0"
_GAP_COLOR: Final = "#dd8452"
_NEGATIVE_COLOR: Final = "#8c8c8c"
_POSITIVE_COLOR: Final = "#c44e52"


def _save(fig: Figure, path: Path | str) -> Path:
    """Write `fig` as PNG to `path` (parents created), replacing any file atomically."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    FigureCanvasAgg(fig)
    fig.savefig(tmp, format="png", dpi=_DPI, metadata=_PNG_METADATA)
    os.replace(tmp, out)
    logger.debug("wrote figure %s", out)
    return out


def _bins_of(report_or_bins: EvaluationReport | CalibrationReport | Sequence[CalibrationBin]) -> tuple[
    list[CalibrationBin], float | None
]:
    if isinstance(report_or_bins, EvaluationReport):
        cal = report_or_bins.calibration
        return ([] if cal is None else list(cal.bins)), (None if cal is None else cal.ece)
    if isinstance(report_or_bins, CalibrationReport):
        return list(report_or_bins.bins), report_or_bins.ece
    return list(report_or_bins), None


def reliability_diagram(
    report_or_bins: EvaluationReport | CalibrationReport | Sequence[CalibrationBin],
    path: Path | str,
    *,
    title: str = "Reliability diagram",
) -> Path:
    """Draw observed Love rate against predicted probability per bin, with row counts below.

    Bars at the diagonal mean a calibrated model; the orange segment in each bin shows its
    gap. The lower panel shows how many rows each bin holds, since a large gap in a bin of
    three rows means little.

    Args:
        report_or_bins: An evaluation report, a `CalibrationReport`, or its bins. Without bins
            (e.g. the report had no calibration) the figure says so instead of failing.
        path: Where to write the PNG.
        title: Figure title; the ECE is appended when known.

    Returns:
        `path`, as a ``Path``.
    """
    bins, ece = _bins_of(report_or_bins)
    fig = Figure(figsize=(6.0, 6.5))
    grid = fig.add_gridspec(2, 1, height_ratios=(3, 1), hspace=0.08)
    ax = fig.add_subplot(grid[0])
    ax_count = fig.add_subplot(grid[1], sharex=ax)

    ax.plot([0.0, 1.0], [0.0, 1.0], linestyle="--", color="black", linewidth=1.0, label="perfect calibration")
    filled = [b for b in bins if b.mean_confidence is not None and b.observed_rate is not None]
    if filled:
        lefts = np.array([b.lower for b in filled])
        widths = np.array([b.upper - b.lower for b in filled])
        rates = np.array([b.observed_rate for b in filled], dtype=float)
        confs = np.array([b.mean_confidence for b in filled], dtype=float)
        ax.bar(lefts, rates, width=widths, align="edge", color=_OBSERVED_COLOR, edgecolor="white",
               label="observed rate")
        ax.bar(lefts, confs - rates, bottom=rates, width=widths, align="edge", color=_GAP_COLOR, alpha=0.45,
               edgecolor=_GAP_COLOR, label="gap to mean confidence")
    else:
        ax.text(0.5, 0.5, "no calibration data", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("Observed Love rate")
    ax.legend(loc="upper left", fontsize="small")
    ax.tick_params(labelbottom=False)
    ax.set_title(title if ece is None else f"{title} (ECE = {ece:.4f})")

    if bins:
        ax_count.bar([b.lower for b in bins], [b.count for b in bins], width=[b.upper - b.lower for b in bins],
                     align="edge", color=_NEGATIVE_COLOR, edgecolor="white")
    ax_count.set_xlabel("Predicted probability (confidence)")
    ax_count.set_ylabel("Rows")
    return _save(fig, path)


def loss_curve(
    train_losses: Sequence[float],
    evals: Sequence[Mapping[str, float]],
    path: Path | str,
    *,
    title: str = "P[Love] reward model",
    metric: str = "val_auroc",
) -> Path:
    """Draw the training loss per step (raw and smoothed), the validation loss and a metric.

    Args:
        train_losses: Training loss of each optimizer step (step i+1 at index i).
        evals: Evaluations, each with ``step``, ``val_loss`` and optionally ``metric``.
        path: Where to write the PNG.
        title: Figure title.
        metric: Evaluation key drawn on the right axis (AUROC, or pairwise accuracy).

    Returns:
        `path`, as a ``Path``.
    """
    fig = Figure(figsize=(8.0, 5.0))
    ax = fig.add_subplot()
    steps = np.arange(1, len(train_losses) + 1)
    losses = np.asarray(train_losses, dtype=float)
    points = sorted(evals, key=lambda e: e["step"])
    if len(losses):
        ax.plot(steps, losses, color=_OBSERVED_COLOR, alpha=0.35, linewidth=1, label="train loss")
        k = min(25, max(3, len(losses) // 10))
        if len(losses) >= 2 * k:
            smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
            ax.plot(steps[k - 1:], smooth, color=_OBSERVED_COLOR, linewidth=2, label=f"train loss ({k}-step mean)")
    if points:
        ax.plot([e["step"] for e in points], [e["val_loss"] for e in points], "o-", color=_POSITIVE_COLOR,
                label="validation loss")
    if not len(losses) and not points:
        ax.text(0.5, 0.5, "no loss recorded", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    handles, labels = ax.get_legend_handles_labels()
    scored = [e for e in points if e.get(metric) is not None and np.isfinite(e.get(metric, np.nan))]
    if scored:
        ax2 = ax.twinx()
        ax2.plot([e["step"] for e in scored], [e[metric] for e in scored], "s--", color=_NEGATIVE_COLOR,
                 label=metric.replace("_", " "))
        ax2.set_ylabel(metric.replace("_", " "))
        ax2.set_ylim(0.0, 1.0)
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    if handles:
        ax.legend(handles, labels, loc="upper right", fontsize="small")
    ax.grid(True, alpha=0.3)
    return _save(fig, path)


def score_histogram(
    scores: npt.ArrayLike,
    labels: npt.ArrayLike,
    path: Path | str,
    *,
    n_bins: int = 30,
    title: str = "Score distribution by label",
) -> Path:
    """Draw the score distribution of Loved and not-Loved answers, overlaid.

    Densities rather than counts, so that the rare positive class stays visible; well
    separated humps mean good discrimination.

    Args:
        scores: One score per row (probabilities or logits).
        labels: 0 or 1 per row.
        path: Where to write the PNG.
        n_bins: Histogram bins, shared by both classes.
        title: Figure title.

    Returns:
        `path`, as a ``Path``.

    Raises:
        ValueError: When `scores` and `labels` have different lengths.
    """
    s = np.asarray(scores, dtype=float).reshape(-1)
    y = np.asarray(labels, dtype=float).reshape(-1)
    if len(s) != len(y):
        raise ValueError(f"`scores` and `labels` must have the same length, got {len(s)} and {len(y)}")
    finite = np.isfinite(s)
    s, y = s[finite], y[finite]
    fig = Figure(figsize=(7.0, 4.0))
    ax = fig.add_subplot()
    if len(s):
        lo, hi = float(s.min()), float(s.max())
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, n_bins + 1)
        classes = ((0, "not Loved (label 0)", _NEGATIVE_COLOR), (1, "Loved (label 1)", _POSITIVE_COLOR))
        for value, name, color in classes:
            part = s[y == value]
            if len(part):
                label = f"{name}, n={len(part)}"
                ax.hist(part, bins=edges.tolist(), density=True, alpha=0.55, color=color, label=label)
        ax.legend(loc="upper center", fontsize="small")
    else:
        ax.text(0.5, 0.5, "no finite scores", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("Score")
    ax.set_ylabel("Density")
    ax.set_title(title)
    return _save(fig, path)
