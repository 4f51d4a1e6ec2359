"""Accuracy per shot split (user guide: docs/guide/decoupled.md, evaluation protocol).

Classes are split by their number of TRAINING samples: Many n_j > many,
Medium few <= n_j <= many, Few n_j < few. A split's accuracy is the
unweighted mean of its classes' accuracies; All is the mean over every class.
"""

from numbers import Integral

import numpy as np
from sklearn.utils._param_validation import Interval, validate_params
from sklearn.utils.validation import check_consistent_length, column_or_1d

from .._docstrings import fill_doc

SPLITS = ("many", "medium", "few", "all")

_SHOT_CONSTRAINTS = {
    "y_true": ["array-like"],
    "y_pred": ["array-like"],
    "class_counts": ["array-like", dict],
    "labels": ["array-like", None],
    "many": [Interval(Integral, 0, None, closed="left")],
    "few": [Interval(Integral, 0, None, closed="left")],
}


def split_masks(class_counts, *, many=100, few=20):
    """Boolean masks over the classes, one per split, from training counts."""
    if few > many:
        raise ValueError(f"few ({few}) must not exceed many ({many}).")
    counts = np.asarray(class_counts)
    return {
        "many": counts > many,
        "medium": (counts >= few) & (counts <= many),
        "few": counts < few,
        "all": np.ones(counts.shape, dtype=bool),
    }


def split_names(many, few):
    """Each split's name with its rule on training counts, for tables and plots."""
    return {
        "many": f"Many (n > {many})",
        "medium": f"Medium ({few}..{many})",
        "few": f"Few (n < {few})",
        "all": "All",
    }


def class_count_table(y_true, class_counts, labels):
    """The labels and their training counts, checked against ``y_true``."""
    if isinstance(class_counts, dict):
        if labels is not None:
            raise ValueError(
                "class_counts is a dict, which names its labels; do not pass labels."
            )
        labels = np.asarray(list(class_counts))
        counts = np.asarray(list(class_counts.values()))
    else:
        labels = np.unique(y_true) if labels is None else column_or_1d(labels)
        counts = column_or_1d(class_counts)
        if counts.shape != labels.shape:
            raise ValueError(
                f"class_counts has {counts.size} entries but there are "
                f"{labels.size} labels; pass labels= with one label per count."
            )
    if not np.issubdtype(counts.dtype, np.number) or np.any(counts < 0):
        raise ValueError(
            f"class_counts must be non-negative numbers; got {counts[:10].tolist()}."
        )
    if len(np.unique(labels)) != len(labels):
        raise ValueError("labels must not repeat a label.")
    unknown = np.setdiff1d(np.unique(y_true), labels)
    if unknown.size:
        raise ValueError(
            f"y_true has {unknown.size} label(s) without a training count: "
            f"{unknown[:10].tolist()}. Give every test label a count in "
            "class_counts (0 for a class never seen in training)."
        )
    return labels, counts


def label_positions(labels, values):
    """The index in ``labels`` (in any order) of each of ``values``.

    Every value must be one of ``labels``.
    """
    sorter = np.argsort(labels)
    return sorter[np.searchsorted(labels, values, sorter=sorter)]


def per_class_accuracy(y_true, y_pred, labels):
    """Accuracy (recall) of each label and its test support.

    The accuracy is NaN for a label without test samples. Every label of
    ``y_true`` must be in ``labels``.
    """
    true_index = label_positions(labels, y_true)
    support = np.bincount(true_index, minlength=len(labels))
    hits = np.bincount(true_index, weights=y_true == y_pred, minlength=len(labels))
    with np.errstate(invalid="ignore", divide="ignore"):
        return hits / support, support


def split_table(accuracy, support, class_counts, *, many, few):
    """Per split: mean per-class accuracy, classes, test support, count range.

    Only classes with test samples (``support > 0``) take part.
    """
    table = {}
    for name, members in split_masks(class_counts, many=many, few=few).items():
        tested = members & (support > 0)
        counts = class_counts[tested]
        table[name] = {
            "accuracy": float(accuracy[tested].mean()) if tested.any() else np.nan,
            "n_classes": int(tested.sum()),
            "support": int(support[tested].sum()),
            "train_count_min": int(counts.min()) if tested.any() else None,
            "train_count_max": int(counts.max()) if tested.any() else None,
        }
    return table


def _shot_table(y_true, y_pred, class_counts, labels, many, few):
    y_true, y_pred = column_or_1d(y_true), column_or_1d(y_pred)
    check_consistent_length(y_true, y_pred)
    labels, counts = class_count_table(y_true, class_counts, labels)
    accuracy, support = per_class_accuracy(y_true, y_pred, labels)
    return split_table(accuracy, support, counts, many=many, few=few)


@validate_params(_SHOT_CONSTRAINTS, prefer_skip_nested_validation=True)
@fill_doc()
def shot_accuracy(y_true, y_pred, *, class_counts, labels=None, many=100, few=20):
    """Mean per-class accuracy over the Many, Medium and Few splits and All.

    Parameters
    ----------
    %(shot_parameters)s

    Returns
    -------
    scores : dict
        ``"many"``, ``"medium"``, ``"few"`` and ``"all"``. A split with no
        class that has test samples is NaN: undefined, not zero (a small data
        set may have no class above ``many``). Classes without test samples
        take no part in any mean.

    See Also
    --------
    shot_report : The same numbers as a table, with class and sample counts.
    make_shot_scorer : A scorer for ``GridSearchCV`` and ``cross_validate``.

    Examples
    --------
    >>> from skltr.metrics import shot_accuracy
    >>> shot_accuracy([0, 0, 1, 1, 2, 2], [0, 0, 1, 0, 0, 0],
    ...               class_counts=[500, 50, 5])
    {'many': 1.0, 'medium': 0.5, 'few': 0.0, 'all': 0.5}
    """
    table = _shot_table(y_true, y_pred, class_counts, labels, many, few)
    return {name: row["accuracy"] for name, row in table.items()}


@validate_params(
    {
        **_SHOT_CONSTRAINTS,
        "digits": [Interval(Integral, 0, None, closed="left")],
        "output_dict": ["boolean"],
    },
    prefer_skip_nested_validation=True,
)
@fill_doc()
def shot_report(
    y_true,
    y_pred,
    *,
    class_counts,
    labels=None,
    many=100,
    few=20,
    digits=3,
    output_dict=False,
):
    """A table of the accuracy per shot split, with its classes and samples.

    Like :func:`sklearn.metrics.classification_report`, one row per split
    (Many, Medium, Few, All): the split's rule, its number of classes with
    test samples, their
    range of training counts, its test samples and its mean per-class
    accuracy.

    Parameters
    ----------
    %(shot_parameters)s

    digits : int, default=3
        Digits of the accuracies in the text table.

    output_dict : bool, default=False
        Return a dict instead of text.

    Returns
    -------
    report : str or dict
        The text table, or ``{split: {"accuracy", "n_classes", "support",
        "train_count_min", "train_count_max"}}`` for the splits ``"many"``,
        ``"medium"``, ``"few"``, ``"all"``. An empty split has accuracy NaN,
        0 classes, and None as its count range.

    See Also
    --------
    shot_accuracy : The accuracies alone.

    Examples
    --------
    >>> from skltr.metrics import shot_report
    >>> print(shot_report([0, 0, 1, 1, 2, 2], [0, 0, 1, 0, 0, 0],
    ...                   class_counts=[500, 50, 5]))
                      classes  train samples  test samples  accuracy
    many (n > 100)          1            500             2     1.000
    medium (20..100)        1             50             2     0.500
    few (n < 20)            1              5             2     0.000
    all                     3          5-500             6     0.500
    """
    table = _shot_table(y_true, y_pred, class_counts, labels, many, few)
    if output_dict:
        return table
    names = {split: name.lower() for split, name in split_names(many, few).items()}
    header = ("classes", "train samples", "test samples", "accuracy")
    rows = []
    for split, row in table.items():
        low, high = row["train_count_min"], row["train_count_max"]
        counts = "-" if low is None else str(low) if low == high else f"{low}-{high}"
        accuracy = (
            "nan" if np.isnan(row["accuracy"]) else f"{row['accuracy']:.{digits}f}"
        )
        rows.append(
            (names[split], str(row["n_classes"]), counts, str(row["support"]), accuracy)
        )
    name_width = max(len(r[0]) for r in rows)
    widths = [max(len(h), *(len(r[i + 1]) for r in rows)) for i, h in enumerate(header)]
    lines = [
        " " * name_width
        + "".join(f"  {h:>{w}}" for h, w in zip(header, widths, strict=True))
    ]
    for r in rows:
        cells = "".join(f"  {c:>{w}}" for c, w in zip(r[1:], widths, strict=True))
        lines.append(f"{r[0]:<{name_width}}{cells}")
    return "\n".join(lines)
