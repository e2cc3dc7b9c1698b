"""evaluate_scores: every metric the inputs allow, and why the others are missing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from validation.evaluation import EvaluationReport, evaluate_scores
from validation.metrics import (
    auroc,
    expected_calibration_error,
    length_correlation,
    log_loss,
    pr_auc,
)

TEXTS = [
    "I'm sorry, but I can't help with that.",
    "Sure! Here is a short answer.",
    "Here is a much longer answer that explains every step in detail, with examples and caveats.",
    "As an AI, I am not able to give medical advice.",
    "Paris.",
    "A medium-length answer about the topic.",
]


def test_evaluate_scores_computes_everything_the_inputs_allow():
    scores = np.array([0.1, 0.4, 0.9, 0.2, 0.3, 0.6])
    labels = [0, 0, 1, 0, 1, 1]
    weights = [1.0, 1.0, 0.5, 1.0, 1.0, 1.0]
    report = evaluate_scores(scores, labels, weights=weights, texts=TEXTS, pairs=[(2, 0), (5, 1), (4, 1)])
    assert isinstance(report, EvaluationReport)
    assert report.n == 6 and report.total_weight == pytest.approx(5.5)
    assert report.base_rate == pytest.approx(2.5 / 5.5)
    assert report.auroc == pytest.approx(auroc(scores, labels, weights=weights))
    assert report.pr_auc == pytest.approx(pr_auc(scores, labels, weights=weights))
    assert report.log_loss == pytest.approx(log_loss(scores, labels, weights=weights))
    cal = expected_calibration_error(scores, labels, weights=weights)
    assert cal is not None and report.calibration == cal and report.ece == pytest.approx(cal.ece)
    assert report.preference_accuracy == pytest.approx(2 / 3) and report.n_pairs == 3
    corr = length_correlation(scores, [len(t) for t in TEXTS])
    assert corr is not None and report.length_rho == pytest.approx(corr.rho)
    assert report.n_refusals == 2
    assert report.mean_score_refusals == pytest.approx(0.15)
    assert report.mean_score == pytest.approx(float(np.average(scores, weights=weights)))
    assert report.skipped == {}


def test_evaluate_scores_as_dict_is_flat_and_json_serialisable():
    report = evaluate_scores([0.1, 0.4, 0.9, 0.2], [0, 0, 1, 1])
    data = report.as_dict()
    json.dumps(data)
    for key in ("auroc", "pr_auc", "log_loss", "ece", "mce", "calibration_bins", "length_rho",
                "mean_score_refusals", "preference_accuracy", "skipped"):
        assert key in data
    assert data["auroc"] == report.auroc
    assert set(data["skipped"]) == {"preference_accuracy", "length_rho", "mean_score_refusals"}
    assert all(key in data for key in data["skipped"])


def test_evaluate_scores_with_logits_calibrates_through_a_sigmoid():
    logits = np.array([-3.0, -1.0, 0.5, 2.0])
    labels = [0, 0, 1, 1]
    report = evaluate_scores(logits, labels, kind="logit")
    probs = 1 / (1 + np.exp(-logits))
    assert report.ece == pytest.approx(expected_calibration_error(probs, labels).ece)  # type: ignore[union-attr]
    assert report.log_loss == pytest.approx(log_loss(probs, labels))
    assert report.auroc == 1.0
    assert report.mean_score == pytest.approx(logits.mean())


def test_evaluate_scores_explains_logits_passed_as_probabilities():
    report = evaluate_scores([-3.0, 2.0], [0, 1])
    assert report.auroc == 1.0
    assert report.ece is None and report.log_loss is None
    assert "kind='logit'" in report.skipped["ece"]


def test_evaluate_scores_refusal_mask_overrides_the_text_heuristic():
    report = evaluate_scores([0.1, 0.4, 0.9, 0.2], [0, 0, 1, 1], refusals=[False, True, True, False])
    assert report.n_refusals == 2
    assert report.mean_score_refusals == pytest.approx(0.65)
    assert "length_rho" in report.skipped


@pytest.mark.parametrize(
    ("scores", "labels", "expected_reason"),
    [
        ([], [], "no rows"),
        ([0.3, 0.6, 0.9], [1, 1, 1], "only one class"),
        ([0.3, float("nan")], [0, 1], "NaN"),
    ],
)
def test_evaluate_scores_never_raises_on_degenerate_inputs(scores, labels, expected_reason):
    report = evaluate_scores(scores, labels, texts=["x"] * len(scores), pairs=[])
    assert report.auroc is None
    assert expected_reason in report.skipped["auroc"]
    assert report.n == len(scores)
    json.dumps(report.as_dict())


def test_evaluate_scores_one_class_still_reports_calibration():
    report = evaluate_scores([0.7, 0.8, 0.9], [1, 1, 1])
    assert report.auroc is None and report.pr_auc is None
    assert report.base_rate == 1.0
    assert report.ece == pytest.approx(0.2)
    assert report.log_loss is not None


def test_evaluate_scores_rejects_misaligned_inputs():
    with pytest.raises(ValueError, match="same length"):
        evaluate_scores([0.1, 0.2], [0, 1], texts=["only one"])
    with pytest.raises(ValueError, match="pair indices"):
        evaluate_scores([0.1, 0.2], [0, 1], pairs=[(0, 2)])
    with pytest.raises(ValueError, match="kind"):
        evaluate_scores([0.1, 0.2], [0, 1], kind="odds")  # type: ignore[arg-type]
