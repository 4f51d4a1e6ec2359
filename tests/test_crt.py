"""cRT: a fresh linear layer re-trained with class-balanced sampling (METHODS.md)."""

import numpy as np
from sklearn.metrics import recall_score

from skltr import CRTClassifier, JointClassifier

CPU = {"device": "cpu", "random_state": 0}
SCHEDULE = {"epochs": 10, "batch_size": 64, "lr": 1.0, "weight_decay": 5e-4}


def test_crt_is_the_joint_training_with_another_sampler(small_problem):
    # On frozen features the re-initialised layer does not depend on the
    # joint classifier: with instance sampling, cRT is the joint classifier.
    X, y = small_problem
    crt = CRTClassifier(sampling="instance", **SCHEDULE, **CPU).fit(X, y)
    joint = JointClassifier(**SCHEDULE, **CPU).fit(X, y)
    np.testing.assert_array_equal(crt.coef_, joint.coef_)
    np.testing.assert_array_equal(crt.intercept_, joint.intercept_)


def test_class_balanced_sampling_moves_the_head_toward_the_tail(long_tailed):
    X, y, X_test, y_test = long_tailed
    crt = CRTClassifier(**SCHEDULE, **CPU).fit(X, y)
    joint = CRTClassifier(sampling="instance", **SCHEDULE, **CPU).fit(X, y)
    # The rarest class's bias rises against the head's, and so does its recall.
    tail, head = int(np.argmin(np.bincount(y))), int(np.argmax(np.bincount(y)))
    gap = crt.intercept_[tail] - crt.intercept_[head]
    assert gap > joint.intercept_[tail] - joint.intercept_[head]
    recall = {
        name: recall_score(y_test, clf.predict(X_test), labels=[tail], average=None)
        for name, clf in (("crt", crt), ("joint", joint))
    }
    assert recall["crt"][0] > recall["joint"][0]
