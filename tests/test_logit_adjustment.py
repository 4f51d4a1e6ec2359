"""Post-hoc logit adjustment: the joint logits minus tau log(prior) (METHODS.md)."""

import numpy as np
import pytest

from skltr import JointClassifier, LogitAdjustedClassifier

CPU = {"device": "cpu", "random_state": 0}


@pytest.mark.parametrize("tau", [0.0, 0.5, 1.0, 1.7])
def test_scores_are_the_joint_logits_minus_tau_log_prior(small_problem, tau):
    X, y = small_problem
    rng = np.random.default_rng(0)
    coef = rng.normal(size=(4, X.shape[1])).astype(np.float32)
    intercept = rng.normal(size=4).astype(np.float32)
    clf = LogitAdjustedClassifier(tau=tau, joint=(coef, intercept), **CPU).fit(X, y)
    prior = np.bincount(y) / len(y)
    by_hand = X.astype(np.float64) @ coef.T + intercept - tau * np.log(prior)
    np.testing.assert_allclose(clf.decision_function(X), by_hand, rtol=1e-5, atol=1e-5)


def test_tau_zero_predicts_as_the_joint_classifier(small_problem):
    X, y = small_problem
    joint = JointClassifier(**CPU).fit(X, y)
    clf = LogitAdjustedClassifier(tau=0.0, joint=joint, **CPU).fit(X, y)
    np.testing.assert_array_equal(clf.predict(X), joint.predict(X))
    np.testing.assert_allclose(clf.predict_proba(X), joint.predict_proba(X), atol=1e-6)


def test_adjustment_raises_the_tail_over_the_head(small_problem):
    # -log(prior) is largest for the rarest class: its logit rises the most.
    X, y = small_problem
    joint = JointClassifier(**CPU).fit(X, y)
    plain = LogitAdjustedClassifier(tau=0.0, joint=joint, **CPU).fit(X, y)
    adjusted = LogitAdjustedClassifier(tau=1.0, joint=joint, **CPU).fit(X, y)
    lift = adjusted.decision_function(X) - plain.decision_function(X)
    assert np.all(np.diff(lift.mean(axis=0)) > 0)  # counts fall with the label
    assert np.mean(adjusted.predict(X) == 3) > np.mean(plain.predict(X) == 3)
