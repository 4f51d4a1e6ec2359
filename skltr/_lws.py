"""LWS: learnable weight scaling (user guide: docs/guide/decoupling.md).

Keep the joint classifier (W, b) frozen and learn one scale per class:
logits = f * (W z + b), f in R^C initialised to 1 (the bias is scaled too),
trained with class-balanced sampling and cross-entropy; weight decay applies
to f.
"""

from numbers import Real

import numpy as np
import torch

from ._backend import ClassScaleSGD, DeviceFeatures, logit_scaled_lr
from ._docstrings import fill_doc
from ._rebalance import DEFAULT_CV, BaseRebalancer
from ._sampling import check_sampling, make_sampler
from ._selection import TRAINING_DATA, warn_if_nothing_to_correct
from ._softmax_regression import DEFAULT_BATCH_SIZE, DEFAULT_WEIGHT_DECAY
from ._trained import SGD_PARAMETER_CONSTRAINTS, to_numpy

# The scales are learned on precomputed logits, C numbers a row, so an epoch
# costs little beside the joint fits. Measured with 2-fold cross-fitting
# (balanced test accuracy, 8 long-tailed problems), 20 epochs against the
# reference's 5: 72.0 against 71.7 on average; on the hardest (a Gaussian
# the balanced LogisticRegression scores 21.7 on) 21.7 against 19.8, where 5
# epochs left the scales far from converged.
_EPOCHS = 20
_LR = 0.5


@fill_doc(
    cv=DEFAULT_CV,
    epochs=_EPOCHS,
    batch_size=DEFAULT_BATCH_SIZE,
    lr=_LR,
    lr_scaling=(
        "The step on the scales is divided by the mean squared joint logit "
        "(see Notes), so one value suits logits of any scale."
    ),
    weight_decay=DEFAULT_WEIGHT_DECAY,
)
class LWSClassifier(BaseRebalancer):
    """Learnable weight scaling: one learned scale per class on a frozen joint.

    The joint classifier's weights and bias stay as they are; a scale f_j per
    class, starting at 1, multiplies logit j and is learned with
    class-balanced sampling. The scales undo the head bias of the weight norms
    without a grid search. They are learned on held-out logits (see ``cv``):
    the logits of every training sample from the cross-fitted joint
    classifier that did not train on it, pooled over the folds (or the
    logits of the validation data given to ``fit``). The joint classifier
    fits its own training set too well for its training logits to show the
    bias to correct.

    Read more in the :ref:`User Guide <decoupling-classifiers>`.

    Parameters
    ----------
    sampling : {"class", "instance", "sqrt", "progressive"} or float, \
default="class"
        How training samples are drawn (see :class:`CRTClassifier`).

    %(cv_parameters)s

    %(joint_parameters)s

    %(training_parameters)s

    %(device_parameters)s

    Attributes
    ----------
    scales_ : ndarray of shape (n_classes,)
        The learned scale of each class.

    %(selection_attributes)s

    %(fitted_linear_attributes)s

    %(joint_attributes)s

    %(common_attributes)s

    %(training_attributes)s

    See Also
    --------
    TauNormClassifier : Re-scales the rows by a power of their norms.
    CRTClassifier : Re-trains the whole layer with class-balanced sampling.

    Notes
    -----
    Reference (Kang et al., ICLR 2020): 5 epochs, lr 0.2 at batch 512, weight
    decay 5e-4, cosine schedule; here 20 epochs, which cost little, since the
    scales are trained on precomputed logits rather than through the
    features. The step on f_j is divided by the mean squared joint logit, as
    the step on feature weights is divided by the curvature of the features
    (see :class:`JointClassifier`): f acts on the logits through the joint
    logits as weights act through the features. Each scale multiplies one
    logit, so that logit's second moment bounds the curvature in it.

    Each class's scale is learned from that class's held-out samples,
    except for a class that every fold's joint classifier saw at most once:
    its held-out logits come from classifiers that barely know it (and
    would teach it a scale below 0), so its scale is learned on its
    training samples as the joint classifier fit on all the data scores
    them (see ``cv``). With classes of a few samples, a scale still rests
    on a few logits, and class-balanced sampling gives them the weight of
    a head class: the scales change with the split of the folds.
    :class:`TauNormClassifier` and :class:`LogitAdjustedClassifier` choose
    one tau for all classes and are steadier there (``docs/results.md``,
    the digits pixels).

    References
    ----------
    %(decoupling_reference)s

    Examples
    --------
    >>> import numpy as np
    >>> from skltr import LWSClassifier
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(3), [300, 40, 6])
    >>> X = rng.normal(size=(len(y), 5)) + 2.0 * np.eye(3, 5)[y]
    >>> clf = LWSClassifier(device="cpu", random_state=0).fit(X, y)
    >>> clf.scales_.shape
    (3,)
    """

    _parameter_constraints: dict = {
        **BaseRebalancer._parameter_constraints,
        **SGD_PARAMETER_CONSTRAINTS,
        "sampling": [str, Real],
    }

    def __init__(
        self,
        *,
        sampling="class",
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
        self.sampling = sampling
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
        sampling = check_sampling(self.sampling)
        device, rng = self._start_training()
        logits, labels, weights = self._pooled_held_out_logits(
            X, y, knob_data, device, sample_weight
        )
        if self.chosen_on_ == TRAINING_DATA:
            warn_if_nothing_to_correct(self, logits, labels, "scales")
        scales = torch.ones(len(self.classes_), device=device)
        # The scales act on the logits as weights act on features: the step
        # is divided by the mean squared logit.
        squared_logit = float(logits.square().mean(dim=1).mean())
        self._train(
            ClassScaleSGD(
                scales,
                None,
                None,
                lr=logit_scaled_lr(self.lr, squared_logit),
                momentum=self.momentum,
                weight_decay=self.weight_decay,
            ),
            DeviceFeatures(logits, labels, device, sample_weight=weights),
            make_sampler(
                sampling, labels, len(self.classes_), epochs=self.epochs, rng=rng
            ),
        )
        self.scales_ = to_numpy(scales)
        self.coef_ = self.scales_[:, None] * self.joint_coef_
        self.intercept_ = (self.scales_ * self.joint_intercept_).astype(np.float32)
