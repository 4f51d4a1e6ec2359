"""The base class of the classifiers trained by minibatch SGD on the backend.

:class:`BaseTrainedClassifier` adds to a linear classifier the PyTorch
training settings (``RUN_PARAMETER_CONSTRAINTS``,
``SGD_PARAMETER_CONSTRAINTS``), the start of a fit (device, generator,
standardised features on the device) and the steps and loop that train a
linear layer with those settings.
"""

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval

from ._backend import (
    DEVICE_CONSTRAINT,
    AutogradSGD,
    DeviceFeatures,
    SoftmaxRegressionSGD,
    feature_scaled_lr,
    train_minibatch,
)
from ._linear import BaseLinearClassifier
from ._sampling import make_sampler


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
        weight_decay : float or sequence of float, optional
            The L2 penalty when it is not the ``weight_decay`` parameter. A
            sequence trains one head per penalty, side by side on the same
            batches: the layer's rows are the heads' blocks, in order.

        Returns
        -------
        layer : torch.nn.Linear
            On the device, updated in place by the step.
        step : SoftmaxRegressionSGD
        """
        lr = self.lr if lr is None else lr
        weight_decay = self.weight_decay if weight_decay is None else weight_decay
        n_heads, n_classes = np.size(weight_decay), len(self.classes_)
        layer = torch.nn.Linear(
            data.n_features, n_heads * n_classes, device=data.device
        )
        layer.requires_grad_(False)
        if init is None:
            layer.weight.zero_()
            layer.bias.zero_()
        else:
            layer.weight.copy_(torch.as_tensor(init[0]).repeat(n_heads, 1))
            layer.bias.copy_(torch.as_tensor(init[1]).repeat(n_heads))
        if np.ndim(weight_decay):
            # One penalty per output row: each head's rows take its own.
            weight_decay = torch.as_tensor(
                np.repeat(weight_decay, n_classes),
                dtype=torch.float32,
                device=data.device,
            )
        step = SoftmaxRegressionSGD(
            layer,
            lr_weight=feature_scaled_lr(lr, curvature),
            lr_bias=lr,
            momentum=self.momentum,
            weight_decay=weight_decay,
            n_heads=n_heads,
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
