"""Synthetic long-tailed features: class-conditional Gaussians."""

from numbers import Integral, Real

import numpy as np
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

from ._long_tailed import PROFILES, long_tailed_counts

_CHUNK_ROWS = 65536


def _counts_for_total(n_samples, n_classes, imbalance_ratio, profile):
    """Profile counts summing to exactly ``n_samples``.

    n_max is the largest head size whose profile fits in ``n_samples``; the
    samples left over go one each to the first classes, so the counts still
    fall from head to tail.
    """
    low, high = 1, n_samples
    while low < high:
        middle = (low + high + 1) // 2
        total = long_tailed_counts(n_classes, middle, imbalance_ratio, profile).sum()
        low, high = (middle, high) if total <= n_samples else (low, middle - 1)
    counts = long_tailed_counts(n_classes, low, imbalance_ratio, profile)
    if counts.min() < 1 or counts.sum() > n_samples:
        raise ValueError(
            f"{n_samples} training samples are too few for {n_classes} classes "
            f"at imbalance ratio {imbalance_ratio}: the smallest class would be "
            "empty. Ask for more samples or a lower ratio."
        )
    # Raising n_max by one adds at most one sample per class, so fewer than
    # n_classes are left over.
    counts[: n_samples - counts.sum()] += 1
    return counts


def _fill_gaussians(out, labels, means, rng):
    """``out[i] = means[labels[i]] + N(0, I)``, written a chunk at a time."""
    for start in range(0, len(out), _CHUNK_ROWS):
        rows = slice(start, start + _CHUNK_ROWS)
        rng.standard_normal(out=out[rows], dtype=out.dtype)
        out[rows] += means[labels[rows]]
    return out


@validate_params(
    {
        "n_samples": [Interval(Integral, 2, None, closed="left")],
        "n_features": [Interval(Integral, 1, None, closed="left")],
        "n_classes": [Interval(Integral, 2, None, closed="left")],
        "imbalance_ratio": [Interval(Real, 1, None, closed="left")],
        "profile": [StrOptions(set(PROFILES))],
        "n_test_per_class": [Interval(Integral, 0, None, closed="left")],
        "class_sep": [Interval(Real, 0, None, closed="left")],
        "dtype": [type, str, np.dtype],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def make_long_tailed_features(
    n_samples=10847,
    n_features=64,
    n_classes=100,
    *,
    imbalance_ratio=100,
    profile="exp",
    n_test_per_class=50,
    class_sep=6.0,
    dtype=np.float32,
    random_state=None,
):
    """Long-tailed class-conditional Gaussian features and a balanced test set.

    Each class j has a mean mu_j drawn from N(0, class_sep^2 / (2 d) I), so
    two class means lie about ``class_sep`` apart; each sample is its class
    mean plus N(0, I) noise. The training classes follow the long-tailed
    ``profile`` of :func:`make_long_tailed` at ``imbalance_ratio``, scaled to
    ``n_samples`` in all; the test set has ``n_test_per_class`` samples of
    every class. The defaults are CIFAR-100-LT's size (10,847 samples, 100
    classes, ratio 100). Like frozen features, it is a problem where a joint
    classifier favours the head and re-balancing helps the tail, for tests
    and for measuring speed at any scale.

    Parameters
    ----------
    n_samples : int, default=10847
        Training samples in all.
    n_features : int, default=64
        Feature dimension d.
    n_classes : int, default=100
        Number of classes C.
    imbalance_ratio : float, default=100
        Largest over smallest training class, about (the left-over samples
        that make the total exact go one each to the head classes).
    profile : {"exp", "step"}, default="exp"
        The shape of the tail.
    n_test_per_class : int, default=50
        Balanced test samples per class.
    class_sep : float, default=6.0
        Typical distance between two class means, in units of the noise's
        standard deviation: larger is easier.
    dtype : numpy dtype, default=np.float32
        Of the features. They are written in place, a chunk at a time, so
        memory holds the output and little else.
    random_state : int, RandomState instance or None, default=None
        An int gives the same features on every call.

    Returns
    -------
    X_train : ndarray of shape (n_samples, n_features)
    X_test : ndarray of shape (n_classes * n_test_per_class, n_features)
    y_train, y_test : ndarray of int64
        Class 0 is the largest.

    See Also
    --------
    make_long_tailed : The profile, applied to a labelled set.

    Examples
    --------
    >>> import numpy as np
    >>> from skltr.datasets import make_long_tailed_features
    >>> X_train, X_test, y_train, y_test = make_long_tailed_features(
    ...     random_state=0)
    >>> X_train.shape, X_test.shape
    ((10847, 64), (5000, 64))
    >>> np.bincount(y_train)[[0, -1]]
    array([500,   5])
    """
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"dtype must be a floating-point type; got {dtype}.")
    seed = check_random_state(random_state).randint(np.iinfo(np.int32).max)
    rng = np.random.default_rng(seed)
    counts = _counts_for_total(n_samples, n_classes, imbalance_ratio, profile)
    means = rng.normal(
        scale=class_sep / np.sqrt(2 * n_features), size=(n_classes, n_features)
    ).astype(dtype)
    y_train = np.repeat(np.arange(n_classes), counts)
    y_test = np.repeat(np.arange(n_classes), n_test_per_class)
    # Generators fill float32 and float64 arrays; float16 goes through float32.
    work = dtype if dtype in (np.float32, np.float64) else np.dtype(np.float32)
    X_train = _fill_gaussians(
        np.empty((n_samples, n_features), work), y_train, means.astype(work), rng
    )
    X_test = _fill_gaussians(
        np.empty((len(y_test), n_features), work), y_test, means.astype(work), rng
    )
    return (
        X_train.astype(dtype, copy=False),
        X_test.astype(dtype, copy=False),
        y_train,
        y_test,
    )
