"""What tau-norm, LWS and LORT share: a stage-1 (joint) classifier to re-balance.

The joint classifier is fit here, or handed in by the user as a fitted
:class:`JointClassifier`, a ``torch.nn.Linear`` or a ``(coef, intercept)``
pair; with ``memory`` set, fitting it is cached so a grid search over the
re-balancing parameters fits it once per fold.
"""

import hashlib

import numpy as np
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.frozen import FrozenEstimator
from sklearn.utils._param_validation import HasMethods
from sklearn.utils.validation import check_is_fitted, check_memory

from ._backend import DeviceFeatures, host_rows, iter_row_chunks
from ._base import BaseTrainedClassifier
from ._joint import JointClassifier
from ._warnings import warn


def _fit_joint(joint, X, y, data_key):
    # Module-level so that joblib.Memory can cache it. X and y are left out of
    # its hash and ``data_key`` stands for them: SHA-1 runs 2.5 times faster
    # than joblib's MD5 of the pickled arrays, which was a quarter of a
    # 21-tau grid search (one lookup per candidate and fold).
    return joint.fit(X, y)


def _data_key(X, y):
    """SHA-1 of the arrays' dtypes, shapes and values, a chunk of rows at a time.

    A tensor is read a chunk at a time from its device; it gets another key
    than an array of the same values.
    """
    digest = hashlib.sha1()
    for array in (X, y):
        dtype = array.dtype if isinstance(array, torch.Tensor) else array.dtype.str
        digest.update(f"{dtype}{tuple(array.shape)}".encode())
        width = array.shape[1] if array.ndim == 2 else 1
        for rows in iter_row_chunks(len(array), width):
            chunk = np.ascontiguousarray(host_rows(array, rows))
            digest.update(memoryview(chunk).cast("B"))
    return digest.hexdigest()


class BaseRebalancer(BaseTrainedClassifier):
    """A classifier that re-balances a joint (stage-1) linear classifier."""

    _parameter_constraints: dict = {
        **BaseTrainedClassifier._parameter_constraints,
        "joint": [None, HasMethods(["fit", "predict"]), torch.nn.Linear, tuple, list],
        "memory": [None, str, HasMethods(["cache"])],
    }

    def _fit_joint_head(self, X, y):
        """Set ``joint_coef_``, ``joint_intercept_`` and the feature scaling.

        ``y`` holds the encoded labels 0 to n_classes - 1.
        """
        coef, intercept, mean, scale = self._joint_head(X, y)
        n_classes, n_features = len(self.classes_), X.shape[1]
        if coef.shape != (n_classes, n_features) or intercept.shape != (n_classes,):
            raise ValueError(
                f"The joint classifier handed to {type(self).__name__} has "
                f"weights of shape {coef.shape} and bias of shape "
                f"{intercept.shape}; the data has {n_classes} classes and "
                f"{n_features} features, so they must be ({n_classes}, "
                f"{n_features}) and ({n_classes},)."
            )
        self.joint_coef_ = coef
        self.joint_intercept_ = intercept
        self.feature_mean_, self.feature_scale_ = mean, scale

    def _joint_head(self, X, y):
        joint = self.joint
        if isinstance(joint, FrozenEstimator):
            joint = joint.estimator
        if joint is None:
            joint = JointClassifier(device=self.device, random_state=self.random_state)
        if isinstance(joint, torch.nn.Linear):
            coef = joint.weight.detach().cpu().numpy()
            intercept = (
                np.zeros(joint.out_features, dtype=np.float32)
                if joint.bias is None
                else joint.bias.detach().cpu().numpy()
            )
            return coef.astype(np.float32), intercept.astype(np.float32), None, None
        if isinstance(joint, (tuple, list)):
            if len(joint) != 2:
                raise ValueError(
                    "joint as a pair must be (coef, intercept); got a sequence of "
                    f"length {len(joint)}."
                )
            coef, intercept = (np.asarray(a, dtype=np.float32) for a in joint)
            return coef, intercept, None, None
        if not isinstance(joint, JointClassifier):
            raise ValueError(
                "joint must be None, a JointClassifier, a torch.nn.Linear or a "
                f"(coef, intercept) pair; got {type(joint).__name__}."
            )
        try:
            check_is_fitted(joint)
        except NotFittedError:
            if self.memory is None:
                # No cache to look up, so no key: hashing ImageNet-LT-size
                # features takes a second.
                joint = clone(joint).fit(X, y)
            else:
                fit = check_memory(self.memory).cache(_fit_joint, ignore=["X", "y"])
                joint = fit(clone(joint), X, y, _data_key(X, y))
            classes = np.arange(len(self.classes_))
        else:
            classes = self.classes_
        if not np.array_equal(joint.classes_, classes):
            raise ValueError(
                f"The fitted joint classifier knows the classes {joint.classes_}, "
                f"but y has the classes {self.classes_}; they must be the same."
            )
        return joint.coef_, joint.intercept_, joint.feature_mean_, joint.feature_scale_

    def _device_features(self, X, y, device):
        """Training features on the device, scaled as the joint classifier sees them."""
        return DeviceFeatures(
            X, y, device, shift=self.feature_mean_, scale=self.feature_scale_
        )

    def _joint_tensors(self, device):
        """The joint weights and bias as tensors on ``device``."""
        return (
            torch.as_tensor(self.joint_coef_, device=device),
            torch.as_tensor(self.joint_intercept_, device=device),
        )

    def _warn_if_training_cannot_choose(self, scores, candidates, what, remedy):
        """Warn when several candidates classify the whole training set right.

        ``scores`` are the candidates' mean per-class training accuracies, and
        the first best one is kept. When the joint classifier fits the
        training set perfectly, which is common when the features have more
        dimensions than the tail classes have samples, several candidates
        score 1 and the training set cannot choose between them.
        """
        perfect = np.flatnonzero(np.asarray(scores) >= 1.0)
        if len(perfect) > 1:
            warn(
                f"{type(self).__name__} chooses {what} by mean per-class "
                f"accuracy on the training set, but {len(perfect)} of the "
                f"{len(scores)} candidates ({candidates(perfect)}) classify "
                "every training sample correctly, so the training set cannot "
                f"tell them apart; the first was kept. {remedy}"
            )
