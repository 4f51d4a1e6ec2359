"""LORT: logits retargeting (METHODS.md, "LORT").

Fine-tune the stage-1 (joint) classifier, starting from its weights, with
cross-entropy against soft targets: the true class 1 - delta + delta/C, every
other class delta/C (label smoothing with a very large smoothing value),
instance-balanced sampling.

The optimum of that loss is MORE head-biased than plain cross-entropy; the
balancing is a property of the path from the joint classifier, along which
balanced accuracy rises, then overshoots toward the tail. So the training
budget is a re-balancing knob, chosen here as appendix B.5 of the Decoupling
paper chooses tau: the point of the path with the best mean per-class
training accuracy.
"""

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions

from ._backend import effective_batch_size
from ._base import mean_squared_norm, to_numpy
from ._docstrings import fill_doc
from ._joint import DEFAULT_BATCH_SIZE
from ._rebalance import BaseRebalancer

_EPOCHS = 30
_PATIENCE = 5
# With lr="auto", the path length that one epoch covers (in learning-rate units
# at unit mean squared feature norm), per decade of classes. Measured on
# CIFAR-10-LT ResNet-56 features, the path peaked after about 1.3 units
# (METHODS.md: 1 epoch at lr 1e-4, batch 64), so 0.2 per epoch puts several
# checks before the peak. On long-tailed Gaussians the peak came later with
# more classes (about 2.6 units at C = 100, past 4 at C = 1,000, where 0.2 per
# epoch gained 0.6 points of balanced accuracy in 30 epochs and 0.6 per epoch
# gained 3.3).
_PATH_PER_EPOCH = 0.2


def retargeted_labels(y, n_classes, smoothing):
    """LORT's soft targets: 1 - delta + delta/C on the true class, delta/C elsewhere.

    Parameters
    ----------
    y : array-like of int, shape (n_samples,)
        Encoded labels.
    n_classes : int
    smoothing : float
        delta, in [0, 1].

    Returns
    -------
    targets : ndarray of shape (n_samples, n_classes)
    """
    targets = np.full((len(y), n_classes), smoothing / n_classes)
    targets[np.arange(len(y)), y] += 1.0 - smoothing
    return targets


@fill_doc(
    epochs=_EPOCHS,
    batch_size=DEFAULT_BATCH_SIZE,
    lr='"auto"',
    weight_decay=0.0,
    patience=_PATIENCE,
)
class LORTClassifier(BaseRebalancer):
    """Logits retargeting: the joint classifier fine-tuned on near-uniform targets.

    Starting from the joint classifier's weights, the layer is trained with
    cross-entropy against soft targets that give the true class
    ``1 - smoothing + smoothing / C`` and every other class ``smoothing / C``.
    Along that path the logits of the head classes shrink faster than those of
    the tail, and balanced accuracy rises, then overshoots toward the tail; the
    optimum of the loss itself is head-biased. The fit therefore walks the
    path and keeps its best point: after every epoch (and at the start) it
    measures the mean per-class accuracy on the training set, and it stops
    once ``n_iter_no_change`` epochs have not improved it, keeping the
    earliest of equals. The test set never takes part. When the joint
    classifier already classifies every training sample correctly, the
    training set cannot tell the points apart and the joint classifier is
    kept unchanged; a warning says so.

    Parameters
    ----------
    smoothing : float, default=0.98
        delta, the weight of the uniform distribution in the targets (the
        reference uses 0.98 on CIFAR-100-LT). It needs no class counts.

    n_iter_no_change : int, default=%(patience)s
        Epochs without a better mean per-class training accuracy after which
        the walk stops.

    %(joint_parameters)s

    %(training_parameters)s
        ``"auto"`` takes ``0.2 * max(1, log10(n_classes)) * batch_size /
        n_samples``: one epoch then moves the same distance along the path
        whatever the size of the data set, so that the per-epoch checks see
        the peak whether an epoch has 10 steps or 1,000, and farther with
        more classes, whose peak lies farther out.

    %(device_parameters)s

    Attributes
    ----------
    best_epoch_ : int
        Epochs of fine-tuning behind the kept weights; 0 keeps the joint
        classifier.

    path_scores_ : ndarray of shape (n_evaluated_epochs + 1,)
        Mean per-class training accuracy at the start and after each epoch.

    %(fitted_linear_attributes)s

    %(joint_attributes)s

    %(common_attributes)s

    %(training_attributes)s

    See Also
    --------
    TauNormClassifier : Chooses its re-balancing knob, tau, the same way.
    JointClassifier : Where the path starts.

    Notes
    -----
    Reference (Han et al., LORT): SGD with momentum 0.9, lr 5e-4 with a cosine
    schedule, 20 epochs, batch 64, no weight decay, reporting the epoch with
    the best test accuracy. Selecting on test data is not a method; this
    class selects on training data instead. Measured on CIFAR-10-LT (ratio
    100) the path peaked after about one epoch at lr 1e-4 and batch 64; the
    default here takes smaller steps per epoch so the peak lies several
    epochs in, where the per-epoch checks can find it.

    Here ``lr`` sets how far the path goes, not how fast a loss converges: the
    step on the weights is ``lr`` divided by the mean squared norm of the
    (standardised) training features, the unit ``lr="auto"`` was calibrated
    in. (The other classifiers divide by the largest eigenvalue of E[x x^T],
    which for whitened features is up to d times smaller.)

    Examples
    --------
    >>> import numpy as np
    >>> from skltr import LORTClassifier
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(3), [300, 40, 6])
    >>> X = rng.normal(size=(len(y), 5)) + 2.0 * np.eye(3, 5)[y]
    >>> clf = LORTClassifier(device="cpu", random_state=0).fit(X, y)
    >>> bool(clf.path_scores_[clf.best_epoch_] == clf.path_scores_.max())
    True
    """

    _parameter_constraints: dict = {
        **BaseRebalancer._parameter_constraints,
        "smoothing": [Interval(Real, 0, 1, closed="both")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "lr": [StrOptions({"auto"}), Interval(Real, 0, None, closed="neither")],
    }

    def __init__(
        self,
        *,
        smoothing=0.98,
        n_iter_no_change=_PATIENCE,
        joint=None,
        memory=None,
        epochs=_EPOCHS,
        batch_size=DEFAULT_BATCH_SIZE,
        lr="auto",
        momentum=0.9,
        weight_decay=0.0,
        device="auto",
        random_state=None,
        verbose=0,
    ):
        self.smoothing = smoothing
        self.n_iter_no_change = n_iter_no_change
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

    def _fit(self, X, y):
        self._fit_joint_head(X, y)
        device, rng = self._start_training()
        data = self._device_features(X, y, device)
        scores = []
        best = {}

        def keep_best(layer, epoch):
            scores.append(_mean_per_class_accuracy(layer, data, self.class_counts_))
            if scores[-1] > max(scores[:-1], default=-np.inf):
                best.update(
                    epoch=epoch, coef=to_numpy(layer.weight), bias=to_numpy(layer.bias)
                )
            return len(scores) - 1 - best["epoch"] >= self.n_iter_no_change

        start = torch.nn.Linear(X.shape[1], len(self.classes_), device=device)
        with torch.no_grad():
            start.weight.copy_(torch.as_tensor(self.joint_coef_))
            start.bias.copy_(torch.as_tensor(self.joint_intercept_))
        keep_best(start, 0)
        self._train_linear_layer(
            data,
            y,
            sampling="instance",
            rng=rng,
            # The path-length calibration of lr="auto" is in units of the mean
            # squared feature norm; the largest eigenvalue would rescale it
            # by up to the feature dimension.
            curvature=mean_squared_norm(data, self.feature_mean_, self.feature_scale_),
            lr=self._auto_lr(len(y)) if self.lr == "auto" else self.lr,
            init=(self.joint_coef_, self.joint_intercept_),
            label_smoothing=self.smoothing,
            epoch_end=lambda layer, epoch: keep_best(layer, epoch + 1),
        )
        self.path_scores_ = np.asarray(scores)
        self.best_epoch_ = best["epoch"]
        self._warn_if_training_cannot_choose(
            self.path_scores_,
            lambda tied: "epochs " + ", ".join(map(str, tied)),
            "where to stop",
            "If that is epoch 0, this is the joint classifier unchanged. LORT "
            "cannot yet choose on a held-out split; compare it with the other "
            "re-balancers on held-out data (cross_validate or GridSearchCV).",
        )
        self.coef_, self.intercept_ = best["coef"], best["bias"]

    def _auto_lr(self, n_samples):
        per_epoch = _PATH_PER_EPOCH * max(1.0, np.log10(len(self.classes_)))
        return per_epoch * effective_batch_size(self.batch_size, n_samples) / n_samples


@torch.no_grad()
def _mean_per_class_accuracy(layer, data, class_counts):
    correct = torch.zeros(len(class_counts), device=data.device)
    for features, labels in data.iter_all():
        hits = layer(features).argmax(dim=1) == labels
        correct += torch.bincount(labels[hits], minlength=len(class_counts))
    return float((correct.cpu().numpy() / class_counts).mean())
