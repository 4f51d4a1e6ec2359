"""tau-normalised classifier: its formula, its choice of tau, its learned tau."""

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score

from skltr import (
    JointClassifier,
    TauNormClassifier,
)
from skltr._selection import DEFAULT_TAU_GRID
from skltr._tau import correct_by_tau

CPU = {"device": "cpu", "random_state": 0}


def _standardised(clf, X):
    return (X - clf.feature_mean_) / clf.feature_scale_


@pytest.mark.parametrize("tau", [0.0, 0.5, 1.0, 1.7])
def test_tau_norm_logits_are_rescaled_joint_weights(small_problem, tau):
    X, y = small_problem
    joint = JointClassifier(**CPU).fit(X, y)
    clf = TauNormClassifier(tau=tau, joint=joint, **CPU).fit(X, y)
    W = joint.coef_
    W_tau = W / np.linalg.norm(W, axis=1, keepdims=True) ** tau
    expected = _standardised(joint, X) @ W_tau.T
    np.testing.assert_allclose(clf.decision_function(X), expected, rtol=1e-4, atol=1e-4)
    assert clf.tau_ == tau


def test_tau_zero_is_the_joint_classifier_without_its_bias(small_problem):
    X, y = small_problem
    joint = JointClassifier(**CPU).fit(X, y)
    clf = TauNormClassifier(tau=0.0, joint=joint).fit(X, y)
    np.testing.assert_allclose(
        clf.decision_function(X),
        joint.decision_function(X) - joint.intercept_,
        rtol=1e-5,
        atol=1e-4,
    )


def test_tau_auto_picks_the_best_mean_per_class_training_accuracy(small_problem):
    X, y = small_problem
    grid = [0.0, 0.4, 0.8, 1.2]
    joint = JointClassifier(**CPU).fit(X, y)
    clf = TauNormClassifier(tau_grid=grid, joint=joint).fit(X, y)
    by_hand = [
        balanced_accuracy_score(
            y, TauNormClassifier(tau=t, joint=joint).fit(X, y).predict(X)
        )
        for t in grid
    ]
    np.testing.assert_allclose(clf.tau_scores_, by_hand)
    assert clf.tau_ == grid[int(np.argmax(by_hand))]


def test_tau_is_chosen_on_the_host_where_the_device_has_no_float64(small_problem):
    # Apple's MPS has no float64, so the sweep runs on the host there (a
    # torch.device("mps") can be named, though not used, on any machine).
    X, y = small_problem
    joint = JointClassifier(**CPU).fit(X, y)
    sweep = (X, y, joint.coef_, DEFAULT_TAU_GRID, len(joint.classes_))
    np.testing.assert_array_equal(
        correct_by_tau(*sweep, device=torch.device("mps")), correct_by_tau(*sweep)
    )


def test_tau_learn_balances_the_joint_classifier(long_tailed):
    X, y, X_test, y_test = long_tailed
    joint = JointClassifier(**CPU).fit(X, y)
    clf = TauNormClassifier(tau="learn", joint=joint, **CPU).fit(X, y)
    assert np.isfinite(clf.tau_) and len(clf.loss_curve_) == clf.epochs
    assert balanced_accuracy_score(y_test, clf.predict(X_test)) > (
        balanced_accuracy_score(y_test, joint.predict(X_test))
    )
