"""scikit-learn's estimator checks over every public estimator."""

import joblib
import numpy as np
import pytest
from _estimators import CHECK_EPOCHS, CLASSIFIERS, REBALANCERS, cheap
from sklearn.base import clone
from sklearn.utils import estimator_checks
from sklearn.utils.estimator_checks import parametrize_with_checks

from skltr import (
    BalancedSoftmaxClassifier,
    CRTClassifier,
    FeatureExtractor,
    JointClassifier,
    LDAMClassifier,
    PriorAdjustedClassifier,
    TauNormClassifier,
)

# FeatureExtractor takes images; the checks that need no data run on it below.
EXTRACTOR = FeatureExtractor(
    "cifar_resnet20", pretrained=False, device="cpu", verbose=0
)


# Every public classifier (discovered from skltr.__all__), and the settings
# that take another code path: tau-norm's learned tau.
ESTIMATORS = [
    *(cheap(cls) for cls in CLASSIFIERS),
    TauNormClassifier(tau="learn", device="cpu", epochs=CHECK_EPOCHS),
]

# Checks a classifier is known to fail, keyed by class, each with its reason.
_SGD_WEIGHTS = (
    "Minibatch SGD: an integer sample_weight scales a row's gradient, where "
    "repeating the row changes the epoch's length and batches, so the two fits "
    "agree in expectation, not to the last digit (scikit-learn marks its "
    "SGDClassifier the same way). test_weights.py checks that they agree in "
    "predictions and accuracy, and that scaling every weight changes nothing."
)
_COSINE_WEIGHTS = (
    "Minibatch SGD, as for JointClassifier, on a loss that is not convex (unit-"
    "length weight rows from a random start): two fits of the same data from "
    "different seeds agree on about 92% of the predictions of a 3-class "
    "problem, and a weighted fit and its repeated-row twin agree as closely. "
    "test_weights.py checks that uniform weights are no weights, "
    "test_ldam.py that weights change the fit and bad weights are refused."
)
EXPECTED_FAILED_CHECKS = {
    estimator: {"check_sample_weight_equivalence_on_dense_data": _SGD_WEIGHTS}
    for estimator in (JointClassifier, CRTClassifier, BalancedSoftmaxClassifier)
}
_REBALANCER_WEIGHTS = (
    "The re-balancer trains its joint classifier (and the folds' joint "
    "classifiers) by minibatch SGD, which JointClassifier's reason covers; "
    "the check's repeated rows also change the folds' training parts. "
    "test_weights.py checks that uniform weights are exactly no weights, "
    "that weights change the fit, and that zero weights are never scored."
)
EXPECTED_FAILED_CHECKS[LDAMClassifier] = {
    "check_sample_weight_equivalence_on_dense_data": _COSINE_WEIGHTS
}
for estimator in REBALANCERS:
    EXPECTED_FAILED_CHECKS[estimator] = {
        "check_sample_weight_equivalence_on_dense_data": _REBALANCER_WEIGHTS
    }

EXPECTED_FAILED_CHECKS[PriorAdjustedClassifier] = {
    "check_methods_subset_invariance": (
        "With target_prior='em' (the default) the target prior is estimated by "
        "EM from the batch being predicted, so a sample's prediction depends "
        "on the batch it comes with: that is the method. test_prior_shift.py "
        "checks that a known target prior predicts each sample alike in any "
        "batch."
    )
}


def expected_failed_checks(estimator):
    return EXPECTED_FAILED_CHECKS.get(type(estimator), {})


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


@pytest.mark.parametrize(
    "estimator", [*ESTIMATORS, EXTRACTOR], ids=lambda e: type(e).__name__
)
def test_parameter_constraints_cover_exactly_the_parameters(estimator):
    # scikit-learn's check: every parameter has a constraint, no constraint
    # names a parameter the estimator lacks, and each invalid value raises
    # InvalidParameterError from fit (before any data is read).
    estimator_checks.check_param_validation(type(estimator).__name__, estimator)


# FeatureExtractor takes images, so it declares ``two_d_array=False`` and
# scikit-learn's data checks skip it (they only feed 2-d feature matrices). The
# checks that need no data run here; their data-dependent counterparts (fit
# returns self and leaves parameters alone, pickling, the unfitted error,
# set_output) run on images below and in test_extractor.py.
DATA_FREE_CHECKS = [
    "check_estimator_cloneable",
    "check_estimator_repr",
    "check_estimator_tags_renamed",
    "check_valid_tag_types",
    "check_no_attributes_set_in_init",
    "check_parameters_default_constructible",
    "check_get_params_invariance",
    "check_set_params",
]


@pytest.mark.parametrize("check", DATA_FREE_CHECKS)
def test_feature_extractor_api(check):
    getattr(estimator_checks, check)(type(EXTRACTOR).__name__, EXTRACTOR)


def test_feature_extractor_fit_returns_self_and_keeps_parameters():
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), np.uint8)
    extractor = clone(EXTRACTOR)
    before = joblib.hash(extractor.get_params())
    assert extractor.fit(images) is extractor
    assert joblib.hash(extractor.get_params()) == before
    assert not any(
        name.endswith("_") and not name.startswith("_")
        for name in vars(clone(extractor))
    )


def test_every_public_estimator_is_checked():
    # The classifiers come from skltr.__all__; a public estimator of another
    # kind (a transformer, say) must join these checks by hand.
    from sklearn.base import BaseEstimator

    import skltr

    public = {
        name
        for name in skltr.__all__
        if isinstance(getattr(skltr, name), type)
        and issubclass(getattr(skltr, name), BaseEstimator)
    }
    checked = {type(estimator).__name__ for estimator in [*ESTIMATORS, EXTRACTOR]}
    assert public == checked


def test_the_package_imports_and_fits_under_python_OO():
    # python -OO strips docstrings, which the shared docstring fragments fill.
    import subprocess
    import sys

    code = (
        "import numpy as np, skltr, skltr.metrics, skltr.datasets;"
        "X = np.random.default_rng(0).normal(size=(60, 4));"
        "y = np.repeat([0, 1, 2], 20);"
        "print(skltr.TauNormClassifier(device='cpu').fit(X, y).predict(X).shape)"
    )
    result = subprocess.run(
        [sys.executable, "-OO", "-c", code], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(60,)"
