"""LDAM-DRW (user guide: docs/guide/loss_family.md).

A cosine head: the features and each class's weight row are L2-normalised,
and the logits are s cos(theta_j). The loss is the cross-entropy with the
true class's cosine lowered by a label-distribution-aware margin,
Delta_y = K / n_y^(1/4), K such that the largest margin is ``max_margin``:
the rarer the class, the wider the margin its samples must clear. Deferred
re-weighting (DRW): no class weights for the first part of training, the
class-balanced loss's weights for the rest. Predictions use s cos(theta)
without margins.
"""

from numbers import Real

import numpy as np
import torch
from sklearn.base import _fit_context
from sklearn.utils._param_validation import Interval

from ._backend import Float64Rows, feature_scaled_lr
from ._docstrings import fill_doc
from ._sampling import make_sampler
from ._softmax_regression import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_WEIGHT_DECAY,
)
from ._trained import BaseTrainedClassifier, mean_squared_norm, to_numpy
from ._weights import DEFAULT_BETA, effective_number_weights, training_weights

# The reference (CIFAR-LT): s = 30, largest margin 0.5, class-balanced
# weights from epoch 160 of 200.
_SCALE = 30.0
_MAX_MARGIN = 0.5
_DRW_START = 0.8
_LR = 4.0
# Rows whose standardised norm is below this are scored as the zero vector
# (every cosine 0) rather than divided by a vanishing norm.
_NORM_FLOOR = 1e-12


def ldam_margins(class_counts, max_margin):
    """The margins ``K / n_j^(1/4)``, scaled so that the largest is ``max_margin``.

    Parameters
    ----------
    class_counts : array-like of shape (n_classes,)
        Training samples per class, each at least 1.
    max_margin : float
        The margin of the rarest class.

    Returns
    -------
    margins : ndarray of shape (n_classes,)
    """
    counts = np.asarray(class_counts, dtype=np.float64)
    margins = counts**-0.25
    return margins * (max_margin / margins.max())


def deferred_weights(class_counts, beta):
    """DRW's class weights: the class-balanced loss's, rescaled to mean 1 over samples.

    The reference normalises them to sum to the number of classes and takes
    a weighted mean over each batch; rescaling to mean 1 over the samples
    keeps the step size of the unweighted epochs instead, with the same
    ratios between classes.
    """
    counts = np.asarray(class_counts, dtype=np.float64)
    weights = effective_number_weights(counts, beta)
    return weights * (counts.sum() / (weights @ counts))


def unit_rows(rows):
    """Rows divided by their L2 norm; rows of norm below the floor become 0."""
    norms = torch.linalg.vector_norm(rows, dim=1, keepdim=True)
    return rows / norms.clamp_min(_NORM_FLOOR) * (norms >= _NORM_FLOOR)


def ldam_losses(rows, weight, labels, margins, s):
    """Each row's LDAM loss: cross-entropy of ``s (cos - Delta_y 1[j = y])``.

    Parameters
    ----------
    rows : torch.Tensor of shape (n, n_features)
        Features (not yet normalised).
    weight : torch.Tensor of shape (n_classes, n_features)
        The weight rows (not yet normalised).
    labels : torch.Tensor of shape (n,)
    margins : torch.Tensor of shape (n_classes,)
    s : float

    Returns
    -------
    losses : torch.Tensor of shape (n,)
    """
    cosines = unit_rows(rows) @ unit_rows(weight).T
    true_class = torch.nn.functional.one_hot(labels, len(margins))
    logits = s * (cosines - true_class * margins)
    return torch.nn.functional.cross_entropy(logits, labels, reduction="none")


@fill_doc(
    s=_SCALE,
    max_margin=_MAX_MARGIN,
    drw_start=_DRW_START,
    beta=DEFAULT_BETA,
    epochs=DEFAULT_EPOCHS,
    batch_size=DEFAULT_BATCH_SIZE,
    lr=_LR,
    lr_scaling=(
        "It is relative to the curvature of the loss: the step on the weight "
        "rows is divided by ``s**2`` times the largest eigenvalue of E[u u^T] "
        "over the unit-length training rows u (see Notes)."
    ),
    weight_decay=DEFAULT_WEIGHT_DECAY,
)
class LDAMClassifier(BaseTrainedClassifier):
    """Cosine classifier trained with the LDAM loss and deferred re-weighting.

    The features (standardised, then each row scaled to unit length) and the
    weight row of each class are L2-normalised, and the logits are ``s`` times
    their cosines. Training lowers the true class's cosine by a margin
    ``Delta_j = K / n_j^(1/4)`` that grows as its class gets rarer, the
    largest being ``max_margin``: a tail sample counts as classified only
    when it clears a wider margin, which pushes the boundaries away from the
    tail classes. The sampling is instance-balanced; for the last
    ``1 - drw_start`` of the epochs every sample's loss is weighted by its
    class's class-balanced weight (deferred re-weighting). Predictions are
    the cosines times ``s``, without margins.

    Read more in the :ref:`User Guide <loss-family>`.

    Parameters
    ----------
    s : float, default=%(s)s
        Scale of the cosine logits: the softmax's inverse temperature. It
        bounds the logits to ``[-s, s]``.

    max_margin : float, default=%(max_margin)s
        The margin of the rarest class, on the cosine (at most 2, the
        cosine's range); the others follow ``n_j^(-1/4)``. 0 is the plain
        cosine classifier.

    drw_start : float in [0, 1], default=%(drw_start)s
        The fraction of the epochs trained without weights before the
        class-balanced weights set in. 1 never re-weights; 0 re-weights
        from the start.

    beta : float in [0, 1), default=%(beta)s
        The class-balanced weights' beta after ``drw_start``:
        ``(1 - beta) / (1 - beta^n_j)``, rescaled to mean 1 over the samples
        so that the step size does not jump when they set in.

    standardize : bool, default=True
        Centre each feature and scale it to unit variance before the rows
        are normalised. Backbone features after a ReLU all lie in one
        orthant, where every cosine is positive; centring spreads them.

    %(training_parameters)s

    %(device_parameters)s

    Knobs (``max_margin``, ``drw_start``, ``beta``) are not chosen on
    held-out data: each candidate needs a head trained for it. Search them
    with :class:`~sklearn.model_selection.GridSearchCV` and a shot scorer
    (:func:`skltr.metrics.make_shot_scorer`).

    Attributes
    ----------
    coef_ : ndarray of shape (n_classes, n_features)
        ``s`` times the unit-length weight row of each class, applied to the
        unit-length standardised features.

    intercept_ : ndarray of shape (n_classes,)
        Zeros: the cosine head has no bias.

    margins_ : ndarray of shape (n_classes,)
        The training margin of each class.

    feature_mean_, feature_scale_ : ndarray of shape (n_features,) or None
        The standardisation of the features; None when ``standardize`` is
        False.

    %(common_attributes)s

    %(training_attributes)s

    See Also
    --------
    BalancedSoftmaxClassifier : A per-class offset on every logit in the
        loss, rather than a margin on the true class.
    JointClassifier : ``class_weight="effective"`` re-weights from the start.

    Notes
    -----
    As for the linear classifiers, ``lr`` is relative to the curvature of
    the loss: the step on the weight rows is ``lr / (s**2 lambda)``, where
    ``lambda`` is the largest eigenvalue of E[u u^T] over the unit-length
    training rows u (estimated as that of the standardised rows over their
    mean squared norm). At unit length, the Hessian of the loss in a weight
    row is at most ``s**2 lambda / 2``.

    References
    ----------
    .. [1] K. Cao, C. Wei, A. Gaidon, N. Arechiga and T. Ma, "Learning
       Imbalanced Datasets with Label-Distribution-Aware Margin Loss",
       NeurIPS 2019.
    .. [2] Y. Cui, M. Jia, T.-Y. Lin, Y. Song and S. Belongie,
       "Class-Balanced Loss Based on Effective Number of Samples", CVPR 2019.

    Examples
    --------
    >>> import numpy as np
    >>> from skltr import LDAMClassifier
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(3), [300, 40, 6])
    >>> X = rng.normal(size=(len(y), 5)) + 2.0 * np.eye(3, 5)[y]
    >>> clf = LDAMClassifier(device="cpu", random_state=0).fit(X, y)
    >>> clf.margins_.round(3)
    array([0.188, 0.311, 0.5  ])
    """

    _parameter_constraints: dict = {
        **BaseTrainedClassifier._parameter_constraints,
        "s": [Interval(Real, 0, None, closed="neither")],
        "max_margin": [Interval(Real, 0, 2, closed="both")],
        "drw_start": [Interval(Real, 0, 1, closed="both")],
        "beta": [Interval(Real, 0, 1, closed="left")],
        "standardize": ["boolean"],
    }

    def __init__(
        self,
        *,
        s=_SCALE,
        max_margin=_MAX_MARGIN,
        drw_start=_DRW_START,
        beta=DEFAULT_BETA,
        standardize=True,
        epochs=DEFAULT_EPOCHS,
        batch_size=DEFAULT_BATCH_SIZE,
        lr=_LR,
        momentum=0.9,
        weight_decay=DEFAULT_WEIGHT_DECAY,
        device="auto",
        random_state=None,
        verbose=0,
    ):
        self.s = s
        self.max_margin = max_margin
        self.drw_start = drw_start
        self.beta = beta
        self.standardize = standardize
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    @fill_doc(indent=8)
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the cosine head on features ``X`` and labels ``y``.

        Parameters
        ----------
        %(fit_data_parameters)s
        sample_weight : array-like of shape (n_samples,), default=None
            Each sample's weight in the loss, non-negative, rescaled to mean
            1; after ``drw_start`` it is multiplied by the class weight. The
            feature standardisation uses every sample alike.

        Returns
        -------
        self : object
            The fitted classifier.
        """
        X, y = self._validate_training_data(X, y)
        # No class_weight parameter: the class weights are DRW's, deferred.
        self._fit(X, y, training_weights(self, X, y, sample_weight))
        return self

    def _fit(self, X, y, sample_weight=None):
        device, rng, data = self._standardised_training_data(X, y, sample_weight)
        n_classes = len(self.classes_)
        self.margins_ = ldam_margins(self.class_counts_, self.max_margin)
        margins = torch.as_tensor(self.margins_, dtype=torch.float32, device=device)
        class_weights = torch.as_tensor(
            deferred_weights(self.class_counts_, self.beta),
            dtype=torch.float32,
            device=device,
        )
        # A random start: a zero weight row has no direction to normalise.
        start = rng.standard_normal((n_classes, data.n_features))
        weight = torch.tensor(
            start / np.linalg.norm(start, axis=1, keepdims=True),
            dtype=torch.float32,
            device=device,
            requires_grad=True,
        )
        reweighting = {"on": self.drw_start == 0}

        def losses(batch, labels):
            row_losses = ldam_losses(batch, weight, labels, margins, self.s)
            if reweighting["on"]:
                row_losses = row_losses * class_weights[labels]
            return row_losses

        drw_epoch = int(round(self.drw_start * self.epochs))

        def epoch_end(epoch):
            reweighting["on"] = epoch + 1 >= drw_epoch
            return False

        # See Notes: the unit rows' curvature, from the standardised rows'.
        squared_norm = mean_squared_norm(data, self.feature_mean_, self.feature_scale_)
        curvature = data.top_eigenvalue(rng) / squared_norm if squared_norm else 0.0
        lr = feature_scaled_lr(self.lr, self.s**2 * curvature)
        self._train(
            self._autograd_step([{"params": [weight], "lr": lr}], losses),
            data,
            make_sampler("instance", y, n_classes, epochs=self.epochs, rng=rng),
            epoch_end=epoch_end,
        )
        self.coef_ = to_numpy(self.s * unit_rows(weight.detach()))
        self.intercept_ = np.zeros(n_classes, dtype=np.float32)

    def _scorer(self, device):
        float64_rows = Float64Rows(device)
        coef = torch.as_tensor(self.coef_, dtype=torch.float64, device=device)
        shift, scale = (
            None
            if a is None
            else torch.as_tensor(a, dtype=torch.float64, device=device)
            for a in (self.feature_mean_, self.feature_scale_)
        )

        def scores(rows):
            rows = float64_rows(rows)
            if shift is not None:
                rows = (rows - shift) / scale
            return unit_rows(rows) @ coef.T

        return scores
