"""The loss-curve PNG written after training: train loss per step, validation per evaluation.

Uses matplotlib's object API with the Agg canvas directly, so it never touches pyplot's
global backend (training runs headless, often under torchrun).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["plot_loss_curve"]

logger = logging.getLogger(__name__)


def plot_loss_curve(
    train_losses: Sequence[float],
    evals: Sequence[Mapping[str, float]],
    path: str | Path,
    *,
    title: str = "P[Love] reward model",
    metric: str = "val_auroc",
) -> Path:
    """Write the loss curve and return its path.

    Args:
        train_losses: Training loss of each optimizer step (step i+1 at index i).
        evals: Evaluations, each with ``step``, ``val_loss`` and optionally ``metric``.
        path: PNG file to write (parents created).
        metric: Evaluation key drawn on the right axis (AUROC, or pairwise accuracy).
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(8, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    steps = np.arange(1, len(train_losses) + 1)
    losses = np.asarray(train_losses, dtype=float)
    ax.plot(steps, losses, color="tab:blue", alpha=0.35, linewidth=1, label="train loss")
    k = min(25, max(3, len(losses) // 10))
    if len(losses) >= 2 * k:
        smooth = np.convolve(losses, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1:], smooth, color="tab:blue", linewidth=2, label=f"train loss ({k}-step mean)")
    if evals:
        ax.plot([e["step"] for e in evals], [e["val_loss"] for e in evals], "o-", color="tab:orange",
                label="validation loss (prior-shifted)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    handles, labels = ax.get_legend_handles_labels()
    scored = [e for e in evals if e.get(metric) is not None and np.isfinite(e.get(metric, np.nan))]
    if scored:
        ax2 = ax.twinx()
        ax2.plot([e["step"] for e in scored], [e[metric] for e in scored], "s--", color="tab:green",
                 label=metric.replace("_", " "))
        ax2.set_ylabel(metric.replace("_", " "))
        ax2.set_ylim(0.0, 1.0)
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=4, fontsize=8, frameon=False)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(str(out))
    logger.info("loss curve written to %s", out)
    return out
