"""The stage-1 (joint) head of a re-balancer: handed in, or fit here and cached.

A re-balancer starts from a joint linear classifier. The user hands in a
fitted one (a :class:`JointClassifier`, a ``torch.nn.Linear`` or a ``(coef,
intercept)`` pair), or a :class:`JointClassifier` is fit here: on all the
training data, and on each cross-fitted fold. With ``memory`` set, each fit
is cached, keyed by a hash of its data, so that a grid search over the
re-balancing parameters, or another re-balancer on the same data, finds the
joint fits (fold fits included) already made.
"""

import hashlib

import numpy as np
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.utils.validation import check_is_fitted, check_memory

from ._backend import host_rows, iter_row_chunks
from ._joint import JointClassifier
from ._softmax_regression import resolve_weight_decay

#: With ``refit="warm"``, the joint classifier fit on all the data after
#: cross-fitting starts from the mean of the fold heads, as
#: LogisticRegressionCV's refit starts from the mean of its folds'
#: coefficients, and trains a third of the epochs at a quarter of the step:
#: it starts near the optimum of a convex loss, and a full step would carry
#: it away again. On 9 problems x 2 seeds it kept the held-out accuracy of
#: the fit from zero (0.1 to 0.4 points above on average for every
#: re-balancer) at a third of its cost (docs/performance.md).
REFIT_EPOCH_DIVISOR = 3
REFIT_LR_DIVISOR = 4


def unwrapped(joint):
    """The ``joint`` parameter with a ``FrozenEstimator`` taken off."""
    return joint.estimator if isinstance(joint, FrozenEstimator) else joint


def stage1_estimator(joint, *, device, random_state):
    """The :class:`JointClassifier` a fit trains, or None for a fitted head.

    ``joint`` is the re-balancer's parameter: None trains a default joint
    classifier on ``device`` from ``random_state``; an unfitted
    :class:`JointClassifier` is trained as given.
    """
    joint = unwrapped(joint)
    if joint is None:
        return JointClassifier(device=device, random_state=random_state)
    if isinstance(joint, JointClassifier):
        try:
            check_is_fitted(joint)
        except NotFittedError:
            return joint
    return None


def given_head(joint):
    """``(coef, intercept)`` of a head handed in as weights, float32.

    For a ``torch.nn.Linear`` (no bias: zeros) or a ``(coef, intercept)``
    pair; None for a :class:`JointClassifier` (or None), whose fitted
    attributes are read instead.
    """
    joint = unwrapped(joint)
    if isinstance(joint, torch.nn.Linear):
        coef = joint.weight.detach().cpu().numpy()
        intercept = (
            np.zeros(joint.out_features, dtype=np.float32)
            if joint.bias is None
            else joint.bias.detach().cpu().numpy()
        )
        return coef.astype(np.float32), intercept.astype(np.float32)
    if isinstance(joint, (tuple, list)):
        if len(joint) != 2:
            raise ValueError(
                "joint as a pair must be (coef, intercept); got a sequence of "
                f"length {len(joint)}."
            )
        coef, intercept = (np.asarray(a, dtype=np.float32) for a in joint)
        return coef, intercept
    if joint is not None and not isinstance(joint, JointClassifier):
        raise ValueError(
            "joint must be None, a JointClassifier, a torch.nn.Linear or a "
            f"(coef, intercept) pair; got {type(joint).__name__}."
        )
    return None


def fit_stage1(
    estimator, X, y, sample_weight=None, *, memory, folds=(), refit, n_full=None
):
    """A clone of the stage-1 ``estimator`` fit on ``X``, encoded ``y`` and weights.

    With ``refit="warm"`` and cross-fitted ``folds``, the fit starts from
    the mean of their heads and is shorter (``REFIT_EPOCH_DIVISOR``).
    A fold's fit gives ``n_full``, the size of the whole training set:
    ``weight_decay="auto"`` then takes the penalty of the joint classifier
    fit on all of it, so that the folds' heads, whose weights the knob is
    chosen on, are regularised as the head it is applied to. With
    ``memory`` set, the fit is cached, keyed by the data's hash.
    """
    joint = clone(estimator)
    if n_full is not None and joint.get_params().get("weight_decay") == "auto":
        joint.set_params(weight_decay=resolve_weight_decay("auto", n_full))
    start = None
    if folds and refit == "warm":
        heads = [fold.head.on_features_as_given() for fold in folds]
        start = tuple(np.mean(weights, axis=0) for weights in zip(*heads, strict=True))
        joint.set_params(
            epochs=-(-joint.epochs // REFIT_EPOCH_DIVISOR),
            lr=joint.lr / REFIT_LR_DIVISOR,
        )
    if memory is None:
        # No cache to look up, so no key: hashing ImageNet-LT-size features
        # takes a second.
        return _fit_weighted(joint, X, y, sample_weight, start)
    fit = check_memory(memory).cache(_fit_joint, ignore=["X", "y", "sample_weight"])
    return fit(joint, X, y, sample_weight, data_digest(X, y, sample_weight), start)


def _fit_joint(joint, X, y, sample_weight, data_key, start=None):
    # Module-level so that joblib.Memory can cache it. X, y and the weights
    # are left out of its hash and ``data_key`` stands for them: SHA-1 runs
    # 2.5 times faster than joblib's MD5 of the pickled arrays, which was a
    # quarter of a 21-tau grid search (one lookup per candidate and fold).
    # ``start`` (small) is hashed with the joint classifier's parameters.
    return _fit_weighted(joint, X, y, sample_weight, start)


def _fit_weighted(joint, X, y, sample_weight, start=None):
    # Only the fit parameters in use are passed: a subclass of
    # JointClassifier that overrides fit(X, y) keeps working where neither
    # weights nor a warm start are asked for.
    fit_params = {}
    if sample_weight is not None:
        fit_params["sample_weight"] = sample_weight
    if start is not None:
        fit_params["coef_init"], fit_params["intercept_init"] = start
    return joint.fit(X, y, **fit_params)


def data_digest(X, y, sample_weight=None):
    """SHA-1 of the arrays' dtypes, shapes and values, a chunk of rows at a time.

    A tensor is read a chunk at a time from its device; it gets another key
    than an array of the same values.
    """
    digest = hashlib.sha1()
    arrays = (X, y) if sample_weight is None else (X, y, sample_weight)
    for array in arrays:
        dtype = array.dtype if isinstance(array, torch.Tensor) else array.dtype.str
        digest.update(f"{dtype}{tuple(array.shape)}".encode())
        width = array.shape[1] if array.ndim == 2 else 1
        for rows in iter_row_chunks(len(array), width):
            chunk = np.ascontiguousarray(host_rows(array, rows))
            digest.update(memoryview(chunk).cast("B"))
    return digest.hexdigest()
