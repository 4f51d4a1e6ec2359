"""Post-hoc logit adjustment (user guide: docs/guide/loss_family.md).

Predict argmax_j z_j - tau log pi_j on the joint classifier's logits z, where
pi_j = n_j / N is the training prior; predict_proba = softmax(z - tau log pi).
tau = 1 is Fisher-consistent for the balanced error when the joint classifier
estimates p(y|x) well; on real features a tau chosen on held-out data does
better.
"""

from numbers import Real

import numpy as np
import torch
from sklearn.utils._param_validation import StrOptions

from ._backend import float64_device
from ._docstrings import fill_doc
from ._rebalance import DEFAULT_CV, BaseRebalancer
from ._selection import count_correct


def log_prior(class_counts):
    """log(n_j / N), float64; a class with no sample gets the log of 1/(2N)."""
    counts = np.asarray(class_counts, dtype=np.float64)
    # A head handed in may know a class that the training set lacks; half a
    # sample keeps its adjustment finite.
    return np.log(np.maximum(counts, 0.5) / counts.sum())


def correct_by_adjustment(X, labels, head, taus, n_classes, device):
    """Correct predictions per class of the logit-adjusted head, per tau.

    ``head`` is a :class:`~skltr._selection.JointHead`; its own training
    counts are the prior it adjusts for. Returns an (n_taus, n_classes)
    array.
    """
    device = float64_device(device)
    scores = head.scores(device)
    offsets = torch.as_tensor(
        np.outer(np.asarray(taus, dtype=np.float64), log_prior(head.class_counts)),
        device=device,
    )
    return count_correct(
        X,
        labels,
        scores,
        lambda logits, i: logits - offsets[i],
        len(offsets),
        n_classes,
        device,
    )


@fill_doc(cv=DEFAULT_CV)
class LogitAdjustedClassifier(BaseRebalancer):
    """Post-hoc logit adjustment: the joint logits minus tau times the log prior.

    The joint classifier's logits estimate the training distribution, whose
    prior favours the head classes. Subtracting ``tau * log(n_j / N)`` from
    logit j removes that prior (at ``tau = 1``) or part of it, with no
    training: Menon et al., "Long-tail learning via logit adjustment" (ICLR
    2021). The adjustment is a per-class bias, so the fitted classifier is
    the joint classifier with ``intercept_ = joint_intercept_ - tau *
    log(class_counts_ / n)``.

    Read more in the :ref:`User Guide <loss-family>`.

    Parameters
    ----------
    tau : float or "auto", default="auto"
        The strength of the adjustment. ``"auto"`` takes the value of
        ``tau_grid`` with the best mean per-class accuracy on held-out
        predictions of the joint classifier (see ``cv``), the first of
        equals in grid order.

    tau_grid : array-like of float, default=None
        The values ``"auto"`` chooses from; None is 0.0, 0.1, ..., 2.0.

    %(cv_parameters)s

    %(joint_parameters)s

    %(device_parameter)s

    random_state : int, RandomState instance or None, default=None
        Seeds the folds of the cross-fitting and the joint classifiers' fits.

    Attributes
    ----------
    %(tau_choice_attributes)s

    %(fitted_linear_attributes)s

    %(joint_attributes)s

    %(common_attributes)s

    See Also
    --------
    TauNormClassifier : Re-balances the joint weights by their norms instead.
    JointClassifier : The classifier being adjusted.

    References
    ----------
    .. [1] A. K. Menon, S. Jayasumana, A. S. Rawat, H. Jain, A. Veit and
       S. Kumar, "Long-tail learning via logit adjustment", ICLR 2021.

    Examples
    --------
    >>> import numpy as np
    >>> from skltr import LogitAdjustedClassifier
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(3), [300, 40, 10])
    >>> X = rng.normal(size=(len(y), 5)) + 2.0 * np.eye(3, 5)[y]
    >>> clf = LogitAdjustedClassifier(device="cpu", random_state=0).fit(X, y)
    >>> clf.chosen_on_
    'cross-fitting'
    >>> clf.tau_scores_.shape
    (21,)
    """

    # No training of its own, so no SGD settings.
    _parameter_constraints: dict = {
        **BaseRebalancer._parameter_constraints,
        "tau": [StrOptions({"auto"}), Real],
        "tau_grid": [None, "array-like"],
    }

    def __init__(
        self,
        *,
        tau="auto",
        tau_grid=None,
        cv=DEFAULT_CV,
        refit="warm",
        joint=None,
        memory=None,
        device="auto",
        random_state=None,
    ):
        self.tau = tau
        self.tau_grid = tau_grid
        self.cv = cv
        self.refit = refit
        self.joint = joint
        self.memory = memory
        self.device = device
        self.random_state = random_state

    def _chooses_knob(self):
        return self.tau == "auto"

    def _rebalance(self, X, y, knob_data, sample_weight):
        if self.tau == "auto":
            self.tau_ = self._choose_tau(
                X,
                y,
                knob_data,
                lambda scoring, grid, device: correct_by_adjustment(
                    scoring.X_held_out,
                    scoring.y_held_out,
                    scoring.head,
                    grid,
                    len(self.classes_),
                    device,
                ),
                sample_weight,
            )
        else:
            self.tau_ = float(self.tau)
        self.coef_ = self.joint_coef_
        adjusted = self.joint_intercept_ - self.tau_ * log_prior(self.class_counts_)
        self.intercept_ = adjusted.astype(np.float32)
