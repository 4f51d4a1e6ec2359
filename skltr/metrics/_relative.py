"""Relative accuracy (Zhang et al., "Deep Long-Tailed Learning: A Survey", TPAMI)."""

from numbers import Real

import numpy as np
from sklearn.utils._param_validation import validate_params


def _as_accuracies(value, name):
    values = np.asarray(value, dtype=np.float64)
    if np.any(values < 0) or np.any(np.isinf(values)):
        raise ValueError(
            f"{name} must hold accuracies, finite and >= 0; got {value!r}."
        )
    return values


@validate_params(
    {
        "acc": [Real, "array-like", dict],
        "upper_reference_acc": [Real, "array-like", dict],
    },
    prefer_skip_nested_validation=True,
)
def relative_accuracy(acc, upper_reference_acc):
    """Accuracy relative to the same pipeline trained on balanced data.

    A_r = A_t / A_u: the accuracy ``acc`` of a method trained on the
    long-tailed set, over the accuracy ``upper_reference_acc`` of the same
    pipeline trained on a balanced training set of about the same total size
    (the survey's upper reference). It separates what re-balancing recovers
    from what the representation or the data allow: 1 means the long tail
    costs nothing.

    Parameters
    ----------
    acc : float, array-like or dict
        Accuracies of the long-tailed training, on any scale (fractions or
        percent) shared with ``upper_reference_acc``. A dict, such as the
        output of :func:`shot_accuracy`, gives one ratio per key.
    upper_reference_acc : float, array-like or dict
        The balanced-training accuracies, of the same shape (or the same
        keys); must be positive.

    Returns
    -------
    relative : float, ndarray or dict
        ``acc / upper_reference_acc`` in the form of ``acc``. NaN entries
        (an empty shot split) stay NaN.

    See Also
    --------
    shot_accuracy : Accuracies per split, to pass here as dicts.

    Examples
    --------
    >>> from skltr.metrics import relative_accuracy
    >>> relative_accuracy(0.45, 0.9)
    0.5
    >>> relative_accuracy({"many": 0.9, "few": 0.3}, {"many": 0.9, "few": 0.6})
    {'many': 1.0, 'few': 0.5}
    """
    if isinstance(acc, dict) or isinstance(upper_reference_acc, dict):
        if not (isinstance(acc, dict) and isinstance(upper_reference_acc, dict)):
            raise ValueError(
                "acc and upper_reference_acc must both be dicts or neither."
            )
        if acc.keys() != upper_reference_acc.keys():
            raise ValueError(
                f"acc has the keys {sorted(acc)} but upper_reference_acc has "
                f"{sorted(upper_reference_acc)}; they must be the same."
            )
        return {
            key: relative_accuracy(acc[key], upper_reference_acc[key]) for key in acc
        }
    achieved = _as_accuracies(acc, "acc")
    reference = _as_accuracies(upper_reference_acc, "upper_reference_acc")
    if achieved.shape != reference.shape:
        raise ValueError(
            f"acc has shape {achieved.shape} but upper_reference_acc has shape "
            f"{reference.shape}; give one reference accuracy per accuracy."
        )
    if np.any(reference == 0):
        raise ValueError(
            "upper_reference_acc must be positive: a balanced training that "
            "scores 0 is no reference."
        )
    ratio = achieved / reference
    return float(ratio) if ratio.ndim == 0 else ratio
