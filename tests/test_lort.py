"""Logits retargeting: its targets, its loss, its path."""

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score

from skltr import (
    JointClassifier,
    LORTClassifier,
)
from skltr._lort import retargeted_labels

CPU = {"device": "cpu", "random_state": 0}


def test_lort_targets():
    targets = retargeted_labels(np.array([0, 2]), n_classes=4, smoothing=0.98)
    np.testing.assert_allclose(targets[0], [1 - 0.98 + 0.98 / 4] + [0.98 / 4] * 3)
    np.testing.assert_allclose(targets[1, 2], 1 - 0.98 + 0.98 / 4)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0)


def test_lort_loss_is_cross_entropy_against_the_retargeted_labels():
    # LORT trains with torch's label smoothing; check it is the paper's loss.
    rng = np.random.default_rng(0)
    logits = torch.as_tensor(rng.normal(size=(8, 5)))
    y = rng.integers(0, 5, size=8)
    soft = torch.as_tensor(retargeted_labels(y, 5, 0.98))
    expected = -(soft * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()
    smoothed = torch.nn.functional.cross_entropy(
        logits, torch.as_tensor(y), label_smoothing=0.98
    )
    torch.testing.assert_close(smoothed, expected)


def test_lort_starts_from_the_joint_classifier_and_keeps_the_best_point(long_tailed):
    X, y, _, _ = long_tailed
    joint = JointClassifier(**CPU).fit(X, y)
    clf = LORTClassifier(joint=joint, **CPU).fit(X, y)
    assert clf.path_scores_[0] == pytest.approx(
        balanced_accuracy_score(y, joint.predict(X))
    )
    assert clf.best_epoch_ == int(np.argmax(clf.path_scores_))
    assert balanced_accuracy_score(y, clf.predict(X)) == pytest.approx(
        clf.path_scores_.max()
    )
    # It walked on past the best point before giving up, or ran out of epochs.
    walked = len(clf.path_scores_) - 1
    assert walked == clf.epochs or walked - clf.best_epoch_ == clf.n_iter_no_change
    with_zero_steps = LORTClassifier(joint=joint, lr=1e-12, **CPU).fit(X, y)
    np.testing.assert_allclose(with_zero_steps.coef_, joint.coef_, atol=1e-6)
