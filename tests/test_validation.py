"""Bad input gets a clear error that says what was wrong."""

import numpy as np
import pytest
import torch
from _estimators import CLASSIFIERS as PUBLIC_CLASSIFIERS
from _estimators import REBALANCERS, instance
from sklearn.base import clone

from skltr import (
    CRTClassifier,
    DisAlignClassifier,
    JointClassifier,
    LORTClassifier,
    LWSClassifier,
    NCMClassifier,
    TauNormClassifier,
)
from skltr._backend import feature_scaled_lr, logit_scaled_lr, resolve_device
from skltr._validation import validate_features

# Every public classifier (from skltr.__all__); two epochs are enough to
# reach the checks.
CLASSIFIERS = [instance(cls, epochs=2) for cls in PUBLIC_CLASSIFIERS]


def _ids(estimator):
    return type(estimator).__name__


# Features come as arrays, or as torch tensors, which take a path of their own.
CONTAINERS = pytest.mark.parametrize(
    "container", [np.asarray, torch.from_numpy], ids=["array", "tensor"]
)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], [30, 20, 10])
    return rng.normal(size=(60, 5)) + np.eye(3, 5)[y], y


@CONTAINERS
@pytest.mark.parametrize("clf", CLASSIFIERS, ids=_ids)
@pytest.mark.parametrize("bad, message", [(np.nan, "NaN"), (np.inf, "infinity")])
def test_non_finite_features(data, clf, bad, message, container):
    X, y = data
    X = X.copy()
    X[3, 2] = bad
    with pytest.raises(ValueError, match=message):
        clone(clf).fit(container(X), y)
    fitted = clone(clf).fit(data[0], y)
    with pytest.raises(ValueError, match=message):
        fitted.predict(container(X))


@CONTAINERS
@pytest.mark.parametrize("clf", CLASSIFIERS, ids=_ids)
def test_single_class(data, clf, container):
    X, _ = data
    with pytest.raises(ValueError, match="at least 2 classes.*1 class"):
        clone(clf).fit(container(X), np.zeros(len(X)))


@CONTAINERS
@pytest.mark.parametrize("clf", CLASSIFIERS, ids=_ids)
def test_wrong_number_of_features_at_predict(data, clf, container):
    X, y = data
    fitted = clone(clf).fit(container(X), y)
    for method in ("predict", "predict_proba", "decision_function"):
        with pytest.raises(ValueError, match="X has 4 features.*expecting 5"):
            getattr(fitted, method)(container(X[:, :4].copy()))


@pytest.mark.parametrize("clf", CLASSIFIERS, ids=_ids)
def test_three_dimensional_input(data, clf):
    X, y = data
    with pytest.raises(ValueError, match="dim 3"):
        clone(clf).fit(X.reshape(60, 5, 1), y)
    with pytest.raises(ValueError, match=r"2-D tensor.*\(60, 5, 1\).*reshape"):
        clone(clf).fit(torch.from_numpy(X).reshape(60, 5, 1), y)


@pytest.mark.parametrize(
    "X, message",
    [
        (torch.zeros(0, 5), "0 sample"),
        (torch.zeros(60, 0), "0 feature"),
        (torch.zeros(60, 5, dtype=torch.complex64), "real-valued"),
    ],
    ids=["no rows", "no columns", "complex"],
)
def test_unusable_tensors(X, message):
    with pytest.raises(ValueError, match=message):
        CRTClassifier(device="cpu").fit(X, np.arange(len(X)) % 2)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_finite_tensors_whose_sum_overflows_are_accepted(dtype):
    # A tensor's finiteness is decided by its sum unless the sum overflows.
    X = torch.full((4, 3), torch.finfo(dtype).max, dtype=dtype)
    assert torch.equal(validate_features(CRTClassifier(), X, reset=True), X)
    for bad in (float("nan"), float("inf"), -float("inf")):
        X[1, 2] = bad
        with pytest.raises(ValueError, match="NaN or infinity"):
            validate_features(CRTClassifier(), X, reset=True)


@pytest.mark.parametrize(
    "clf, params, message",
    [
        (
            CRTClassifier(),
            {"sampling": "balanced"},
            "sampling='balanced' is not a sampling",
        ),
        (LWSClassifier(), {"sampling": "Class"}, "sampling='Class' is not a sampling"),
        (TauNormClassifier(), {"tau": "best"}, "'tau' parameter"),
        (TauNormClassifier(), {"tau_grid": []}, "tau_grid must be a non-empty"),
        (NCMClassifier(), {"metric": "manhattan"}, "'metric' parameter"),
        (LORTClassifier(), {"smoothing": 1.5}, "'smoothing' parameter"),
        (JointClassifier(), {"lr": -1.0}, "'lr' parameter"),
    ],
)
def test_unknown_options(data, clf, params, message):
    X, y = data
    with pytest.raises(ValueError, match=message):
        clone(clf).set_params(**params).fit(X, y)


@pytest.mark.parametrize("rebalancer", REBALANCERS, ids=lambda cls: cls.__name__)
def test_an_invalid_joint_estimator_is_refused_before_it_is_fit(data, rebalancer):
    # The joint classifier is fit inside the re-balancer's fit; its own
    # parameters must be validated there, not skipped as nested.
    X, y = data
    clf = rebalancer(joint=JointClassifier(lr=-1.0, device="cpu"), device="cpu")
    with pytest.raises(ValueError, match="'lr' parameter of JointClassifier"):
        clf.fit(X, y)


def test_predict_before_fit():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        TauNormClassifier().predict(np.zeros((2, 3)))


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1", torch.device("cuda")])
@pytest.mark.parametrize("estimator", [JointClassifier, NCMClassifier])
def test_cuda_asked_for_and_absent(data, device, estimator):
    X, y = data
    with pytest.raises(
        ValueError, match="asks for CUDA.*device='auto' or device='cpu'"
    ):
        estimator(device=device).fit(X, y)


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")
def test_mps_asked_for_and_absent(data):
    X, y = data
    with pytest.raises(ValueError, match="asks for Apple MPS.*device='cpu'"):
        JointClassifier(device="mps").fit(X, y)


def test_cuda_device_index_out_of_range():
    count = torch.cuda.device_count()
    if not torch.cuda.is_available():
        pytest.skip("no CUDA here: covered by test_cuda_asked_for_and_absent")
    with pytest.raises(ValueError, match=f"only {count} CUDA device"):
        resolve_device(f"cuda:{count}")


@pytest.mark.parametrize("device", ["gpu", "tpu:0", 3])
def test_device_that_is_not_one(device):
    with pytest.raises(ValueError, match="device"):
        resolve_device(device)


def test_device_is_resolved_in_fit_not_in_the_parameter(data):
    X, y = data
    clf = JointClassifier(epochs=1).fit(X, y)
    assert clf.device == "auto"
    assert clf.device_ == ("cuda" if torch.cuda.is_available() else "cpu")


# Degenerate but legal features: the fit learns what there is to learn and its
# probabilities stay finite (test_properties.py searches for more such cases).


@pytest.mark.parametrize("clf", CLASSIFIERS, ids=_ids)
@pytest.mark.parametrize("value", [1e-6, 0.1, 3.0e7])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_identical_rows_predict_the_training_prior(clf, value, dtype):
    # Every row the same: no feature tells the classes apart. Centred on a
    # mean computed in float32, such columns kept a residue in the last bits
    # whose near-zero curvature set a huge step size, and the fit went NaN
    # (DisAlign's gate too, while it standardised float64 rows itself).
    y = np.repeat(np.arange(4), [50, 20, 5, 2])
    X = np.full((len(y), 8), value, dtype=dtype)
    proba = clone(clf).fit(X, y).predict_proba(X)
    assert np.all(np.isfinite(proba))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    # Identical rows get identical probabilities.
    np.testing.assert_array_equal(proba, np.broadcast_to(proba[0], proba.shape))


def test_constant_columns_standardise_to_exactly_zero():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4)).astype(np.float32)
    X[:, 1] = 0.1  # not exactly representable: its float32 mean is off
    X[:, 3] = 0.0
    y = rng.integers(0, 3, size=300)
    clf = JointClassifier(device="cpu", epochs=2).fit(X, y)
    standardised = (X - clf.feature_mean_) / clf.feature_scale_
    np.testing.assert_array_equal(standardised[:, [1, 3]], 0.0)
    np.testing.assert_array_equal(clf.feature_scale_[[1, 3]], 1.0)
    np.testing.assert_allclose(clf.feature_scale_[[0, 2]], X[:, [0, 2]].std(0), 1e-5)


@pytest.mark.parametrize(
    "clf, scales",
    [
        (DisAlignClassifier(device="cpu"), "scale_"),
        (LWSClassifier(device="cpu"), "scales_"),
    ],
)
def test_logits_that_say_nothing_get_no_runaway_scale(clf, scales):
    # Identical float16 rows of 47 balanced classes (found by hypothesis): the
    # joint head predicts the prior, its logits are within 0.01 of each
    # other, and a step divided by their mean square (5e-5) took DisAlign's
    # scales to 1e8 and then to NaN.
    row = np.array([0.1864, -0.4966, 1.168, -1.214, 2.31], dtype=np.float16)
    y = np.repeat(np.arange(47), 272)
    X = np.tile(row, (len(y), 1))
    fitted = clone(clf).set_params(random_state=0).fit(X, y)
    assert np.abs(getattr(fitted, scales)).max() < 10
    np.testing.assert_allclose(fitted.predict_proba(X[:1]), 1 / 47, atol=0.01)
    assert logit_scaled_lr(0.5, 5e-5) == 0.5
    assert logit_scaled_lr(0.5, 4.0) == 0.125


def test_zero_curvature_gives_a_finite_step():
    # All-zero features have no direction to learn: the step on the weights
    # must stay finite (it was lr / the smallest float32).
    assert feature_scaled_lr(4.0, 0.0) == 4.0
    assert feature_scaled_lr(4.0, 2.0) == 2.0
