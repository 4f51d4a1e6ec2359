"""Expected calibration error, over all classes and per shot split.

User guide, docs/guide/prior_shift.md: the top predicted
probability of each sample falls in one of ``n_bins`` equal-width bins of
[0, 1]; ECE = sum_b (|B_b| / n) |acc(B_b) - conf(B_b)|, with acc the
fraction of the bin's samples predicted right and conf their mean top
probability. Long-tailed models are over-confident on the head classes
(Zhong et al., CVPR 2021), so it is reported per shot split as well: a
split's ECE is that of the samples whose true class is in the split.
"""

from numbers import Integral

import numpy as np
from sklearn.utils._param_validation import Interval, StrOptions, validate_params
from sklearn.utils.validation import check_array, check_consistent_length, column_or_1d

from ._scorer import final_estimator, training_counts
from ._shot import SPLITS, label_positions, split_masks


def _checked(y_true, y_prob, labels):
    """(y_true, y_prob, labels) checked: one probability column per label."""
    y_true = column_or_1d(y_true)
    y_prob = check_array(y_prob, dtype=np.float64, ensure_min_samples=1)
    check_consistent_length(y_true, y_prob)
    labels = np.unique(y_true) if labels is None else column_or_1d(labels)
    if y_prob.shape[1] != len(labels):
        raise ValueError(
            f"y_prob has {y_prob.shape[1]} columns but there are {len(labels)} "
            "labels; pass labels= (the classifier's classes_) when y_true does "
            "not hold every class."
        )
    unknown = np.setdiff1d(y_true, labels)
    if unknown.size:
        raise ValueError(f"y_true has labels that labels lacks: {unknown[:10]}.")
    if (y_prob < 0).any() or (y_prob > 1).any():
        raise ValueError(
            "y_prob must hold probabilities in [0, 1], such as predict_proba's; "
            "apply a softmax to decision_function's scores first."
        )
    return y_true, y_prob, labels


def bin_sums(correct, confidence, n_bins):
    """Per bin of the top probability: (samples, sum of correct, sum of confidence).

    Bin b holds the confidences in (b / n_bins, (b + 1) / n_bins]; 0 is in
    the first bin. They are compared with the edges themselves, so that 0.8
    is in the bin that ends at 12 / 15 (0.8 * 15 rounds above 12).
    """
    inner_edges = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    bins = np.searchsorted(inner_edges, confidence, side="left")
    return (
        np.bincount(bins, minlength=n_bins),
        np.bincount(bins, weights=correct, minlength=n_bins),
        np.bincount(bins, weights=confidence, minlength=n_bins),
    )


def _ece(correct, confidence, n_bins):
    """ECE of samples given their correctness and top probability."""
    if len(correct) == 0:
        return float("nan")
    _, correct_sum, confidence_sum = bin_sums(correct, confidence, n_bins)
    return _ece_of_sums(correct_sum, confidence_sum, len(correct))


def _ece_of_sums(correct_sum, confidence_sum, n_samples):
    """sum_b |B_b| |acc(B_b) - conf(B_b)| / n, from the bins' sums."""
    return float(np.abs(correct_sum - confidence_sum).sum() / n_samples)


def reliability(y_true, y_prob, *, n_bins=15, labels=None):
    """(samples, accuracy, mean top probability) per bin, and the ECE.

    The per-bin figures are NaN for an empty bin; the ECE is
    :func:`expected_calibration_error`'s, from the same bins.
    """
    y_true, y_prob, labels = _checked(y_true, y_prob, labels)
    count, correct_sum, confidence_sum = bin_sums(
        *_correct_and_confidence(y_true, y_prob, labels), n_bins
    )
    ece = _ece_of_sums(correct_sum, confidence_sum, len(y_true))
    with np.errstate(invalid="ignore", divide="ignore"):
        return count, correct_sum / count, confidence_sum / count, ece


def _correct_and_confidence(y_true, y_prob, labels):
    top = y_prob.argmax(axis=1)
    return (labels[top] == y_true).astype(np.float64), y_prob[np.arange(len(top)), top]


_COMMON = {
    "y_true": ["array-like"],
    "y_prob": ["array-like"],
    "n_bins": [Interval(Integral, 1, None, closed="left")],
    "labels": ["array-like", None],
}


@validate_params(_COMMON, prefer_skip_nested_validation=True)
def expected_calibration_error(y_true, y_prob, *, n_bins=15, labels=None):
    """Expected calibration error of predicted probabilities (15 bins by default).

    Each sample's top probability falls in one of ``n_bins`` equal-width
    bins of [0, 1]; the ECE is the mean over samples of the gap between
    their bin's accuracy and its mean top probability:
    ``sum_b (|B_b| / n) |acc(B_b) - conf(B_b)|``. 0 is perfect calibration.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        True labels.
    y_prob : array-like of shape (n_samples, n_classes)
        Predicted probabilities, such as ``predict_proba``'s, one column per
        label in the order of ``labels``.
    n_bins : int, default=15
        Bins of the top probability.
    labels : array-like of shape (n_classes,), default=None
        The labels of ``y_prob``'s columns (a classifier's ``classes_``);
        None takes the sorted labels of ``y_true``, which must then hold
        every class.

    Returns
    -------
    ece : float
        In [0, 1].

    See Also
    --------
    shot_calibration_error : The same per shot split.
    make_calibration_scorer : As a scorer for ``GridSearchCV``.

    References
    ----------
    .. [1] C. Guo, G. Pleiss, Y. Sun and K. Q. Weinberger, "On Calibration of
       Modern Neural Networks", ICML 2017.

    Examples
    --------
    >>> from skltr.metrics import expected_calibration_error
    >>> y_prob = [[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]]
    >>> round(expected_calibration_error([0, 1, 1, 0], y_prob), 3)
    0.4
    """
    y_true, y_prob, labels = _checked(y_true, y_prob, labels)
    return _ece(*_correct_and_confidence(y_true, y_prob, labels), n_bins)


@validate_params(
    {
        **_COMMON,
        "class_counts": ["array-like"],
        "many": [Interval(Integral, 0, None, closed="left")],
        "few": [Interval(Integral, 0, None, closed="left")],
    },
    prefer_skip_nested_validation=True,
)
def shot_calibration_error(
    y_true, y_prob, *, class_counts, labels=None, n_bins=15, many=100, few=20
):
    """Expected calibration error per shot split and over all classes.

    A split's ECE is :func:`expected_calibration_error` over the samples
    whose true class is in the split (by its training count: Many n >
    ``many``, Medium, Few n < ``few``), with the same bins.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
    y_prob : array-like of shape (n_samples, n_classes)
        Columns in the order of ``labels``.
    class_counts : array-like of shape (n_classes,)
        Training samples per class, in the order of ``labels``.
    labels : array-like of shape (n_classes,), default=None
        As for :func:`expected_calibration_error`.
    n_bins : int, default=15
    many, few : int, default=100, 20
        The split thresholds of :func:`shot_accuracy`.

    Returns
    -------
    scores : dict
        ``"many"``, ``"medium"``, ``"few"`` and ``"all"``; a split with no
        test sample is NaN.

    Examples
    --------
    >>> from skltr.metrics import shot_calibration_error
    >>> y_prob = [[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]]
    >>> scores = shot_calibration_error([0, 1, 1, 0], y_prob, class_counts=[500, 5])
    >>> {split: round(value, 3) for split, value in scores.items()}
    {'many': 0.25, 'medium': nan, 'few': 0.55, 'all': 0.4}
    """
    y_true, y_prob, labels = _checked(y_true, y_prob, labels)
    counts = column_or_1d(class_counts)
    if len(counts) != len(labels):
        raise ValueError(
            f"class_counts has {len(counts)} entries for {len(labels)} labels."
        )
    correct, confidence = _correct_and_confidence(y_true, y_prob, labels)
    class_index = label_positions(labels, y_true)
    return {
        split: _ece(correct[mask[class_index]], confidence[mask[class_index]], n_bins)
        for split, mask in split_masks(counts, many=many, few=few).items()
    }


class _CalibrationScorer:
    """Minus the ECE of ``estimator.predict_proba(X)``: greater is better."""

    def __init__(self, split, n_bins, class_counts, labels, many, few):
        self.split, self.n_bins = split, n_bins
        self.class_counts, self.labels = class_counts, labels
        self.many, self.few = many, few

    def __call__(self, estimator, X, y_true, sample_weight=None):
        if sample_weight is not None:
            raise ValueError("The calibration error does not take sample_weight.")
        y_prob = estimator.predict_proba(X)
        classes = final_estimator(estimator).classes_
        if self.split == "all":
            return -expected_calibration_error(
                y_true, y_prob, n_bins=self.n_bins, labels=classes
            )
        labels, counts = training_counts(estimator, self.class_counts, self.labels)
        missing = np.setdiff1d(classes, labels)
        if missing.size:
            raise ValueError(
                f"class_counts gives no count for the classes {missing[:10]} "
                "of the estimator."
            )
        # The counts in the order of predict_proba's columns.
        counts = np.asarray(counts)[label_positions(labels, classes)]
        scores = shot_calibration_error(
            y_true,
            y_prob,
            class_counts=counts,
            labels=classes,
            n_bins=self.n_bins,
            many=self.many,
            few=self.few,
        )
        return -scores[self.split]

    def __repr__(self):
        return f"make_calibration_scorer({self.split!r}, n_bins={self.n_bins})"


@validate_params(
    {
        "split": [StrOptions(set(SPLITS))],
        "n_bins": [Interval(Integral, 1, None, closed="left")],
        "class_counts": [None, "array-like", dict],
        "labels": [None, "array-like"],
        "many": [Interval(Integral, 0, None, closed="left")],
        "few": [Interval(Integral, 0, None, closed="left")],
    },
    prefer_skip_nested_validation=True,
)
def make_calibration_scorer(
    split="all", *, n_bins=15, class_counts=None, labels=None, many=100, few=20
):
    """A scorer of minus the expected calibration error, for ``scoring=``.

    Greater is better, as scikit-learn's scorers are (as ``neg_log_loss``):
    it returns ``-ECE`` of ``estimator.predict_proba(X)``, over all classes
    or over one shot split. The split's class counts are the fitted
    classifier's ``class_counts_`` unless given, as for
    :func:`make_shot_scorer`.

    Parameters
    ----------
    split : {"many", "medium", "few", "all"}, default="all"
    n_bins : int, default=15
    class_counts : array-like of shape (n_classes,), dict or None, default=None
    labels : array-like of shape (n_classes,), default=None
        The labels of an array ``class_counts``.
    many, few : int, default=100, 20

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y)`` returning ``-ECE`` (NaN for an empty
        split).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.model_selection import cross_val_score
    >>> from skltr import LogitAdjustedClassifier
    >>> from skltr.metrics import make_calibration_scorer
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(3), [200, 60, 20])
    >>> X = rng.normal(size=(len(y), 5)) + 2.0 * np.eye(3, 5)[y]
    >>> scores = cross_val_score(LogitAdjustedClassifier(device="cpu", random_state=0),
    ...                          X, y, cv=3, scoring=make_calibration_scorer())
    >>> bool(np.all((scores <= 0) & (scores >= -1)))
    True
    """
    if few > many:
        raise ValueError(f"few ({few}) must not exceed many ({many}).")
    return _CalibrationScorer(split, n_bins, class_counts, labels, many, few)
