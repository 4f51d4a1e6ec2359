"""Accuracy per shot split against tau, from one fitted joint classifier."""

from numbers import Integral

import numpy as np
from sklearn.utils._param_validation import HasMethods, Interval, validate_params
from sklearn.utils.validation import check_is_fitted, column_or_1d

from .._backend import scoring_device
from .._docstrings import fill_doc
from .._linear import BaseLinearClassifier
from .._selection import DEFAULT_TAU_GRID
from .._tau import correct_by_tau
from .._validation import validate_features
from ._scorer import final_estimator, training_counts
from ._shot import SPLITS, class_count_table, split_table


@validate_params(
    {
        "estimator": [HasMethods(["predict"])],
        "X": ["array-like"],
        "y": ["array-like"],
        "taus": [None, "array-like"],
        "class_counts": [None, "array-like"],
        "many": [Interval(Integral, 0, None, closed="left")],
        "few": [Interval(Integral, 0, None, closed="left")],
    },
    prefer_skip_nested_validation=True,
)
@fill_doc()
def tau_sweep(estimator, X, y, *, taus=None, class_counts=None, many=100, few=20):
    """Shot-split accuracies of the tau-normalised classifier, for each tau.

    Every tau normalises the same fitted joint weights, w_j / ||w_j||^tau with
    the bias dropped (see :class:`~skltr.TauNormClassifier`), so the sweep
    costs one product of ``X`` with the weights, not a fit per tau: the
    Decoupling paper's Figure 2 (right).

    Parameters
    ----------
    estimator : fitted estimator
        The joint classifier: a :class:`~skltr.JointClassifier`, the joint
        classifier of a fitted re-balancer (``joint_coef_`` of
        :class:`~skltr.TauNormClassifier`, :class:`~skltr.LWSClassifier`,
        :class:`~skltr.LORTClassifier`), or a multiclass linear model with
        ``coef_`` such as scikit-learn's ``LogisticRegression``; or a
        Pipeline ending in one.
    X : array-like or torch.Tensor of shape (n_samples, n_features)
        Evaluation features (or the Pipeline's input). A tensor is swept
        where it is, on a GPU too.
    y : array-like or torch.Tensor of shape (n_samples,)
        Their labels, all among the estimator's ``classes_``.
    taus : array-like of float, default=None
        None is 0.0, 0.1, ..., 2.0 (the paper's sweep).
    class_counts : array-like of shape (n_classes,), default=None
        Training samples per class in the order of ``classes_``; None reads
        the estimator's ``class_counts_``.
    many, few : int, default=100, 20
        The split thresholds of :func:`shot_accuracy`.

    Returns
    -------
    sweep : dict
        ``"tau"``: the taus; ``"many"``, ``"medium"``, ``"few"``, ``"all"``:
        arrays of the mean per-class accuracy of each split at each tau (NaN
        for an empty split).

    See Also
    --------
    skltr.plotting.plot_tau_sweep : Draws this.
    skltr.TauNormClassifier : Chooses tau on held-out data, with the same counting.

    Examples
    --------
    >>> import numpy as np
    >>> from skltr import JointClassifier
    >>> from skltr.metrics import tau_sweep
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(4), [300, 90, 30, 12])
    >>> X = rng.normal(size=(len(y), 8)) + 2.0 * np.eye(4, 8)[y]
    >>> joint = JointClassifier(device="cpu", random_state=0).fit(X, y)
    >>> sweep = tau_sweep(joint, X, y, taus=[0.0, 1.0], many=50, few=15)
    >>> sorted(sweep)
    ['all', 'few', 'many', 'medium', 'tau']
    """
    final, X = final_estimator(estimator, X)
    check_is_fitted(final)
    coef = getattr(final, "joint_coef_", getattr(final, "coef_", None))
    if coef is None or np.ndim(coef) != 2 or len(coef) != len(final.classes_):
        raise ValueError(
            f"tau_sweep needs a linear classifier with one weight row per class "
            f"(coef_ of shape (n_classes, n_features)); {type(final).__name__} "
            "has none."
        )
    X, y = validate_features(final, X, y, reset=False)
    # skltr's linear classifiers score standardised rows; others the rows as given.
    shift, scale = (
        (final.feature_mean_, final.feature_scale_)
        if isinstance(final, BaseLinearClassifier)
        else (None, None)
    )
    y = column_or_1d(y)
    labels, counts = training_counts(final, class_counts)
    labels, counts = class_count_table(y, counts, labels)
    encoded = np.searchsorted(labels, y)
    taus = DEFAULT_TAU_GRID if taus is None else column_or_1d(taus).astype(float)
    correct = correct_by_tau(
        X,
        encoded,
        coef,
        taus,
        len(labels),
        shift=shift,
        scale=scale,
        device=scoring_device(X),
    )
    support = np.bincount(encoded, minlength=len(labels))
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = correct / support
    tables = [split_table(row, support, counts, many=many, few=few) for row in accuracy]
    return {"tau": taus} | {
        split: np.array([table[split]["accuracy"] for table in tables])
        for split in SPLITS
    }
