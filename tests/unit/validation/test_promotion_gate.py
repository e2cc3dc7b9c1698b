"""The promotion gate: what passes, what is refused, and that every refusal says why."""

from __future__ import annotations

import numpy as np
import pytest

from rluf.settings import RetrainSettings
from validation.evaluation import evaluate_scores
from validation.promotion_gate import Decision, promotion_decision

GATE = RetrainSettings()


def decide(candidate: dict, current: dict | None) -> Decision:
    return promotion_decision(candidate, current, margin=GATE.promote_margin, max_ece=GATE.max_ece)


def test_better_calibrated_candidate_is_promoted():
    decision = decide({"auroc": 0.82, "ece": 0.03}, {"auroc": 0.80, "ece": 0.04})
    assert decision.promote
    assert decision.reasons == []
    assert len(decision.passed) == 2


def test_first_model_is_promoted_without_a_current_one():
    decision = decide({"auroc": 0.6, "ece": 0.01}, None)
    assert decision.promote
    assert "no current model" in decision.passed[0]


def test_worse_model_is_refused_with_the_auroc_values():
    decision = decide({"auroc": 0.78, "ece": 0.02}, {"auroc": 0.80, "ece": 0.02})
    assert not decision.promote
    assert len(decision.reasons) == 1
    reason = decision.reasons[0]
    assert "auroc" in reason and "0.7800" in reason and "0.8000" in reason and "0.0050" in reason


def test_gain_below_the_margin_is_refused_and_exactly_the_margin_passes():
    assert not promotion_decision({"auroc": 0.804, "ece": 0.0}, {"auroc": 0.8}, margin=0.005, max_ece=0.05).promote
    assert promotion_decision({"auroc": 0.805, "ece": 0.0}, {"auroc": 0.8}, margin=0.005, max_ece=0.05).promote


def test_too_high_ece_is_refused_with_the_ece_values():
    decision = decide({"auroc": 0.90, "ece": 0.12}, {"auroc": 0.80})
    assert not decision.promote
    assert decision.reasons == ["ece 0.1200 exceeds max_ece 0.0500"]


def test_every_failed_check_is_reported():
    decision = decide({"auroc": 0.70, "ece": 0.2}, {"auroc": 0.80})
    assert not decision.promote
    assert len(decision.reasons) == 2
    assert any(r.startswith("auroc") for r in decision.reasons)
    assert any(r.startswith("ece") for r in decision.reasons)


@pytest.mark.parametrize(
    ("candidate", "current", "fragment"),
    [
        ({"ece": 0.01, "auroc": None, "skipped": {"auroc": "only one class present"}}, None,
         "candidate auroc is missing (only one class present)"),
        ({"auroc": float("nan"), "ece": 0.01}, None, "candidate auroc is missing"),
        ({"auroc": 0.9}, None, "candidate ece is missing"),
        ({"auroc": 0.9, "ece": 0.01}, {"ece": 0.01}, "current model auroc is missing"),
    ],
)
def test_missing_metrics_are_refused_never_promoted(candidate, current, fragment):
    decision = decide(candidate, current)
    assert not decision.promote
    assert any(fragment in r for r in decision.reasons), decision.reasons


def test_gate_reads_evaluation_reports():
    rng = np.random.default_rng(3)
    p = rng.uniform(size=2000)
    y = (rng.uniform(size=2000) < p).astype(int)
    good = evaluate_scores(p, y).as_dict()
    noisy = evaluate_scores(np.clip(p + rng.normal(0, 0.3, size=2000), 0, 1), y).as_dict()
    assert decide(good, noisy).promote
    refused = decide(noisy, good)
    assert not refused.promote and any("auroc" in r for r in refused.reasons)


def test_gate_rejects_bad_thresholds():
    with pytest.raises(ValueError, match="margin"):
        promotion_decision({}, None, margin=-0.1, max_ece=0.05)
    with pytest.raises(ValueError, match="max_ece"):
        promotion_decision({}, None, margin=0.0, max_ece=0.0)


def test_a_first_model_must_beat_min_auroc():
    weak = promotion_decision({"auroc": 0.46, "ece": 0.01}, None, margin=0.005, max_ece=0.05, min_auroc=0.55)
    assert not weak.promote and weak.reasons == ["auroc 0.4600 is below min_auroc 0.5500"]
    ok = promotion_decision({"auroc": 0.70, "ece": 0.01}, None, margin=0.005, max_ece=0.05, min_auroc=0.55)
    assert ok.promote
