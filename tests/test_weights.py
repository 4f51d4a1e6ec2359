"""Class and sample weights in the loss: scikit-learn's conventions, one trainer."""

import numpy as np
import pytest
import sklearn
import torch
from _estimators import REBALANCERS
from scipy.optimize import minimize
from scipy.special import log_softmax
from sklearn.calibration import CalibratedClassifierCV
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer
from sklearn.utils.class_weight import compute_class_weight

from skltr import (
    CRTClassifier,
    JointClassifier,
    LDAMClassifier,
    LogitAdjustedClassifier,
    TauNormClassifier,
)
from skltr._backend import SoftmaxRegressionSGD, focal_terms
from skltr._joint import focal_posterior_logits
from skltr._selection import held_out_folds, mean_per_class_accuracy
from skltr._tau import correct_by_tau
from skltr._weights import effective_number_weights
from skltr.metrics import shot_accuracy

CPU = {"device": "cpu", "random_state": 0}
WEIGHTED = [JointClassifier, CRTClassifier]
# Every trainer that takes sample_weight, class_weight or not.
SAMPLE_WEIGHTED = [JointClassifier, LDAMClassifier, *REBALANCERS]


def test_effective_number_weights_follow_the_formula():
    counts = np.array([100, 10, 1])
    raw = (1 - 0.9) / (1 - 0.9 ** counts.astype(float))  # 0.1000, 0.1535, 1.0
    np.testing.assert_allclose(
        effective_number_weights(counts, 0.9), raw * 3 / raw.sum(), rtol=1e-12
    )
    # beta = 0 weighs every class alike; near 1, inverse frequency.
    np.testing.assert_allclose(effective_number_weights(counts, 0.0), 1.0)
    inverse = 1 / counts
    np.testing.assert_allclose(
        effective_number_weights(counts, 1 - 1e-9), inverse * 3 / inverse.sum(), 1e-6
    )


@pytest.mark.parametrize("estimator", WEIGHTED, ids=lambda c: c.__name__)
def test_balanced_dict_and_sample_weight_spell_the_same_weights(
    estimator, small_problem
):
    X, y = small_problem
    balanced = compute_class_weight("balanced", classes=np.unique(y), y=y)
    fits = [
        estimator(class_weight="balanced", **CPU).fit(X, y),
        estimator(class_weight=dict(enumerate(balanced)), **CPU).fit(X, y),
        estimator(**CPU).fit(X, y, sample_weight=balanced[y]),
        # Only the ratios matter.
        estimator(**CPU).fit(X, y, sample_weight=100 * balanced[y]),
        estimator(**CPU).fit(X, y, sample_weight=torch.as_tensor(balanced[y])),
    ]
    for fit in fits[1:]:
        np.testing.assert_allclose(fit.coef_, fits[0].coef_, rtol=1e-5, atol=1e-6)
    unweighted = estimator(**CPU).fit(X, y)
    assert not np.allclose(unweighted.coef_, fits[0].coef_)


@pytest.mark.parametrize("estimator", SAMPLE_WEIGHTED, ids=lambda c: c.__name__)
def test_uniform_weights_are_no_weights(estimator, small_problem):
    X, y = small_problem
    plain = estimator(**CPU).fit(X, y)
    for weights in (np.ones(len(y)), np.full(len(y), 3.5)):
        fit = estimator(**CPU).fit(X, y, sample_weight=weights)
        np.testing.assert_array_equal(
            fit.decision_function(X), plain.decision_function(X)
        )


@pytest.mark.parametrize("estimator", REBALANCERS, ids=lambda c: c.__name__)
def test_rebalancer_weights_reach_the_joint_fit_and_every_fold_fit(
    estimator, small_problem
):
    X, y = small_problem
    weights = np.random.default_rng(0).uniform(0.5, 4.0, len(y))
    seen = []

    class Recording(JointClassifier):
        def fit(self, X, y, sample_weight=None, **fit_params):
            seen.append(sample_weight)
            return super().fit(X, y, sample_weight=sample_weight, **fit_params)

    clf = estimator(joint=Recording(**CPU), refit="full", **CPU).fit(
        X, y, sample_weight=weights
    )
    # The joint classifier is the one a user would fit with the same weights,
    direct = JointClassifier(**CPU).fit(X, y, sample_weight=weights)
    np.testing.assert_array_equal(clf.joint_coef_, direct.coef_)
    # and each fold's joint classifier, fit before it, got the weights of its
    # training rows.
    folds = held_out_folds(y, 4, 2, X, np.random.RandomState(0))
    assert len(seen) == len(folds) + 1
    for (train, _), fold_weights in zip(folds, seen[:-1], strict=True):
        np.testing.assert_allclose(
            fold_weights / fold_weights.mean(), weights[train] / weights[train].mean()
        )
    unweighted = estimator(**CPU).fit(X, y)
    assert not np.array_equal(clf.decision_function(X), unweighted.decision_function(X))


def test_samples_of_weight_zero_are_never_held_out():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), [40, 20, 6])
    weights = rng.uniform(0.5, 2.0, len(y))
    weights[::3] = 0.0
    weights[y == 2] = [0, 0, 0, 0, 1, 1]  # class 2: two samples that count
    folds = held_out_folds(y, 3, 2, None, rng, weights=weights)
    for train, held_out in folds:
        assert np.all(weights[held_out] > 0)
        # Every held-out sample's class has a sample of positive weight to train on.
        trained = np.bincount(y[train], weights=weights[train] > 0, minlength=3)
        assert np.all(trained[y[held_out]] > 0)
        np.testing.assert_array_equal(
            np.sort(np.r_[train, held_out]), np.arange(len(y))
        )


def test_samples_of_weight_zero_are_not_scored_on_the_training_set(small_problem):
    X, y = small_problem
    weights = np.ones(len(y))
    weights[::4] = 0.0
    clf = TauNormClassifier(cv=None, **CPU).fit(X, y, sample_weight=weights)
    scored = weights > 0
    correct = correct_by_tau(
        X[scored],
        y[scored],
        clf.joint_coef_,
        clf.tau_grid_,
        4,
        shift=clf.feature_mean_,
        scale=clf.feature_scale_,
        device=torch.device("cpu"),
    )
    np.testing.assert_array_equal(
        clf.tau_scores_,
        mean_per_class_accuracy(correct, np.bincount(y[scored], minlength=4)),
    )


@pytest.mark.parametrize("estimator", [JointClassifier], ids=lambda c: c.__name__)
def test_integer_weights_agree_with_repeated_rows(estimator):
    # Minibatch SGD agrees in expectation only (see test_common.py), and the
    # repeated rows' epochs are longer: compare the predictions.
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), [200, 60, 20])
    X = rng.normal(size=(len(y), 6)) + 1.5 * np.eye(3, 6)[y]
    weights = rng.integers(0, 4, size=len(y))
    weighted = estimator(**CPU).fit(X, y, sample_weight=weights)
    repeated = estimator(**CPU).fit(
        np.repeat(X, weights, axis=0), np.repeat(y, weights)
    )
    X_test = rng.normal(size=(3000, 6)) + 1.5 * np.eye(3, 6)[np.arange(3000) % 3]
    y_test = np.arange(3000) % 3
    agree = weighted.predict(X_test) == repeated.predict(X_test)
    assert agree.mean() > 0.95
    assert abs(weighted.score(X_test, y_test) - repeated.score(X_test, y_test)) < 0.01


@pytest.mark.parametrize("class_weight", ["balanced", "effective"])
def test_class_weights_lift_the_tail(class_weight, long_tailed):
    X, y, X_test, y_test = long_tailed
    plain = JointClassifier(**CPU).fit(X, y)
    weighted = JointClassifier(class_weight=class_weight, **CPU).fit(X, y)
    counts = np.bincount(y)
    few_plain = shot_accuracy(y_test, plain.predict(X_test), class_counts=counts)["few"]
    few_weighted = shot_accuracy(y_test, weighted.predict(X_test), class_counts=counts)[
        "few"
    ]
    assert few_weighted > few_plain + 0.05


def test_weighted_step_takes_the_steps_of_autograd():
    # The closed-form step with row weights and a logit offset against
    # autograd on (cross_entropy(z + offset, y, reduction="none") * w).mean().
    rng = np.random.default_rng(0)
    features = torch.as_tensor(rng.normal(size=(64, 5)), dtype=torch.float32)
    labels = torch.as_tensor(rng.integers(0, 4, size=64))
    weights = torch.as_tensor(rng.random(64) * 2, dtype=torch.float32)
    offset = torch.as_tensor(np.log([0.6, 0.25, 0.1, 0.05]), dtype=torch.float32)
    layer = torch.nn.Linear(5, 4).requires_grad_(False)
    reference = torch.nn.Linear(5, 4)
    reference.load_state_dict(layer.state_dict())
    step = SoftmaxRegressionSGD(
        layer,
        lr_weight=0.3,
        lr_bias=0.3,
        momentum=0.9,
        weight_decay=1e-3,
        logit_offset=offset,
    )
    optimizer = torch.optim.SGD(
        reference.parameters(), lr=0.3, momentum=0.9, weight_decay=1e-3
    )
    for factor in (1.0, 0.7, 0.2):
        loss = step(features, labels, weights, lr_factor=factor)
        for group in optimizer.param_groups:
            group["lr"] = 0.3 * factor
        optimizer.zero_grad()
        expected = (
            torch.nn.functional.cross_entropy(
                reference(features) + offset, labels, reduction="none"
            )
            * weights
        ).mean()
        expected.backward()
        optimizer.step()
        torch.testing.assert_close(loss, expected.detach())
        torch.testing.assert_close(layer.weight, reference.weight.detach())
        torch.testing.assert_close(layer.bias, reference.bias.detach())


@pytest.mark.parametrize(
    "params, sample_weight, message",
    [
        ({}, -np.ones(215), "Negative values in data passed to `sample_weight`"),
        ({}, np.full(215, np.nan), "sample_weight contains NaN"),
        ({}, np.zeros(215), "Sample weights must contain at least one non-zero"),
        ({}, np.ones(10), r"sample_weight.shape == \(10,\), expected \(215,\)"),
        ({}, np.ones((215, 2)), "Sample weights must be 1D"),
        ({}, np.r_[np.ones(205), np.zeros(10)], r"every sample of the classes \[3\]"),
        ({"class_weight": dict.fromkeys([0, 1, 2, 3, 9])}, None, r"have: \[9\]"),
        ({"class_weight": {0: 1, 1: 2}}, None, r"no weight for the classes \[2, 3\]"),
        ({"class_weight": {0: 1, 1: 2, 2: -1, 3: 1}}, None, "finite and non-negative"),
        ({"class_weight": "inverse"}, None, "'class_weight' parameter"),
        ({"class_weight": "effective", "beta": 1.0}, None, "'beta' parameter"),
        ({"class_weight": "effective", "beta": -0.1}, None, "'beta' parameter"),
    ],
)  # fmt: skip
def test_bad_weights_say_which_parameter(small_problem, params, sample_weight, message):
    X, y = small_problem
    with pytest.raises(ValueError, match=message):
        JointClassifier(**params, **CPU).fit(X, y, sample_weight=sample_weight)


@pytest.mark.parametrize(
    "sample_weight, message",
    [
        (-np.ones(215), "Negative values in data passed to `sample_weight`"),
        (np.zeros(215), "Sample weights must contain at least one non-zero"),
        (np.ones(10), r"sample_weight.shape == \(10,\), expected \(215,\)"),
        (np.r_[np.ones(205), np.zeros(10)], r"every sample of the classes \[3\]"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("estimator", REBALANCERS, ids=lambda c: c.__name__)
def test_rebalancers_refuse_bad_weights(
    estimator, small_problem, sample_weight, message
):
    X, y = small_problem
    with pytest.raises(ValueError, match=message):
        estimator(**CPU).fit(X, y, sample_weight=sample_weight)


def test_string_labels_take_a_dict_of_labels(small_problem):
    X, y = small_problem
    names = np.array(["cat", "dog", "emu", "yak"])[y]
    weights = {"cat": 1.0, "dog": 2.0, "emu": 4.0, "yak": 8.0}
    by_name = JointClassifier(class_weight=weights, **CPU).fit(X, names)
    by_index = JointClassifier(class_weight=dict(enumerate(weights.values())), **CPU)
    np.testing.assert_array_equal(by_name.coef_, by_index.fit(X, y).coef_)


@pytest.mark.parametrize(
    "estimator", [JointClassifier, LogitAdjustedClassifier], ids=lambda c: c.__name__
)
def test_sample_weight_reaches_the_classifier_in_a_pipeline_a_search_and_calibration(
    estimator, small_problem
):
    X, y = small_problem
    weights = np.where(y == 3, 5.0, 1.0)
    direct = estimator(**CPU).fit(X, y, sample_weight=weights)
    pipeline = make_pipeline(FunctionTransformer(), estimator(**CPU))
    pipeline.fit(X, y, **{f"{estimator.__name__.lower()}__sample_weight": weights})
    np.testing.assert_array_equal(pipeline[-1].coef_, direct.coef_)
    # GridSearchCV slices the weights with the folds (no routing needed).
    search = GridSearchCV(estimator(**CPU), {"random_state": [0]}, cv=2)
    search.fit(X, y, sample_weight=weights)
    np.testing.assert_array_equal(search.best_estimator_.coef_, direct.coef_)
    # CalibratedClassifierCV hands the weights to the classifier it fits.
    seen = []

    class Recording(estimator):
        def fit(self, X, y, sample_weight=None):
            seen.append(sample_weight)
            return super().fit(X, y, sample_weight=sample_weight)

    CalibratedClassifierCV(Recording(**CPU), cv=2).fit(X, y, sample_weight=weights)
    assert len(seen) == 2 and all(w is not None for w in seen)


def test_focal_step_takes_the_steps_of_autograd():
    rng = np.random.default_rng(1)
    features = torch.as_tensor(rng.normal(size=(64, 5)) * 3, dtype=torch.float32)
    labels = torch.as_tensor(rng.integers(0, 4, size=64))
    weights = torch.as_tensor(rng.random(64) * 2, dtype=torch.float32)
    layer = torch.nn.Linear(5, 4).requires_grad_(False)
    reference = torch.nn.Linear(5, 4)
    reference.load_state_dict(layer.state_dict())
    settings = {"momentum": 0.9, "weight_decay": 1e-3}
    step = SoftmaxRegressionSGD(
        layer, lr_weight=0.3, lr_bias=0.3, focal_gamma=2.0, **settings
    )
    optimizer = torch.optim.SGD(reference.parameters(), lr=0.3, **settings)
    for factor in (1.0, 0.5):
        loss = step(features, labels, weights, lr_factor=factor)
        for group in optimizer.param_groups:
            group["lr"] = 0.3 * factor
        optimizer.zero_grad()
        log_p = torch.log_softmax(reference(features), dim=1)
        log_p_true = log_p[torch.arange(64), labels]
        focal = -((1 - log_p_true.exp()) ** 2) * log_p_true
        expected = (focal * weights).mean()
        expected.backward()
        optimizer.step()
        torch.testing.assert_close(loss, expected.detach())
        torch.testing.assert_close(layer.weight, reference.weight.detach())
        torch.testing.assert_close(layer.bias, reference.bias.detach())


def test_focal_terms_are_finite_for_confident_rows():
    log_p_true = torch.tensor([0.0, -1e-12, -1e-7, -0.5, -80.0])
    for gamma in (0.5, 2.0, 5.0):
        factor, loss = focal_terms(log_p_true, gamma)
        assert torch.isfinite(factor).all() and torch.isfinite(loss).all()
        assert (factor >= 0).all()
        # p = 1: no loss and no gradient.
        assert float(factor[0]) == 0.0 and float(loss[0]) == 0.0


def test_focal_with_gamma_zero_is_the_cross_entropy(small_problem):
    X, y = small_problem
    focal = JointClassifier(loss="focal", gamma=0.0, **CPU).fit(X, y)
    plain = JointClassifier(**CPU).fit(X, y)
    np.testing.assert_array_equal(focal.coef_, plain.coef_)
    with pytest.raises(ValueError, match="'gamma' parameter"):
        JointClassifier(loss="focal", gamma=-1.0, **CPU).fit(X, y)


@pytest.mark.parametrize("gamma", [0.5, 2.0, 5.0])
def test_focal_posterior_undoes_the_focal_risk_minimiser(gamma):
    # The probabilities q that minimise the expected focal loss under a
    # posterior eta are flatter than eta; the map recovers eta from them.
    eta = np.array([0.6, 0.25, 0.1, 0.05])

    def focal_risk(z):
        log_q = log_softmax(z)
        return -(eta * (1 - np.exp(log_q)) ** gamma * log_q).sum()

    z = minimize(focal_risk, np.zeros(4), method="BFGS", options={"gtol": 1e-12}).x
    q = np.exp(log_softmax(z))
    assert q[0] < eta[0] - 0.02  # flatter than the posterior
    recovered = torch.softmax(
        focal_posterior_logits(torch.tensor(z[None, :]), gamma), dim=1
    )
    np.testing.assert_allclose(recovered[0].numpy(), eta, atol=1e-5)


def test_focal_probabilities_are_posteriors_with_the_same_predictions(small_problem):
    X, y = small_problem
    focal = JointClassifier(loss="focal", **CPU).fit(X, y)
    proba = focal.predict_proba(X)
    predicted = focal.classes_[proba.argmax(axis=1)]
    np.testing.assert_array_equal(predicted, focal.predict(X))
    softmax = torch.softmax(torch.as_tensor(focal.decision_function(X)), dim=1)
    # Sharper than the layer's softmax.
    assert proba.max(axis=1).mean() > float(softmax.max(dim=1).values.mean())
    np.testing.assert_allclose(np.exp(focal.predict_log_proba(X)), proba, rtol=1e-10)
    # Finite where one class takes all the mass; uniform for equal logits.
    extreme = torch.tensor([[0.0, 60.0, -60.0], [800.0, -800.0, 0.0], [0.0, 0, 0]])
    logits = focal_posterior_logits(extreme.double(), 2.0)
    assert torch.isfinite(logits).all()
    np.testing.assert_allclose(torch.softmax(logits, dim=1)[2].numpy(), 1 / 3)
    assert int(torch.softmax(logits, dim=1)[1].argmax()) == 0


def test_sample_weight_is_routed_when_metadata_routing_is_on(small_problem):
    X, y = small_problem
    weights = np.where(y == 3, 5.0, 1.0)
    direct = JointClassifier(**CPU).fit(X, y, sample_weight=weights)
    with sklearn.config_context(enable_metadata_routing=True):
        requested = (
            JointClassifier(**CPU)
            .set_fit_request(sample_weight=True)
            .set_score_request(sample_weight=False)
        )
        search = GridSearchCV(requested, {"epochs": [30]}, cv=2)
        search.fit(X, y, sample_weight=weights)
        np.testing.assert_array_equal(search.best_estimator_.coef_, direct.coef_)
        pipeline = make_pipeline(FunctionTransformer(), requested)
        pipeline.fit(X, y, sample_weight=weights)
        np.testing.assert_array_equal(pipeline[-1].coef_, direct.coef_)
