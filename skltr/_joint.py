"""Joint: the plain baseline (user guide: docs/guide/decoupling.md).

A linear classifier (W, b) trained on the features with instance-balanced
sampling and cross-entropy. It stands in for the stage-1 classifier, and it is
what tau-norm, LWS and LORT re-balance.
"""

from numbers import Real

import torch
from sklearn.utils._param_validation import Interval, StrOptions

from ._docstrings import AUTO_WEIGHT_DECAY, fill_doc
from ._softmax_regression import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_LR,
    SoftmaxRegression,
)
from ._weights import DEFAULT_BETA


def focal_posterior_logits(scores, gamma):
    """Logits whose softmax is the class posterior a focal-loss layer estimates.

    The focal loss is not a proper scoring rule: its minimiser q is not the
    posterior eta but a flattened version of it. From the optimality
    condition of its conditional risk, eta_j is proportional to
    ``h(q_j) = q_j / ((1 - q_j)^gamma - gamma q_j (1 - q_j)^(gamma - 1)
    log q_j)``, increasing in q_j (Charoenphakdee et al., CVPR 2021), so the
    class predicted stays the same. Returns ``log h(softmax(scores))``.

    The denominator is the focal loss's gradient factor, which the training
    step computes (``focal_terms``); here it is taken in log space, with
    ``1 - q_j`` held above the smallest positive float, because a row that
    one class takes all the mass of would underflow it to 0 and make the
    probabilities NaN.

    Parameters
    ----------
    scores : torch.Tensor of shape (n_samples, n_classes)
        The layer's logits, float64.
    gamma : float
        The focal loss's gamma; 0 gives the log-softmax of ``scores``.

    Returns
    -------
    logits : torch.Tensor of shape (n_samples, n_classes)
    """
    log_q = torch.log_softmax(scores, dim=1)
    rest = torch.clamp(-torch.expm1(log_q), min=torch.finfo(scores.dtype).tiny)
    return (
        log_q
        - (gamma - 1.0) * torch.log(rest)
        - torch.log(rest - gamma * torch.exp(log_q) * log_q)
    )


@fill_doc(
    epochs=DEFAULT_EPOCHS,
    batch_size=DEFAULT_BATCH_SIZE,
    lr=DEFAULT_LR,
    **AUTO_WEIGHT_DECAY,
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
        The softmax of a focal-loss layer's logits is flatter than the class
        posterior, so ``predict_proba`` maps it back to the posterior it
        estimates (Charoenphakdee et al., 2021; the class predicted is the
        same): a prior adjustment (:class:`PriorAdjustedClassifier`) needs
        posteriors.

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
    .. [4] N. Charoenphakdee, J. Vongkulbhisal, N. Chairatanakul and
       M. Sugiyama, "On Focal Loss for Class-Posterior Probability
       Estimation: A Theoretical Perspective", CVPR 2021.

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

    def _probability_logits(self, scores):
        gamma = self._focal_gamma()
        return focal_posterior_logits(scores, gamma) if gamma else scores
