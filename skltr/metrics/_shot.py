"""Accuracy per shot split (METHODS.md, "Evaluation protocol").

Classes are split by their number of TRAINING samples: Many n_j > many,
Medium few <= n_j <= many, Few n_j < few. A split's accuracy is the
unweighted mean of its classes' accuracies; All is the mean over every class.
"""

import numpy as np
from sklearn.utils.validation import check_consistent_length, column_or_1d


def shot_accuracy(y_true, y_pred, *, class_counts, labels=None, many=100, few=20):
    """Mean per-class accuracy over the Many, Medium and Few splits and All.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n_samples,)
        True and predicted labels of a (balanced) test set.
    class_counts : array-like of shape (n_classes,) or dict
        Training samples per class: aligned with ``labels``, or a mapping
        from label to count. A fitted classifier's ``class_counts_`` (with
        ``labels=clf.classes_``) is what this expects.
    labels : array-like of shape (n_classes,), default=None
        The classes ``class_counts`` counts; None means the sorted labels of
        ``y_true``.
    many, few : int, default=100, 20
        Many-shot classes have more than ``many`` training samples, few-shot
        classes fewer than ``few``; the reference thresholds are 100 and 20.
        Small data sets need smaller ones.

    Returns
    -------
    scores : dict
        ``"many"``, ``"medium"``, ``"few"`` and ``"all"``. A split with no
        class that has test samples is NaN (undefined, not zero). Classes
        without test samples take no part in any mean.

    Examples
    --------
    >>> from skltr.metrics import shot_accuracy
    >>> shot_accuracy([0, 0, 1, 1, 2, 2], [0, 0, 1, 0, 0, 0],
    ...               class_counts=[500, 50, 5])
    {'many': 1.0, 'medium': 0.5, 'few': 0.0, 'all': 0.5}
    """
    y_true, y_pred = column_or_1d(y_true), column_or_1d(y_pred)
    check_consistent_length(y_true, y_pred)
    if few > many:
        raise ValueError(f"few ({few}) must not exceed many ({many}).")
    if isinstance(class_counts, dict):
        labels = np.asarray(list(class_counts))
        counts = np.asarray(list(class_counts.values()))
    else:
        labels = np.unique(y_true) if labels is None else np.asarray(labels)
        counts = np.asarray(class_counts)
        if counts.shape != labels.shape:
            raise ValueError(
                f"class_counts has {counts.size} entries but there are "
                f"{labels.size} labels; pass labels= with one label per count."
            )
    unknown = np.setdiff1d(np.unique(y_true), labels)
    if unknown.size:
        raise ValueError(
            f"y_true has labels without a training count: {unknown[:10].tolist()}."
        )
    accuracy = np.full(len(labels), np.nan)
    for j, label in enumerate(labels):
        of_class = y_true == label
        if of_class.any():
            accuracy[j] = np.mean(y_pred[of_class] == label)
    splits = {
        "many": counts > many,
        "medium": (counts >= few) & (counts <= many),
        "few": counts < few,
        "all": np.ones(len(labels), dtype=bool),
    }
    return {
        name: float(np.nanmean(accuracy[members]))
        if np.isfinite(accuracy[members]).any()
        else float("nan")
        for name, members in splits.items()
    }
