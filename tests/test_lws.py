"""Learnable weight scaling against its formula."""

import numpy as np

from skltr import (
    JointClassifier,
    LWSClassifier,
)

CPU = {"device": "cpu", "random_state": 0}


def test_lws_with_unit_scales_is_the_joint_classifier(small_problem):
    X, y = small_problem
    joint = JointClassifier(**CPU).fit(X, y)
    clf = LWSClassifier(joint=joint, lr=1e-12, **CPU).fit(X, y)
    np.testing.assert_allclose(clf.scales_, 1.0, atol=1e-6)
    np.testing.assert_allclose(
        clf.decision_function(X), joint.decision_function(X), rtol=1e-5, atol=1e-4
    )


def test_lws_scales_weights_and_bias(small_problem):
    X, y = small_problem
    clf = LWSClassifier(**CPU).fit(X, y)
    np.testing.assert_allclose(clf.coef_, clf.scales_[:, None] * clf.joint_coef_)
    np.testing.assert_allclose(clf.intercept_, clf.scales_ * clf.joint_intercept_)
    # Tail classes get the larger scales.
    assert clf.scales_[-1] > clf.scales_[0]
