"""Per-class diagnostics of a classifier's logits (the LORT paper, section 3).

Logits magnitude LM_j: the mean of logit j over the samples of class j minus
its mean over the samples of every other class. Regularised standard
deviation RSD_j: the standard deviation of logit j over the samples of class
j, divided by LM_j. The more uniform LM is across classes, the better the
balanced accuracy tends to be.
"""

import numpy as np
from sklearn.utils._param_validation import validate_params
from sklearn.utils.validation import check_array, check_consistent_length, column_or_1d

from .._docstrings import fill_doc

_CONSTRAINTS = {
    "logits": ["array-like"],
    "y": ["array-like"],
    "labels": [None, "array-like"],
}


def _column_statistics(logits, y, labels):
    """For each class j: the logit j of its samples, and of the others' mean."""
    logits = check_array(logits, dtype=np.float64)
    y = column_or_1d(y)
    check_consistent_length(logits, y)
    n_classes = logits.shape[1]
    if n_classes < 2:
        raise ValueError(
            f"logits must have one column per class, at least 2; got {n_classes}. "
            "A binary decision_function gives one score per sample: stack "
            "[-score, score] / 2 to make two columns."
        )
    if labels is None:
        labels = np.arange(n_classes)
        if not np.issubdtype(y.dtype, np.integer):
            raise ValueError(
                f"y holds labels of type {y.dtype}, not column indices; pass "
                "labels= (the classifier's classes_) to say which column scores "
                "which label."
            )
    else:
        labels = column_or_1d(labels)
    if len(labels) != n_classes:
        raise ValueError(
            f"logits has {n_classes} columns but labels has {len(labels)} entries."
        )
    sorter = np.argsort(labels)
    position = np.searchsorted(labels, y, sorter=sorter).clip(0, n_classes - 1)
    column = sorter[position]
    unknown = labels[column] != y
    if unknown.any():
        raise ValueError(
            f"y has labels with no logit column: {np.unique(y[unknown])[:10].tolist()}."
        )
    own = logits[np.arange(len(y)), column]
    count = np.bincount(column, minlength=n_classes)
    own_sum = np.bincount(column, weights=own, minlength=n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        own_mean = own_sum / count
        other_mean = (logits.sum(axis=0) - own_sum) / (len(y) - count)
    return own, column, count, own_mean, other_mean


@validate_params(_CONSTRAINTS, prefer_skip_nested_validation=True)
@fill_doc()
def logits_magnitude(logits, y, *, labels=None):
    """Logits magnitude per class: mean logit on the class minus off it.

    LM_j = mean of logit j over the samples of class j - mean of logit j over
    the samples of the other classes (the LORT paper, Definition 1).

    Parameters
    ----------
    %(logits_parameters)s

    Returns
    -------
    magnitude : ndarray of shape (n_classes,)
        NaN for a class with no samples in ``y``, or when ``y`` holds no
        other class.

    See Also
    --------
    regularized_std : The spread of a class's own logit relative to LM.

    Examples
    --------
    >>> from skltr.metrics import logits_magnitude
    >>> logits = [[3.0, 0.0], [1.0, 1.0], [0.0, 2.0]]
    >>> logits_magnitude(logits, [0, 0, 1])
    array([2. , 1.5])
    """
    _, _, _, own_mean, other_mean = _column_statistics(logits, y, labels)
    return own_mean - other_mean


@validate_params(_CONSTRAINTS, prefer_skip_nested_validation=True)
@fill_doc()
def regularized_std(logits, y, *, labels=None):
    """Regularised standard deviation per class: std of its own logit over LM.

    RSD_j = the standard deviation of logit j over the samples of class j,
    divided by the logits magnitude LM_j (the LORT paper, Definition 2). The
    standard deviation is the population one (``ddof=0``).

    Parameters
    ----------
    %(logits_parameters)s

    Returns
    -------
    rsd : ndarray of shape (n_classes,)
        NaN where LM is NaN; infinite where LM is 0.

    See Also
    --------
    logits_magnitude : The denominator.

    Examples
    --------
    >>> from skltr.metrics import regularized_std
    >>> logits = [[3.0, 0.0], [1.0, 1.0], [0.0, 2.0], [0.0, 4.0]]
    >>> regularized_std(logits, [0, 0, 1, 1])
    array([0.5, 0.4])
    """
    own, column, count, own_mean, other_mean = _column_statistics(logits, y, labels)
    squared_deviation = np.square(own - own_mean[column])
    with np.errstate(invalid="ignore", divide="ignore"):
        std = np.sqrt(
            np.bincount(column, weights=squared_deviation, minlength=len(count)) / count
        )
        return std / (own_mean - other_mean)
