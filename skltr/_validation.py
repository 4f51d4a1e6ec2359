"""Validation of features: ``validate_data`` that also takes tensors and stores.

Every classifier validates its features here, at fit and at predict time,
so that arrays, memory maps, torch tensors (kept on their device) and
:class:`~skltr.distributed.FeatureStore` files meet the same checks and the
same messages.
"""

import numpy as np
import torch
from sklearn.utils.validation import (
    check_array,
    check_consistent_length,
    column_or_1d,
    validate_data,
)

from ._backend import iter_row_chunks
from .distributed import FeatureStore

# float16 and float64 features are kept as they are (float16 stays float16
# until a batch reaches the device); anything else becomes float32.
FEATURE_DTYPES = (np.float32, np.float64, np.float16)
_TENSOR_FEATURE_DTYPES = (torch.float32, torch.float64, torch.float16)


def validate_features(estimator, X, y="no_validation", *, reset):
    """``validate_data`` for features, which also takes torch tensors as they are.

    Arrays and everything else array-like go through scikit-learn's
    ``validate_data`` (as ``FEATURE_DTYPES``). A tensor stays a tensor on its
    device, so that features already on a GPU are trained on there, with no
    copy through the host: it must be 2-D and finite; integer and bfloat16
    tensors become float32, and a tensor that requires grad is detached
    (the features are frozen). ``y`` (an array or a tensor anywhere) comes
    back as a NumPy array.

    Returns X, or (X, y) when ``y`` is given, as ``validate_data`` does.
    """
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    if isinstance(X, FeatureStore):
        if len(X.arrays) == 1:
            # Its memory map, which scikit-learn's checks keep mapped.
            X = X.arrays[0]
        else:
            return _validate_feature_store(estimator, X, y, reset=reset)
    if not isinstance(X, torch.Tensor):
        return validate_data(estimator, X, y, reset=reset, dtype=FEATURE_DTYPES)
    X = _check_feature_tensor(X, type(estimator).__name__)
    return _validate_checked_features(estimator, X, y, reset=reset)


def _validate_checked_features(estimator, X, y, *, reset):
    """``validate_data`` for features already checked (a tensor, a store): ``y``."""
    if isinstance(y, str) and y == "no_validation":
        return validate_data(estimator, X, reset=reset, skip_check_array=True)
    validate_data(estimator, X, y, reset=reset, skip_check_array=True)
    y = check_array(y, ensure_2d=False, dtype=None, input_name="y", estimator=estimator)
    y = column_or_1d(y, warn=True)
    check_consistent_length(X, y)
    return X, y


def _validate_feature_store(estimator, X, y, *, reset):
    """``validate_features`` for a store of several files, read a chunk at a time.

    scikit-learn's checks would read the files into one array; the store is
    2-D float32 by construction, so only finiteness needs a pass over it.
    """
    for rows in iter_row_chunks(*X.shape):
        if not np.isfinite(X[rows].sum(dtype=np.float64)):
            raise ValueError(
                f"Input X contains NaN or infinity (in rows {rows.start} to "
                f"{rows.stop} of the feature store {X.path}). "
                f"{type(estimator).__name__} does not accept missing values: "
                "extract the features again."
            )
    return _validate_checked_features(estimator, X, y, reset=reset)


def _check_feature_tensor(X, name):
    if X.ndim != 2:
        raise ValueError(
            f"{name} expects a 2-D tensor of features, (n_samples, n_features); "
            f"got one of shape {tuple(X.shape)}. Flatten each sample's features "
            "into a row, e.g. X.reshape(len(X), -1)."
        )
    if X.is_complex() or X.dtype == torch.bool:
        raise ValueError(f"{name} expects real-valued features; got {X.dtype}.")
    for axis, what in ((0, "sample"), (1, "feature")):
        if X.shape[axis] < 1:
            raise ValueError(
                f"Found a tensor with 0 {what}(s) (shape={tuple(X.shape)}) while "
                f"a minimum of 1 is required by {name}."
            )
    X = X.detach()
    if X.dtype not in _TENSOR_FEATURE_DTYPES:
        X = X.float()
    if not _all_finite(X):
        raise ValueError(
            f"Input X contains NaN or infinity. {name} does not accept missing "
            "values: impute them first (e.g. sklearn.impute.SimpleImputer) or "
            "drop the rows that hold them."
        )
    return X


def _all_finite(X):
    """Whether every value of the float tensor ``X`` is finite.

    A NaN or an infinity makes the sum non-finite, so the sum decides unless
    it overflowed; only then is every value tested, as scikit-learn does for
    arrays. Testing every value first is about thirty times slower than the
    sum on the CPU.
    """
    total = X.sum(dtype=torch.float32 if X.dtype == torch.float16 else None)
    return bool(torch.isfinite(total)) or bool(torch.isfinite(X).all())
