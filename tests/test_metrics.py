import pickle

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skltr import JointClassifier, NCMClassifier, TauNormClassifier
from skltr.metrics import (
    logits_magnitude,
    make_shot_scorer,
    regularized_std,
    relative_accuracy,
    shot_accuracy,
    shot_report,
    tau_sweep,
)

# --- shot_accuracy and shot_report -------------------------------------------


def test_shot_accuracy_by_hand():
    y_true = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    y_pred = np.array([0, 1, 1, 1, 0, 2, 0, 0])
    scores = shot_accuracy(y_true, y_pred, class_counts=[500, 150, 50, 5])
    # Many: classes 0 (1/2) and 1 (2/2); Medium: class 2 (1/2); Few: class 3.
    assert scores == {"many": 0.75, "medium": 0.5, "few": 0.0, "all": 0.5}


def test_split_means_are_unweighted_by_test_support():
    # Class 0 has 1 test sample (right), class 1 has 3 (all wrong): the split
    # mean is (1 + 0) / 2, not 1 / 4.
    scores = shot_accuracy(
        [0, 1, 1, 1], [0, 0, 0, 0], class_counts=[300, 200], many=100
    )
    assert scores["many"] == scores["all"] == 0.5


def test_thresholds_are_inclusive_for_medium_only():
    # n = 100 and n = 20 are Medium, 101 Many, 19 Few (the papers' protocol).
    scores = shot_accuracy([0, 1, 2, 3], [0, 1, 9, 9], class_counts=[101, 100, 20, 19])
    assert scores == {"many": 1.0, "medium": 0.5, "few": 0.0, "all": 0.5}


def test_empty_split_is_nan_and_labels_align():
    scores = shot_accuracy(
        ["b", "a"], ["b", "b"], class_counts={"a": 300, "b": 200}, many=100
    )
    assert scores["many"] == 0.5
    assert np.isnan(scores["few"]) and np.isnan(scores["medium"])


def test_classes_without_test_samples_take_no_part():
    scores = shot_accuracy([0, 0], [0, 0], class_counts=[500, 5], labels=[0, 1])
    assert scores["all"] == 1.0 and np.isnan(scores["few"])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(class_counts=[10], labels=[0]), "without a training count"),
        (dict(class_counts=[10, 20, 30]), "pass labels="),
        (dict(class_counts=[10, -1]), "non-negative"),
        (dict(class_counts={0: 1, 7: 2}, labels=[0, 7]), "do not pass labels"),
        (dict(class_counts=[10, 20], labels=[0, 0]), "must not repeat"),
        (dict(class_counts=[10, 20], few=50, many=10), "must not exceed"),
        (dict(class_counts=[10, 20], many=-1), "'many' parameter"),
    ],
)
def test_shot_accuracy_rejects_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        shot_accuracy([0, 7], [0, 7], **kwargs)


def test_shot_accuracy_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        shot_accuracy([0, 1, 1], [0, 1], class_counts=[10, 20])


def test_shot_report_table_and_dict():
    y_true = [0, 0, 1, 1, 2, 2, 3, 3]
    y_pred = [0, 1, 1, 1, 0, 2, 0, 0]
    report = shot_report(y_true, y_pred, class_counts=[500, 150, 50, 5], digits=2)
    assert report.splitlines() == [
        "                  classes  train samples  test samples  accuracy",
        "many (n > 100)          2        150-500             4      0.75",
        "medium (20..100)        1             50             2      0.50",
        "few (n < 20)            1              5             2      0.00",
        "all                     4          5-500             8      0.50",
    ]
    table = shot_report(
        y_true, y_pred, class_counts=[500, 150, 50, 5], output_dict=True
    )
    assert table["many"] == {
        "accuracy": 0.75,
        "n_classes": 2,
        "support": 4,
        "train_count_min": 150,
        "train_count_max": 500,
    }
    assert (
        table["all"]["accuracy"]
        == shot_accuracy(y_true, y_pred, class_counts=[500, 150, 50, 5])["all"]
    )


def test_shot_report_shows_an_empty_split_as_such():
    report = shot_report([0, 1], [0, 1], class_counts=[500, 300], output_dict=False)
    few_row = next(line for line in report.splitlines() if line.startswith("few"))
    assert few_row.split()[-4:] == ["0", "-", "0", "nan"]
    table = shot_report([0, 1], [0, 1], class_counts=[500, 300], output_dict=True)
    assert table["few"]["n_classes"] == 0 and table["few"]["train_count_min"] is None


# --- scorers -------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted(long_tailed):
    X, y, X_test, y_test = long_tailed
    joint = JointClassifier(device="cpu", random_state=0).fit(X, y)
    return joint, X_test, y_test


def test_scorer_reads_the_fitted_counts(fitted):
    joint, X_test, y_test = fitted
    expected = shot_accuracy(
        y_test,
        joint.predict(X_test),
        class_counts=joint.class_counts_,
        labels=joint.classes_,
        many=200,
        few=30,
    )
    for split in ("many", "medium", "few", "all"):
        scorer = make_shot_scorer(split, many=200, few=30)
        assert scorer(joint, X_test, y_test) == expected[split]
    every = make_shot_scorer(["few", "all"], many=200, few=30)
    assert every(joint, X_test, y_test) == {
        "few": expected["few"],
        "all": expected["all"],
    }


def test_scorer_looks_through_a_pipeline_and_a_search(long_tailed):
    X, y, X_test, y_test = long_tailed
    pipe = make_pipeline(StandardScaler(), NCMClassifier()).fit(X, y)
    scorer = make_shot_scorer("few", many=200, few=30)
    ncm = pipe[-1]
    expected = shot_accuracy(
        y_test,
        pipe.predict(X_test),
        class_counts=ncm.class_counts_,
        labels=ncm.classes_,
        many=200,
        few=30,
    )["few"]
    assert scorer(pipe, X_test, y_test) == expected
    search = GridSearchCV(pipe, {"ncmclassifier__metric": ["sqeuclidean"]}, cv=2)
    assert scorer(search.fit(X, y), X_test, y_test) == expected


def test_scorers_in_grid_search_and_cross_validate(long_tailed):
    X, y, _, _ = long_tailed
    scoring = make_shot_scorer(["many", "few", "all"], many=200, few=30)
    search = GridSearchCV(
        TauNormClassifier(device="cpu", random_state=0),
        {"tau": [0.0, 1.0]},
        scoring=scoring,
        refit="few",
        cv=3,
    ).fit(X, y)
    few = search.cv_results_["mean_test_few"]
    assert search.best_params_["tau"] == [0.0, 1.0][int(np.argmax(few))]
    # Normalising the weights moves accuracy from the head to the tail.
    many = search.cv_results_["mean_test_many"]
    assert few[1] > few[0] and many[1] <= many[0]
    results = cross_validate(
        JointClassifier(device="cpu", random_state=0),
        X,
        y,
        cv=3,
        scoring={
            "few": make_shot_scorer("few", many=200, few=30),
            "all": make_shot_scorer("all", many=200, few=30),
        },
    )
    assert np.all((results["test_few"] >= 0) & (results["test_few"] <= 1))


def test_scorer_with_given_counts_scores_scikit_learn_estimators(long_tailed):
    X, y, X_test, y_test = long_tailed
    counts = np.bincount(y)
    model = LogisticRegression(max_iter=200).fit(X, y)
    with pytest.raises(ValueError, match="has no class_counts_.*Pass class_counts"):
        make_shot_scorer("few")(model, X_test, y_test)
    scorer = make_shot_scorer("few", class_counts=counts, many=200, few=30)
    expected = shot_accuracy(
        y_test, model.predict(X_test), class_counts=counts, many=200, few=30
    )["few"]
    assert scorer(model, X_test, y_test) == expected
    as_dict = make_shot_scorer(
        "few", class_counts=dict(enumerate(counts)), many=200, few=30
    )
    assert as_dict(model, X_test, y_test) == expected


def test_a_class_missing_from_the_training_fold_counts_as_few(small_problem):
    X, y = small_problem
    fitted = JointClassifier(device="cpu", random_state=0).fit(X[y != 3], y[y != 3])
    scores = make_shot_scorer(["few", "all"], many=50, few=20)(fitted, X, y)
    # Class 3 is never predicted: with no other few-shot class, Few is 0.
    assert scores["few"] == 0.0 and scores["all"] < 1.0


def test_scorer_refuses_sample_weight_and_pickles(fitted):
    joint, X_test, y_test = fitted
    scorer = make_shot_scorer("few", many=200, few=30)
    with pytest.raises(ValueError, match="sample_weight"):
        scorer(joint, X_test, y_test, sample_weight=np.ones(len(y_test)))
    copy = pickle.loads(pickle.dumps(scorer))
    assert copy(joint, X_test, y_test) == scorer(joint, X_test, y_test)
    assert "make_shot_scorer('few'" in repr(scorer)
    with pytest.raises(ValueError, match="split must name"):
        make_shot_scorer(["few", "tail"])


# --- relative accuracy -----------------------------------------------------------


def test_relative_accuracy_by_hand():
    assert relative_accuracy(0.45, 0.9) == 0.5
    np.testing.assert_allclose(relative_accuracy([40, 60], [80, 60]), [0.5, 1.0])
    ratios = relative_accuracy(
        {"many": 0.8, "few": float("nan")}, {"many": 0.8, "few": 0.5}
    )
    assert ratios["many"] == 1.0 and np.isnan(ratios["few"])


@pytest.mark.parametrize(
    "acc, reference, message",
    [
        (0.5, 0.0, "must be positive"),
        (-0.1, 0.5, "finite and >= 0"),
        ([0.5, 0.6], [0.7], "one reference accuracy per accuracy"),
        ({"many": 0.5}, {"few": 0.5}, "must be the same"),
        ({"many": 0.5}, 0.5, "both be dicts"),
    ],
)
def test_relative_accuracy_rejects_bad_input(acc, reference, message):
    with pytest.raises(ValueError, match=message):
        relative_accuracy(acc, reference)


# --- logits diagnostics ----------------------------------------------------------


def test_logits_magnitude_and_regularized_std_by_hand():
    logits = np.array(
        [[3.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.0, 2.0, 0.0], [0.0, 4.0, 2.0]]
    )
    y = np.array([0, 0, 1, 1])
    # Class 0: own logits 3, 1 (mean 2, std 1), others' 0, 0 -> LM 2, RSD 0.5.
    # Class 1: own 2, 4 (mean 3, std 1), others' 0, 1 -> LM 2.5, RSD 0.4.
    # Class 2: no samples -> NaN.
    magnitude = logits_magnitude(logits, y)
    np.testing.assert_allclose(magnitude[:2], [2.0, 2.5])
    np.testing.assert_allclose(regularized_std(logits, y)[:2], [0.5, 0.4])
    assert np.isnan(magnitude[2]) and np.isnan(regularized_std(logits, y)[2])
    # String labels through labels=, columns in the classifier's order.
    names = np.array(["cat", "dog", "eel"])
    np.testing.assert_allclose(
        logits_magnitude(logits, names[y], labels=names)[:2], [2.0, 2.5]
    )


def test_logits_diagnostics_of_a_joint_classifier_follow_the_counts(fitted):
    joint, X_test, y_test = fitted
    magnitude = logits_magnitude(joint.decision_function(X_test), y_test)
    # Head classes get larger logits on their own samples than tail classes.
    assert magnitude[:3].mean() > magnitude[-3:].mean()


@pytest.mark.parametrize(
    "logits, y, labels, message",
    [
        (np.zeros((2, 1)), [0, 0], None, "at least 2"),
        (np.zeros((2, 2)), [0, 5], None, "no logit column"),
        (np.zeros((2, 2)), ["a", "b"], None, "pass labels="),
        (np.zeros((2, 2)), [0, 1, 1], None, "inconsistent numbers"),
        (np.zeros((2, 2)), [0, 1], [0, 1, 2], "3 entries"),
    ],
)
def test_logits_diagnostics_reject_bad_input(logits, y, labels, message):
    with pytest.raises(ValueError, match=message):
        logits_magnitude(logits, y, labels=labels)


# --- tau sweep --------------------------------------------------------------------


def test_tau_sweep_equals_a_tau_norm_classifier_at_each_tau(long_tailed):
    X, y, X_test, y_test = long_tailed
    joint = JointClassifier(device="cpu", random_state=0).fit(X, y)
    taus = [0.0, 0.5, 1.0, 1.5]
    sweep = tau_sweep(joint, X_test, y_test, taus=taus, many=200, few=30)
    for i, tau in enumerate(taus):
        clf = TauNormClassifier(tau=tau, joint=joint).fit(X, y)
        expected = shot_accuracy(
            y_test,
            clf.predict(X_test),
            class_counts=clf.class_counts_,
            many=200,
            few=30,
        )
        for split, value in expected.items():
            assert sweep[split][i] == pytest.approx(value)
    # The paper's Figure 2 (right): Many falls and Few rises with tau.
    assert sweep["many"][-1] < sweep["many"][0]
    assert sweep["few"][-1] > sweep["few"][0]
    # A fitted tau-norm classifier sweeps over its own joint classifier.
    tau_norm = TauNormClassifier(joint=joint).fit(X, y)
    again = tau_sweep(tau_norm, X_test, y_test, taus=taus, many=200, few=30)
    np.testing.assert_allclose(again["all"], sweep["all"])
    # Features and labels as tensors are swept where they are, alike.
    from_tensors = tau_sweep(
        joint,
        torch.from_numpy(X_test),
        torch.from_numpy(y_test),
        taus=taus,
        many=200,
        few=30,
    )
    for split in ("many", "medium", "few", "all"):
        np.testing.assert_array_equal(from_tensors[split], sweep[split])


def test_tau_sweep_of_a_scikit_learn_pipeline_with_given_counts(long_tailed):
    X, y, X_test, y_test = long_tailed
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(X, y)
    sweep = tau_sweep(pipe, X_test, y_test, taus=[0.0], class_counts=np.bincount(y))
    logits = pipe.decision_function(X_test) - pipe[-1].intercept_
    expected = shot_accuracy(y_test, logits.argmax(axis=1), class_counts=np.bincount(y))
    assert sweep["all"][0] == pytest.approx(expected["all"])
    np.testing.assert_array_equal(sweep["tau"], [0.0])
    with pytest.raises(ValueError, match="one weight row per class"):
        tau_sweep(NCMClassifier().fit(X, y), X_test, y_test)
