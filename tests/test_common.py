"""scikit-learn's estimator checks over every public classifier."""

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from skltr import (
    CRTClassifier,
    JointClassifier,
    LORTClassifier,
    LWSClassifier,
    NCMClassifier,
    TauNormClassifier,
)

ESTIMATORS = [
    JointClassifier(device="cpu"),
    CRTClassifier(device="cpu"),
    NCMClassifier(),
    TauNormClassifier(device="cpu"),
    TauNormClassifier(tau="learn", device="cpu"),
    LWSClassifier(device="cpu"),
    LORTClassifier(device="cpu"),
]

# Checks a classifier is known to fail, keyed by class, each with its reason.
EXPECTED_FAILED_CHECKS = {}


def expected_failed_checks(estimator):
    return EXPECTED_FAILED_CHECKS.get(type(estimator), {})


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_every_estimator_is_exported(estimator):
    import skltr

    assert type(estimator).__name__ in skltr.__all__
