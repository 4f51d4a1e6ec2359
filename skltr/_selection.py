"""Choosing a re-balancing knob on held-out data (user guide: docs/guide/knobs.md).

tau (tau-norm and logit adjustment), LWS's scales and LORT's stopping point
are re-balancing knobs. On frozen features with more dimensions than the tail
classes have samples, the joint classifier fits its training set, so a knob
chosen on training predictions sees no error to correct. Cross-fitting gives
held-out predictions without giving up training data: split the training set
into K stratified folds, fit the joint classifier on K - 1 of them, score
the held-out fold, pool the held-out scores of all folds and choose; then
apply the choice to the joint classifier fit on all the data
(``LogisticRegressionCV`` and ``CalibratedClassifierCV`` work this way).

This module holds what every re-balancer's choice shares: the folds, the
sets a knob is scored on (:class:`ScoringSet`), the per-class counting of
correct predictions for a grid of candidates, the mean per-class accuracy
that picks the winner, and the warnings when the training set cannot choose.
"""

from dataclasses import dataclass, replace
from numbers import Integral
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import check_cv

from ._backend import feature_rows, float64_device, iter_row_chunks
from ._linear import LinearScores, unstandardised_head
from ._warnings import warn
from .exceptions import KnobSelectionWarning

#: The tau candidates of tau-norm and logit adjustment: 0.0, 0.1, ..., 2.0,
#: the Decoupling paper's sweep.
DEFAULT_TAU_GRID = np.round(np.linspace(0.0, 2.0, 21), 10)

#: Where a knob was chosen, as ``chosen_on_`` reports it.
CROSS_FITTING = "cross-fitting"
VALIDATION_DATA = "validation data"
TRAINING_DATA = "training data"


@dataclass(frozen=True)
class JointHead:
    """A fitted joint (stage-1) linear head, on features scaled as it saw them.

    Its logits are ``((x - mean) / scale) @ coef.T + intercept``; ``mean`` and
    ``scale`` are None for a head on the features as they are. ``class_counts``
    are the training samples per class it was fit on (its implied prior).
    """

    coef: np.ndarray
    intercept: np.ndarray
    mean: Any
    scale: Any
    class_counts: np.ndarray

    def scores(self, device):
        """Its logits of a chunk of rows, as a :class:`LinearScores` on ``device``."""
        return LinearScores(
            self.coef, self.intercept, shift=self.mean, scale=self.scale, device=device
        )

    def on_features_as_given(self):
        """(coef, intercept) giving the same logits on the features unscaled."""
        return unstandardised_head(self.coef, self.intercept, self.mean, self.scale)


@dataclass(frozen=True)
class Fold:
    """A cross-fitted fold: the rows its joint head trained on, those it holds out."""

    train: np.ndarray
    held_out: np.ndarray
    head: JointHead


@dataclass(frozen=True)
class KnobData:
    """Where a re-balancing knob is chosen, and what choosing there takes.

    ``chosen_on`` is :data:`CROSS_FITTING` (with the fitted ``folds``),
    :data:`VALIDATION_DATA` (with the encoded ``(X_val, y_val)`` as
    ``validation``) or :data:`TRAINING_DATA`.
    """

    chosen_on: str
    folds: tuple = ()
    validation: Any = None


@dataclass(frozen=True)
class ScoringSet:
    """What one knob candidate is scored with: a head, its training data, rows.

    Cross-fitting gives one per fold (the fold's head, the rows it was fit on,
    and the held-out rows); validation data gives one (the joint head, the
    training set, the validation rows); the training-set choice gives one
    whose ``held_out`` rows are the training rows themselves.

    ``w_train`` and ``w_held_out`` are the rows' sample weights, or None
    when every row weighs the same (validation rows always do).
    """

    head: JointHead
    X_train: Any
    y_train: np.ndarray
    X_held_out: Any
    y_held_out: np.ndarray
    w_train: Any = None
    w_held_out: Any = None

    def without_classes(self, dropped):
        """This set with the held-out rows of the classes ``dropped`` (a
        boolean per class) left out; itself when it holds none of them."""
        kept = ~dropped[self.y_held_out]
        if kept.all():
            return self
        rows = np.flatnonzero(kept)
        return replace(
            self,
            X_held_out=take_rows(self.X_held_out, rows),
            y_held_out=self.y_held_out[rows],
            w_held_out=None if self.w_held_out is None else self.w_held_out[rows],
        )


def check_tau_grid(tau_grid):
    """``tau_grid`` as a float array; None is :data:`DEFAULT_TAU_GRID`."""
    grid = DEFAULT_TAU_GRID if tau_grid is None else np.asarray(tau_grid, float)
    if grid.ndim != 1 or len(grid) == 0 or not np.all(np.isfinite(grid)):
        raise ValueError(
            "tau_grid must be a non-empty 1-d sequence of finite floats; "
            f"got {tau_grid!r}."
        )
    return grid


def held_out_folds(y, n_classes, cv, X, rng, *, weights=None):
    """Training and held-out row indices of each fold of ``cv``.

    An int makes that many stratified folds: each class's rows, in a random
    order drawn from ``rng``, are dealt to the folds in turn, so every fold
    holds out about 1 / cv of every class that has enough rows. A splitter's
    ``split(X, y)``, or an iterable of (train, held-out) index arrays, is
    used as it is.

    Either way, a held-out row whose class has no row left in its fold's
    training part moves to the training part: every fold's joint classifier
    then knows every class (a class with a single row is never held out).
    With sample ``weights``, a row of weight 0 is never held out (it moves
    to the training part, where it weighs nothing) and does not count as
    a row its class has left. Folds left with nothing held out are dropped.

    Returns
    -------
    folds : list of (ndarray, ndarray)
        Sorted training and held-out indices of each fold.
    """
    if isinstance(cv, Integral):
        # Rows sorted by class, in random order within each class, dealt to
        # the folds in turn; the deal continues across classes, so the
        # folds' sizes differ by at most one row.
        order = np.lexsort((rng.permutation(len(y)), y))
        fold_of = np.empty(len(y), dtype=np.int64)
        fold_of[order] = np.arange(len(y)) % cv
        splits = [
            (np.flatnonzero(fold_of != k), np.flatnonzero(fold_of == k))
            for k in range(cv)
        ]
    else:
        splits = list(check_cv(cv, y, classifier=True).split(X, y))
    folds = []
    for train, held_out in splits:
        train, held_out = np.asarray(train), np.asarray(held_out)
        counted = None if weights is None else weights[train] > 0
        known = np.bincount(y[train], weights=counted, minlength=n_classes) > 0
        moved = ~known[y[held_out]]
        if weights is not None:
            moved |= weights[held_out] == 0
        train = np.sort(np.concatenate([train, held_out[moved]]))
        held_out = np.sort(held_out[~moved])
        if len(held_out):
            folds.append((train, held_out))
    if not folds:
        raise ValueError(
            "Cross-fitting could not hold out any sample: every held-out "
            "sample's class had no other sample to train on. Give each class "
            "at least 2 samples, choose on validation data (fit(X, y, X_val=X_val, "
            "y_val=y_val)), or choose on the training set with cv=None."
        )
    return folds


def take_rows(X, indices):
    """Rows ``indices`` of features ``X`` (an array or a tensor), where ``X`` is."""
    if isinstance(X, torch.Tensor):
        return X[torch.as_tensor(indices, device=X.device)]
    return X[indices]


def count_correct(X, labels, scores, candidate_logits, n_candidates, n_classes, device):
    """Correct predictions per candidate and class, a chunk of rows at a time.

    Parameters
    ----------
    X : ndarray or torch.Tensor of shape (n_samples, n_features)
    labels : ndarray of shape (n_samples,)
        Encoded labels.
    scores : LinearScores
        The base scores of a chunk of rows, float64 on ``device``; a chunk
        holds as many rows as fit the wider of its features and its scores.
    candidate_logits : callable
        ``candidate_logits(scores, i)``: the logits of candidate ``i``.
    n_candidates, n_classes : int
    device : torch.device
        Where the counting runs (the host for a device without float64).

    Returns
    -------
    correct : ndarray of shape (n_candidates, n_classes)
    """
    device = float64_device(device)
    correct = torch.zeros(n_candidates, n_classes, dtype=torch.int64, device=device)
    labels = torch.as_tensor(np.asarray(labels), device=device)
    for rows in iter_row_chunks(X.shape[0], max(X.shape[1], scores.n_outputs)):
        chunk_labels = labels[rows]
        base = scores(feature_rows(X, rows))
        for i in range(n_candidates):
            hits = torch.argmax(candidate_logits(base, i), dim=1) == chunk_labels
            correct[i] += torch.bincount(chunk_labels[hits], minlength=n_classes)
    return correct.cpu().numpy()


def mean_per_class_accuracy(correct, scored):
    """Mean over the scored classes of correct / scored, per candidate.

    ``correct`` is (n_candidates, n_classes) or (n_classes,); ``scored`` the
    rows scored per class. Classes with no scored row are left out of the
    mean (with cross-fitting, a class with one sample is never held out).
    """
    scored = np.asarray(scored)
    kept = scored > 0
    return (np.asarray(correct)[..., kept] / scored[kept]).mean(axis=-1)


#: What to do when the training set cannot choose a knob.
TRAINING_REMEDY = (
    "Choose on held-out data instead: pass validation data, "
    "fit(X, y, X_val=X_val, y_val=y_val), or let the estimator fit its own "
    "joint classifier (joint=None or an unfitted JointClassifier) with cv "
    "set, which cross-fits it."
)


def warn_if_training_cannot_choose(estimator, scores, describe, what):
    """Warn when several candidates classify the whole training set right.

    ``scores`` are the candidates' mean per-class training accuracies, and
    the first best one is kept. When the joint classifier fits the training
    set perfectly, which is common when the features have more dimensions
    than the tail classes have samples, several candidates score 1 and the
    training set cannot choose between them. ``describe(indices)`` names the
    candidates; ``estimator`` is the one choosing, for the message.
    """
    perfect = np.flatnonzero(np.asarray(scores) >= 1.0)
    if len(perfect) > 1:
        warn(
            f"{type(estimator).__name__} chose {what} by mean per-class "
            f"accuracy on the training set, but {len(perfect)} of the "
            f"{len(scores)} candidates ({describe(perfect)}) classify "
            "every training sample correctly, so the training set cannot "
            f"tell them apart; the first was kept. {TRAINING_REMEDY}",
            KnobSelectionWarning,
        )


def warn_if_nothing_to_correct(estimator, logits, labels, what):
    """Warn when ``what`` was learned on a training set the joint head fits.

    ``logits`` are the joint logits of the rows learned on, ``labels`` their
    encoded labels. When the joint classifier classifies every one of them
    right, the loss has no error in it and ``what`` stays close to its start
    whatever the imbalance.
    """
    # A mean per-class accuracy of 1: every row right.
    if np.all(logits.argmax(dim=1).cpu().numpy() == labels):
        warn(
            f"{type(estimator).__name__} learned its {what} on the training set, "
            "but the joint classifier classifies every training sample "
            f"correctly, so there was no error for them to correct. "
            f"{TRAINING_REMEDY}",
            KnobSelectionWarning,
        )
