"""The promotion gate: whether a candidate reward model may replace the serving one.

`promotion_decision` is the rule the retrain loop applies before a candidate replaces the
serving model: it must rank better than the current one by a margin (AUROC) and be
calibrated enough to be mixed with other rewards (ECE). It is pure, so the rule is tested
without models, files or clocks.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from validation.evaluation import reported_metric

__all__ = ["Decision", "promotion_decision"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether to promote a candidate reward model, and why not.

    Attributes:
        promote: True only when every check passed.
        reasons: One readable line per failed check, naming the metric and its values;
            empty when `promote` is True.
        passed: One line per passed check, for the retrain log.
    """

    promote: bool
    reasons: list[str]
    passed: list[str] = field(default_factory=list)


def _missing(metrics: Mapping[str, Any], key: str, who: str) -> str:
    why = metrics.get("skipped", {}).get(key) if isinstance(metrics.get("skipped"), Mapping) else None
    return f"{who} {key} is missing" + (f" ({why})" if why else "")


def promotion_decision(
    candidate: Mapping[str, Any],
    current: Mapping[str, Any] | None,
    *,
    margin: float,
    max_ece: float,
    min_auroc: float = 0.0,
) -> Decision:
    """Decide whether `candidate` should replace `current` as the serving reward model.

    Promote only if the candidate's AUROC is at least `min_auroc` (a first model must beat
    chance to serve at all), beats the current model's by at least `margin`, and the
    candidate's ECE is at most `max_ece`. A missing or NaN metric fails its check: the gate never promotes on
    numbers it could not see.

    Args:
        candidate: The candidate's metrics, e.g. ``EvaluationReport.as_dict()``; reads
            ``auroc`` and ``ece`` (and ``skipped`` to explain a missing one).
        current: The serving model's metrics on the same evaluation set, or None when no
            model is serving yet.
        margin: AUROC the candidate must gain (``RetrainSettings.promote_margin``).
        max_ece: Largest acceptable expected calibration error (``RetrainSettings.max_ece``).
        min_auroc: Smallest AUROC any serving model may have (``RetrainSettings.min_auroc``).

    Returns:
        The `Decision`.

    Raises:
        ValueError: When `margin` is negative or `max_ece` is not positive.
    """
    if margin < 0 or math.isnan(margin):
        raise ValueError(f"`margin` must be >= 0, got {margin}")
    if not max_ece > 0:
        raise ValueError(f"`max_ece` must be > 0, got {max_ece}")
    reasons: list[str] = []
    passed: list[str] = []

    cand_auroc = reported_metric(candidate, "auroc")
    if cand_auroc is None:
        reasons.append(_missing(candidate, "auroc", "candidate"))
    elif cand_auroc < min_auroc:
        reasons.append(f"auroc {cand_auroc:.4f} is below min_auroc {min_auroc:.4f}")
    elif current is None:
        passed.append(f"auroc {cand_auroc:.4f}: no current model to beat")
    else:
        cur_auroc = reported_metric(current, "auroc")
        if cur_auroc is None:
            reasons.append(_missing(current, "auroc", "current model") + "; cannot compare the candidate's auroc")
        else:
            gain = cand_auroc - cur_auroc
            # Tolerance: 0.805 - 0.8 is 0.00499999... in binary floating point.
            if gain + 1e-12 >= margin:
                passed.append(
                    f"auroc {cand_auroc:.4f} beats current {cur_auroc:.4f} by {gain:+.4f} (margin {margin:.4f})"
                )
            else:
                reasons.append(
                    f"auroc {cand_auroc:.4f} does not beat current {cur_auroc:.4f} by the margin {margin:.4f} "
                    f"(gain {gain:+.4f})"
                )

    cand_ece = reported_metric(candidate, "ece")
    if cand_ece is None:
        reasons.append(_missing(candidate, "ece", "candidate"))
    elif cand_ece <= max_ece:
        passed.append(f"ece {cand_ece:.4f} is within max_ece {max_ece:.4f}")
    else:
        reasons.append(f"ece {cand_ece:.4f} exceeds max_ece {max_ece:.4f}")

    decision = Decision(promote=not reasons, reasons=reasons, passed=passed)
    logger.info("promotion decision: promote=%s reasons=%s", decision.promote, reasons)
    return decision
