from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import expit

from training.calibration import (
    Calibration,
    apply_calibration,
    fit_temperature,
    log_odds,
    prior_shift,
    weighted_rate,
)


def test_prior_shift_matches_hand_computed_value():
    # logit 0 at train rate 10% -> true rate 1%: 0 + log(1/99) - log(1/9) = log(9/99) = -log(11)
    assert prior_shift([0.0], 0.10, 0.01)[0] == pytest.approx(-math.log(11.0))
    # p = 0.5 -> odds 1 * (1/99) / (1/9) = 1/11 -> p = 1/12
    assert prior_shift([0.5], 0.10, 0.01, kind="probs")[0] == pytest.approx(1.0 / 12.0)
    # the identity when the rates agree
    assert prior_shift([1.5, -2.0], 0.2, 0.2).tolist() == pytest.approx([1.5, -2.0])
    with pytest.raises(ValueError):
        prior_shift([0.0], 0.0, 0.1)


def test_prior_shift_recovers_a_known_base_rate():
    # x | y ~ N(+1, 1) or N(-1, 1): the Bayes posterior logit at prior pi is logodds(pi) + 2x.
    rng = np.random.default_rng(0)
    true_rate, train_rate, n = 0.02, 0.10, 400_000
    y = rng.random(n) < true_rate
    x = rng.normal(np.where(y, 1.0, -1.0), 1.0)
    scores_train = log_odds(train_rate) + 2.0 * x  # calibrated for the upsampled training data
    assert expit(scores_train).mean() > 0.05  # far off the true rate before the shift
    shifted = prior_shift(scores_train, train_rate, true_rate)
    assert expit(shifted).mean() == pytest.approx(true_rate, rel=0.05)
    assert shifted == pytest.approx(log_odds(true_rate) + 2.0 * x)


def test_fit_temperature_recovers_a_known_temperature():
    rng = np.random.default_rng(1)
    z = rng.normal(0.0, 2.0, 50_000)
    y = (rng.random(z.size) < expit(z)).astype(float)
    assert fit_temperature(z * 2.5, y) == pytest.approx(2.5, rel=0.05)  # over-confident model
    assert fit_temperature(z * 0.5, y) == pytest.approx(0.5, rel=0.05)  # under-confident model
    # with a fixed prior-shift offset applied after the temperature
    shift = -1.3
    y2 = (rng.random(z.size) < expit(z + shift)).astype(float)
    assert fit_temperature(z * 2.0, y2, offset=shift) == pytest.approx(2.0, rel=0.05)
    assert fit_temperature(z[:10], np.zeros(10)) == 1.0  # single class: nothing to fit


def test_apply_calibration_composes_temperature_then_shift():
    cal = Calibration(train_rate=0.1, true_rate=0.01, temperature=2.0)
    z = np.array([-3.0, 0.0, 4.0])
    expected = expit(z / 2.0 + (log_odds(0.01) - log_odds(0.1)))
    assert apply_calibration(z, cal) == pytest.approx(expected)
    assert apply_calibration(z, Calibration()) == pytest.approx(expit(z))
    assert Calibration.from_dict(cal.to_dict()) == cal
    assert cal.to_dict()["shift"] == pytest.approx(-math.log(11.0))


def test_calibration_rejects_bad_parameters():
    with pytest.raises(ValueError):
        Calibration(train_rate=0.1)
    with pytest.raises(ValueError):
        Calibration(train_rate=1.0, true_rate=0.1)
    with pytest.raises(ValueError):
        Calibration(temperature=0.0)


def test_weighted_rate():
    assert weighted_rate([1, 0, 0, 0], [1.0, 1.0, 1.0, 1.0]) == 0.25
    assert weighted_rate([1, 0], [0.5, 1.5]) == 0.25
    assert weighted_rate([1, 0], [0.0, 0.0]) == 0.5
