"""The nearest class mean against its recipe."""

import numpy as np
import pytest

from skltr import (
    NCMClassifier,
)

CPU = {"device": "cpu", "random_state": 0}


def _ncm_by_hand(X, y, X_test):
    mu = X.mean(axis=0)

    def normalise(Z):
        Z = Z - mu
        return Z / np.linalg.norm(Z, axis=1, keepdims=True)

    Z = normalise(X)
    centroids = np.stack([Z[y == j].mean(axis=0) for j in np.unique(y)])
    Z_test = normalise(X_test)
    return -((Z_test[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2), centroids


def test_ncm_follows_the_reference_recipe(small_problem):
    X, y = small_problem
    X = X.astype(np.float64)
    scores, centroids = _ncm_by_hand(X, y, X[::7])
    clf = NCMClassifier().fit(X, y)
    np.testing.assert_allclose(clf.centroids_, centroids, atol=1e-10)
    np.testing.assert_allclose(clf.decision_function(X[::7]), scores, atol=1e-10)
    assert np.array_equal(clf.predict(X[::7]), scores.argmax(axis=1))


def test_ncm_variants(small_problem):
    X, y = small_problem
    X = X.astype(np.float64)
    raw = NCMClassifier(normalization="none", metric="dot").fit(X, y)
    centroids = np.stack([X[y == j].mean(axis=0) for j in range(4)])
    np.testing.assert_allclose(raw.decision_function(X), X @ centroids.T, atol=1e-8)
    cosine = NCMClassifier(normalization="l2n", metric="cosine").fit(X, y)
    Z = X / np.linalg.norm(X, axis=1, keepdims=True)
    centroids = np.stack([Z[y == j].mean(axis=0) for j in range(4)])
    expected = (Z @ centroids.T) / np.linalg.norm(centroids, axis=1)
    np.testing.assert_allclose(cosine.decision_function(X), expected, atol=1e-8)


def test_ncm_temperature_changes_probabilities_not_predictions(small_problem):
    X, y = small_problem
    auto = NCMClassifier().fit(X, y)
    fixed = NCMClassifier(temperature=1.0).fit(X, y)
    assert np.array_equal(auto.predict(X), fixed.predict(X))
    assert auto.temperature_ < 1.0
    # The fitted temperature gives a lower training log-loss than T = 1.
    log_loss = lambda clf: -np.mean(clf.predict_log_proba(X)[np.arange(len(y)), y])  # noqa: E731
    assert log_loss(auto) < log_loss(fixed)


def test_ncm_means_are_the_same_resident_streamed_and_in_any_precision(
    small_problem, tmp_path, chunks_of
):
    import skltr._backend

    X, y = small_problem
    X = X.astype(np.float64)
    exact = NCMClassifier(device="cpu").fit(X, y)
    # Streamed from a memory map, a few rows at a time: the class sums of
    # every chunk add up to the same means.
    np.save(tmp_path / "X.npy", X)
    passes = chunks_of(7, skltr._backend._features)
    streamed = NCMClassifier(device="cpu").fit(
        np.load(tmp_path / "X.npy", mmap_mode="r"), y
    )
    assert passes  # the small chunks were taken
    np.testing.assert_allclose(streamed.centroids_, exact.centroids_, atol=1e-12)
    np.testing.assert_allclose(streamed.feature_mean_, exact.feature_mean_, atol=1e-12)
    assert streamed.temperature_ == pytest.approx(exact.temperature_, rel=1e-6)
    # float32 and float16 rows are normalised in float32: the means move by
    # their rounding only.
    for dtype, tolerance in ((np.float32, 1e-6), (np.float16, 2e-3)):
        clf = NCMClassifier(device="cpu").fit(X.astype(dtype), y)
        assert clf.centroids_.dtype == np.float64
        np.testing.assert_allclose(clf.centroids_, exact.centroids_, atol=tolerance)
