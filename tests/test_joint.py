"""The joint classifier and the linear layer it shares: scores, start, penalty."""

import numpy as np
import pytest

from skltr import (
    BalancedSoftmaxClassifier,
    CRTClassifier,
    JointClassifier,
)

CPU = {"device": "cpu", "random_state": 0}


def test_scores_are_the_head_on_standardised_features_far_from_zero(small_problem):
    # The standardisation is folded into the head, which cancels terms of
    # size mean / scale: in float64 that must stay exact to float64 precision
    # where the features sit 10,000 scales from zero.
    X, y = small_problem
    X = X + np.float32(1e4)
    clf = JointClassifier(epochs=2, **CPU).fit(X, y)
    standardised = (X.astype(np.float64) - clf.feature_mean_) / clf.feature_scale_
    expected = standardised @ clf.coef_.T + clf.intercept_
    np.testing.assert_allclose(clf.decision_function(X), expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("estimator", [JointClassifier, CRTClassifier])
def test_a_fit_starts_from_the_logits_of_coef_init(estimator, small_problem):
    X, y = small_problem
    X = 3.0 * X + 5.0
    fitted = estimator(**CPU).fit(X, y)
    # Its weights on the features as given: the same logits.
    coef = fitted.coef_ / fitted.feature_scale_
    intercept = fitted.intercept_ - coef @ fitted.feature_mean_
    np.testing.assert_allclose(
        X @ coef.T + intercept, fitted.decision_function(X), atol=1e-4
    )
    # A fit whose steps barely move stays where it started,
    still = estimator(epochs=1, lr=1e-9, **CPU)
    still.fit(X, y, coef_init=coef, intercept_init=intercept)
    np.testing.assert_allclose(
        still.decision_function(X), fitted.decision_function(X), atol=1e-4
    )
    # and a fit from zero does not.
    zero = estimator(epochs=1, lr=1e-9, **CPU).fit(X, y)
    assert np.abs(zero.decision_function(X)).max() < 1e-3


def test_coef_init_of_the_wrong_shape_or_not_finite_is_refused(small_problem):
    X, y = small_problem
    with pytest.raises(ValueError, match=r"coef_init has shape \(3, 6\).*\(4, 6\)"):
        JointClassifier(**CPU).fit(X, y, coef_init=np.zeros((3, 6)))
    with pytest.raises(ValueError, match=r"intercept_init has shape \(5,\)"):
        JointClassifier(**CPU).fit(X, y, intercept_init=np.zeros(5))
    with pytest.raises(ValueError, match="coef_init holds NaN"):
        JointClassifier(**CPU).fit(X, y, coef_init=np.full((4, 6), np.nan))


@pytest.mark.parametrize(
    "cls", [JointClassifier, CRTClassifier, BalancedSoftmaxClassifier]
)
def test_auto_weight_decay_is_logistic_regressions_below_2000_samples(cls):
    rng = np.random.default_rng(0)
    for n, expected in [(400, 1 / 400), (2000, 5e-4), (2500, 5e-4)]:
        y = np.arange(n) % 3
        X = rng.normal(size=(n, 4)) + np.eye(3, 4)[y]
        clf = cls(epochs=1, **CPU).fit(X, y)
        assert clf.weight_decay_ == pytest.approx(expected)
    assert cls(weight_decay=0.01, epochs=1, **CPU).fit(X, y).weight_decay_ == 0.01


def test_auto_weight_decay_penalises_small_training_sets_more():
    # 400 samples: "auto" is 1 / 400, five times the floor; the weights of
    # the same layer trained with it are smaller.
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), [300, 60, 30, 10])
    X = rng.normal(size=(len(y), 30)) + 2.0 * np.eye(4, 30)[y]
    auto = JointClassifier(**CPU).fit(X, y)
    floor = JointClassifier(weight_decay=5e-4, **CPU).fit(X, y)
    assert np.linalg.norm(auto.coef_) < 0.9 * np.linalg.norm(floor.coef_)
