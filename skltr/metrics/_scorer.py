"""Shot-split accuracies as scorers for model selection."""

from numbers import Integral

import numpy as np
from sklearn.frozen import FrozenEstimator
from sklearn.pipeline import Pipeline
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

from ._shot import SPLITS, _shot_table


def final_estimator(estimator, X=None):
    """The fitted estimator that makes the predictions of ``estimator``.

    Looks through a Pipeline (its last step), a FrozenEstimator and a fitted
    search (its ``best_estimator_``). With ``X``, returns ``(final, X_final)``,
    ``X`` transformed by the pipeline steps before the final one.
    """
    while True:
        if isinstance(estimator, Pipeline):
            if X is not None and len(estimator) > 1:
                X = estimator[:-1].transform(X)
            estimator = estimator.steps[-1][1]
        elif isinstance(estimator, FrozenEstimator):
            estimator = estimator.estimator
        elif hasattr(estimator, "best_estimator_"):
            estimator = estimator.best_estimator_
        else:
            return estimator if X is None else (estimator, X)


def training_counts(estimator, class_counts=None, labels=None):
    """``(labels, counts)`` of the training samples per class.

    The given ``class_counts`` (a dict from label to count, or an array that
    follows ``labels``, by default the estimator's ``classes_``), else the
    ``class_counts_`` of the classifier at the end of ``estimator``.
    """
    if isinstance(class_counts, dict):
        return np.asarray(list(class_counts)), np.asarray(list(class_counts.values()))
    final = final_estimator(estimator)
    if class_counts is not None:
        labels = final.classes_ if labels is None else labels
        return np.asarray(labels), np.asarray(class_counts)
    counts = getattr(final, "class_counts_", None)
    if counts is None:
        raise ValueError(
            f"{type(final).__name__} has no class_counts_ (only skltr's "
            "classifiers record their training counts), so the shot splits are "
            "unknown. Pass class_counts= (the training samples per class, in "
            "the order of the estimator's classes_)."
        )
    return final.classes_, counts


class _ShotScorer:
    """Scores ``estimator.predict(X)`` against ``y`` by shot split.

    A plain class rather than a closure, so that joblib can pickle it to
    worker processes.
    """

    def __init__(self, splits, class_counts, labels, many, few):
        self.splits = splits
        self.class_counts = class_counts
        self.labels = labels
        self.many = many
        self.few = few

    def __call__(self, estimator, X, y_true, sample_weight=None):
        if sample_weight is not None:
            raise ValueError(
                "The shot accuracies are unweighted means of per-class "
                "accuracies; they do not take sample_weight."
            )
        labels, counts = training_counts(estimator, self.class_counts, self.labels)
        # A class of the test fold that the training fold lacked had 0
        # training samples: a few-shot class, not an error.
        unseen = np.setdiff1d(np.unique(y_true), labels)
        if unseen.size:
            labels = np.concatenate([labels, unseen])
            counts = np.concatenate([counts, np.zeros(unseen.size, counts.dtype)])
        table = _shot_table(
            y_true, estimator.predict(X), counts, labels, self.many, self.few
        )
        if isinstance(self.splits, str):
            return table[self.splits]["accuracy"]
        return {split: table[split]["accuracy"] for split in self.splits}

    def __repr__(self):
        counts = "fitted" if self.class_counts is None else "given"
        return (
            f"make_shot_scorer({self.splits!r}, class_counts=<{counts}>, "
            f"many={self.many}, few={self.few})"
        )


@validate_params(
    {
        "split": [StrOptions(set(SPLITS)), list, tuple],
        "class_counts": [None, "array-like", dict],
        "labels": [None, "array-like"],
        "many": [Interval(Integral, 0, None, closed="left")],
        "few": [Interval(Integral, 0, None, closed="left")],
    },
    prefer_skip_nested_validation=True,
)
def make_shot_scorer(split="all", *, class_counts=None, labels=None, many=100, few=20):
    """A scorer of the mean per-class accuracy of a shot split, for ``scoring=``.

    The scorer predicts with the estimator it is given and scores the
    predictions with :func:`shot_accuracy`. The class counts that define the
    splits are, by default, the ``class_counts_`` of the fitted classifier
    (the classifier at the end of a Pipeline): inside ``GridSearchCV`` or
    ``cross_validate`` those are the counts of each training fold, to which
    the thresholds apply.

    Parameters
    ----------
    split : {"many", "medium", "few", "all"} or list of them, default="all"
        The split to score. A list makes a scorer that returns a dict of
        scores from one ``predict``: pass it as ``scoring=`` and name one of
        them as ``refit=``.
    class_counts : array-like of shape (n_classes,), dict or None, default=None
        Fixed training counts instead of the fitted ones: for estimators that
        do not record them (scikit-learn's), or to split by the counts of the
        whole training set. An array follows ``labels``, or the estimator's
        ``classes_`` when ``labels`` is None.
    labels : array-like of shape (n_classes,), default=None
        The labels of an array ``class_counts``.
    many, few : int, default=100, 20
        The split thresholds of :func:`shot_accuracy`.

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y)`` returning a float, or a dict of floats
        when ``split`` is a list. An empty split scores NaN. A class of ``y``
        that the estimator never saw counts as having 0 training samples.

    See Also
    --------
    shot_accuracy : The metric itself.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.model_selection import GridSearchCV
    >>> from skltr import TauNormClassifier
    >>> from skltr.metrics import make_shot_scorer
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(4), [300, 90, 30, 12])
    >>> X = rng.normal(size=(len(y), 8)) + 2.0 * np.eye(4, 8)[y]
    >>> scoring = make_shot_scorer(["many", "few", "all"], many=50, few=15)
    >>> search = GridSearchCV(TauNormClassifier(device="cpu", random_state=0),
    ...                       {"tau": [0.0, 1.0]}, scoring=scoring, refit="all",
    ...                       cv=3).fit(X, y)
    >>> sorted(k for k in search.cv_results_ if k.startswith("mean_test"))
    ['mean_test_all', 'mean_test_few', 'mean_test_many']
    """
    if not isinstance(split, str):
        split = tuple(split)
        unknown = set(split) - set(SPLITS)
        if not split or unknown:
            raise ValueError(
                f"split must name one or more of {SPLITS}; got {list(split)!r}."
            )
    if few > many:
        raise ValueError(f"few ({few}) must not exceed many ({many}).")
    return _ShotScorer(split, class_counts, labels, many, few)
