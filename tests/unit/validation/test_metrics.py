"""Metrics against hand-computed values, scikit-learn/scipy, and degenerate inputs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from validation.metrics import (
    CalibrationReport,
    auroc,
    brier_score,
    expected_calibration_error,
    length_correlation,
    log_loss,
    mean_score_on,
    pr_auc,
    preference_accuracy,
)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20250520)


def calibrated(rng: np.random.Generator, n: int, lo: float = 0.0, hi: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and labels drawn so that P(label = 1 | p) = p exactly."""
    p = rng.uniform(lo, hi, size=n)
    y = (rng.uniform(size=n) < p).astype(int)
    return p, y


# ---------------------------------------------------------------------------------------
# AUROC / PR-AUC
# ---------------------------------------------------------------------------------------


def test_auroc_of_a_known_ranking_is_the_fraction_of_correctly_ordered_pairs():
    # positives at 0.35 and 0.8; negatives at 0.1 and 0.4 -> 3 of 4 (pos, neg) pairs ordered
    assert auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(3 / 4)
    assert auroc([0.1, 0.2, 0.3], [0, 1, 1]) == 1.0
    assert auroc([0.3, 0.2, 0.1], [0, 1, 1]) == 0.0


def test_auroc_counts_ties_half():
    assert auroc([0.5, 0.5], [0, 1]) == pytest.approx(0.5)
    # pos 0.5 vs neg {0.5 (tie), 0.2 (win)} -> (0.5 + 1) / 2
    assert auroc([0.5, 0.5, 0.2], [1, 0, 0]) == pytest.approx(0.75)


def test_auroc_ignores_monotone_transforms():
    scores = np.array([-2.0, 0.3, 1.1, -0.4, 2.5])
    labels = [0, 1, 1, 0, 1]
    assert auroc(scores, labels) == auroc(1 / (1 + np.exp(-scores)), labels)


def test_auroc_and_pr_auc_match_sklearn(rng):
    p, y = calibrated(rng, 500)
    w = rng.uniform(0.1, 1.0, size=500)
    assert auroc(p, y) == pytest.approx(skm.roc_auc_score(y, p))
    assert auroc(p, y, weights=w) == pytest.approx(skm.roc_auc_score(y, p, sample_weight=w))
    assert pr_auc(p, y) == pytest.approx(skm.average_precision_score(y, p))
    assert pr_auc(p, y, weights=w) == pytest.approx(skm.average_precision_score(y, p, sample_weight=w))


def test_integer_weights_equal_repeated_rows():
    scores = [0.1, 0.4, 0.35, 0.8, 0.6]
    labels = [0, 0, 1, 1, 0]
    weights = [2, 1, 3, 1, 1]
    rep_s = np.repeat(scores, weights)
    rep_y = np.repeat(labels, weights)
    assert auroc(scores, labels, weights=weights) == pytest.approx(auroc(rep_s, rep_y))
    assert pr_auc(scores, labels, weights=weights) == pytest.approx(pr_auc(rep_s, rep_y))
    assert log_loss(scores, labels, weights=weights) == pytest.approx(log_loss(rep_s, rep_y))
    a = expected_calibration_error(scores, labels, weights=weights, n_bins=5)
    b = expected_calibration_error(rep_s, rep_y, n_bins=5)
    assert a is not None and b is not None
    assert a.ece == pytest.approx(b.ece)


def test_pr_auc_hand_computed():
    # ranked: 1 (P@1 = 1), 0, 1 (P@3 = 2/3); AP = 1/2 * 1 + 1/2 * 2/3
    assert pr_auc([0.9, 0.8, 0.7], [1, 0, 1]) == pytest.approx(0.5 + 1 / 3)


def test_zero_weight_rows_are_ignored():
    base = auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    assert auroc([0.1, 0.4, 0.35, 0.8, 0.99], [0, 0, 1, 1, 0], weights=[1, 1, 1, 1, 0]) == pytest.approx(base)


# ---------------------------------------------------------------------------------------
# log loss / Brier
# ---------------------------------------------------------------------------------------


def test_log_loss_hand_computed_and_matches_sklearn(rng):
    assert log_loss([0.9, 0.2], [1, 0]) == pytest.approx(-(math.log(0.9) + math.log(0.8)) / 2)
    p, y = calibrated(rng, 300)
    w = rng.uniform(0.1, 1.0, size=300)
    assert log_loss(p, y, weights=w) == pytest.approx(skm.log_loss(y, p, sample_weight=w))


def test_log_loss_is_clipped_not_infinite():
    value = log_loss([0.0, 1.0], [1, 0])
    assert value is not None and math.isfinite(value)
    assert value == pytest.approx(-math.log(1e-7), rel=1e-6)
    assert log_loss([0.0], [1], eps=1e-3) == pytest.approx(-math.log(1e-3))


def test_log_loss_is_defined_for_one_class():
    assert log_loss([0.9, 0.8], [1, 1]) == pytest.approx(-(math.log(0.9) + math.log(0.8)) / 2)


def test_brier_hand_computed():
    assert brier_score([0.9, 0.2], [1, 0], weights=[1, 3]) == pytest.approx((0.01 + 3 * 0.04) / 4)


# ---------------------------------------------------------------------------------------
# ECE
# ---------------------------------------------------------------------------------------


def test_ece_hand_computed_with_table():
    cal = expected_calibration_error([0.2, 0.2, 0.8, 0.8], [0, 1, 1, 1], n_bins=2)
    assert isinstance(cal, CalibrationReport)
    # bin [0, .5): conf .2, rate .5, gap .3; bin [.5, 1]: conf .8, rate 1, gap .2
    assert cal.ece == pytest.approx(0.5 * 0.3 + 0.5 * 0.2)
    assert cal.mce == pytest.approx(0.3)
    first, second = cal.bins
    assert (first.lower, first.upper, first.count) == (0.0, 0.5, 2)
    assert first.mean_confidence == pytest.approx(0.2)
    assert first.observed_rate == pytest.approx(0.5)
    assert first.gap == pytest.approx(0.3)
    assert (second.lower, second.upper, second.count) == (0.5, 1.0, 2)
    assert second.observed_rate == pytest.approx(1.0)


def test_ece_weighted_hand_computed():
    cal = expected_calibration_error([0.2, 0.2, 0.8, 0.8], [0, 1, 1, 1], n_bins=2, weights=[3, 1, 1, 1])
    assert cal is not None
    # bin 0: weight 4, rate 1/4, gap .05; bin 1: weight 2, gap .2
    assert cal.ece == pytest.approx((4 * 0.05 + 2 * 0.2) / 6)
    assert cal.bins[0].weight == pytest.approx(4.0)
    assert cal.bins[0].count == 2


def test_ece_of_perfectly_calibrated_data_is_small(rng):
    p, y = calibrated(rng, 200_000)
    for strategy in ("uniform", "quantile"):
        cal = expected_calibration_error(p, y, strategy=strategy)
        assert cal is not None
        assert cal.ece < 0.01, strategy


def test_ece_of_a_miscalibrated_model_equals_the_known_gap(rng):
    p, y = calibrated(rng, 200_000, 0.2, 0.8)
    for strategy in ("uniform", "quantile"):
        over = expected_calibration_error(p + 0.1, y, strategy=strategy)
        under = expected_calibration_error(p - 0.1, y, strategy=strategy)
        assert over is not None and under is not None
        assert over.ece == pytest.approx(0.1, abs=0.01), strategy
        assert under.ece == pytest.approx(0.1, abs=0.01), strategy


def test_ece_uniform_bins_cover_zero_to_one_and_keep_empty_bins():
    cal = expected_calibration_error([0.0, 1.0, 0.05], [0, 1, 0], n_bins=10)
    assert cal is not None
    assert len(cal.bins) == 10
    assert cal.bins[0].lower == 0.0 and cal.bins[-1].upper == 1.0
    assert cal.bins[0].count == 2  # 0.0 and 0.05
    assert cal.bins[-1].count == 1  # 1.0 falls in the last, closed bin
    empty = cal.bins[5]
    assert empty.count == 0 and empty.mean_confidence is None and empty.observed_rate is None and empty.gap is None
    assert cal.ece == pytest.approx(0.0 + (2 / 3) * 0.025)


def test_ece_quantile_bins_have_equal_counts(rng):
    p, y = calibrated(rng, 1000)
    cal = expected_calibration_error(p, y, n_bins=10, strategy="quantile")
    assert cal is not None and cal.strategy == "quantile"
    assert [b.count for b in cal.bins] == [100] * 10
    assert cal.bins[0].lower == 0.0 and cal.bins[-1].upper == 1.0


def test_ece_quantile_with_identical_probabilities_gives_one_bin():
    cal = expected_calibration_error([0.3, 0.3, 0.3, 0.3], [0, 1, 0, 0], strategy="quantile")
    assert cal is not None
    assert len(cal.bins) == 1
    assert cal.ece == pytest.approx(0.05)


def test_ece_rejects_bad_options():
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error([0.5], [1], n_bins=0)
    with pytest.raises(ValueError, match="strategy"):
        expected_calibration_error([0.5], [1], strategy="kmeans")  # type: ignore[arg-type]


def test_calibration_as_dict_is_json_friendly():
    cal = expected_calibration_error([0.2, 0.8], [0, 1], n_bins=4)
    assert cal is not None
    data = json.loads(json.dumps(cal.as_dict()))
    assert data["strategy"] == "uniform"
    assert len(data["bins"]) == 4
    assert data["bins"][1]["count"] == 0 and data["bins"][1]["gap"] is None


# ---------------------------------------------------------------------------------------
# pairs, length, slices
# ---------------------------------------------------------------------------------------


def test_preference_accuracy_counts_ties_half():
    assert preference_accuracy([3, 2, 1], [1, 2, 3]) == pytest.approx(0.5)
    assert preference_accuracy([3, 2, 1], [1, 2, 3], weights=[2, 1, 1]) == pytest.approx((2 + 0.5) / 4)
    assert preference_accuracy([1.0, 1.0], [0.0, 0.0]) == 1.0


def test_length_correlation_matches_scipy(rng):
    lengths = rng.integers(10, 2000, size=400)
    scores = 0.001 * lengths + rng.normal(0, 1.0, size=400)
    corr = length_correlation(scores, lengths)
    ref = stats.spearmanr(scores, lengths)
    assert corr is not None
    assert corr.rho == pytest.approx(ref.statistic)
    assert corr.p_value == pytest.approx(ref.pvalue)
    assert corr.n == 400
    assert 0.0 < corr.rho < 1.0


def test_length_correlation_of_a_monotone_relation_is_one():
    corr = length_correlation([0.1, 0.2, 0.5, 0.9], [10, 20, 300, 4000])
    assert corr is not None and corr.rho == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("scores", "lengths"),
    [([], []), ([0.1, 0.2], [1, 2]), ([0.5, 0.5, 0.5], [1, 2, 3]), ([0.1, 0.2, 0.3], [5, 5, 5]),
     ([0.1, float("nan"), 0.3], [1, 2, 3])],
)
def test_length_correlation_degenerate_is_none(scores, lengths):
    assert length_correlation(scores, lengths) is None


def test_mean_score_on_a_slice_is_weighted():
    scores = [0.2, 0.9, 0.4, 0.7]
    mask = [True, False, True, False]
    assert mean_score_on(scores, mask) == pytest.approx(0.3)
    assert mean_score_on(scores, mask, weights=[3, 1, 1, 1]) == pytest.approx((0.6 + 0.4) / 4)
    assert mean_score_on(scores, [False] * 4) is None
    assert mean_score_on(scores, mask, weights=[0, 1, 0, 1]) is None


# ---------------------------------------------------------------------------------------
# degenerate inputs: None, never an exception
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scores", "labels", "weights"),
    [
        ([], [], None),  # empty
        ([0.2, 0.7], [1, 1], None),  # one class only
        ([0.2, 0.7], [0, 0], None),  # one class only
        ([0.2, 0.7], [0, 1], [0, 0]),  # zero total weight
        ([0.2, 0.7, 0.1], [0, 1, 1], [1, 1, 0]),  # a zero-weight row: still defined
        ([0.2, float("nan")], [0, 1], None),  # NaN score
        ([0.2, 0.7], [0, 2], None),  # not a binary label
        ([0.2, 0.7], [0, 1], [1, -1]),  # negative weight
    ],
)
def test_ranking_metrics_degenerate_inputs_give_none_or_a_value_never_raise(scores, labels, weights):
    for fn in (auroc, pr_auc):
        value = fn(scores, labels, weights=weights)
        assert value is None or 0.0 <= value <= 1.0


def test_one_class_only_gives_none_for_ranking_metrics():
    assert auroc([0.2, 0.7], [1, 1]) is None
    assert pr_auc([0.2, 0.7], [0, 0]) is None
    assert auroc([0.2, 0.7, 0.1], [0, 1, 1], weights=[1, 0, 0]) is None  # positives carry no weight


def test_empty_inputs_give_none_everywhere():
    assert auroc([], []) is None
    assert pr_auc([], []) is None
    assert log_loss([], []) is None
    assert brier_score([], []) is None
    assert expected_calibration_error([], []) is None
    assert preference_accuracy([], []) is None
    assert mean_score_on([], []) is None


def test_non_probabilities_give_none_for_calibration_metrics():
    assert log_loss([1.5, -0.2], [1, 0]) is None
    assert expected_calibration_error([1.5, -0.2], [1, 0]) is None


def test_length_mismatch_is_a_programmer_error():
    with pytest.raises(ValueError, match="same length"):
        auroc([0.1, 0.2], [1])
    with pytest.raises(ValueError, match="same length"):
        preference_accuracy([0.1, 0.2], [0.3])
    with pytest.raises(ValueError, match="same length"):
        mean_score_on([0.1, 0.2], [True])
    with pytest.raises(ValueError, match="same length"):
        log_loss([0.1], [1], weights=[1, 2])
