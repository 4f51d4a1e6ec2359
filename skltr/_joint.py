"""Joint: the plain baseline (user guide: docs/guide/decoupling.md).

A linear classifier (W, b) trained on the features with instance-balanced
sampling and cross-entropy. It stands in for the stage-1 classifier, and it is
what tau-norm, LWS and LORT re-balance.
"""

from numbers import Real

import numpy as np
from sklearn.base import _fit_context
from sklearn.utils._param_validation import Interval, StrOptions

from ._backend import DeviceFeatures
from ._base import BaseTrainedClassifier, standardisation, to_numpy
from ._docstrings import AUTO_WEIGHT_DECAY, fill_doc
from ._sampling import final_power
from ._weights import DEFAULT_BETA, estimator_class_weights, training_weights

# A tail sample is seen once per epoch whatever the data set's size, so the
# instance-balanced joint classifier needs more epochs and a larger step per
# sample (lr / batch_size) than the class-balanced re-training to converge on
# its tail classes: measured on CIFAR-10-LT ResNet-56 features, 10 epochs at
# lr 1, batch 512 left it underfit (balanced accuracy 76.9 against 80.5).
DEFAULT_EPOCHS = 30
DEFAULT_LR = 4.0
DEFAULT_BATCH_SIZE = 256
DEFAULT_WEIGHT_DECAY = 5e-4


def resolve_weight_decay(weight_decay, n_samples):
    """The L2 penalty of ``weight_decay`` on ``n_samples`` training rows.

    ``"auto"`` is ``LogisticRegression(C=1)``'s penalty on the mean loss,
    ``1 / n_samples``, but at least :data:`DEFAULT_WEIGHT_DECAY`. Digits with
    302 samples and tail classes of 1 to 3: at 5e-4 the joint classifier fit
    them so closely that logit adjustment with tau=1 was 0.2 points below
    the balanced ``LogisticRegression`` on average (4 splits, ratios 10 and
    100); at ``1 / n`` it was 2.2 above.
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
        device, rng = self._start_training()
        data = DeviceFeatures(X, y, device, sample_weight=sample_weight)
        self.feature_mean_ = self.feature_scale_ = None
        if self.standardize:
            self.feature_mean_, self.feature_scale_ = standardisation(data)
            data.standardise(self.feature_mean_, self.feature_scale_)
            if init is not None:
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


@fill_doc(
    epochs=DEFAULT_EPOCHS,
    batch_size=DEFAULT_BATCH_SIZE,
    lr=DEFAULT_LR,
    weight_decay='"auto"',
    weight_decay_type='float or "auto"',
    weight_decay_auto=AUTO_WEIGHT_DECAY,
    beta=DEFAULT_BETA,
)
class JointClassifier(SoftmaxRegression):
    """Linear softmax classifier trained with instance-balanced sampling.

    The baseline of every long-tail table: what a linear head learns from the
    natural, imbalanced class frequencies. Its weight norms follow the class
    counts, which biases it toward the head classes; :class:`TauNormClassifier`,
    :class:`LWSClassifier` and :class:`LORTClassifier` re-balance it.

    Read more in the :ref:`User Guide <decoupling-classifiers>`.

    Parameters
    ----------
    standardize : bool, default=True
        Centre each feature and scale it to unit variance (statistics of the
        training set) before the linear layer. Feature scales differ widely
        between backbones and between dimensions; standardising conditions
        SGD and, for tau-norm, makes the weight norms compare classes rather
        than feature scales.

    loss : {"cross_entropy", "focal"}, default="cross_entropy"
        The training loss. ``"focal"`` is the focal loss of Lin et al.
        (2017), ``-(1 - p_y)^gamma log p_y``: it weighs down the samples the
        layer already classifies confidently, which are mostly of the head
        classes. It re-balances little with many classes (the survey's
        ImageNet-LT table: 45.8 against 45.5 for the cross-entropy).

    gamma : float, default=2.0
        The focal loss's gamma (``loss="focal"``); 0 is the cross-entropy.
        Not chosen on held-out data: each candidate would need a layer
        trained for it; search it with
        :class:`~sklearn.model_selection.GridSearchCV` and a shot scorer.

    %(class_weight_parameters)s

    %(training_parameters)s

    %(device_parameters)s

    Attributes
    ----------
    %(fitted_linear_attributes)s

    %(weight_decay_attribute)s

    %(common_attributes)s

    %(training_attributes)s

    See Also
    --------
    CRTClassifier : The same layer re-trained with class-balanced sampling.
    TauNormClassifier : Re-balances this classifier by its weight norms.
    sklearn.linear_model.LogisticRegression : The full-batch counterpart.

    References
    ----------
    .. [1] B. Kang, S. Xie, M. Rohrbach, Z. Yan, A. Gordo, J. Feng and
       Y. Kalantidis, "Decoupling Representation and Classifier for
       Long-Tailed Recognition", ICLR 2020.
    .. [2] T.-Y. Lin, P. Goyal, R. Girshick, K. He and P. Dollar, "Focal Loss
       for Dense Object Detection", ICCV 2017.
    .. [3] Y. Cui, M. Jia, T.-Y. Lin, Y. Song and S. Belongie,
       "Class-Balanced Loss Based on Effective Number of Samples", CVPR 2019.

    Notes
    -----
    %(lr_notes)s

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> from skltr import JointClassifier
    >>> X, y = make_classification(n_samples=300, n_informative=4, n_classes=3,
    ...                            random_state=0)
    >>> clf = JointClassifier(device="cpu", random_state=0).fit(X, y)
    >>> clf.predict_proba(X[:2]).shape
    (2, 3)
    """

    def __init__(
        self,
        *,
        standardize=True,
        loss="cross_entropy",
        gamma=2.0,
        class_weight=None,
        beta=DEFAULT_BETA,
        epochs=DEFAULT_EPOCHS,
        batch_size=DEFAULT_BATCH_SIZE,
        lr=DEFAULT_LR,
        momentum=0.9,
        weight_decay="auto",
        device="auto",
        random_state=None,
        verbose=0,
    ):
        self.standardize = standardize
        self.loss = loss
        self.gamma = gamma
        self.class_weight = class_weight
        self.beta = beta
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    _parameter_constraints: dict = {
        **SoftmaxRegression._parameter_constraints,
        "loss": [StrOptions({"cross_entropy", "focal"})],
        "gamma": [Interval(Real, 0, None, closed="left")],
    }

    def _sampling(self):
        return "instance"

    def _focal_gamma(self):
        return float(self.gamma) if self.loss == "focal" else 0.0
