"""Base classes: what every long-tail classifier does the same way.

:class:`BaseLongTailClassifier` is a template: ``fit`` validates the input,
encodes the labels and counts the classes, then calls ``_fit`` on the encoded
labels; the predict-type methods validate their input and turn the scores of
``_scorer`` into predictions, probabilities and decision values, a chunk of
rows at a time so that predicting on millions of rows holds only a chunk of
scores. :class:`BaseLinearClassifier` adds the scores of a linear head on
optionally standardised features (:class:`LinearScores`);
:class:`BaseTrainedClassifier` adds the PyTorch training settings.
"""

from abc import ABCMeta, abstractmethod
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    check_array,
    check_consistent_length,
    check_is_fitted,
    column_or_1d,
    validate_data,
)

from ._backend import (
    DEVICE_CONSTRAINT,
    AutogradSGD,
    DeviceFeatures,
    Float64Rows,
    SoftmaxRegressionSGD,
    feature_rows,
    feature_scaled_lr,
    iter_row_chunks,
    linear_logits,
    resolve_device,
    scoring_device,
    train_minibatch,
)
from ._docstrings import fill_doc
from ._sampling import make_sampler
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


class BaseLongTailClassifier(ClassifierMixin, BaseEstimator, metaclass=ABCMeta):
    """Validation, label encoding and the predict API of every classifier.

    Subclasses implement ``_fit(X, y)`` on labels encoded as 0 to
    n_classes - 1, and ``_scorer(device)``, the function that gives a chunk
    of validated rows its class scores.
    """

    _parameter_constraints: dict = {}

    @fill_doc(indent=8)
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Fit the classifier on features ``X`` and labels ``y``.

        Parameters
        ----------
        %(fit_data_parameters)s

        Returns
        -------
        self : object
            The fitted classifier.
        """
        self._fit(*self._validate_training_data(X, y))
        return self

    def _validate_training_data(self, X, y):
        """Validated features and encoded labels; sets ``classes_`` and counts."""
        X, y = validate_features(self, X, y, reset=True)
        check_classification_targets(y)
        self.classes_, y_encoded = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes to "
                f"fit, but y has 1 class ({self.classes_[0]!r})."
            )
        self.class_counts_ = np.bincount(y_encoded, minlength=len(self.classes_))
        return X, y_encoded

    @abstractmethod
    def _fit(self, X, y):
        """Fit on validated features and labels encoded as 0 to n_classes - 1."""

    def _implied_prior(self):
        """The class prior this fitted classifier's probabilities assume.

        Uniform: the re-balancers, cRT and NCM are built for the balanced
        error. A classifier trained on the training distribution overrides
        this (:class:`JointClassifier`). :class:`PriorAdjustedClassifier`
        divides it out.
        """
        return np.full(len(self.classes_), 1.0 / len(self.classes_))

    @abstractmethod
    def _scorer(self, device):
        """The class scores of a chunk of rows, as a function.

        It takes the rows as a tensor (anywhere, of any float dtype) and
        returns their (n, n_classes) float64 scores on ``device``, where the
        fitted parameters it needs are moved once.
        """

    def _probability_logits(self, scores):
        """The logits whose softmax is ``predict_proba``; the scores themselves."""
        return scores

    def _iter_scores(self, X):
        """Float64 class scores of ``X``, a chunk of rows at a time.

        They are computed where the rows are (:func:`scoring_device`); only
        the results come back.
        """
        score = self._scorer(scoring_device(X))
        # A chunk holds its rows' features and their scores: size it by the
        # wider of the two, so that many classes do not blow up a chunk.
        width = max(X.shape[1], len(self.classes_))
        for rows in iter_row_chunks(X.shape[0], width):
            yield score(feature_rows(X, rows))

    def decision_function(self, X):
        """Class scores (the logits of the linear classifiers).

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples, n_classes) or (n_samples,)
            With two classes, the score of ``classes_[1]`` minus that of
            ``classes_[0]``, as scikit-learn's binary classifiers return.
        """
        check_is_fitted(self)
        X = validate_features(self, X, reset=False)
        scores = np.concatenate([_host(scores) for scores in self._iter_scores(X)])
        if len(self.classes_) == 2:
            return scores[:, 1] - scores[:, 0]
        return scores

    def predict(self, X):
        """Predict the class of each sample: the highest score.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        X = validate_features(self, X, reset=False)
        best = [_host(scores.argmax(dim=1)) for scores in self._iter_scores(X)]
        return self.classes_[np.concatenate(best)]

    def predict_proba(self, X):
        """Class probabilities: the softmax of the class scores.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Rows sum to 1; columns follow ``classes_``.
        """
        check_is_fitted(self)
        X = validate_features(self, X, reset=False)
        return np.concatenate(
            [
                _host(torch.softmax(self._probability_logits(scores), dim=1))
                for scores in self._iter_scores(X)
            ]
        )

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`, computed stably.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
        """
        check_is_fitted(self)
        X = validate_features(self, X, reset=False)
        return np.concatenate(
            [
                _host(torch.log_softmax(self._probability_logits(scores), dim=1))
                for scores in self._iter_scores(X)
            ]
        )

    def _resolve_device(self):
        """The ``torch.device`` of this fit (``device`` parameter); sets ``device_``."""
        device = resolve_device(self.device)
        self.device_ = str(device)
        return device

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        return tags


def _host(tensor):
    """A tensor of results as a NumPy array on the host."""
    return tensor.cpu().numpy()


def unstandardised_head(coef, intercept, shift=None, scale=None):
    """``(coef, intercept)`` in float64 giving, on the rows as they are, the
    logits ``((rows - shift) / scale) @ coef.T + intercept``.

    ``shift`` and ``scale`` may be None (no shift, unit scale).
    """
    coef = np.asarray(coef, dtype=np.float64)
    intercept = np.asarray(intercept, dtype=np.float64)
    if scale is not None:
        coef = coef / np.asarray(scale, dtype=np.float64)
    if shift is not None:
        intercept = intercept - coef @ np.asarray(shift, dtype=np.float64)
    return coef, intercept


class LinearScores:
    """``((rows - shift) / scale) @ coef.T + intercept`` in float64, on ``device``.

    The scores of the linear classifiers, for their predictions and for
    tau-norm's sweep. In float64 because a float32 product's rounding depends
    on how many rows BLAS sees at once, and a row's prediction must not depend
    on its neighbours.

    The standardisation is folded into the head once, as ``rows @ (coef /
    scale).T + (intercept - (coef / scale) @ shift)``, so a chunk costs one
    product and no passes over its rows. Where the classes are few, those
    passes took a fifth of ``predict``'s time (50,000 x 2,048 rows, 10
    classes, 2 CPU cores). Folding cancels terms of size ``|shift| / scale``
    in float64, whose rounding is 5e8 times below the float32 rounding that
    float32 features carry on the same scale: for features 10,000 scales
    from zero the scores stay within 3e-11 of the standardised product's.

    Parameters
    ----------
    coef : array-like of shape (n_classes, n_features)
    intercept : array-like of shape (n_classes,) or None
        None adds no intercept.
    shift, scale : array-like of shape (n_features,) or None
        None scores the rows as they are.
    device : torch.device
        Where the head is held and the scores computed; rows given
        elsewhere are copied there a chunk at a time.
    """

    def __init__(self, coef, intercept=None, *, shift=None, scale=None, device):
        intercept = np.zeros(len(coef)) if intercept is None else intercept
        coef, intercept = unstandardised_head(coef, intercept, shift, scale)
        self._coef = torch.as_tensor(coef, device=device)
        self._intercept = torch.as_tensor(intercept, device=device)
        self._float64_rows = Float64Rows(device)

    def __call__(self, rows):
        """Scores of a chunk of ``rows`` (a tensor), (n, n_classes) float64."""
        return linear_logits(self._float64_rows(rows), self._coef, self._intercept)


class BaseLinearClassifier(BaseLongTailClassifier):
    """Scores ``((x - feature_mean_) / feature_scale_) @ coef_.T + intercept_``.

    The mean and scale are None when the features are used as they are.
    """

    def _scorer(self, device):
        return LinearScores(
            self.coef_,
            self.intercept_,
            shift=self.feature_mean_,
            scale=self.feature_scale_,
            device=device,
        )


def standardisation(data):
    """Per-feature shift and scale that standardise the features, float32.

    The shift is the mean and the scale the standard deviation, except for a
    constant column, whose shift is its value and whose scale is 1: it
    becomes exactly 0. Centred on its mean computed in floating point
    instead, it would keep a residue in the last bits, a column parallel to
    the bias with a curvature near zero, and the step size that curvature
    sets (``feature_scaled_lr``) would blow the fit up to NaN.

    Parameters
    ----------
    data : DeviceFeatures
        Its features as given (not yet standardised).
    """
    statistics = data.column_statistics()
    constant = (statistics.min == statistics.max) | ~(statistics.var > 0)
    shift = np.where(constant, statistics.min, statistics.mean)
    scale = np.where(constant, 1.0, np.sqrt(statistics.var))
    return shift.astype(np.float32), scale.astype(np.float32)


def mean_squared_norm(data, shift=None, scale=None):
    """Mean over rows of ``||(x - shift) / scale||^2``, from the feature moments.

    ``data`` is a :class:`DeviceFeatures` serving the features as given.
    """
    mean, var = data.moments()
    if shift is not None:
        mean = mean - shift
    squared = var + mean**2
    if scale is not None:
        squared = squared / np.square(scale, dtype=np.float64)
    return float(squared.sum())


#: Where and from what seed an estimator runs.
RUN_PARAMETER_CONSTRAINTS = {
    "device": DEVICE_CONSTRAINT,
    "random_state": ["random_state"],
}

#: The settings of an SGD stage (``training_parameters`` in the docstrings).
SGD_PARAMETER_CONSTRAINTS = {
    "epochs": [Interval(Integral, 1, None, closed="left")],
    "batch_size": [Interval(Integral, 1, None, closed="left")],
    "lr": [Interval(Real, 0, None, closed="neither")],
    "momentum": [Interval(Real, 0, 1, closed="left")],
    "weight_decay": [Interval(Real, 0, None, closed="left")],
    "verbose": ["verbose"],
}


class BaseTrainedClassifier(BaseLinearClassifier):
    """A classifier with a minibatch SGD stage on the PyTorch backend."""

    _parameter_constraints: dict = {
        **RUN_PARAMETER_CONSTRAINTS,
        **SGD_PARAMETER_CONSTRAINTS,
    }

    def _start_training(self):
        """Resolve the device and seed a numpy generator for this fit."""
        device = self._resolve_device()
        seed = check_random_state(self.random_state).randint(np.iinfo(np.int32).max)
        return device, np.random.default_rng(seed)

    def _standardised_training_data(self, X, y, sample_weight=None):
        """Start a fit: the device, a generator and the training features there.

        With ``standardize``, the features are centred and scaled
        (``feature_mean_`` and ``feature_scale_``, else None).
        """
        device, rng = self._start_training()
        data = DeviceFeatures(X, y, device, sample_weight=sample_weight)
        self.feature_mean_ = self.feature_scale_ = None
        if self.standardize:
            self.feature_mean_, self.feature_scale_ = standardisation(data)
            data.standardise(self.feature_mean_, self.feature_scale_)
        return device, rng, data

    def _training_settings(self):
        """This estimator's keywords for the training loop."""
        return {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "verbose": self.verbose,
            "desc": type(self).__name__,
        }

    def _train(self, step, data, sampler, *, epoch_end=None):
        """Run the training loop with this estimator's settings; set ``loss_curve_``.

        ``epoch_end(epoch)``, if given, is called after each epoch (see
        :func:`train_minibatch`).
        """
        self.loss_curve_ = train_minibatch(
            step, data, sampler, epoch_end=epoch_end, **self._training_settings()
        )

    def _autograd_step(self, param_groups, losses):
        """An SGD step on the mean of ``losses`` with this estimator's momentum
        and weight decay.

        ``losses(features, labels)`` gives each row's loss (see
        :class:`AutogradSGD`); each parameter group names its own ``lr``.
        """
        return AutogradSGD(
            param_groups, losses, momentum=self.momentum, weight_decay=self.weight_decay
        )

    def _linear_layer_step(
        self,
        data,
        *,
        curvature,
        lr=None,
        init=None,
        label_smoothing=0.0,
        logit_offset=None,
        focal_gamma=0.0,
        weight_decay=None,
    ):
        """A linear layer on the device and its cross-entropy SGD step.

        Parameters
        ----------
        data : DeviceFeatures
        curvature : float
            Sets the step on the weights (``feature_scaled_lr``); the bias
            takes ``lr`` itself.
        lr : float, optional
            The learning rate when it is not the ``lr`` parameter itself.
        init : (coef, intercept) or None
            Starting weights; None starts from zero (a convex problem, so
            zero is as good a start as a random one, and reproducible).
        label_smoothing : float
            Weight of the uniform distribution in the soft targets.
        logit_offset : ndarray of shape (n_classes,) or None
            Added to the logits in the loss only (the logit-adjusted loss).
        focal_gamma : float
            The focal loss's gamma; 0 is the cross-entropy.
        weight_decay : float, optional
            The L2 penalty when it is not the ``weight_decay`` parameter.

        Returns
        -------
        layer : torch.nn.Linear
            On the device, updated in place by the step.
        step : SoftmaxRegressionSGD
        """
        lr = self.lr if lr is None else lr
        layer = torch.nn.Linear(data.n_features, len(self.classes_), device=data.device)
        layer.requires_grad_(False)
        if init is None:
            layer.weight.zero_()
            layer.bias.zero_()
        else:
            layer.weight.copy_(torch.as_tensor(init[0]))
            layer.bias.copy_(torch.as_tensor(init[1]))
        step = SoftmaxRegressionSGD(
            layer,
            lr_weight=feature_scaled_lr(lr, curvature),
            lr_bias=lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay if weight_decay is None else weight_decay,
            label_smoothing=label_smoothing,
            logit_offset=None
            if logit_offset is None
            else torch.as_tensor(logit_offset, dtype=torch.float32, device=data.device),
            focal_gamma=focal_gamma,
        )
        return layer, step

    def _train_linear_layer(
        self,
        data,
        y,
        *,
        sampling,
        rng,
        curvature,
        logit_offset=None,
        focal_gamma=0.0,
        init=None,
        weight_decay=None,
    ):
        """Train a linear layer with cross-entropy on the device features.

        ``y`` are the encoded labels, for the sampler of strategy
        ``sampling`` (see ``_sampling.make_sampler``); ``curvature``,
        ``logit_offset``, ``focal_gamma``, ``init`` (None: from zero) and
        ``weight_decay`` as for :meth:`_linear_layer_step`; the rows'
        weights, if any, are ``data``'s. Returns the layer, on the device,
        and sets ``loss_curve_``.
        """
        layer, step = self._linear_layer_step(
            data,
            curvature=curvature,
            init=init,
            logit_offset=logit_offset,
            focal_gamma=focal_gamma,
            weight_decay=weight_decay,
        )
        sampler = make_sampler(
            sampling, y, len(self.classes_), epochs=self.epochs, rng=rng
        )
        self._train(step, data, sampler)
        return layer


def to_numpy(tensor):
    """A CPU float32 numpy copy of a tensor, detached from any graph or device."""
    return tensor.detach().to("cpu", torch.float32).numpy().copy()
