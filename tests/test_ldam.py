"""LDAM-DRW: a cosine head, class-dependent margins, deferred re-weighting."""

import numpy as np
import pytest
import torch

from skltr import LDAMClassifier
from skltr._ldam import deferred_weights, ldam_losses, ldam_margins
from skltr._weights import effective_number_weights

CPU = {"device": "cpu", "random_state": 0}


def test_margins_follow_the_counts():
    # K / n^(1/4), the largest (the rarest class's) equal to max_margin.
    np.testing.assert_allclose(
        ldam_margins([10000, 16, 1], 0.5), [0.05, 0.25, 0.5], rtol=1e-12
    )
    np.testing.assert_allclose(ldam_margins([81, 81], 0.3), [0.3, 0.3])


def test_deferred_weights_keep_the_ratios_at_mean_one():
    counts = np.array([500, 50, 5])
    weights = deferred_weights(counts, 0.999)
    assert weights @ counts == pytest.approx(counts.sum())
    effective = effective_number_weights(counts, 0.999)
    np.testing.assert_allclose(weights / weights[0], effective / effective[0])


def test_ldam_loss_of_a_hand_computed_example():
    rows = torch.tensor([[3.0, 4.0], [0.0, -2.0]])  # unit: (0.6, 0.8), (0, -1)
    weight = torch.tensor([[2.0, 0.0], [0.0, 1.0]])  # unit: e1, e2
    labels = torch.tensor([1, 0])
    margins = torch.tensor([0.1, 0.4])
    s = 10.0
    # Row 0, class 1: cosines (0.6, 0.8), true class lowered to 0.8 - 0.4.
    # Row 1, class 0: cosines (0, -1), true class lowered to 0 - 0.1.
    logits = s * torch.tensor([[0.6, 0.4], [-0.1, -1.0]])
    expected = -torch.log_softmax(logits, dim=1)[[0, 1], [1, 0]]
    torch.testing.assert_close(ldam_losses(rows, weight, labels, margins, s), expected)


def test_predictions_are_scaled_cosines_without_margins(small_problem):
    X, y = small_problem
    clf = LDAMClassifier(s=7.0, **CPU).fit(X, y)
    standardised = (X - clf.feature_mean_) / clf.feature_scale_
    unit = standardised / np.linalg.norm(standardised, axis=1, keepdims=True)
    scores = clf.decision_function(X)
    np.testing.assert_allclose(scores, unit @ clf.coef_.T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(clf.coef_, axis=1), 7.0, rtol=1e-5)
    assert np.abs(scores).max() <= 7.0 + 1e-6
    np.testing.assert_array_equal(clf.intercept_, 0.0)


def test_deferred_reweighting_sets_in_at_drw_start(small_problem):
    X, y = small_problem
    never = LDAMClassifier(drw_start=1.0, **CPU).fit(X, y)
    # beta = 0 makes every class weight 1: re-weighting changes nothing.
    uniform = LDAMClassifier(drw_start=0.5, beta=0.0, **CPU).fit(X, y)
    np.testing.assert_array_equal(uniform.coef_, never.coef_)
    deferred = LDAMClassifier(drw_start=0.5, **CPU).fit(X, y)
    assert not np.allclose(deferred.coef_, never.coef_)
    # The epochs before drw_start are trained alike.
    np.testing.assert_allclose(
        deferred.loss_curve_[:15], never.loss_curve_[:15], rtol=1e-6
    )
    assert deferred.loss_curve_[15] != pytest.approx(never.loss_curve_[15])


@pytest.mark.parametrize(
    "params, name",
    [
        ({"s": -1.0}, "s"),
        ({"s": 0.0}, "s"),
        ({"max_margin": -0.1}, "max_margin"),
        ({"drw_start": 1.5}, "drw_start"),
        ({"beta": 1.0}, "beta"),
    ],
)
def test_bad_knobs_name_the_parameter(small_problem, params, name):
    X, y = small_problem
    with pytest.raises(ValueError, match=f"'{name}' parameter"):
        LDAMClassifier(**params, **CPU).fit(X, y)


def test_sample_weight_is_checked_and_used(small_problem):
    X, y = small_problem
    plain = LDAMClassifier(**CPU).fit(X, y)
    uniform = LDAMClassifier(**CPU).fit(X, y, sample_weight=np.full(len(y), 3.0))
    np.testing.assert_allclose(uniform.coef_, plain.coef_, rtol=1e-5, atol=1e-6)
    tail_heavy = np.where(y == 3, 5.0, 1.0)
    weighted = LDAMClassifier(**CPU).fit(X, y, sample_weight=tail_heavy)
    assert not np.allclose(weighted.coef_, plain.coef_)
    with pytest.raises(ValueError, match="sample_weight"):
        LDAMClassifier(**CPU).fit(X, y, sample_weight=-np.ones(len(y)))
