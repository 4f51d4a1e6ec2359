"""The Decoupling paper's figures (weight norms per class, accuracy against tau,
per-class accuracy against training count) and a reliability diagram."""

import numpy as np
from sklearn.utils.validation import check_is_fitted, column_or_1d

from ..metrics._scorer import final_estimator, training_counts
from ..metrics._shot import class_count_table, per_class_accuracy, split_names
from ..metrics._tau_sweep import tau_sweep

_SPLIT_STYLES = {"many": "-", "medium": "-", "few": "-", "all": "--"}


def _axes(ax):
    try:
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            "skltr.plotting needs matplotlib; install it with "
            "pip install 'skltr[plot]' (or pip install matplotlib)."
        ) from None
    if ax is None:
        _, ax = plt.subplots()
    return ax


def _named(estimators):
    """``{name: estimator}`` from one estimator or a dict of them."""
    if isinstance(estimators, dict):
        if not estimators:
            raise ValueError("estimators is an empty dict; give at least one.")
        return estimators
    return {_default_name(estimators): estimators}


def _default_name(estimator):
    name = type(final_estimator(estimator)).__name__
    return name.removesuffix("Classifier") or name


def _labels_and_counts(estimators, class_counts):
    """Classes and training counts: the given counts, or the first estimator's."""
    first = next(iter(estimators.values()))
    if not hasattr(first, "fit"):
        if class_counts is None:
            raise ValueError("Pass class_counts= with weight arrays.")
        return None, column_or_1d(class_counts)
    labels, counts = training_counts(first, class_counts)
    return labels, column_or_1d(counts)


def plot_weight_norms(estimators, *, class_counts=None, ax=None):
    """Weight norm of each class, classes sorted by training count.

    The Decoupling paper's Figure 2 (left): a joint classifier's norms
    follow its classes' training counts; re-balanced classifiers are flatter.

    Parameters
    ----------
    estimators : fitted estimator, array or dict
        A fitted linear classifier (``coef_`` of shape (n_classes,
        n_features)), a Pipeline ending in one, or a weight array; or a dict
        ``{label: estimator or array}`` to draw several on one axis.
    class_counts : array-like of shape (n_classes,), default=None
        Training samples per class, in the rows' order; None reads the first
        estimator's ``class_counts_``.
    ax : matplotlib Axes, default=None
        Where to draw; None makes a new figure.

    Returns
    -------
    ax : matplotlib Axes

    See Also
    --------
    plot_tau_sweep : The other half of the paper's Figure 2.

    Examples
    --------
    >>> import numpy as np
    >>> from skltr import CRTClassifier, JointClassifier
    >>> from skltr.plotting import plot_weight_norms
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(4), [300, 90, 30, 12])
    >>> X = rng.normal(size=(len(y), 8)) + 2.0 * np.eye(4, 8)[y]
    >>> joint = JointClassifier(device="cpu", random_state=0).fit(X, y)
    >>> crt = CRTClassifier(device="cpu", random_state=0).fit(X, y)
    >>> ax = plot_weight_norms({"Joint": joint, "cRT": crt})
    """
    if not isinstance(estimators, dict) and not hasattr(estimators, "fit"):
        estimators = {"weights": estimators}
    estimators = _named(estimators)
    norms = {}
    for name, estimator in estimators.items():
        if hasattr(estimator, "fit"):
            final = final_estimator(estimator)
            check_is_fitted(final)
            coef = getattr(final, "coef_", None)
            if coef is None or np.ndim(coef) != 2:
                raise ValueError(
                    f"{name}: {type(final).__name__} has no per-class weights "
                    "(coef_ of shape (n_classes, n_features)) to take norms of."
                )
        else:
            coef = np.asarray(estimator)
        norms[name] = np.linalg.norm(coef, axis=1)
    _, counts = _labels_and_counts(estimators, class_counts)
    for name, values in norms.items():
        if len(values) != len(counts):
            raise ValueError(
                f"{name} has {len(values)} weight rows but class_counts has "
                f"{len(counts)} entries; they must match."
            )
    order = np.argsort(-counts, kind="stable")
    ax = _axes(ax)
    from matplotlib.ticker import MaxNLocator

    for name, values in norms.items():
        ax.plot(np.arange(len(order)), values[order], label=name)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("class, sorted by training samples (most first)")
    ax.set_ylabel("weight norm ||w_j||")
    ax.set_title("Classifier weight norms")
    ax.legend()
    return ax


def plot_tau_sweep(
    estimator, X, y, *, taus=None, class_counts=None, many=100, few=20, ax=None
):
    """Mean per-class accuracy of each shot split against tau.

    The Decoupling paper's Figure 2 (right), computed by
    :func:`skltr.metrics.tau_sweep` from one fitted joint classifier: as tau
    grows, Many falls and Few rises. A fitted
    :class:`~skltr.TauNormClassifier` also gets a line at its chosen
    ``tau_``.

    Parameters
    ----------
    estimator : fitted estimator
        As for :func:`skltr.metrics.tau_sweep`.
    X : array-like of shape (n_samples, n_features)
        Evaluation features.
    y : array-like of shape (n_samples,)
        Their labels.
    taus : array-like of float, default=None
        None is 0.0, 0.1, ..., 2.0.
    class_counts : array-like of shape (n_classes,), default=None
        Training samples per class; None reads ``class_counts_``.
    many, few : int, default=100, 20
        The split thresholds.
    ax : matplotlib Axes, default=None
        Where to draw; None makes a new figure.

    Returns
    -------
    ax : matplotlib Axes

    See Also
    --------
    skltr.metrics.tau_sweep : The numbers drawn.
    plot_weight_norms : The weight norms that tau divides by.

    Examples
    --------
    >>> import numpy as np
    >>> from skltr import JointClassifier
    >>> from skltr.plotting import plot_tau_sweep
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(4), [300, 90, 30, 12])
    >>> X = rng.normal(size=(len(y), 8)) + 2.0 * np.eye(4, 8)[y]
    >>> joint = JointClassifier(device="cpu", random_state=0).fit(X, y)
    >>> ax = plot_tau_sweep(joint, X, y, many=50, few=15)
    """
    sweep = tau_sweep(
        estimator, X, y, taus=taus, class_counts=class_counts, many=many, few=few
    )
    labels = split_names(many, few)
    ax = _axes(ax)
    for split, style in _SPLIT_STYLES.items():
        if np.isfinite(sweep[split]).any():
            ax.plot(sweep["tau"], sweep[split], style, marker=".", label=labels[split])
    chosen = getattr(final_estimator(estimator), "tau_", None)
    if chosen is not None:
        ax.axvline(
            chosen, color="gray", linestyle=":", label=f"chosen tau = {chosen:g}"
        )
    ax.set_xlabel("tau")
    ax.set_ylabel("mean per-class accuracy")
    ax.set_title("tau-normalised classifier")
    ax.legend()
    return ax


def plot_per_class_accuracy(
    estimators, X, y, *, class_counts=None, many=None, few=None, ax=None
):
    """Test accuracy of each class against its number of training samples.

    Parameters
    ----------
    estimators : fitted estimator or dict
        A fitted classifier (or Pipeline), or ``{label: estimator}`` to draw
        several on one axis.
    X : array-like of shape (n_samples, n_features)
        Evaluation input.
    y : array-like of shape (n_samples,)
        Its labels.
    class_counts : array-like of shape (n_classes,), default=None
        Training samples per class in the order of the first estimator's
        ``classes_``; None reads its ``class_counts_``.
    many, few : int, default=None
        When given, the split thresholds are drawn as vertical lines.
    ax : matplotlib Axes, default=None
        Where to draw; None makes a new figure.

    Returns
    -------
    ax : matplotlib Axes

    See Also
    --------
    skltr.metrics.shot_accuracy : The same accuracies averaged per split.

    Examples
    --------
    >>> import numpy as np
    >>> from skltr import NCMClassifier
    >>> from skltr.plotting import plot_per_class_accuracy
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(4), [300, 90, 30, 12])
    >>> X = rng.normal(size=(len(y), 8)) + 2.0 * np.eye(4, 8)[y]
    >>> ax = plot_per_class_accuracy(NCMClassifier().fit(X, y), X, y)
    """
    estimators = _named(estimators)
    labels, counts = _labels_and_counts(estimators, class_counts)
    y = column_or_1d(y)
    labels, counts = class_count_table(y, counts, labels)
    ax = _axes(ax)
    for name, estimator in estimators.items():
        accuracy, support = per_class_accuracy(y, estimator.predict(X), labels)
        tested = support > 0
        ax.scatter(counts[tested], accuracy[tested], s=12, alpha=0.7, label=name)
    for threshold in (many, few):
        if threshold is not None:
            ax.axvline(threshold, color="gray", linestyle=":")
    if counts.min() > 0:
        ax.set_xscale("log")
    ax.set_xlabel("training samples of the class")
    ax.set_ylabel("test accuracy of the class")
    ax.set_title("Per-class accuracy")
    ax.legend()
    return ax


def plot_reliability_diagram(y_true, y_prob, *, n_bins=15, labels=None, ax=None):
    """Accuracy against confidence, per bin of the top predicted probability.

    A bar per non-empty bin at the accuracy of its samples, against the
    diagonal of perfect calibration; the title gives the expected
    calibration error. A long-tailed classifier's bars below the diagonal
    are over-confidence (Zhong et al., CVPR 2021): draw one diagram per shot
    split by passing the samples of its classes.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
    y_prob : array-like of shape (n_samples, n_classes)
        Predicted probabilities, such as ``predict_proba``'s.
    n_bins : int, default=15
    labels : array-like of shape (n_classes,), default=None
        The labels of ``y_prob``'s columns; as for
        :func:`skltr.metrics.expected_calibration_error`.
    ax : matplotlib Axes, default=None
        Where to draw; None makes a new figure.

    Returns
    -------
    ax : matplotlib Axes

    See Also
    --------
    skltr.metrics.expected_calibration_error : The gap the bars show.

    Examples
    --------
    >>> import numpy as np
    >>> from skltr.plotting import plot_reliability_diagram
    >>> rng = np.random.default_rng(0)
    >>> y_prob = rng.dirichlet([1.0, 1.0, 1.0], size=200)
    >>> ax = plot_reliability_diagram(rng.integers(0, 3, 200), y_prob)
    """
    from ..metrics._calibration import reliability

    count, accuracy, confidence, ece = reliability(
        y_true, y_prob, n_bins=n_bins, labels=labels
    )
    ax = _axes(ax)
    width = 1.0 / n_bins
    left = np.arange(n_bins) * width
    filled = count > 0
    ax.bar(
        left[filled],
        accuracy[filled],
        width=width,
        align="edge",
        edgecolor="black",
        label="accuracy",
    )
    ax.plot(
        confidence[filled],
        confidence[filled],
        "o",
        color="tab:red",
        label="mean confidence",
    )
    ax.plot([0, 1], [0, 1], ":", color="gray", label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("top predicted probability")
    ax.set_ylabel("accuracy")
    ax.set_title(f"ECE = {ece:.3f} ({n_bins} bins)")
    ax.legend(loc="upper left")
    return ax
