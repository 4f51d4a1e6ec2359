"""DisAlign: distribution alignment (user guide: docs/guide/loss_family.md).

Keep the joint (stage-1) head frozen, with logits z, and learn a per-class
scale alpha (initialised to 1) and bias beta (initialised to 0) and a
confidence gate sigma(x) = sigmoid(v . x + c) on the features:

    s_j = sigma(x) (alpha_j z_j + beta_j) + (1 - sigma(x)) z_j,

trained with cross-entropy under generalised re-weighting, a sample of class
j weighing (1 / pi_j)^rho, with instance-balanced sampling. Like LWS's
scales, the parameters are learned on held-out joint logits (cross-fitting):
on the training set the joint head makes almost no error to align.
"""

from numbers import Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval

from ._backend import (
    ClosedFormSGD,
    DeviceFeatures,
    feature_scaled_lr,
    logit_scaled_lr,
)
from ._docstrings import fill_doc
from ._linear import LinearScores
from ._rebalance import DEFAULT_CV, BaseRebalancer
from ._sampling import make_sampler
from ._selection import TRAINING_DATA, warn_if_nothing_to_correct
from ._softmax_regression import DEFAULT_BATCH_SIZE, DEFAULT_WEIGHT_DECAY
from ._trained import SGD_PARAMETER_CONSTRAINTS, to_numpy

# The reference trains 10 epochs; the parameters here are learned on
# precomputed logits and features, so more epochs cost little, as for LWS.
_EPOCHS = 20
_LR = 0.5
# 1, not the reference's 1.2: weights 1 / pi_j make the weighted
# cross-entropy the balanced error, the quantity a long-tail table reports;
# 1.2 was tuned on ImageNet-LT and over-corrects where the logits carry
# little signal (a 100-class Gaussian at about 20% accuracy: 18.8 balanced
# accuracy at 1.2 against 20.5 at 1 and 20.4 for the joint classifier).
_RHO = 1.0


def generalised_reweighting(class_counts, rho):
    """DisAlign's class weights (1 / pi_j)^rho, normalised to mean 1 over samples.

    Parameters
    ----------
    class_counts : array-like of shape (n_classes,)
    rho : float
        0 weighs every sample alike; 1 is inverse frequency.

    Returns
    -------
    weights : ndarray of shape (n_classes,)
    """
    counts = np.asarray(class_counts, dtype=np.float64)
    weights = (counts.sum() / np.maximum(counts, 1.0)) ** rho
    return weights * (counts.sum() / (weights * counts).sum())


def aligned_logits(logits, gate_logit, scale, bias):
    """``sigma (alpha z + beta) + (1 - sigma) z``, with ``sigma = sigmoid(gate_logit)``.

    Parameters
    ----------
    logits : torch.Tensor of shape (n, n_classes)
        The joint logits z.
    gate_logit : torch.Tensor of shape (n, 1)
        ``v . x + c`` of each row.
    scale, bias : torch.Tensor of shape (n_classes,)
    """
    # sigmoid(g) as the first entry of softmax([g, 0]) over each row: torch's
    # elementwise sigmoid rounds the rows past the last full SIMD vector of a
    # chunk differently, so a row's score would depend on where the chunk
    # cuts; the softmax works row by row alike.
    pair = torch.cat([gate_logit, torch.zeros_like(gate_logit)], dim=1)
    gate = torch.softmax(pair, dim=1)[:, :1]
    return logits + gate * ((scale - 1.0) * logits + bias)


class GatedAlignmentSGD(ClosedFormSGD):
    """SGD with momentum on DisAlign's scale, bias and gate, gradient in closed form.

    The updates of :class:`~skltr._backend.AutogradSGD` on the cross-entropy
    of :func:`aligned_logits` (the heavy ball of :class:`torch.optim.SGD`,
    weight decay on every parameter), from the gradient written out: with
    ``G`` the cross-entropy's gradient in the aligned logits, ``sigma`` the
    gate and ``a = (alpha - 1) z + beta`` the alignment it lets through,

        d alpha_j = mean_i G_ij sigma_i z_ij,   d beta_j = mean_i G_ij sigma_i,
        d v = mean_i g_i x_i,   d c = mean_i g_i,
        g_i = sigma_i (1 - sigma_i) sum_j G_ij a_ij.

    The alignment's steps are small, and autograd's fixed costs were most
    of DisAlign's own time: this step takes under half of autograd's.

    The features served are each row's joint logits followed by its
    standardised features.

    The four parameters are views of one flat tensor, so that one momentum
    step, each element at its parameter's step size, moves them all: the
    steps are small, and with a momentum step per parameter the alignment
    took about a quarter longer (ResNet-56 features, 10 classes).

    Parameters
    ----------
    n_classes, n_features : int
    device : torch.device
    lr_scale, lr_bias, lr_gate : float
        The step on the scales, on the biases (and the gate's intercept), and
        on the gate's weights.
    momentum, weight_decay : float

    Attributes
    ----------
    scale, bias : torch.Tensor of shape (n_classes,)
        Start at 1 and 0: the alignment starts as the joint logits.
    gate_coef : torch.Tensor of shape (n_features,)
    gate_intercept : torch.Tensor of shape ()
        Start at 0. All four are updated in place.
    """

    # Not yet run inside a CUDA graph (no GPU checked it): the training loop
    # runs it step by step on every device.
    capturable = False

    def __init__(
        self,
        n_classes,
        n_features,
        device,
        *,
        lr_scale,
        lr_bias,
        lr_gate,
        momentum,
        weight_decay,
    ):
        sizes = (n_classes, n_classes, n_features, 1)
        self._flat = torch.zeros(sum(sizes), device=device)
        self.scale, self.bias, self.gate_coef, gate_intercept = self._flat.split(sizes)
        self.gate_intercept = gate_intercept[0]
        self.scale.fill_(1.0)
        self._velocity = torch.zeros_like(self._flat)
        self._lrs = (lr_scale, lr_bias, lr_gate, lr_bias)
        self.momentum, self.weight_decay = momentum, weight_decay
        # Minus the step sizes, one per element, as the other closed-form
        # steps hold theirs: as tensors.
        self._steps = torch.zeros_like(self._flat)
        self._step_segments = self._steps.split(sizes)

    def set_lr_factor(self, lr_factor):
        for segment, lr in zip(self._step_segments, self._lrs, strict=True):
            segment.fill_(-lr * lr_factor)

    @torch.no_grad()
    def update(self, features, labels, weights=None):
        """One step at the current step sizes; returns the batch loss."""
        n, n_classes = len(labels), len(self.scale)
        logits, rows = features[:, :n_classes], features[:, n_classes:]
        gate = torch.sigmoid(torch.addmv(self.gate_intercept, rows, self.gate_coef))
        alignment = torch.addcmul(self.bias, logits, self.scale - 1.0)
        aligned = torch.addcmul(logits, gate[:, None], alignment)
        loss, grad = self.cross_entropy_gradient(aligned, labels, weights)
        gated_grad = grad * gate[:, None]
        gate_grad = (grad * alignment).sum(dim=1).mul_(gate * (1.0 - gate))
        flat_grad = torch.cat(
            [
                (gated_grad * logits).sum(dim=0),
                gated_grad.sum(dim=0),
                rows.T @ gate_grad,
                gate_grad.sum().reshape(1),
            ]
        )
        flat_grad.div_(n).add_(self._flat, alpha=self.weight_decay)
        self.momentum_step(self._flat, self._velocity, flat_grad, self._steps)
        return loss


@fill_doc(
    rho=_RHO,
    cv=DEFAULT_CV,
    epochs=_EPOCHS,
    batch_size=DEFAULT_BATCH_SIZE,
    lr=_LR,
    lr_scaling=(
        "Each step is divided by the mean square of what its parameter "
        "multiplies: the step on the scales by the mean squared joint logit, "
        "the step on the gate's weights by the mean squared norm of the "
        "standardised features; the biases take ``lr`` itself."
    ),
    weight_decay=DEFAULT_WEIGHT_DECAY,
)
class DisAlignClassifier(BaseRebalancer):
    """Distribution alignment: a gated per-class scale and bias on the joint logits.

    The joint classifier is kept frozen. A per-class scale ``alpha`` and bias
    ``beta`` align its logits ``z`` with a balanced class distribution, and
    a gate ``sigma(x) = sigmoid(v . x + c)`` on the features decides, sample
    by sample, how much of the alignment to apply::

        s_j = sigma(x) (alpha_j z_j + beta_j) + (1 - sigma(x)) z_j

    The parameters are learned with cross-entropy in which a sample of class
    j weighs ``(1 / pi_j)^rho`` (generalised re-weighting), on held-out joint
    logits (see ``cv``), as :class:`LWSClassifier` learns its scales: on the
    training set the joint classifier makes almost no error to align. The
    gate reads the features standardised as the joint classifier reads them.

    Read more in the :ref:`User Guide <loss-family>`.

    Parameters
    ----------
    rho : float, default=%(rho)s
        Exponent of the generalised re-weighting: 0 weighs every sample
        alike, 1 is inverse class frequency, which makes the weighted loss
        the balanced error (the reference tuned 1.2 on ImageNet-LT; above
        1 the tail is favoured beyond balance). The weights are rescaled to
        mean 1 over the samples, so that ``lr`` keeps its meaning.
        Not chosen on held-out data: each candidate would need its own
        training; search it with
        :class:`~sklearn.model_selection.GridSearchCV` and a shot scorer.

    %(cv_parameters)s

    %(joint_parameters)s

    %(training_parameters)s

    %(device_parameters)s

    Attributes
    ----------
    scale_ : ndarray of shape (n_classes,)
        alpha, the learned per-class scale of the joint logits.

    bias_ : ndarray of shape (n_classes,)
        beta, the learned per-class bias.

    gate_coef_ : ndarray of shape (n_features,)
        v, the gate's weights on the (standardised) features.

    gate_intercept_ : float
        c, the gate's bias.

    %(selection_attributes)s

    %(joint_attributes)s

    %(common_attributes)s

    %(training_attributes)s

    Notes
    -----
    The alignment is learned on the logits of the fold classifiers and
    applied to those of the joint classifier fit on all the data. On small
    training sets the two differ: a fold classifier fit on half of a few
    hundred rows is more confident than the full one (on 215 rows in 6
    dimensions, 10 in the rarest class, its logits were twice as large), so
    the biases learned on its logits over-correct the full one's (balanced
    accuracy 81.4 against 86.2 for the joint classifier there; 78.1 with
    ``refit="full"``, whose joint classifier owes nothing to the folds').
    With a few hundred rows, use more folds (``cv=5``: 86.5 on the same
    problem) or validation data; from a few thousand rows on, the default
    beat the joint classifier on every problem measured.

    See Also
    --------
    LWSClassifier : One scale per class, without bias or gate.
    LogitAdjustedClassifier : A fixed per-class shift of the joint logits.

    References
    ----------
    .. [1] S. Zhang, Z. Li, S. Yan, X. He and J. Sun, "Distribution Alignment:
       A Unified Framework for Long-tail Visual Recognition", CVPR 2021.

    Examples
    --------
    >>> import numpy as np
    >>> from skltr import DisAlignClassifier
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(3), [300, 40, 6])
    >>> X = rng.normal(size=(len(y), 5)) + 2.0 * np.eye(3, 5)[y]
    >>> clf = DisAlignClassifier(device="cpu", random_state=0).fit(X, y)
    >>> clf.scale_.shape, clf.gate_coef_.shape
    ((3,), (5,))
    """

    _parameter_constraints: dict = {
        **BaseRebalancer._parameter_constraints,
        **SGD_PARAMETER_CONSTRAINTS,
        "rho": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(
        self,
        *,
        rho=_RHO,
        cv=DEFAULT_CV,
        refit="warm",
        joint=None,
        memory=None,
        epochs=_EPOCHS,
        batch_size=DEFAULT_BATCH_SIZE,
        lr=_LR,
        momentum=0.9,
        weight_decay=DEFAULT_WEIGHT_DECAY,
        device="auto",
        random_state=None,
        verbose=0,
    ):
        self.rho = rho
        self.cv = cv
        self.refit = refit
        self.joint = joint
        self.memory = memory
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _rebalance(self, X, y, knob_data, sample_weight):
        device, rng = self._start_training()
        logits, rows, labels, weights = self._pooled_held_out_logits(
            X, y, knob_data, device, sample_weight, features=True
        )
        if self.chosen_on_ == TRAINING_DATA:
            warn_if_nothing_to_correct(self, logits, labels, "alignment")
        n_classes, n_features = logits.shape[1], rows.shape[1]
        # Each parameter's step follows the rule of the others: divided by
        # the mean square of what it multiplies (logits for the scales, the
        # standardised features for the gate).
        squared_logit = float(logits.square().mean(dim=1).mean())
        squared_feature = float(rows.square().sum(dim=1).mean())
        row_weights = generalised_reweighting(self.class_counts_, self.rho)[labels]
        if weights is not None:
            row_weights = row_weights * weights
        step = GatedAlignmentSGD(
            n_classes,
            n_features,
            device,
            lr_scale=logit_scaled_lr(self.lr, squared_logit),
            lr_bias=self.lr,
            lr_gate=feature_scaled_lr(self.lr, squared_feature),
            momentum=self.momentum,
            weight_decay=self.weight_decay,
        )
        self._train(
            step,
            DeviceFeatures(
                torch.cat([logits, rows], dim=1),
                labels,
                device,
                sample_weight=row_weights,
            ),
            make_sampler("instance", labels, n_classes, epochs=self.epochs, rng=rng),
        )
        self.scale_, self.bias_ = to_numpy(step.scale), to_numpy(step.bias)
        self.gate_coef_ = to_numpy(step.gate_coef)
        self.gate_intercept_ = float(step.gate_intercept)

    def _scorer(self, device):
        # The gate is one more output of the joint head's product: a product
        # of its own, one column wide, rounded differently with the number
        # of rows in a chunk.
        head = LinearScores(
            np.vstack([self.joint_coef_, self.gate_coef_[None, :]]),
            np.append(self.joint_intercept_, self.gate_intercept_),
            shift=self.feature_mean_,
            scale=self.feature_scale_,
            device=device,
        )
        scale, bias = (
            torch.as_tensor(a, dtype=torch.float64, device=device)
            for a in (self.scale_, self.bias_)
        )

        def scores(rows):
            joint_and_gate = head(rows)
            return aligned_logits(
                joint_and_gate[:, :-1], joint_and_gate[:, -1:], scale, bias
            )

        return scores
