"""Choosing the re-balancing knob on held-out data: cross-fitting and validation."""

import warnings

import numpy as np
import pytest
from _estimators import REBALANCERS
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import GridSearchCV, KFold, ShuffleSplit

from skltr import (
    JointClassifier,
    LogitAdjustedClassifier,
    LORTClassifier,
    LWSClassifier,
    TauNormClassifier,
    WeightBalancedClassifier,
)
from skltr._selection import held_out_folds
from skltr.datasets import load_digits_lt, make_long_tailed_features
from skltr.exceptions import KnobSelectionWarning

CPU = {"device": "cpu", "random_state": 0}


@pytest.fixture(scope="module")
def overfit_problem():
    """More dimensions than the tail has samples: the joint fits its training set."""
    return make_long_tailed_features(
        600, 64, 10, imbalance_ratio=50, n_test_per_class=200, random_state=0
    )


class MarkedJoint(JointClassifier):
    """A joint classifier that records which rows (by their id column) it fit on."""

    trained_on = []

    def fit(self, X, y, **fit_params):
        super().fit(X, y, **fit_params)
        MarkedJoint.trained_on.append((self.coef_, set(np.asarray(X)[:, 0])))
        return self


@pytest.mark.parametrize("cv", [2, 3, KFold(4, shuffle=True, random_state=1)])
def test_no_sample_is_scored_by_a_joint_classifier_that_trained_on_it(cv):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), [40, 12, 5, 1])
    # Column 0 is a row id: the marking that follows each row into every fold.
    X = np.column_stack([np.arange(len(y)), rng.normal(size=(len(y), 3))])
    X = X.astype(np.float64)
    MarkedJoint.trained_on.clear()
    clf = TauNormClassifier(cv=cv, joint=MarkedJoint(**CPU), **CPU)
    clf.classes_, clf.class_counts_ = np.arange(4), np.bincount(y)
    scored = []
    knob_data = clf._knob_data(X, y, None, None)
    for scoring in clf._scoring_sets(X, y, knob_data):
        (trained,) = [
            ids for coef, ids in MarkedJoint.trained_on if coef is scoring.head.coef
        ]
        held_out = set(scoring.X_held_out[:, 0])
        assert not held_out & trained
        # LORT walks each fold's path on the rows its head trained on.
        assert set(scoring.X_train[:, 0]) == trained
        assert set(np.bincount(scoring.y_train, minlength=4).nonzero()[0]) == {
            0,
            1,
            2,
            3,
        }
        scored += sorted(held_out)
    assert clf.chosen_on_ == "cross-fitting"
    # Every sample is scored once, except the single sample of class 3,
    # which every fold needs for training.
    assert sorted(scored) == sorted(set(range(len(y))) - {len(y) - 1})


def test_folds_are_stratified_and_keep_every_class_in_training():
    y = np.repeat(np.arange(3), [10, 3, 1])
    folds = held_out_folds(y, 3, 3, None, np.random.default_rng(0))
    for train, held_out in folds:
        assert np.bincount(y[held_out], minlength=3)[0] in (3, 4)
        assert set(y[train]) == {0, 1, 2}
        assert not set(train) & set(held_out)
    # Two folds: the class of 3 samples is held out where it can be.
    assert sum(np.bincount(y[h], minlength=3)[1] for _, h in folds) == 3
    with pytest.raises(ValueError, match="could not hold out any sample"):
        held_out_folds(np.arange(3), 3, 2, None, np.random.default_rng(0))


# Weight balancing re-balances by its fine-tuning whatever the weight decay
# chosen; on this problem every candidate scores within 1.5 points on the
# test set, so which is chosen cannot show. Its test follows this one.
@pytest.mark.parametrize(
    "estimator",
    [e for e in REBALANCERS if e is not WeightBalancedClassifier],
    ids=lambda c: c.__name__,
)
def test_cross_fitting_beats_the_training_set_where_the_joint_overfits(
    estimator, overfit_problem
):
    X, X_test, y, y_test = overfit_problem
    joint = JointClassifier(**CPU).fit(X, y)
    assert balanced_accuracy_score(y, joint.predict(X)) == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the training set cannot choose
        on_train = estimator(cv=None, **CPU).fit(X, y)
    assert on_train.chosen_on_ == "training data"
    # The same joint classifier, its knob chosen on cross-fitted folds.
    crossed = estimator(refit="full", **CPU).fit(X, y)
    assert crossed.chosen_on_ == "cross-fitting"
    np.testing.assert_array_equal(crossed.joint_coef_, joint.coef_)

    def score(clf):
        return balanced_accuracy_score(y_test, clf.predict(X_test))

    assert score(crossed) > score(on_train) + 0.01
    assert score(crossed) > score(joint) + 0.01
    # The default joint classifier, started from the folds' heads, does as well.
    assert score(estimator(**CPU).fit(X, y)) > score(on_train) + 0.01


def test_weight_decay_is_informed_by_held_out_rows_where_the_joint_overfits(
    overfit_problem,
):
    X, _, y, _ = overfit_problem
    with pytest.warns(KnobSelectionWarning, match="favours the smallest candidate"):
        on_train = WeightBalancedClassifier(cv=None, **CPU).fit(X, y)
    # The fine-tuned layers fit their own training rows the better the less
    # they are regularised: the training set picks the smallest decay.
    scores = on_train.weight_decay_scores_
    assert scores[0] == 1.0 and (np.diff(scores) <= 0).all()
    crossed = WeightBalancedClassifier(**CPU).fit(X, y)
    assert crossed.weight_decay_scores_.max() < 1.0
    assert crossed.weight_decay_ != on_train.weight_decay_


@pytest.mark.parametrize(
    "estimator", [TauNormClassifier, LogitAdjustedClassifier], ids=lambda c: c.__name__
)
def test_the_tau_chosen_is_close_to_the_best_on_a_large_test_set(
    estimator, overfit_problem
):
    X, X_test, y, y_test = overfit_problem
    clf = estimator(**CPU).fit(X, y)
    # clf's own joint classifier (started from its folds' heads).
    joint = JointClassifier(**CPU).fit(X, y)
    joint.coef_, joint.intercept_ = clf.joint_coef_, clf.joint_intercept_
    on_test = []
    for tau in clf.tau_grid_:
        fixed = estimator(tau=tau, joint=FrozenEstimator(joint), **CPU).fit(X, y)
        on_test.append(balanced_accuracy_score(y_test, fixed.predict(X_test)))
    assert clf.tau_ > 0
    assert balanced_accuracy_score(y_test, clf.predict(X_test)) >= max(on_test) - 0.015


def test_validation_data_choose_for_a_head_handed_in(overfit_problem):
    X, X_test, y, y_test = overfit_problem
    joint = JointClassifier(**CPU).fit(X, y)
    X_val, y_val = X_test[::2], y_test[::2]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to warn about
        clf = LogitAdjustedClassifier(joint=joint, **CPU).fit(
            X, y, X_val=X_val, y_val=y_val
        )
    assert clf.chosen_on_ == "validation data"
    by_hand = [
        balanced_accuracy_score(
            y_val,
            LogitAdjustedClassifier(tau=tau, joint=joint, **CPU)
            .fit(X, y)
            .predict(X_val),
        )
        for tau in clf.tau_grid_
    ]
    np.testing.assert_allclose(clf.tau_scores_, by_hand)
    lort = LORTClassifier(joint=joint, **CPU).fit(X, y, X_val=X_val, y_val=y_val)
    assert lort.chosen_on_ == "validation data"
    assert lort.path_scores_[lort.best_epoch_] == lort.path_scores_.max()


def test_validation_data_errors(overfit_problem):
    X, X_test, y, y_test = overfit_problem
    clf = TauNormClassifier(**CPU)
    with pytest.raises(ValueError, match="X_val and y_val go together"):
        clf.fit(X, y, X_val=X_test)
    with pytest.raises(ValueError, match="labels that y does not have: \\[99\\]"):
        clf.fit(X, y, X_val=X_test[:3], y_val=[0, 1, 99])
    with pytest.raises(ValueError, match="features"):
        clf.fit(X, y, X_val=X_test[:, :5], y_val=y_test)


@pytest.mark.parametrize("estimator", REBALANCERS, ids=lambda c: c.__name__)
def test_small_classes_and_odd_splitters_work(estimator):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), [30, 6, 2, 1])
    X = rng.normal(size=(len(y), 5)) + 3.0 * np.eye(4, 5)[y]
    # More folds than most classes have samples; a class with one sample; a
    # splitter blind to the classes.
    for cv in (5, KFold(3)):
        clf = estimator(cv=cv, **CPU).fit(X, y)
        assert np.isfinite(clf.predict_proba(X)).all()
    with pytest.raises(ValueError, match="'cv' parameter"):
        estimator(cv=1, **CPU).fit(X, y)


def test_fold_heads_are_penalised_as_the_joint_classifier_on_all_the_data(
    monkeypatch,
):
    # weight_decay="auto" is 1 / n below 2,000 samples; a fold with half the
    # rows would get twice the penalty of the head its knob is applied to.
    penalties = []
    original = JointClassifier.fit

    def recording_fit(self, X, y, sample_weight=None, **fit_params):
        original(self, X, y, sample_weight=sample_weight, **fit_params)
        penalties.append((len(y), self.weight_decay_))
        return self

    monkeypatch.setattr(JointClassifier, "fit", recording_fit)
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), [300, 60, 40])
    X = rng.normal(size=(len(y), 8)) + np.eye(3, 8)[y]
    TauNormClassifier(cv=2, **CPU).fit(X, y)
    assert [n for n, _ in penalties] == [200, 200, 400]
    assert [penalty for _, penalty in penalties] == [1 / 400] * 3


def test_lws_learns_the_scale_of_a_class_that_cannot_be_held_out():
    # The single sample of the rarest class is never held out. Learned on the
    # other classes' held-out logits alone, its scale could only be pushed
    # down (it ended below a class of 10 samples); learned on its training
    # row too, it is the largest, as the rarest class's should be.
    rng = np.random.default_rng(0)
    counts = [200, 80, 30, 10, 1]
    means = rng.normal(size=(5, 20)) * 0.5
    X = np.concatenate(
        [m + rng.normal(size=(n, 20)) for m, n in zip(means, counts, strict=True)]
    )
    y = np.repeat(np.arange(5), counts)
    clf = LWSClassifier(cv=2, **CPU).fit(X, y)
    assert np.argmax(clf.scales_) == 4


def test_classes_seen_once_by_every_fold_head_are_learned_on_training_rows():
    # Digits at ratio 100 (seed 1): the two images of digit 8 are held out
    # one per fold, each scored by a fold head that saw the other one. LWS
    # learned a scale below 0 for it on those logits (balanced accuracy 7
    # points under the joint classifier's); learned on its training rows as
    # the full head scores them, like the one-image class, it is positive.
    X, X_test, y, y_test = load_digits_lt(imbalance_ratio=100, random_state=1)
    assert np.bincount(y)[8] == 2
    lws = LWSClassifier(device="cpu", random_state=1).fit(X, y)
    assert np.all(lws.scales_ > 0)
    joint = JointClassifier(device="cpu", random_state=1).fit(X, y)
    assert balanced_accuracy_score(y_test, lws.predict(X_test)) > (
        balanced_accuracy_score(y_test, joint.predict(X_test))
    )


def test_which_classes_the_held_out_rows_cannot_teach(small_problem):
    X, y = small_problem
    counts = np.bincount(y)
    # One sample (never held out), two (each fold head saw one), three.
    X = np.concatenate([X, X[:6] + 5.0])
    y = np.concatenate([y, [4, 5, 5, 6, 6, 6]])
    clf = LWSClassifier(cv=2, epochs=2, **CPU).fit(X, y)
    knob_data = clf._knob_data(X, y, None, None)
    untaught = clf._untaught_classes(y, knob_data)
    assert untaught.tolist() == [False] * len(counts) + [True, True, False]


@pytest.mark.parametrize("estimator", REBALANCERS, ids=lambda c: c.__name__)
def test_an_iterable_of_splits_is_the_splitter_that_made_it(estimator):
    # As scikit-learn's cv parameters take it: (train, held-out) index arrays.
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), [40, 10, 5, 3])
    X = rng.normal(size=(len(y), 5)) + 3.0 * np.eye(4, 5)[y]
    splitter = KFold(3, shuffle=True, random_state=0)
    by_splitter = estimator(cv=splitter, **CPU).fit(X, y)
    by_splits = estimator(cv=list(splitter.split(X, y)), **CPU).fit(X, y)
    np.testing.assert_array_equal(
        by_splits.decision_function(X), by_splitter.decision_function(X)
    )


@pytest.mark.parametrize("estimator", REBALANCERS, ids=lambda c: c.__name__)
def test_one_held_out_split_fits_one_fold(estimator, joint_fits):
    # The cheaper choice the cv docstring offers: one joint fit on half the
    # data besides the full one, and every class still known to it.
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), [40, 10, 3, 1])
    X = rng.normal(size=(len(y), 5)) + 3.0 * np.eye(4, 5)[y]
    one_split = ShuffleSplit(n_splits=1, test_size=0.5, random_state=0)
    clf = estimator(cv=one_split, **CPU).fit(X, y)
    assert clf.chosen_on_ == "cross-fitting"
    # One fold fit, on about half the rows (the class of one sample stays in
    # training), then the full fit.
    assert len(joint_fits) == 2 and joint_fits[1] == len(y)
    assert len(y) // 2 <= joint_fits[0] <= len(y) // 2 + 2
    assert np.isfinite(clf.predict_proba(X)).all()


@pytest.mark.parametrize("estimator", REBALANCERS, ids=lambda c: c.__name__)
def test_warm_refit_starts_from_the_mean_of_the_fold_heads(estimator, small_problem):
    X, y = small_problem
    X = 3.0 * X + 5.0  # features far from standardised
    fits = []

    class Recording(JointClassifier):
        def fit(self, X, y, sample_weight=None, **fit_params):
            super().fit(X, y, sample_weight=sample_weight, **fit_params)
            fits.append((self, fit_params))
            return self

    clf = estimator(joint=Recording(epochs=12, lr=2.0, **CPU), **CPU).fit(X, y)
    *folds, (full, start) = fits
    assert len(folds) == 2 and all(fit_params == {} for _, fit_params in folds)
    assert (full.epochs, full.lr) == (4, 0.5)
    # The mean of the fold heads' logits on the features as given,
    fold_logits = [fold.decision_function(X) for fold, _ in folds]
    start_logits = X @ start["coef_init"].T + start["intercept_init"]
    np.testing.assert_allclose(start_logits, np.mean(fold_logits, axis=0), atol=1e-4)
    # from which the full fit went on: it holds the full joint classifier.
    np.testing.assert_array_equal(clf.joint_coef_, full.coef_)


@pytest.mark.parametrize("estimator", REBALANCERS, ids=lambda c: c.__name__)
def test_full_refit_is_the_joint_classifier_alone(estimator, small_problem):
    X, y = small_problem
    clf = estimator(refit="full", **CPU).fit(X, y)
    joint = JointClassifier(**CPU).fit(X, y)
    np.testing.assert_array_equal(clf.joint_coef_, joint.coef_)
    np.testing.assert_array_equal(clf.joint_intercept_, joint.intercept_)


def test_no_fold_is_fit_when_the_knob_is_fixed(small_problem, joint_fits):
    X, y = small_problem
    clf = LogitAdjustedClassifier(tau=1.0, **CPU).fit(X, y)
    assert joint_fits == [len(y)] and not hasattr(clf, "chosen_on_")
    np.testing.assert_array_equal(
        clf.joint_coef_, JointClassifier(**CPU).fit(X, y).coef_
    )


def test_memory_caches_the_fold_fits(overfit_problem, tmp_path, joint_fits):
    X, _, y, _ = overfit_problem
    fits = joint_fits
    grid = {"tau": [0.5, 1.0, "auto"]}
    search = GridSearchCV(
        LogitAdjustedClassifier(memory=str(tmp_path), **CPU), grid, cv=3, refit=False
    )
    search.fit(X, y)
    # Per outer fold: the joint classifier of the fixed taus, and for "auto"
    # two fold fits and the joint classifier started from their heads.
    assert len(fits) == 3 * 4
    fits.clear()
    search.fit(X, y)
    assert fits == []
    # Another re-balancer on the same data finds the fits made.
    TauNormClassifier(memory=str(tmp_path), **CPU).fit(X, y)
    assert len(fits) == 3
    fits.clear()
    LWSClassifier(memory=str(tmp_path), **CPU).fit(X, y)
    assert fits == []
    GridSearchCV(LogitAdjustedClassifier(**CPU), grid, cv=3, refit=False).fit(X, y)
    assert len(fits) == 3 * (1 + 1 + 3)


@pytest.mark.parametrize("estimator", REBALANCERS, ids=lambda c: c.__name__)
def test_a_head_handed_in_without_validation_data_warns_where_training_cannot_choose(
    estimator, overfit_problem
):
    X, _, y, _ = overfit_problem
    joint = JointClassifier(**CPU).fit(X, y)
    with pytest.warns(
        KnobSelectionWarning, match="training set.*pass validation data"
    ) as w:
        clf = estimator(joint=joint, **CPU).fit(X, y)
    assert clf.chosen_on_ == "training data"
    # The warning points at the line that called fit, not into skltr.
    assert {record.filename for record in w} == {__file__}


@pytest.fixture(scope="module")
def fits_perfectly():
    """More dimensions than the tail has samples: the joint fit is perfect."""
    X, _, y, _ = make_long_tailed_features(
        300, 128, 10, imbalance_ratio=20, random_state=0
    )
    return X, y, JointClassifier(**CPU).fit(X, y)


def test_choosing_on_a_perfectly_fit_training_set_warns(fits_perfectly):
    X, y, joint = fits_perfectly
    assert balanced_accuracy_score(y, joint.predict(X)) == 1.0
    match = "every training sample correctly.*held-out data"
    with pytest.warns(
        KnobSelectionWarning, match="candidates \\(tau = 0, 0.1, .*" + match
    ) as tau:
        clf = TauNormClassifier(joint=joint, **CPU).fit(X, y)
    assert clf.tau_ == 0.0 and clf.tau_scores_[0] == 1.0
    with pytest.warns(
        KnobSelectionWarning, match="candidates \\(epochs 0, 1.*" + match
    ) as lort:
        lort_clf = LORTClassifier(joint=joint, **CPU).fit(X, y)
    assert lort_clf.best_epoch_ == 0
    # The warnings point at the line that called fit, not into skltr.
    assert {record.filename for record in [*tau, *lort]} == {__file__}
    search = GridSearchCV(
        TauNormClassifier(joint=FrozenEstimator(joint), **CPU), {"tau": ["auto"]}, cv=2
    )
    with pytest.warns(KnobSelectionWarning, match=match) as in_search:
        search.fit(X, y)
    assert {record.filename for record in in_search} == {__file__}
    # A tau given, not chosen: nothing to warn about.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TauNormClassifier(tau=0.5, joint=joint, **CPU).fit(X, y)
