"""Long-tailed subsets of balanced labelled sets."""

from numbers import Integral, Real

import numpy as np
from sklearn.datasets import load_digits
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions, validate_params
from sklearn.utils.validation import column_or_1d

PROFILES = ("exp", "step")


def long_tailed_counts(n_classes, n_max, imbalance_ratio, profile="exp"):
    """Samples per class of a long-tailed profile, from ``n_max`` down.

    ``"exp"``: n_j = int(n_max * ratio^(-j / (C - 1))) (CIFAR-LT); ``"step"``:
    the first half of the classes keep n_max, the rest n_max / ratio.
    """
    j = np.arange(n_classes)
    if profile == "exp":
        return (n_max * imbalance_ratio ** (-j / max(1, n_classes - 1))).astype(int)
    if profile == "step":
        return np.where(j < n_classes // 2, n_max, int(n_max / imbalance_ratio))
    raise ValueError(f"profile must be 'exp' or 'step'; got {profile!r}.")


@validate_params(
    {
        "y": ["array-like"],
        "imbalance_ratio": [Interval(Real, 1, None, closed="left")],
        "profile": [StrOptions(set(PROFILES))],
        "max_per_class": [None, Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def make_long_tailed(
    y, *, imbalance_ratio, profile="exp", max_per_class=None, random_state=None
):
    """Indices of a long-tailed subset of a labelled set.

    With the exponential profile, class j (in sorted label order) keeps
    ``int(n_max * imbalance_ratio ** (-j / (C - 1)))`` samples: the CIFAR-LT
    profile of Cao et al. (2019) and the Decoupling paper. The step profile
    keeps n_max samples of the first half of the classes and
    ``n_max / imbalance_ratio`` of the rest.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
    imbalance_ratio : float
        Largest over smallest class size, >= 1.
    profile : {"exp", "step"}, default="exp"
        The shape of the tail.
    max_per_class : int, default=None
        n_max, the head class's size; None takes the size of the first
        class. Every class must have as many samples as the profile asks of
        it.
    random_state : int, RandomState instance or None, default=None
        None keeps the first samples of each class in data order (as the
        reference CIFAR-LT builders do); otherwise a random subset.

    Returns
    -------
    indices : ndarray of int
        Sorted indices into ``y``.

    See Also
    --------
    load_cifar10_lt, load_cifar100_lt : CIFAR-LT built with this.
    make_long_tailed_features : Synthetic long-tailed features.

    Examples
    --------
    >>> import numpy as np
    >>> from skltr.datasets import make_long_tailed
    >>> y = np.repeat(np.arange(100), 500)
    >>> len(make_long_tailed(y, imbalance_ratio=100))
    10847
    """
    y = column_or_1d(y)
    classes = np.unique(y)
    members = [np.flatnonzero(y == label) for label in classes]
    n_max = len(members[0]) if max_per_class is None else int(max_per_class)
    counts = long_tailed_counts(len(classes), n_max, imbalance_ratio, profile)
    rng = None if random_state is None else check_random_state(random_state)
    kept = []
    for label, rows, count in zip(classes, members, counts, strict=True):
        if count > len(rows):
            raise ValueError(
                f"Class {np.asarray(label).item()!r} has {len(rows)} samples, "
                f"but the profile asks for {count}; lower max_per_class or the "
                "imbalance ratio."
            )
        kept.append(
            rows[:count] if rng is None else rng.choice(rows, count, replace=False)
        )
    return np.sort(np.concatenate(kept))


@validate_params(
    {
        "imbalance_ratio": [Interval(Real, 1, None, closed="left")],
        "test_per_class": [Interval(Integral, 1, 150, closed="both")],
        "val_per_class": [Interval(Integral, 0, 100, closed="both")],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def load_digits_lt(
    *, imbalance_ratio=10, test_per_class=50, val_per_class=0, random_state=0
):
    """scikit-learn's bundled digits, long-tailed on the training side.

    After a seeded shuffle, the first ``test_per_class`` images of each digit
    form a balanced test set and the next ``val_per_class`` a balanced
    validation set; the rest are cut to the exponential profile with n_max
    the smallest remaining class size (about 125 without validation).

    Parameters
    ----------
    imbalance_ratio : float, default=10
        Largest over smallest training class size.
    test_per_class : int, default=50
        Test images per digit.
    val_per_class : int, default=0
        Validation images per digit; with 0 there is no validation set.
    random_state : int, RandomState instance or None, default=0
        Seeds the shuffle that decides which images go where.

    Returns
    -------
    X_train, X_test, y_train, y_test : ndarray
        8x8 images as 64 pixel features in [0, 16], and digit labels.
        With ``val_per_class > 0``: ``X_train, X_val, X_test, y_train, y_val,
        y_test``.

    Examples
    --------
    >>> from skltr.datasets import load_digits_lt
    >>> X_train, X_test, y_train, y_test = load_digits_lt(imbalance_ratio=10)
    >>> X_test.shape
    (500, 64)
    >>> X_train, X_val, X_test, y_train, y_val, y_test = load_digits_lt(
    ...     val_per_class=20)
    >>> X_val.shape
    (200, 64)
    """
    X, y = load_digits(return_X_y=True)
    order = check_random_state(random_state).permutation(len(y))
    X, y = X[order], y[order]
    per_digit = [np.flatnonzero(y == d) for d in range(10)]
    test = np.sort(np.concatenate([rows[:test_per_class] for rows in per_digit]))
    end = test_per_class + val_per_class
    val = np.sort(np.concatenate([rows[test_per_class:end] for rows in per_digit]))
    rest = np.sort(np.concatenate([rows[end:] for rows in per_digit]))
    n_max = np.bincount(y[rest]).min()
    train = rest[
        make_long_tailed(y[rest], imbalance_ratio=imbalance_ratio, max_per_class=n_max)
    ]
    if val_per_class:
        return X[train], X[val], X[test], y[train], y[val], y[test]
    return X[train], X[test], y[train], y[test]
