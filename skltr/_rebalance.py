"""What the re-balancers share: a stage-1 (joint) classifier and a knob to choose.

:class:`BaseRebalancer` is a template: ``fit`` validates the data, decides
where the re-balancing knob is chosen, fits or reads the joint classifier
(``_stage1``) and hands both to the subclass's ``_rebalance``. The knob is
chosen on held-out predictions (``_selection``): cross-fitted joint
classifiers when the joint classifier is fit here, validation data when
given, the training set otherwise.
"""

import itertools
from abc import abstractmethod

import numpy as np
import torch
from sklearn.base import _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import HasMethods, StrOptions

from ._backend import (
    DeviceFeatures,
    feature_rows,
    float64_device,
    iter_row_chunks,
)
from ._docstrings import fill_doc
from ._selection import (
    CROSS_FITTING,
    TRAINING_DATA,
    VALIDATION_DATA,
    Fold,
    JointHead,
    KnobData,
    ScoringSet,
    check_tau_grid,
    held_out_folds,
    mean_per_class_accuracy,
    take_rows,
    warn_if_training_cannot_choose,
)
from ._stage1 import fit_stage1, given_head, stage1_estimator, unwrapped
from ._trained import RUN_PARAMETER_CONSTRAINTS, BaseTrainedClassifier
from ._validation import validate_features
from ._weights import (
    check_class_totals,
    checked_sample_weight,
    mean_one,
    within_class_mean_one,
)

#: Folds of the cross-fitted choice. Two keep the fold fits, each on half
#: the data, to about one joint fit in all; three and five chose the same
#: knobs on the problems measured (docs/performance.md).
DEFAULT_CV = 2


def child_rng(rng):
    """An independent generator drawn from ``rng``."""
    return np.random.default_rng(rng.integers(2**63 - 1))


class BaseRebalancer(BaseTrainedClassifier):
    """A classifier that re-balances a joint (stage-1) linear classifier.

    Subclasses implement ``_rebalance(X, y, knob_data, sample_weight)``,
    which sets the fitted head once ``joint_coef_`` and the other joint
    attributes are set; where it chooses a knob, it scores the candidates
    on the sets of :meth:`_scoring_sets`, made from ``knob_data``. A
    subclass whose knob may be fixed says when it chooses one
    (``_chooses_knob``), so that no folds are fit for nothing.
    """

    # A subclass with an SGD stage of its own adds SGD_PARAMETER_CONSTRAINTS.
    _parameter_constraints: dict = {
        **RUN_PARAMETER_CONSTRAINTS,
        "joint": [None, HasMethods(["fit", "predict"]), torch.nn.Linear, tuple, list],
        "memory": [None, str, HasMethods(["cache"])],
        # An int >= 2, a splitter, an iterable of splits, or None.
        "cv": ["cv_object"],
        "refit": [StrOptions({"warm", "full"})],
    }

    @fill_doc(indent=8)
    @_fit_context(
        # The joint estimator is fit inside, by its own fit: its parameters
        # are validated there.
        prefer_skip_nested_validation=False
    )
    def fit(self, X, y, sample_weight=None, *, X_val=None, y_val=None):
        """Fit the joint classifier and re-balance it.

        Parameters
        ----------
        %(fit_data_parameters)s
        sample_weight : array-like of shape (n_samples,), default=None
            Each sample's weight, non-negative, in every training this fit
            makes: the joint classifier's (and its cross-fitted folds'), and
            the re-balancing's own. A loss learned on held-out logits (LWS's
            scales, DisAlign's alignment, a learned tau) sets each class's
            share itself, so there the weight says how much a sample counts
            within its class. The knob is chosen by the mean per-class
            accuracy of the held-out samples, each counted once, as
            ``LogisticRegressionCV`` scores its folds; a sample of weight 0
            is never scored. As for :class:`JointClassifier`, every sample
            counts alike in the feature standardisation and the class counts
            (the prior).
        X_val : array-like or torch.Tensor of shape (n_val, n_features), \
default=None
            Validation features to choose the re-balancing knob on, instead
            of cross-fitting or the training set. Given with ``y_val``.
        y_val : array-like of shape (n_val,), default=None
            Their labels, all among the classes of ``y``.

        Returns
        -------
        self : object
            The fitted classifier.
        """
        X, y = self._validate_training_data(X, y)
        validation = self._validate_validation_data(X_val, y_val)
        self._fit(X, y, validation, self._checked_weights(X, y, sample_weight))
        return self

    def _fit(self, X, y, validation=None, sample_weight=None):
        knob_data = self._knob_data(X, y, validation, sample_weight)
        self._fit_joint_head(X, y, sample_weight, knob_data.folds)
        self._rebalance(X, y, knob_data, sample_weight)

    def _chooses_knob(self):
        """Whether this fit chooses a knob on held-out data (see ``cv``)."""
        return True

    def _knob_data(self, X, y, validation, sample_weight):
        """Where the knob is chosen: a :class:`KnobData`.

        On validation data when given; else, when this fit trains the joint
        classifier and ``cv`` is not None, on cross-fitted folds, whose
        joint classifiers are fit here, one at a time (so that one fold's
        copy of the rows is held at a time), before the joint classifier on
        all the data, which may start from them (``refit``); else on the
        training set. No folds are fit when no knob is chosen.
        """
        if validation is not None:
            return KnobData(VALIDATION_DATA, validation=validation)
        if self.cv is None or self._stage1_estimator() is None:
            return KnobData(TRAINING_DATA)
        if not self._chooses_knob():
            return KnobData(CROSS_FITTING)
        rng = check_random_state(self.random_state)
        folds = held_out_folds(
            y, len(self.classes_), self.cv, X, rng, weights=sample_weight
        )
        return KnobData(
            CROSS_FITTING,
            folds=tuple(
                self._fit_fold(X, y, train, held_out, sample_weight)
                for train, held_out in folds
            ),
        )

    def _fit_fold(self, X, y, train, held_out, sample_weight):
        """The :class:`Fold` whose joint classifier is fit on the rows ``train``."""
        X_train, y_train = take_rows(X, train), y[train]
        w_train = None if sample_weight is None else mean_one(sample_weight[train])
        joint = self._fit_stage1(X_train, y_train, w_train, n_full=len(y))
        head = JointHead(
            joint.coef_,
            joint.intercept_,
            joint.feature_mean_,
            joint.feature_scale_,
            np.bincount(y_train, minlength=len(self.classes_)),
        )
        return Fold(train, held_out, head)

    def _checked_weights(self, X, y, sample_weight):
        """``sample_weight`` checked and rescaled to mean 1.

        None when every sample weighs the same, so that such weights are
        exactly no weights.
        """
        weights = checked_sample_weight(sample_weight, X)
        if weights is None:
            return None
        check_class_totals(weights, y, self.classes_)
        if np.all(weights == weights[0]):
            return None
        return mean_one(weights)

    def _validate_validation_data(self, X_val, y_val):
        """(X_val, encoded y_val), or None when no validation data is given."""
        if X_val is None and y_val is None:
            return None
        if X_val is None or y_val is None:
            raise ValueError(
                "X_val and y_val go together: give both to choose on validation "
                "data, or neither."
            )
        X_val, y_val = validate_features(self, X_val, y_val, reset=False)
        known = np.isin(y_val, self.classes_)
        if not known.all():
            raise ValueError(
                f"y_val has labels that y does not have: "
                f"{np.unique(y_val[~known])[:10]}. Validation labels must be "
                "among the training classes."
            )
        return X_val, np.searchsorted(self.classes_, y_val)

    @abstractmethod
    def _rebalance(self, X, y, knob_data, sample_weight):
        """Set the fitted head from the joint one.

        ``knob_data`` is where a knob is chosen (:class:`KnobData`);
        ``sample_weight`` (mean 1) may be None.
        """

    def _fit_joint_head(self, X, y, sample_weight=None, folds=()):
        """Set ``joint_coef_``, ``joint_intercept_`` and the feature scaling.

        ``y`` holds the encoded labels 0 to n_classes - 1; ``folds`` are the
        cross-fitted :class:`Fold` s, if any.
        """
        coef, intercept, mean, scale = self._joint_head(X, y, sample_weight, folds)
        n_classes, n_features = len(self.classes_), X.shape[1]
        if coef.shape != (n_classes, n_features) or intercept.shape != (n_classes,):
            raise ValueError(
                f"The joint classifier handed to {type(self).__name__} has "
                f"weights of shape {coef.shape} and bias of shape "
                f"{intercept.shape}; the data has {n_classes} classes and "
                f"{n_features} features, so they must be ({n_classes}, "
                f"{n_features}) and ({n_classes},)."
            )
        self.joint_coef_ = coef
        self.joint_intercept_ = intercept
        self.feature_mean_, self.feature_scale_ = mean, scale

    def _joint_head(self, X, y, sample_weight, folds):
        given = given_head(self.joint)
        if given is not None:
            return *given, None, None
        if self._stage1_estimator() is not None:
            joint = self._fit_stage1(X, y, sample_weight, folds)
            classes = np.arange(len(self.classes_))
        else:
            joint = unwrapped(self.joint)
            classes = self.classes_
        if not np.array_equal(joint.classes_, classes):
            raise ValueError(
                f"The fitted joint classifier knows the classes {joint.classes_}, "
                f"but y has the classes {self.classes_}; they must be the same."
            )
        return joint.coef_, joint.intercept_, joint.feature_mean_, joint.feature_scale_

    def _stage1_estimator(self):
        """The :class:`JointClassifier` this fit trains, or None for a fitted head."""
        return stage1_estimator(
            self.joint, device=self.device, random_state=self.random_state
        )

    def _fit_stage1(self, X, y, sample_weight=None, folds=(), *, n_full=None):
        """The stage-1 estimator fit on these rows (see :func:`fit_stage1`)."""
        return fit_stage1(
            self._stage1_estimator(),
            X,
            y,
            sample_weight,
            memory=self.memory,
            folds=folds,
            refit=self.refit,
            n_full=n_full,
        )

    def _full_head(self):
        """The joint head fit on all the training data (after ``_fit_joint_head``)."""
        return JointHead(
            self.joint_coef_,
            self.joint_intercept_,
            self.feature_mean_,
            self.feature_scale_,
            self.class_counts_,
        )

    def _scoring_sets(self, X, y, knob_data, sample_weight=None):
        """The :class:`ScoringSet` s the knob is chosen on, a generator.

        One per cross-fitted fold (its rows copied as it comes, so that one
        fold's copy is held at a time), one for validation data, or one for
        the training set (see :meth:`_knob_data`). Sets ``chosen_on_``.
        """
        self.chosen_on_ = knob_data.chosen_on
        if knob_data.chosen_on == CROSS_FITTING:
            return (
                self._fold_set(X, y, fold, sample_weight) for fold in knob_data.folds
            )
        head = self._full_head()
        if knob_data.chosen_on == VALIDATION_DATA:
            return iter(
                [ScoringSet(head, X, y, *knob_data.validation, w_train=sample_weight)]
            )
        X_scored, y_scored, w_scored = X, y, sample_weight
        if sample_weight is not None and not sample_weight.all():
            # A sample of weight 0 is not scored.
            scored = np.flatnonzero(sample_weight)
            X_scored, y_scored = take_rows(X, scored), y[scored]
            w_scored = sample_weight[scored]
        return iter(
            [ScoringSet(head, X, y, X_scored, y_scored, sample_weight, w_scored)]
        )

    def _fold_set(self, X, y, fold, sample_weight):
        w_train = w_held_out = None
        if sample_weight is not None:
            w_train = mean_one(sample_weight[fold.train])
            w_held_out = sample_weight[fold.held_out]
        return ScoringSet(
            fold.head,
            take_rows(X, fold.train),
            y[fold.train],
            take_rows(X, fold.held_out),
            y[fold.held_out],
            w_train,
            w_held_out,
        )

    def _choose_tau(self, X, y, knob_data, count_correct, sample_weight=None):
        """The value of ``tau_grid`` with the best pooled mean per-class accuracy.

        ``count_correct(scoring_set, grid, device)`` gives the correct
        predictions of the set's held-out rows, per candidate and class,
        counted on ``device``. ``sample_weight`` weighs the fold fits. Sets
        ``tau_grid_``, ``tau_scores_`` and ``chosen_on_``; the first of
        equals wins.
        """
        grid = check_tau_grid(self.tau_grid)
        # On the device: at ImageNet-LT size a sweep is 21 passes over a
        # 115,846 x 1,000 logit matrix, seconds in NumPy on the host.
        device = self._resolve_device()
        correct = np.zeros((len(grid), len(self.classes_)), dtype=np.int64)
        scored = np.zeros(len(self.classes_), dtype=np.int64)
        for scoring_set in self._scoring_sets(X, y, knob_data, sample_weight):
            correct += count_correct(scoring_set, grid, device)
            scored += np.bincount(scoring_set.y_held_out, minlength=len(scored))
        self.tau_scores_ = mean_per_class_accuracy(correct, scored)
        self.tau_grid_ = grid
        if self.chosen_on_ == TRAINING_DATA:
            warn_if_training_cannot_choose(
                self,
                self.tau_scores_,
                lambda tied: "tau = " + ", ".join(f"{grid[i]:g}" for i in tied),
                "tau",
            )
        return float(grid[np.argmax(self.tau_scores_)])

    def _pooled_held_out_logits(
        self, X, y, knob_data, device, sample_weight=None, *, features=False
    ):
        """The joint logits of every held-out row, pooled, their labels and weights.

        Float32 logits on ``device`` from the heads of :meth:`_scoring_sets`
        (each row scored by a head that did not train on it, unless the
        choice is on the training set); sets ``chosen_on_``. The weights
        are the rows' ``sample_weight`` rescaled to mean 1 within each
        class (None when unweighted): what is learned on these rows keeps
        its own class balance. With ``features``, also the held-out rows
        themselves, float32 on ``device``, standardised as the full joint
        classifier sees them (its ``feature_mean_`` and ``feature_scale_``),
        in the same order: ``(logits, rows, labels, weights)``.

        A class the held-out rows cannot teach (:meth:`_untaught_classes`)
        is learned on its training rows scored by the joint head fit on all
        the data, which has seen them, instead of on its held-out rows: with
        no row at all, what is learned on these logits would only ever push
        the class down (its scale to 0); with rows scored by heads that saw
        one sample of it, it learns what a head that knows the class from one
        sample needs (on digits with one- and two-image classes, an LWS scale
        below 0), which the full head does not.
        """
        logits, labels, weights, held_out_rows = [], [], [], []
        untaught = self._untaught_classes(y, knob_data)
        scoring_sets = (
            scoring.without_classes(untaught)
            for scoring in self._scoring_sets(X, y, knob_data, sample_weight)
        )
        training_rows = self._training_row_set(X, y, untaught, sample_weight)
        for scoring in itertools.chain(
            scoring_sets, [] if training_rows is None else [training_rows]
        ):
            scores = scoring.head.scores(float64_device(device))
            rows = scoring.X_held_out
            width = max(rows.shape[1], len(self.classes_))
            for chunk in iter_row_chunks(rows.shape[0], width):
                chunk_logits = scores(feature_rows(rows, chunk))
                logits.append(chunk_logits.to(device, torch.float32))
            if features:
                # Served as in training, so that a constant column is exactly 0.
                served = self._device_features(rows, scoring.y_held_out, device)
                held_out_rows.extend(chunk for chunk, _ in served.iter_all())
            labels.append(scoring.y_held_out)
            weights.append(scoring.w_held_out)
        labels = np.concatenate(labels)
        weights = (
            None
            if weights[0] is None
            else within_class_mean_one(
                np.concatenate(weights), labels, len(self.classes_)
            )
        )
        if features:
            return torch.cat(logits), torch.cat(held_out_rows), labels, weights
        return torch.cat(logits), labels, weights

    def _untaught_classes(self, y, knob_data):
        """The classes whose held-out rows cannot teach a re-balancing, a mask.

        With cross-fitting, a class that no fold holds out (a single sample),
        or whose held-out rows were all scored by fold heads that had seen a
        single sample of it (a class of two samples with two folds); with
        validation data, a class the validation data lack.
        """
        n_classes = len(self.classes_)
        taught = np.zeros(n_classes, dtype=bool)
        if knob_data.chosen_on == CROSS_FITTING:
            for fold in knob_data.folds:
                held_out = np.bincount(y[fold.held_out], minlength=n_classes) > 0
                taught |= held_out & (fold.head.class_counts >= 2)
        elif knob_data.chosen_on == VALIDATION_DATA:
            taught[knob_data.validation[1]] = True
        else:
            taught[:] = True
        return ~taught

    def _training_row_set(self, X, y, classes, sample_weight):
        """The training rows of ``classes`` (a mask), scored by the full joint
        head: a :class:`ScoringSet`, or None when there are none."""
        rows = classes[y]
        if sample_weight is not None:
            rows &= sample_weight > 0
        if not rows.any():
            return None
        rows = np.flatnonzero(rows)
        return ScoringSet(
            self._full_head(),
            X,
            y,
            take_rows(X, rows),
            y[rows],
            sample_weight,
            None if sample_weight is None else sample_weight[rows],
        )

    def _device_features(self, X, y, device, sample_weight=None):
        """Training features on the device, scaled as the joint classifier sees them."""
        return DeviceFeatures(
            X,
            y,
            device,
            shift=self.feature_mean_,
            scale=self.feature_scale_,
            sample_weight=sample_weight,
        )
