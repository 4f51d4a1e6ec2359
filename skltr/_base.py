"""The base class of every classifier: validation, labels and the predict API.

:class:`BaseLongTailClassifier` is a template: ``fit`` validates the input,
encodes the labels and counts the classes, then calls ``_fit`` on the encoded
labels; the predict-type methods validate their input and turn the scores of
``_scorer`` into predictions, probabilities and decision values, a chunk of
rows at a time so that predicting on millions of rows holds only a chunk of
scores.
"""

from abc import ABCMeta, abstractmethod

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from ._backend import feature_rows, iter_row_chunks, resolve_device, scoring_device
from ._docstrings import fill_doc
from ._validation import validate_features


class BaseLongTailClassifier(ClassifierMixin, BaseEstimator, metaclass=ABCMeta):
    """Validation, label encoding and the predict API of every classifier.

    Subclasses implement ``_fit(X, y)`` on labels encoded as 0 to
    n_classes - 1, and ``_scorer(device)``, the function that gives a chunk
    of validated rows its class scores.
    """

    _parameter_constraints: dict = {}

    @fill_doc(indent=8)
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y):
        """Fit the classifier on features ``X`` and labels ``y``.

        Parameters
        ----------
        %(fit_data_parameters)s

        Returns
        -------
        self : object
            The fitted classifier.
        """
        self._fit(*self._validate_training_data(X, y))
        return self

    def _validate_training_data(self, X, y):
        """Validated features and encoded labels; sets ``classes_`` and counts."""
        X, y = validate_features(self, X, y, reset=True)
        check_classification_targets(y)
        self.classes_, y_encoded = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes to "
                f"fit, but y has 1 class ({self.classes_[0]!r})."
            )
        self.class_counts_ = np.bincount(y_encoded, minlength=len(self.classes_))
        return X, y_encoded

    @abstractmethod
    def _fit(self, X, y):
        """Fit on validated features and labels encoded as 0 to n_classes - 1."""

    def _implied_prior(self):
        """The class prior this fitted classifier's probabilities assume.

        Uniform: the re-balancers, cRT and NCM are built for the balanced
        error. A classifier trained on the training distribution overrides
        this (:class:`JointClassifier`). :class:`PriorAdjustedClassifier`
        divides it out.
        """
        return np.full(len(self.classes_), 1.0 / len(self.classes_))

    @abstractmethod
    def _scorer(self, device):
        """The class scores of a chunk of rows, as a function.

        It takes the rows as a tensor (anywhere, of any float dtype) and
        returns their (n, n_classes) float64 scores on ``device``, where the
        fitted parameters it needs are moved once.
        """

    def _probability_logits(self, scores):
        """The logits whose softmax is ``predict_proba``; the scores themselves."""
        return scores

    def _iter_scores(self, X):
        """Float64 class scores of ``X``, a chunk of rows at a time.

        They are computed where the rows are (:func:`scoring_device`); only
        the results come back.
        """
        score = self._scorer(scoring_device(X))
        # A chunk holds its rows' features and their scores: size it by the
        # wider of the two, so that many classes do not blow up a chunk.
        width = max(X.shape[1], len(self.classes_))
        for rows in iter_row_chunks(X.shape[0], width):
            yield score(feature_rows(X, rows))

    def decision_function(self, X):
        """Class scores (the logits of the linear classifiers).

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples, n_classes) or (n_samples,)
            With two classes, the score of ``classes_[1]`` minus that of
            ``classes_[0]``, as scikit-learn's binary classifiers return.
        """
        check_is_fitted(self)
        X = validate_features(self, X, reset=False)
        scores = np.concatenate([_host(scores) for scores in self._iter_scores(X)])
        if len(self.classes_) == 2:
            return scores[:, 1] - scores[:, 0]
        return scores

    def predict(self, X):
        """Predict the class of each sample: the highest score.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        X = validate_features(self, X, reset=False)
        best = [_host(scores.argmax(dim=1)) for scores in self._iter_scores(X)]
        return self.classes_[np.concatenate(best)]

    def predict_proba(self, X):
        """Class probabilities: the softmax of the class scores.

        Where the scores are not logits of the posterior, the class says how
        it maps them (NCM's temperature, the focal loss's posterior).

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Rows sum to 1; columns follow ``classes_``.
        """
        check_is_fitted(self)
        X = validate_features(self, X, reset=False)
        return np.concatenate(
            [
                _host(torch.softmax(self._probability_logits(scores), dim=1))
                for scores in self._iter_scores(X)
            ]
        )

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`, computed stably.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
        """
        check_is_fitted(self)
        X = validate_features(self, X, reset=False)
        return np.concatenate(
            [
                _host(torch.log_softmax(self._probability_logits(scores), dim=1))
                for scores in self._iter_scores(X)
            ]
        )

    def _resolve_device(self):
        """The ``torch.device`` of this fit (``device`` parameter); sets ``device_``."""
        device = resolve_device(self.device)
        self.device_ = str(device)
        return device

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        return tags


def _host(tensor):
    """A tensor of results as a NumPy array on the host."""
    return tensor.cpu().numpy()
