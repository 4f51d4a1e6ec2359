"""The linear layer that Joint, cRT and Balanced Softmax train from zero.

``SoftmaxRegression`` trains (W, b) on the features with cross-entropy and a
sampler; a subclass says which sampler, and may shift the logits in the loss
(Balanced Softmax) or make it a focal loss. Here too: the training defaults
the classifiers share, and the rule of ``weight_decay="auto"``.
"""

from numbers import Real

import numpy as np
from sklearn.base import _fit_context
from sklearn.utils._param_validation import Interval, StrOptions

from ._docstrings import fill_doc
from ._sampling import final_power
from ._trained import BaseTrainedClassifier, to_numpy
from ._weights import estimator_class_weights, training_weights

# Joint's training (and the batch size and weight decay the others share): a
# tail sample is seen once per epoch whatever the data set's size, so the
# instance-balanced joint classifier gets three times cRT's epochs, at a
# larger step per sample (lr / batch_size), to fit its tail classes.
DEFAULT_EPOCHS = 30
DEFAULT_LR = 4.0
DEFAULT_BATCH_SIZE = 256
DEFAULT_WEIGHT_DECAY = 5e-4


def resolve_weight_decay(weight_decay, n_samples):
    """The L2 penalty of ``weight_decay`` on ``n_samples`` training rows.

    ``"auto"`` is ``LogisticRegression(C=1)``'s penalty on the mean loss,
    ``1 / n_samples``, but at least :data:`DEFAULT_WEIGHT_DECAY`. At 5e-4 on
    a few hundred samples the joint classifier fit tails of one or two
    samples so closely that no re-balancing could correct it (the digits
    pixels of ``benchmarks/peer_check.py``, ``docs/results.md``); without
    the floor, its 10,847 x 512 Gaussian loses up to 11.8 points.
    """
    if weight_decay == "auto":
        return max(DEFAULT_WEIGHT_DECAY, 1.0 / n_samples)
    return float(weight_decay)


class SoftmaxRegression(BaseTrainedClassifier):
    """A linear layer trained from zero with cross-entropy and a sampler.

    Subclasses say which sampling strategy through ``_sampling()``, and may
    add a per-class offset to the logits in the loss (``_logit_offset``) or
    make it a focal loss (``_focal_gamma``). Class and sample weights
    (``_weights``) multiply each sample's loss.
    """

    _parameter_constraints: dict = {
        **BaseTrainedClassifier._parameter_constraints,
        "standardize": ["boolean"],
        "weight_decay": [Interval(Real, 0, None, closed="left"), StrOptions({"auto"})],
        "class_weight": [None, dict, StrOptions({"balanced", "effective"})],
        "beta": [Interval(Real, 0, 1, closed="left")],
    }

    @fill_doc(indent=8)
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None, *, coef_init=None, intercept_init=None):
        """Fit the classifier on features ``X`` and labels ``y``.

        Parameters
        ----------
        %(fit_data_parameters)s
        sample_weight : array-like of shape (n_samples,), default=None
            Each sample's weight in the loss, non-negative, times its class's
            weight (``class_weight``); rescaled to mean 1. The feature
            standardisation uses every sample alike.
        coef_init : array-like of shape (n_classes, n_features), default=None
            The weights to start from, on the features as given to ``fit``:
            training starts from the logits ``X @ coef_init.T +
            intercept_init``, and with ``standardize=True`` the weights are
            carried over to the standardised features (``coef_`` is on
            those: a fitted classifier's weights on the features as given
            are ``coef_ / feature_scale_``). None starts from zero. As
            ``SGDClassifier.fit`` spells it; the re-balancers' ``refit="warm"``
            starts their joint classifier from the mean of their fold heads
            this way.
        intercept_init : array-like of shape (n_classes,), default=None
            The bias to start from, on the features as given; zero when None.

        Returns
        -------
        self : object
            The fitted classifier.
        """
        X, y = self._validate_training_data(X, y)
        init = self._checked_init(coef_init, intercept_init, X.shape[1])
        self._fit(X, y, training_weights(self, X, y, sample_weight), init=init)
        return self

    def _checked_init(self, coef_init, intercept_init, n_features):
        """(coef, intercept) float32 arrays to start from, or None for zero."""
        if coef_init is None and intercept_init is None:
            return None
        n_classes = len(self.classes_)
        shapes = {"coef_init": (n_classes, n_features), "intercept_init": (n_classes,)}
        given = {"coef_init": coef_init, "intercept_init": intercept_init}
        init = []
        for name, shape in shapes.items():
            if given[name] is None:
                init.append(np.zeros(shape, dtype=np.float32))
                continue
            value = np.asarray(given[name], dtype=np.float32)
            if value.shape != shape:
                raise ValueError(
                    f"{name} has shape {value.shape}; the data has {n_classes} "
                    f"classes and {n_features} features, so it must be {shape}."
                )
            if not np.isfinite(value).all():
                raise ValueError(f"{name} holds NaN or infinite values.")
            init.append(value)
        return tuple(init)

    def _sampling(self):
        raise NotImplementedError

    def _implied_prior(self):
        """The training prior as the sampler, class weights and logit offset see it.

        Class j is drawn in proportion to n_j^q (``final_power``), its loss
        is weighted by ``class_weight``, and a logit offset ``tau log(n_j /
        N)`` in the loss (Balanced Softmax) divides the prior the logits learn
        by n_j^tau. Sample weights are not counted.
        """
        counts = np.maximum(self.class_counts_.astype(np.float64), 0.5)
        prior = counts ** final_power(self._sampling())
        offset = self._logit_offset()
        if offset is not None:
            prior = prior * np.exp(-(offset - offset.max()))
        weights = estimator_class_weights(self)
        if weights is not None:
            prior = prior * weights
        return prior / prior.sum()

    def _logit_offset(self):
        """Added to the logits in the loss only; None for plain cross-entropy."""
        return None

    def _focal_gamma(self):
        """The focal loss's gamma; 0 for the cross-entropy."""
        return 0.0

    def _fit(self, X, y, sample_weight=None, init=None):
        _, rng, data = self._standardised_training_data(X, y, sample_weight)
        if self.standardize and init is not None:
            # The same logits on the standardised features.
            coef, intercept = init
            init = (
                coef * self.feature_scale_,
                intercept + coef @ self.feature_mean_,
            )
        self.weight_decay_ = resolve_weight_decay(self.weight_decay, data.n_samples)
        layer = self._train_linear_layer(
            data,
            y,
            sampling=self._sampling(),
            rng=rng,
            curvature=data.top_eigenvalue(rng),
            logit_offset=self._logit_offset(),
            focal_gamma=self._focal_gamma(),
            init=init,
            weight_decay=self.weight_decay_,
        )
        self.coef_, self.intercept_ = to_numpy(layer.weight), to_numpy(layer.bias)
