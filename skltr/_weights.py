"""Class and sample weights in the loss (user guide: docs/guide/loss_family.md).

Loss re-weighting multiplies the loss of a sample of class j by a class
weight w_j, and scikit-learn's ``sample_weight`` multiplies each sample's loss
by its own weight. Both are spelled as scikit-learn spells them:
``class_weight`` is None, ``"balanced"`` (w_j = n / (C n_j)), a dict from
class label to weight, or, beyond scikit-learn, ``"effective"``: the
class-balanced loss of Cui et al. (2019), w_j = (1 - beta) / (1 - beta^n_j),
normalised to sum to C over the classes.

The trainers see one weight per row, class weight times sample weight,
rescaled to mean 1 over the training set: the SGD step sizes are set for a
mean loss of unit-weight rows, so only the weights' ratios change the fit
(scaling every weight by 100 is no change, where for scikit-learn's
``LogisticRegression`` it would weaken the regularisation). The class
weights, and every class prior skltr corrects for, read the class counts,
not the weighted class totals, as scikit-learn's ``"balanced"`` does.
"""

import numpy as np
import torch
from sklearn.utils.validation import _check_sample_weight

#: Class-balanced loss's beta for CIFAR-LT and ImageNet-LT (Cui et al. 2019).
DEFAULT_BETA = 0.9999


def effective_number_weights(class_counts, beta):
    """The class-balanced loss's weights, (1 - beta) / (1 - beta^n_j), summing to C.

    beta = 0 weighs every class alike; beta -> 1 tends to inverse frequency.

    Parameters
    ----------
    class_counts : array-like of shape (n_classes,)
        Training samples per class, each at least 1.
    beta : float in [0, 1)

    Returns
    -------
    weights : ndarray of shape (n_classes,)
    """
    counts = np.asarray(class_counts, dtype=np.float64)
    # 1 - beta^n as -expm1(n log beta): exact for beta near 1 (1 - 0.9999^n
    # loses four digits to cancellation in the direct form).
    effective = -np.expm1(counts * np.log(beta)) if beta > 0 else np.ones_like(counts)
    weights = (1.0 - beta) / effective
    return weights * (len(counts) / weights.sum())


def class_weight_vector(class_weight, classes, class_counts, beta=DEFAULT_BETA):
    """Weight of each class, in the order of ``classes``.

    Parameters
    ----------
    class_weight : None, "balanced", "effective" or dict
    classes : ndarray of shape (n_classes,)
        The sorted class labels.
    class_counts : ndarray of shape (n_classes,)
    beta : float
        For ``"effective"``.

    Returns
    -------
    weights : ndarray of shape (n_classes,) or None
        None when every class weighs the same.
    """
    if class_weight is None:
        return None
    counts = np.asarray(class_counts, dtype=np.float64)
    if class_weight == "balanced":
        return counts.sum() / (len(counts) * counts)
    if class_weight == "effective":
        return effective_number_weights(counts, beta)
    return _dict_weights(class_weight, classes)


def _dict_weights(class_weight, classes):
    labels = list(class_weight)
    unknown = [label for label in labels if not np.isin(label, classes).any()]
    if unknown:
        raise ValueError(
            f"class_weight names classes that y does not have: {unknown[:10]}. "
            f"The classes are {classes[:10].tolist()}"
            f"{' ...' if len(classes) > 10 else ''}."
        )
    given = np.isin(classes, np.asarray(labels, dtype=classes.dtype))
    if not given.all():
        raise ValueError(
            f"class_weight gives no weight for the classes "
            f"{classes[~given][:10].tolist()}: give every class a weight "
            "(1.0 leaves a class as it is)."
        )
    weights = np.array([class_weight[label] for label in classes.tolist()], float)
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValueError(
            f"class_weight values must be finite and non-negative; got {weights}."
        )
    return weights


def checked_sample_weight(sample_weight, X):
    """``sample_weight`` as a float64 array checked against ``X``; None stays None.

    Errors name the parameter: a wrong length, a negative or non-finite
    weight.
    """
    if sample_weight is None:
        return None
    if isinstance(sample_weight, torch.Tensor):
        sample_weight = sample_weight.detach().cpu().numpy()
    return _check_sample_weight(
        sample_weight, X, dtype=np.float64, ensure_non_negative=True
    ).copy()


def check_class_totals(weights, y, classes, what="sample_weight"):
    """Raise when ``weights`` are zero for every sample, or for a whole class.

    ``y`` holds the encoded labels of the rows ``weights`` weigh; ``what``
    names the weights in the message.
    """
    per_class_total = np.bincount(y, weights=weights, minlength=len(classes))
    if not per_class_total.any():
        raise ValueError(
            f"{what} is zero for every sample: there is nothing to fit. Give "
            "some samples a positive weight."
        )
    weightless = per_class_total == 0
    if weightless.any():
        raise ValueError(
            f"{what} is zero for every sample of the classes "
            f"{classes[weightless][:10].tolist()}, so the classifier cannot "
            "learn them: give them a positive weight or drop them from y."
        )


def mean_one(weights):
    """``weights`` rescaled to mean 1 (None stays None)."""
    return None if weights is None else weights / weights.mean()


def within_class_mean_one(weights, y, n_classes):
    """``weights`` rescaled to mean 1 within each class of the encoded ``y``.

    For a loss whose class balance is set elsewhere (a class-balanced
    sampler, class weights from the counts): the sample weights then only
    say which rows of a class count more. None stays None.
    """
    if weights is None:
        return None
    class_mean = np.bincount(y, weights=weights, minlength=n_classes) / np.bincount(
        y, minlength=n_classes
    ).clip(min=1)
    return weights / class_mean[y]


def estimator_class_weights(estimator):
    """Each class's weight from a fitted-so-far estimator's ``class_weight``.

    In the order of its ``classes_``, from its ``class_counts_`` (and
    ``beta``); None when every class weighs the same. An estimator without
    ``class_weight`` (LDAM defers its own) weighs its classes alike.
    """
    return class_weight_vector(
        getattr(estimator, "class_weight", None),
        estimator.classes_,
        estimator.class_counts_,
        getattr(estimator, "beta", DEFAULT_BETA),
    )


def training_weights(estimator, X, y, sample_weight):
    """Each training row's weight in the loss, mean 1, or None for uniform weights.

    Combines ``estimator.class_weight`` (and ``beta``), where it has one,
    with ``sample_weight``, both checked here, with errors naming the
    parameter.

    Parameters
    ----------
    estimator : a fitted-so-far estimator with ``classes_`` and ``class_counts_``
    X : array-like or torch.Tensor of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
        Encoded labels.
    sample_weight : array-like or torch.Tensor of shape (n_samples,) or None
    """
    per_class = estimator_class_weights(estimator)
    if sample_weight is None and per_class is None:
        return None
    weights = checked_sample_weight(sample_weight, X)
    if weights is None:
        weights = np.ones(len(y))
    if per_class is not None:
        weights *= per_class[y]
    check_class_totals(
        weights,
        y,
        estimator.classes_,
        "sample_weight" if per_class is None else "sample_weight (times class_weight)",
    )
    return mean_one(weights)
