"""The contract every learned judge meets, so the policy optimiser can use any of them.

A policy optimised against a judge learns whatever the judge rewards, so a judge is only
usable once it has beaten trivial baselines on held-out data; that verdict travels with the
judge (``JudgeCard.baseline_beaten``) and `policy refresh` refuses a judge without it.
Rule judges (pass/fail constraints and reward-hacking monitors) live in
``validation.rule_judges``; they need no training and no registry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from rluf.schemas import Message

__all__ = ["JudgeCard", "RewardJudge"]


@dataclass(frozen=True)
class JudgeCard:
    """What the registry knows about one judge version.

    Args:
        name: The objective it scores ("love", "helpful", "safe").
        version: Registry version (or a local path's name for unregistered judges).
        metrics: Held-out metrics (AUROC or preference accuracy with intervals, length ρ, ...).
        baselines: The same metric for each trivial baseline on the same held-out data.
        baseline_beaten: Whether the judge beat every baseline by the required margin.
    """

    name: str
    version: str
    metrics: Mapping[str, float] = field(default_factory=dict)
    baselines: Mapping[str, float] = field(default_factory=dict)
    baseline_beaten: bool = False


@runtime_checkable
class RewardJudge(Protocol):
    """A learned scorer: higher means better under its objective."""

    card: JudgeCard

    def score(self, prompts: Sequence[Sequence[Message]], answers: Sequence[str]) -> npt.NDArray[np.float64]:
        """One raw score per (prompt, answer) pair (a logit or reward, not yet calibrated)."""
        ...
