"""tau-normalised classifier (user guide: docs/guide/decoupling.md).

Take the joint classifier's W and rescale each row:
w~_j = w_j / ||w_j||^tau, logits = W~ z (bias dropped).
tau = 0 is the joint classifier without its bias, tau = 1 plain L2
normalisation. tau is chosen on held-out predictions by the mean of
per-class accuracies (user guide: docs/guide/knobs.md), or learned with
class-balanced sampling, everything else frozen.
"""

from numbers import Real

import numpy as np
import torch
from sklearn.utils._param_validation import StrOptions

from ._backend import feature_scaled_lr
from ._docstrings import fill_doc
from ._rebalance import DEFAULT_CV, BaseRebalancer
from ._sampling import make_sampler
from ._softmax_regression import DEFAULT_BATCH_SIZE
from ._tau import correct_by_tau, tau_normalize
from ._trained import SGD_PARAMETER_CONSTRAINTS
from ._weights import within_class_mean_one

_LEARN_EPOCHS = 10
_LEARN_LR = 0.5


@fill_doc(
    cv=DEFAULT_CV,
    epochs=_LEARN_EPOCHS,
    batch_size=DEFAULT_BATCH_SIZE,
    lr=_LEARN_LR,
    lr_scaling=(
        "The step on tau is divided by the mean squared norm of the "
        '"feature" tau acts through (see Notes).'
    ),
    weight_decay=0.0,
)
class TauNormClassifier(BaseRebalancer):
    """tau-normalised classifier: the joint weights divided by ||w_j||^tau.

    A joint classifier's weight norms grow with its classes' training counts,
    which widens the decision regions of the head classes. Dividing each row by
    its norm to the power tau shrinks that bias: tau = 0 keeps the joint
    weights, tau = 1 gives every class a weight of norm 1. The bias is dropped,
    as in the paper.

    Read more in the :ref:`User Guide <decoupling-classifiers>`.

    Parameters
    ----------
    tau : float, "auto" or "learn", default="auto"
        The normalisation power. ``"auto"`` takes the value of ``tau_grid``
        with the best mean per-class accuracy on held-out predictions of the
        joint classifier (see ``cv``), the first of equals in grid order.
        ``"learn"`` learns tau by SGD with class-balanced sampling on the
        training set, the joint weights frozen, using the training settings
        below.

    tau_grid : array-like of float, default=None
        The values ``"auto"`` chooses from; None is 0.0, 0.1, ..., 2.0 (the
        paper's sweep).

    %(cv_parameters)s

    %(joint_parameters)s

    %(training_parameters)s
        The training settings apply to ``tau="learn"`` only.

    %(device_parameters)s

    Attributes
    ----------
    %(tau_choice_attributes)s

    device_ : str
        Where tau was chosen (``"auto"``) or learned (``"learn"``); not set
        for a given tau.

    loss_curve_ : list of float
        With ``tau="learn"``, the mean training loss of each epoch.

    %(fitted_linear_attributes)s

    %(joint_attributes)s

    %(common_attributes)s

    See Also
    --------
    LWSClassifier : Learns one scale per class instead of one power.
    JointClassifier : The classifier being normalised.

    Notes
    -----
    With ``tau="learn"``, the step on tau is scaled as the step on feature
    weights is (see :class:`JointClassifier`): tau acts on the logits through
    the "feature" ``-log(||w_j||) * logit_j``, a single one, whose mean
    squared norm is the curvature and divides the learning rate.

    References
    ----------
    %(decoupling_reference)s

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.model_selection import GridSearchCV
    >>> from skltr import TauNormClassifier
    >>> rng = np.random.default_rng(0)
    >>> counts = [200, 60, 20, 8]
    >>> y = np.repeat(np.arange(4), counts)
    >>> X = rng.normal(size=(len(y), 8)) + 2.0 * np.eye(4, 8)[y]
    >>> clf = TauNormClassifier(tau=0.7, device="cpu", random_state=0).fit(X, y)
    >>> clf.tau_
    0.7
    >>> search = GridSearchCV(TauNormClassifier(device="cpu", random_state=0),
    ...                       {"tau": [0.0, 0.5, 1.0]}, cv=3,
    ...                       scoring="balanced_accuracy").fit(X, y)
    >>> search.best_params_["tau"] in (0.0, 0.5, 1.0)
    True
    """

    _parameter_constraints: dict = {
        **BaseRebalancer._parameter_constraints,
        **SGD_PARAMETER_CONSTRAINTS,
        "tau": [StrOptions({"auto", "learn"}), Real],
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
        epochs=_LEARN_EPOCHS,
        batch_size=DEFAULT_BATCH_SIZE,
        lr=_LEARN_LR,
        momentum=0.9,
        weight_decay=0.0,
        device="auto",
        random_state=None,
        verbose=0,
    ):
        self.tau = tau
        self.tau_grid = tau_grid
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

    def _chooses_knob(self):
        return self.tau == "auto"

    def _rebalance(self, X, y, knob_data, sample_weight):
        if self.tau == "auto":
            self.tau_ = self._choose_tau(
                X,
                y,
                knob_data,
                lambda scoring, grid, device: correct_by_tau(
                    scoring.X_held_out,
                    scoring.y_held_out,
                    scoring.head.coef,
                    grid,
                    len(self.classes_),
                    shift=scoring.head.mean,
                    scale=scoring.head.scale,
                    device=device,
                ),
                sample_weight,
            )
        elif self.tau == "learn":
            self.tau_ = self._learn_tau(X, y, sample_weight)
        else:
            self.tau_ = float(self.tau)
        self.coef_ = tau_normalize(self.joint_coef_, self.tau_)
        self.intercept_ = np.zeros(len(self.classes_), dtype=np.float32)

    def _learn_tau(self, X, y, sample_weight):
        device, rng = self._start_training()
        # The class-balanced sampler sets each class's share; a sample's
        # weight says how much it counts within its class.
        data = self._device_features(
            X, y, device, within_class_mean_one(sample_weight, y, len(self.classes_))
        )
        coef = torch.as_tensor(self.joint_coef_, device=device)
        log_norms = torch.linalg.vector_norm(coef, dim=1).clamp_min(1e-30).log()
        tau = torch.zeros((), device=device, requires_grad=True)

        def logits(features):
            return (features @ coef.T) * torch.exp(-tau * log_norms)

        def losses(features, labels):
            return torch.nn.functional.cross_entropy(
                logits(features), labels, reduction="none"
            )

        with torch.no_grad():
            # The step on tau is scaled by the mean squared norm of d logits / d tau.
            squared = sum(
                float(torch.square(log_norms * (features @ coef.T)).sum())
                for features, _ in data.iter_all()
            )
        self._train(
            self._autograd_step(
                [{"params": [tau], "lr": feature_scaled_lr(self.lr, squared / len(y))}],
                losses,
            ),
            data,
            make_sampler("class", y, len(self.classes_), epochs=self.epochs, rng=rng),
        )
        return float(tau.detach().cpu())
