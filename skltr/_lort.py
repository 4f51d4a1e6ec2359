"""LORT: logits retargeting (user guide: docs/guide/lort.md).

Fine-tune the stage-1 (joint) classifier, starting from its weights, with
cross-entropy against soft targets: the true class 1 - delta + delta/C, every
other class delta/C (label smoothing with a very large smoothing value),
instance-balanced sampling.

The optimum of that loss is MORE head-biased than plain cross-entropy; the
balancing is a property of the path from the joint classifier, along which
balanced accuracy rises, then overshoots toward the tail. So the training
budget is a re-balancing knob, chosen on held-out data like tau
(user guide: docs/guide/knobs.md): each
cross-fitted fold walks the path from its own joint classifier, the folds'
held-out scores are pooled epoch by epoch, and the full joint classifier
walks to the best epoch.
"""

from numbers import Integral, Real

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions

from ._backend import (
    DeviceFeatures,
    effective_batch_size,
    iter_training,
    steps_per_epoch,
)
from ._docstrings import fill_doc
from ._rebalance import DEFAULT_CV, BaseRebalancer, child_rng
from ._sampling import make_sampler
from ._selection import (
    CROSS_FITTING,
    TRAINING_DATA,
    ScoringSet,
    mean_per_class_accuracy,
    warn_if_training_cannot_choose,
)
from ._softmax_regression import DEFAULT_BATCH_SIZE
from ._trained import SGD_PARAMETER_CONSTRAINTS, mean_squared_norm, to_numpy

_EPOCHS = 30
_PATIENCE = 5
# With lr="auto", the path length that one epoch covers (in learning-rate units
# at unit mean squared feature norm), per decade of classes. The stopping
# point is chosen on held-out rows, which catch an overshoot, so the path may
# go fast: measured with 2-fold cross-fitting (balanced test accuracy), 0.2
# per epoch was still rising after 30 epochs on long-tailed Gaussians of 100
# classes (54.8 at d = 512, 77.4 at d = 64), where 1.0 peaked after 11 and 7
# epochs (59.9 and 80.1); on CIFAR-10-LT ResNet-56 features 0.2 and 1.0
# stopped at 84.5 and 84.8, while 3.0 overshot within the first epoch (80.2).
_PATH_PER_EPOCH = 1.0


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
    cv=DEFAULT_CV,
    epochs=_EPOCHS,
    batch_size=DEFAULT_BATCH_SIZE,
    lr='"auto"',
    lr_type='float or "auto"',
    lr_scaling=(
        "The step on the weights is divided by the mean squared norm of the "
        "standardised training features (see Notes), so ``lr`` sets how far "
        'one epoch moves along the path. ``"auto"`` takes '
        "``max(1, log10(n_classes)) * batch_size / n_samples``: one epoch then "
        "moves the same distance along the path whatever the size of the data "
        "set, so that the per-epoch checks see the peak whether an epoch has "
        "10 steps or 1,000, and farther with more classes, whose peak lies "
        "farther out."
    ),
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
    path and keeps its best point, by mean per-class accuracy on held-out
    predictions (see ``cv``): each fold's joint classifier walks its own path
    on its training part and is scored on its held-out part at the start and
    after every epoch; the folds advance in lockstep, their scores pooled,
    until ``n_iter_no_change`` epochs have not improved the pooled score. The
    joint classifier fit on all the data then walks to the best epoch (the
    earliest of equals). With validation data, the full joint classifier's
    own path is scored on it. The test set never takes part.

    Read more in the :ref:`User Guide <lort>`.

    Parameters
    ----------
    smoothing : float, default=0.98
        delta, the weight of the uniform distribution in the targets (the
        reference uses 0.98 on CIFAR-100-LT). It needs no class counts.

    n_iter_no_change : int, default=%(patience)s
        Epochs without a better held-out mean per-class accuracy after which
        the walk stops.

    %(cv_parameters)s

    %(joint_parameters)s

    %(training_parameters)s

    %(device_parameters)s

    Attributes
    ----------
    best_epoch_ : int
        Epochs of fine-tuning behind the kept weights; 0 keeps the joint
        classifier.

    path_scores_ : ndarray of shape (n_evaluated_epochs + 1,)
        Held-out mean per-class accuracy (see ``chosen_on_``) at the start
        and after each epoch, pooled over the folds.

    %(selection_attributes)s

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
    Reference (Lu et al., ICLR 2024): SGD with momentum 0.9, lr 5e-4 with a cosine
    schedule, 20 epochs, batch 64, no weight decay, reporting the epoch with
    the best test accuracy. Selecting on test data is not a method; this
    class selects on held-out training data instead.

    Here ``lr`` sets how far the path goes, not how fast a loss converges: the
    step on the weights is ``lr`` divided by the mean squared norm of the
    (standardised) training features, the unit ``lr="auto"`` was calibrated
    in. (The other classifiers divide by the largest eigenvalue of E[x x^T],
    which for whitened features is up to d times smaller.)

    The stopping point is chosen by the held-out accuracy of every class
    alike; with classes of one or two samples, one held-out image moves a
    class's accuracy by half or all of it, and the epoch chosen changes
    with the split of the folds (``docs/results.md``, the digits pixels).

    References
    ----------
    .. [1] H. Lu, S. Sun, Y. Xie, L. Zhang, X. Yang and J. Yan, "Rethinking
       Classifier Re-Training in Long-Tailed Recognition: A Simple Logits
       Retargeting Approach", ICLR 2024.

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
        **SGD_PARAMETER_CONSTRAINTS,
        "smoothing": [Interval(Real, 0, 1, closed="both")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "lr": [StrOptions({"auto"}), Interval(Real, 0, None, closed="neither")],
    }

    def __init__(
        self,
        *,
        smoothing=0.98,
        n_iter_no_change=_PATIENCE,
        cv=DEFAULT_CV,
        refit="warm",
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
        scoring_sets = list(self._scoring_sets(X, y, knob_data, sample_weight))
        # With validation data or the training set, the one path walked is
        # the full joint classifier's, and its best point is the fit.
        keep_weights = self.chosen_on_ != CROSS_FITTING
        walks = [
            self._walk(scoring, device, child_rng(rng), keep_losses=keep_weights)
            for scoring in scoring_sets
        ]
        scored = sum(
            np.bincount(scoring.y_held_out, minlength=len(self.classes_))
            for scoring in scoring_sets
        )
        scores, best = [], 0
        # The folds' paths advance in lockstep, an epoch at a time, so that the
        # pooled score of every point is known before the walk goes on.
        for epoch in range(self.epochs + 1):
            points = [next(walk) for walk in walks]
            correct = sum(point.correct for point in points)
            scores.append(float(mean_per_class_accuracy(correct, scored)))
            if scores[-1] > scores[best]:
                best = epoch
            if keep_weights and best == epoch:
                coef, intercept = points[0].weights()
                path = points[0]
            if epoch - best >= self.n_iter_no_change:
                break
        self.path_scores_ = np.asarray(scores)
        self.best_epoch_ = best
        if self.chosen_on_ == TRAINING_DATA:
            warn_if_training_cannot_choose(
                self,
                self.path_scores_,
                lambda tied: "epochs " + ", ".join(map(str, tied)),
                "where to stop",
            )
        if not keep_weights:
            # Walk the full joint classifier's path to the epoch chosen.
            full = ScoringSet(
                self._full_head(), X, y, None, None, w_train=sample_weight
            )
            walk = self._walk(full, device, child_rng(rng), keep_losses=True)
            path = next(walk)
            for _ in range(best):
                path = next(walk)
            coef, intercept = path.weights()
        self.loss_curve_ = path.losses()
        self.coef_, self.intercept_ = coef, intercept

    def _walk(self, scoring, device, rng, *, keep_losses):
        """LORT's path from ``scoring``'s head on its training rows.

        Yields a :class:`_PathPoint` at the start and after each epoch, with
        the correct predictions per class on the held-out rows (None without
        held-out rows).
        """
        head = scoring.head
        data = DeviceFeatures(
            scoring.X_train,
            scoring.y_train,
            device,
            shift=head.mean,
            scale=head.scale,
            sample_weight=scoring.w_train,
        )
        held_out = None
        if scoring.X_held_out is not None:
            held_out = DeviceFeatures(
                scoring.X_held_out,
                scoring.y_held_out,
                device,
                shift=head.mean,
                scale=head.scale,
            )
        layer, step = self._linear_layer_step(
            data,
            # The path-length calibration of lr="auto" is in units of the mean
            # squared feature norm; the largest eigenvalue would rescale it
            # by up to the feature dimension.
            curvature=mean_squared_norm(data, head.mean, head.scale),
            lr=self._auto_lr(data.n_samples) if self.lr == "auto" else self.lr,
            init=(head.coef, head.intercept),
            label_smoothing=self.smoothing,
        )
        sampler = make_sampler(
            "instance", scoring.y_train, len(self.classes_), epochs=self.epochs, rng=rng
        )
        settings = self._training_settings()
        point = _PathPoint(
            layer,
            held_out,
            len(self.classes_),
            steps_per_epoch(data.n_samples, self.batch_size),
        )
        yield point
        for _, loss in iter_training(step, data, sampler, **settings):
            if keep_losses:
                point.epoch_losses.append(loss)
            yield point.next()

    def _auto_lr(self, n_samples):
        per_epoch = _PATH_PER_EPOCH * max(1.0, np.log10(len(self.classes_)))
        return per_epoch * effective_batch_size(self.batch_size, n_samples) / n_samples


class _PathPoint:
    """A point of a LORT path: the layer as it is now, scored on held-out rows."""

    def __init__(self, layer, held_out, n_classes, steps_per_epoch):
        self.layer, self.held_out, self.n_classes = layer, held_out, n_classes
        self.steps_per_epoch = steps_per_epoch
        self.epoch_losses = []  # summed batch losses, on the device
        self.correct = self._count_correct()

    def next(self):
        """The point after one more epoch (the layer was updated in place)."""
        self.correct = self._count_correct()
        return self

    @torch.no_grad()
    def _count_correct(self):
        if self.held_out is None:
            return None
        correct = torch.zeros(
            self.n_classes, dtype=torch.int64, device=self.layer.weight.device
        )
        for features, labels in self.held_out.iter_all():
            hits = self.layer(features).argmax(dim=1) == labels
            correct += torch.bincount(labels[hits], minlength=self.n_classes)
        return correct.cpu().numpy()

    def weights(self):
        """The layer's weights and bias now, as float32 NumPy copies."""
        return to_numpy(self.layer.weight), to_numpy(self.layer.bias)

    def losses(self):
        """The mean training loss of each epoch walked."""
        if not self.epoch_losses:
            return []
        summed = torch.stack(self.epoch_losses).tolist()
        return [loss / self.steps_per_epoch for loss in summed]
