"""Balanced Softmax (user guide: docs/guide/loss_family.md).

Train the linear head with cross-entropy on z + tau log pi, where z = W x + b
are its logits and pi_j = n_j / N is the training prior, and predict with z
alone. The prior offset makes the head classes easy in training, so the
layer itself learns logits that do not favour them: at tau = 1 (Ren et al.'s
Balanced Softmax) the softmax of z estimates p(y | x) under a uniform
prior. Instance-balanced sampling: class-balanced sampling on top would
correct twice.
"""

from numbers import Real

from sklearn.utils._param_validation import Interval

from ._docstrings import AUTO_WEIGHT_DECAY, fill_doc
from ._logit_adjustment import log_prior
from ._softmax_regression import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_LR,
    SoftmaxRegression,
)
from ._weights import DEFAULT_BETA


@fill_doc(
    epochs=DEFAULT_EPOCHS,
    batch_size=DEFAULT_BATCH_SIZE,
    lr=DEFAULT_LR,
    **AUTO_WEIGHT_DECAY,
    beta=DEFAULT_BETA,
)
class BalancedSoftmaxClassifier(SoftmaxRegression):
    """Linear softmax classifier trained with the logit-adjusted (balanced) loss.

    The layer is trained from zero, with instance-balanced sampling, on
    cross-entropy of its logits plus ``tau * log(n_j / N)``; it predicts with
    its logits alone. The offset is large for the head classes, so the loss
    asks less of their logits and more of the tail's: the prior is learnt
    away during training rather than subtracted afterwards, as
    :class:`LogitAdjustedClassifier` does.

    Read more in the :ref:`User Guide <loss-family>`.

    Parameters
    ----------
    tau : float, default=1.0
        Weight of the log prior in the loss. ``1.0`` is Balanced Softmax,
        the loss that is Fisher-consistent for the balanced error; ``0.0``
        is the plain cross-entropy of :class:`JointClassifier`. It is not
        chosen on held-out data, as :class:`LogitAdjustedClassifier`'s tau
        is, because each candidate would need a head trained for it: choose
        it with :class:`~sklearn.model_selection.GridSearchCV` and a shot
        scorer (:func:`skltr.metrics.make_shot_scorer`) when 1 is not right
        for your features.

    standardize : bool, default=True
        Centre each feature and scale it to unit variance before the layer.

    %(class_weight_parameters)s
        The loss is balanced already; a class weight on top corrects twice.

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
    LogitAdjustedClassifier : The same correction after training, on the
        joint classifier's logits.
    JointClassifier : The same layer and sampling with the plain loss.
    CRTClassifier : Balances by sampling instead of by the loss.

    References
    ----------
    .. [1] J. Ren, C. Yu, S. Sheng, X. Ma, H. Zhao, S. Yi and H. Li,
       "Balanced Meta-Softmax for Long-Tailed Visual Recognition",
       NeurIPS 2020.
    .. [2] A. K. Menon, S. Jayasumana, A. S. Rawat, H. Jain, A. Veit and
       S. Kumar, "Long-tail learning via logit adjustment", ICLR 2021.

    Examples
    --------
    >>> import numpy as np
    >>> from skltr import BalancedSoftmaxClassifier
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(3), [300, 40, 6])
    >>> X = rng.normal(size=(len(y), 5)) + 2.0 * np.eye(3, 5)[y]
    >>> clf = BalancedSoftmaxClassifier(device="cpu", random_state=0).fit(X, y)
    >>> clf.predict_proba(X[:2]).shape
    (2, 3)
    """

    _parameter_constraints: dict = {
        **SoftmaxRegression._parameter_constraints,
        "tau": [Interval(Real, None, None, closed="neither")],
    }

    def __init__(
        self,
        *,
        tau=1.0,
        standardize=True,
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
        self.tau = tau
        self.standardize = standardize
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

    def _sampling(self):
        return "instance"

    def _logit_offset(self):
        return self.tau * log_prior(self.class_counts_)
