"""How well the adversarial filter did against a simulation's ground truth (pure).

The simulator knows which reactions came from bots, coordinated accounts and trolls, and
which users Love everything. Comparing that with what the worker quarantined (and whose
triples it down-weighted) gives precision and recall, printed by the demo and the
benchmark.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["FILTER_REASONS", "FilterScores", "score_filter"]

FILTER_REASONS = frozenset({"not_owner", "too_fast", "rate_limited", "daily_cap", "coordinated", "low_reputation"})


@dataclass(frozen=True)
class FilterScores:
    """Precision/recall of the quarantine rules and of the low-information down-weighting."""

    flagged: int
    adversarial: int
    true_positives: int
    recall_by_kind: dict[str, float] = field(default_factory=dict)
    flagged_by_reason: dict[str, int] = field(default_factory=dict)
    low_info_precision: float | None = None
    low_info_recall: float | None = None

    @property
    def precision(self) -> float | None:
        return self.true_positives / self.flagged if self.flagged else None

    @property
    def recall(self) -> float | None:
        return self.true_positives / self.adversarial if self.adversarial else None

    def lines(self) -> list[str]:
        """Human-readable summary, one figure per line."""
        def pct(x: float | None) -> str:
            return "n/a" if x is None else f"{x:.3f}"

        out = [
            f"filter precision {pct(self.precision)}  recall {pct(self.recall)}  "
            f"({self.true_positives} of {self.flagged} flagged are adversarial; {self.adversarial} adversarial)",
            "  recall by kind: " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(self.recall_by_kind.items())),
            "  flagged by rule: " + ", ".join(f"{k} {v}" for k, v in sorted(self.flagged_by_reason.items())),
            f"low-information users: precision {pct(self.low_info_precision)}  recall {pct(self.low_info_recall)}",
        ]
        return out


def score_filter(quarantined: Iterable[tuple[str | None, str]], adversarial: Mapping[str, str], *,
                 downweighted_users: Iterable[str] = (), low_info_users: Iterable[str] = ()) -> FilterScores:
    """Score the filter.

    Args:
        quarantined: (event_id, reason) of every quarantined record; only filter reasons count.
        adversarial: Ground truth, adversarial reaction event_id -> kind.
        downweighted_users: Users whose triples got a weight below 1.
        low_info_users: Ground truth low-information users.
    """
    flagged: dict[str, str] = {}
    for event_id, reason in quarantined:
        if reason in FILTER_REASONS and event_id is not None:
            flagged.setdefault(event_id, reason)
    hits = {e for e in flagged if e in adversarial}
    per_kind_total = Counter(adversarial.values())
    per_kind_hit = Counter(adversarial[e] for e in hits)
    down, truth_low = set(downweighted_users), set(low_info_users)
    return FilterScores(
        flagged=len(flagged), adversarial=len(adversarial), true_positives=len(hits),
        recall_by_kind={k: per_kind_hit[k] / n for k, n in per_kind_total.items()},
        flagged_by_reason=dict(Counter(flagged.values())),
        low_info_precision=len(down & truth_low) / len(down) if down else None,
        low_info_recall=len(down & truth_low) / len(truth_low) if truth_low else None,
    )
