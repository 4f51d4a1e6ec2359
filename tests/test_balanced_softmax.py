"""Balanced Softmax: the logit-adjusted loss, trained in the one training loop."""

import numpy as np
import pytest

from skltr import BalancedSoftmaxClassifier, JointClassifier

CPU = {"device": "cpu", "random_state": 0}


def test_tau_zero_is_the_joint_classifier(small_problem):
    X, y = small_problem
    balanced = BalancedSoftmaxClassifier(tau=0.0, **CPU).fit(X, y)
    joint = JointClassifier(**CPU).fit(X, y)
    np.testing.assert_array_equal(balanced.coef_, joint.coef_)
    np.testing.assert_array_equal(balanced.intercept_, joint.intercept_)


def test_the_prior_is_learnt_away_from_the_bias():
    # Features that tell nothing: the joint bias learns the log prior, the
    # balanced loss's bias learns (nearly) none of it, as z + log(pi) already
    # carries the prior in training.
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), [600, 120, 30])
    X = rng.normal(size=(len(y), 4))
    prior = np.bincount(y) / len(y)
    joint = JointClassifier(**CPU).fit(X, y)
    balanced = BalancedSoftmaxClassifier(**CPU).fit(X, y)
    centred = joint.intercept_ - joint.intercept_.mean()
    np.testing.assert_allclose(centred, np.log(prior) - np.log(prior).mean(), atol=0.2)
    assert np.ptp(balanced.intercept_) < 0.2
    # So its probabilities on such features are about uniform.
    np.testing.assert_allclose(balanced.predict_proba(X).mean(axis=0), 1 / 3, atol=0.05)


@pytest.mark.parametrize("tau", [np.nan, np.inf])
def test_tau_must_be_finite(small_problem, tau):
    X, y = small_problem
    with pytest.raises(ValueError, match="'tau' parameter"):
        BalancedSoftmaxClassifier(tau=tau, **CPU).fit(X, y)
