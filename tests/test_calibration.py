"""Expected calibration error: the formula, per shot split, as a scorer."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skltr import LogitAdjustedClassifier
from skltr.metrics import (
    expected_calibration_error,
    make_calibration_scorer,
    shot_calibration_error,
)


def test_ece_by_hand():
    # Two bins: [0, 0.5] and (0.5, 1]. Bin 2 holds 0.9 (right), 0.8 (wrong)
    # and 0.6 (right): accuracy 2/3, confidence 0.7667; bin 1 holds 0.5
    # (wrong): accuracy 0, confidence 0.5.
    y_prob = [[0.9, 0.1], [0.8, 0.2], [0.4, 0.6], [0.5, 0.5]]
    y_true = [0, 1, 1, 1]
    expected = 3 / 4 * abs(2 / 3 - (0.9 + 0.8 + 0.6) / 3) + 1 / 4 * abs(0 - 0.5)
    assert expected_calibration_error(y_true, y_prob, n_bins=2) == pytest.approx(
        expected
    )
    # A top probability on a bin's upper edge belongs to that bin: 0.8 shares
    # the bin (11/15, 12/15] with 0.79, one right and one wrong.
    edge = expected_calibration_error(
        [0, 1], [[0.8, 0.2], [0.79, 0.21]], n_bins=15, labels=[0, 1]
    )
    assert edge == pytest.approx(abs(0.5 - (0.8 + 0.79) / 2))


def test_a_calibrated_predictor_scores_near_zero_and_an_overconfident_one_does_not():
    rng = np.random.default_rng(0)
    n = 40_000
    confidence = rng.uniform(0.5, 1.0, n)
    right = rng.uniform(size=n) < confidence
    y_true = np.where(right, 0, 1)
    y_prob = np.column_stack([confidence, 1 - confidence])
    assert expected_calibration_error(y_true, y_prob) < 0.01
    # Right as often as before, but claiming 0.99 every time.
    sure = np.column_stack([np.full(n, 0.99), np.full(n, 0.01)])
    gap = 0.99 - right.mean()
    assert expected_calibration_error(y_true, sure) == pytest.approx(gap)


def test_the_split_ece_is_the_ece_of_its_classes_samples():
    rng = np.random.default_rng(1)
    y_true = rng.integers(0, 4, 300)
    y_prob = rng.dirichlet(np.ones(4), 300)
    counts = [500, 50, 5, 7]
    scores = shot_calibration_error(y_true, y_prob, class_counts=counts)
    labels = np.arange(4)
    few = np.isin(y_true, [2, 3])
    assert scores["few"] == pytest.approx(
        expected_calibration_error(y_true[few], y_prob[few], labels=labels)
    )
    assert scores["all"] == pytest.approx(expected_calibration_error(y_true, y_prob))
    # String labels in another order than sorted work through labels=.
    names = np.array(["z", "a", "m", "b"])
    named = shot_calibration_error(
        names[y_true], y_prob, class_counts=counts, labels=names
    )
    assert named == pytest.approx(scores, nan_ok=True)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        expected_calibration_error([0, 1], [[2.0, -1.0], [0.5, 0.5]])
    with pytest.raises(ValueError, match="3 columns but there are 2 labels"):
        expected_calibration_error([0, 1], [[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]])
    with pytest.raises(ValueError, match="labels lacks"):
        expected_calibration_error([0, 5], [[0.5, 0.5], [0.5, 0.5]], labels=[0, 1])
    with pytest.raises(ValueError, match="n_bins"):
        expected_calibration_error([0, 1], [[0.5, 0.5], [0.5, 0.5]], n_bins=0)
    with pytest.raises(ValueError, match="NaN"):
        expected_calibration_error([0, 1], [[np.nan, 0.5], [0.5, 0.5]])
    with pytest.raises(ValueError, match="class_counts has 3 entries for 2"):
        shot_calibration_error([0, 1], [[0.5, 0.5]] * 2, class_counts=[1, 2, 3])


def test_the_scorer_is_minus_the_ece_of_predict_proba():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), [300, 60, 12])
    X = rng.normal(size=(len(y), 5)) + 2.0 * np.eye(3, 5)[y]
    clf = LogitAdjustedClassifier(device="cpu", random_state=0).fit(X, y)
    scorer = make_calibration_scorer()
    assert scorer(clf, X, y) == -expected_calibration_error(y, clf.predict_proba(X))
    few = make_calibration_scorer("few", many=100, few=20)
    assert (
        few(clf, X, y)
        == -shot_calibration_error(
            y, clf.predict_proba(X), class_counts=clf.class_counts_
        )["few"]
    )
    # A scikit-learn pipeline has no class_counts_: pass them.
    peer = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    with pytest.raises(ValueError, match="class_counts"):
        few(peer, X, y)
    given = make_calibration_scorer("few", class_counts=np.bincount(y))
    assert given(peer, X, y) <= 0
    scores = cross_validate(clf, X, y, cv=3, scoring={"ece": scorer, "few": few})
    assert np.all(scores["test_ece"] <= 0) and np.all(scores["test_ece"] >= -1)
