"""PriorAdjustedClassifier: a known target prior, or one estimated by EM."""

import warnings

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.exceptions import ConvergenceWarning
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.pipeline import make_pipeline

from skltr import (
    FeatureExtractor,
    JointClassifier,
    LogitAdjustedClassifier,
    PriorAdjustedClassifier,
)
from skltr.datasets import make_long_tailed_features

CPU = {"device": "cpu", "random_state": 0}


def _problem(class_sep):
    """A 10-class long-tailed problem and a large balanced test pool."""
    X, X_test, y, y_test = make_long_tailed_features(
        3000,
        16,
        10,
        imbalance_ratio=50,
        n_test_per_class=600,
        class_sep=class_sep,
        random_state=0,
    )
    return X, y, X_test, y_test


@pytest.fixture(scope="module")
def problem():
    return _problem(5.0)


@pytest.fixture(scope="module")
def overlapping():
    """Classes that overlap: where the prior decides many predictions."""
    return _problem(3.0)


def _resampled(X, y, prior, n, seed):
    """``n`` rows of (X, y), with replacement, class j with probability prior[j]."""
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, prior)
    rows = np.concatenate(
        [
            rng.choice(np.flatnonzero(y == j), c, replace=True)
            for j, c in enumerate(counts)
        ]
    )
    return X[rows], y[rows]


def _long_tailed_prior(n_classes, ratio, forward=True):
    prior = ratio ** (-np.arange(n_classes) / (n_classes - 1))
    prior = prior if forward else prior[::-1]
    return prior / prior.sum()


def test_a_known_prior_reweighs_the_probabilities(problem):
    X, y, X_test, _ = problem
    joint = JointClassifier(**CPU).fit(X, y)
    target = np.full(10, 0.1)
    clf = PriorAdjustedClassifier(JointClassifier(**CPU), target_prior=target).fit(X, y)
    np.testing.assert_allclose(clf.source_prior_, np.bincount(y) / len(y))
    expected = joint.predict_proba(X_test) * target / clf.source_prior_
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(clf.predict_proba(X_test), expected, rtol=1e-9)
    # With a known prior each sample is predicted alike in any batch.
    np.testing.assert_array_equal(clf.predict(X_test[:7]), clf.predict(X_test)[:7])


def test_the_implied_prior_is_declared_by_each_classifier(problem):
    X, y, _, _ = problem
    training = np.bincount(y) / len(y)
    cases = [
        (JointClassifier(**CPU), training),
        (JointClassifier(class_weight="balanced", **CPU), np.full(10, 0.1)),
        (LogitAdjustedClassifier(**CPU), np.full(10, 0.1)),
        (LogisticRegression(max_iter=500), training),
        (LogisticRegression(class_weight="balanced", max_iter=500), np.full(10, 0.1)),
    ]
    for estimator, prior in cases:
        clf = PriorAdjustedClassifier(estimator).fit(X, y)
        np.testing.assert_allclose(clf.source_prior_, prior, err_msg=str(estimator))


@pytest.mark.parametrize("method", ["temperature", "sigmoid"])
def test_a_calibrated_classifier_implies_the_prior_of_its_calibration(
    overlapping, method
):
    # A temperature keeps the re-balancer's uniform prior; per-class maps fit
    # on the long-tailed training rows learn the training prior back. Taking
    # the wrong one shifts every prediction toward the wrong classes.
    X, y, X_test, y_test = overlapping
    truth = _long_tailed_prior(10, 50, forward=False)
    X_shift, y_shift = _resampled(X_test, y_test, truth, 3000, seed=1)
    calibrated = CalibratedClassifierCV(
        LogitAdjustedClassifier(**CPU), method=method, cv=3
    ).fit(X, y)
    clf = PriorAdjustedClassifier(FrozenEstimator(calibrated), target_prior=truth)
    clf.fit(X, y)
    training = np.bincount(y) / len(y)
    expected = np.full(10, 0.1) if method == "temperature" else training
    np.testing.assert_allclose(clf.source_prior_, expected)
    plain = np.mean(calibrated.predict(X_shift) == y_shift)
    assert np.mean(clf.predict(X_shift) == y_shift) > plain + 0.01
    # A calibrated joint classifier keeps (its folds' means of) the training prior.
    joint = CalibratedClassifierCV(JointClassifier(**CPU), method="temperature", cv=3)
    source = PriorAdjustedClassifier(joint).fit(X, y).source_prior_
    np.testing.assert_allclose(source, training, rtol=0.02)


def test_em_gets_closer_to_the_true_prior_with_more_samples(problem):
    X, y, X_test, y_test = problem
    clf = PriorAdjustedClassifier(LogitAdjustedClassifier(**CPU)).fit(X, y)
    truth = _long_tailed_prior(10, 50)
    errors = []
    for n in (100, 1000, 5000):
        distances = [
            np.abs(
                clf.estimate_target_prior(_resampled(X_test, y_test, truth, n, s)[0])
                - truth
            ).sum()
            for s in range(3)
        ]
        errors.append(np.mean(distances))
    assert errors[0] > errors[1] > errors[2]
    # Not to 0: EM is exact for calibrated probabilities, and a re-balanced
    # classifier's are not quite (0.042 here; 0.136 where the classes overlap
    # more, class_sep=3).
    assert errors[2] < 0.06


def test_the_prior_strength_holds_em_to_the_source_prior(problem):
    X, y, X_test, y_test = problem
    truth = _long_tailed_prior(10, 50)
    few = _resampled(X_test, y_test, truth, 60, seed=0)[0]
    many = _resampled(X_test, y_test, truth, 6000, seed=0)[0]
    base = LogitAdjustedClassifier(**CPU).fit(X, y)

    def estimate(X_batch, strength):
        clf = PriorAdjustedClassifier(base, em_prior_strength=strength).fit(X, y)
        return clf.estimate_target_prior(X_batch)

    source = np.full(10, 0.1)  # the re-balancer's uniform prior
    # With 6 samples a class, 1 pseudo-sample a class pulls the estimate
    # toward the source; a thousand pull it almost all the way.
    plain, held = estimate(few, 0.0), estimate(few, 1.0)
    assert np.abs(held - source).sum() < np.abs(plain - source).sum()
    np.testing.assert_allclose(estimate(few, 1000.0), source, atol=0.01)
    # With 600 a class, one pseudo-sample changes almost nothing.
    assert np.abs(estimate(many, 1.0) - estimate(many, 0.0)).sum() < 0.02
    # Its maximum a posteriori M-step, by hand, at the fixed point.
    proba = base.predict_proba(few)
    responsibilities = proba * held / source
    responsibilities /= responsibilities.sum(axis=1, keepdims=True)
    by_hand = (responsibilities.sum(axis=0) + 1.0 * 10 * source) / (len(few) + 10)
    np.testing.assert_allclose(held, by_hand, atol=1e-5)


@pytest.mark.parametrize("forward", [True, False], ids=["forward", "backward"])
def test_adjusting_to_a_long_tailed_test_prior_beats_not_adjusting(
    overlapping, forward
):
    # The test-agnostic protocol: the balanced test pool re-sampled to a
    # long-tailed prior (ratio 50). Accuracy is plain accuracy there, as the
    # deployed classifier is scored.
    X, y, X_test, y_test = overlapping
    truth = _long_tailed_prior(10, 50, forward)
    X_shift, y_shift = _resampled(X_test, y_test, truth, 3000, seed=1)
    base = LogitAdjustedClassifier(**CPU).fit(X, y)
    known = PriorAdjustedClassifier(LogitAdjustedClassifier(**CPU), target_prior=truth)
    estimated = PriorAdjustedClassifier(LogitAdjustedClassifier(**CPU))

    def accuracy(clf):
        return np.mean(clf.predict(X_shift) == y_shift)

    plain = accuracy(base)
    with_known, with_em = accuracy(known.fit(X, y)), accuracy(estimated.fit(X, y))
    assert with_em > plain + 0.01
    assert with_known >= with_em - 0.01
    # Its balanced accuracy on the balanced pool is not what it is for.
    assert balanced_accuracy_score(y_test, estimated.predict(X_test)) > 0.5


def test_a_class_of_target_prior_zero_is_never_predicted(problem):
    X, y, X_test, _ = problem
    target = np.full(10, 1 / 9)
    target[3] = 0.0
    clf = PriorAdjustedClassifier(JointClassifier(**CPU), target_prior=target)
    proba = clf.fit(X, y).predict_proba(X_test)
    assert np.all(proba[:, 3] == 0) and np.isfinite(proba).all()
    assert 3 not in clf.predict(X_test)


def test_bad_priors_and_data_are_refused(problem):
    X, y, X_test, _ = problem

    def fit(prior):
        return PriorAdjustedClassifier(JointClassifier(**CPU), target_prior=prior).fit(
            X, y
        )

    with pytest.raises(ValueError, match="must sum to 1; it sums to 2"):
        fit(np.full(10, 0.2))
    with pytest.raises(ValueError, match="non-negative"):
        fit(np.r_[-0.1, np.full(9, 1.1 / 9)])
    with pytest.raises(ValueError, match=r"shape \(3,\).*10 classes"):
        fit([0.2, 0.3, 0.5])
    clf = PriorAdjustedClassifier(JointClassifier(**CPU)).fit(X, y)
    with pytest.raises(ValueError, match="X is empty|0 sample"):
        clf.estimate_target_prior(X_test[:0])
    with pytest.raises(ValueError, match="features"):
        clf.predict(X_test[:, :5])
    with pytest.warns(ConvergenceWarning, match="em_max_iter=1"):
        PriorAdjustedClassifier(JointClassifier(**CPU), em_max_iter=1).fit(
            X, y
        ).predict(X_test)


def test_in_a_pipeline_after_the_feature_extractor():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), [24, 10, 6])
    images = rng.integers(0, 256, (len(y), 32, 32, 3), dtype=np.uint8)
    images[y == 1, :, :, 0] = 255  # something for the classifier to find
    pipe = make_pipeline(
        FeatureExtractor("cifar_resnet20", pretrained=False, device="cpu", verbose=0),
        PriorAdjustedClassifier(JointClassifier(**CPU)),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        proba = pipe.fit(images, y).predict_proba(images)
    assert proba.shape == (len(y), 3) and np.allclose(proba.sum(axis=1), 1.0)
    assert pipe[-1].estimate_target_prior(pipe[0].transform(images)).shape == (3,)


def test_shot_scorer_reads_the_training_counts_of_any_wrapped_classifier():
    # scikit-learn's LogisticRegression records no training counts; wrapped,
    # it has them, so the shot splits need no class_counts= by hand.
    from skltr.metrics import make_shot_scorer

    rng = np.random.default_rng(0)
    y = np.repeat(np.array(["a", "b", "c"]), [150, 30, 6])
    X = (
        rng.normal(size=(len(y), 4))
        + 2.0 * np.eye(3, 4)[np.unique(y, return_inverse=True)[1]]
    )
    clf = PriorAdjustedClassifier(LogisticRegression(), target_prior=[1 / 3] * 3)
    clf.fit(X, y)
    assert clf.class_counts_.tolist() == [150, 30, 6]
    score = make_shot_scorer("few", many=100, few=20)(clf, X, y)
    assert score == pytest.approx(np.mean(clf.predict(X[y == "c"]) == "c"))
