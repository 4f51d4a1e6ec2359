"""Test-time class-prior shift (user guide: docs/guide/prior_shift.md).

A classifier's probabilities p(j | x) assume a class prior p: the training
prior for a classifier trained on the training distribution, a uniform one
for a re-balanced classifier. Where the target prior is q, Bayes' rule gives

    p_q(j | x) proportional to p(j | x) q_j / p_j.

When q is unknown but unlabelled target features are at hand, it is
estimated by EM (Saerens, Latinne and Decaestecker, 2002): start from q = p;
E-step r_ij proportional to p(j | x_i) q_j / p_j, normalised per row; M-step
q_j = mean_i r_ij; repeat until q moves less than ``tol`` (L1). With a
Dirichlet prior on q centred on p, of ``strength`` pseudo-samples per class,
the M-step is the maximum a posteriori one:
q_j = (sum_i r_ij + strength C p_j) / (n + strength C).
"""

from numbers import Integral, Real

import numpy as np
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    MetaEstimatorMixin,
    _fit_context,
    clone,
)
from sklearn.calibration import CalibratedClassifierCV
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.validation import check_is_fitted, column_or_1d

from ._base import BaseLongTailClassifier
from ._joint import JointClassifier
from ._warnings import warn
from .metrics._scorer import final_estimator
from .metrics._shot import label_positions


def implied_prior(estimator, y, class_counts):
    """The class prior a fitted classifier's probabilities assume.

    A skltr classifier declares its own (``_implied_prior``); a
    ``CalibratedClassifierCV`` with ``method="temperature"`` keeps that of
    the classifier it calibrates; for another classifier it is the training
    prior of ``y`` (``class_counts``, in the order of its ``classes_``),
    times its ``class_weight`` when it has one (``"balanced"`` makes it
    uniform).
    """
    final = final_estimator(estimator)
    if isinstance(final, BaseLongTailClassifier):
        return final._implied_prior()
    if isinstance(final, CalibratedClassifierCV) and final.method == "temperature":
        # One temperature divides all the logits: the probabilities keep the
        # prior of the classifier they calibrate, uniform for a re-balancer.
        # (Sigmoid and isotonic fit a map per class on training rows, and
        # learn the training prior back.) The ensemble's probabilities are
        # the mean of its members'.
        return np.mean(
            [
                implied_prior(member.estimator, y, class_counts)
                for member in final.calibrated_classifiers_
            ],
            axis=0,
        )
    classes = final.classes_
    prior = np.asarray(class_counts, dtype=np.float64)
    class_weight = getattr(final, "class_weight", None)
    if class_weight is not None:
        prior = prior * compute_class_weight(class_weight, classes=classes, y=y)
    return prior / prior.sum()


def em_prior(proba, source_prior, *, tol, max_iter, strength=0.0):
    """The target prior that EM estimates from probabilities under ``source_prior``.

    ``strength`` pseudo-samples per class, spread as ``source_prior``, are
    added to the M-step's counts (0: maximum likelihood). Warns
    (ConvergenceWarning) when ``max_iter`` iterations did not bring the L1
    change under ``tol``.
    """
    ratio = proba / source_prior
    prior = source_prior.copy()
    pseudo_counts = strength * len(source_prior) * source_prior
    for _ in range(max_iter):
        responsibilities = ratio * prior
        responsibilities /= responsibilities.sum(axis=1, keepdims=True)
        updated = responsibilities.sum(axis=0) + pseudo_counts
        updated /= updated.sum()
        change = np.abs(updated - prior).sum()
        prior = updated
        if change < tol:
            return prior
    warn(
        f"EM did not converge in em_max_iter={max_iter} iterations (the last "
        f"change of the prior was {change:.2g} > em_tol={tol:g}); increase "
        "em_max_iter or em_tol.",
        ConvergenceWarning,
    )
    return prior


class PriorAdjustedClassifier(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """A classifier's probabilities adjusted to a target class prior, known or by EM.

    ``predict_proba`` is ``p(j | x) q_j / p_j``, normalised, where p is the
    prior the fitted ``estimator`` assumes (the training prior for
    :class:`JointClassifier`, uniform for the re-balancers; see Notes) and q
    the target prior: given, or estimated by EM from the batch of features
    being predicted. Deployed classifiers meet other priors than a balanced
    test set's: a camera sees the head classes more often, a retrieval set
    may be tail-heavy.

    Read more in the :ref:`User Guide <prior-shift>`.

    Parameters
    ----------
    estimator : classifier with ``predict_proba``, default=None
        Cloned and fit by ``fit``; None is a :class:`JointClassifier`. A
        fitted classifier wrapped in ``sklearn.frozen.FrozenEstimator`` is
        used as it is.
    target_prior : "em" or array-like of shape (n_classes,), default="em"
        The class probabilities of the data to predict, in the order of
        ``classes_``: non-negative, summing to 1. A class of prior 0 is never
        predicted. ``"em"`` estimates them from each batch given to
        ``predict`` / ``predict_proba`` (which change no fitted state), so a
        sample's prediction depends on the batch it comes with; use
        :meth:`estimate_target_prior` on a large batch and pass the result
        for predictions that do not.
    em_prior_strength : float, default=1.0
        How strongly EM's estimate is held to the source prior, in
        pseudo-samples per class: a Dirichlet prior centred on the source
        prior, of ``em_prior_strength * n_classes`` samples in all, makes
        the estimate the maximum a posteriori one. With many samples per
        class it makes no difference; with few (a hundred classes, a few
        hundred samples) it keeps the noise of the estimate from moving
        predictions. 0 is the maximum-likelihood EM of Saerens et al. The
        default, one pseudo-sample per class, is the uninformative choice,
        not a tuned one (see Notes).
    em_tol : float, default=1e-6
        EM stops when the prior's L1 change falls below this.
    em_max_iter : int, default=1000
        EM's iteration cap (a ConvergenceWarning says when it is reached).
        EM runs when probabilities are asked for, never in ``fit``.

    Attributes
    ----------
    estimator_ : classifier
        The fitted ``estimator``.
    classes_ : ndarray of shape (n_classes,)
    class_counts_ : ndarray of shape (n_classes,)
        Training samples per class, in the order of ``classes_``: the shot
        splits of :func:`~skltr.metrics.make_shot_scorer`, whatever
        ``estimator`` is.
    source_prior_ : ndarray of shape (n_classes,)
        The prior ``estimator_``'s probabilities assume.
    target_prior_ : ndarray of shape (n_classes,) or None
        The given target prior, checked; None with ``"em"``.
    n_features_in_ : int
        As ``estimator_``'s, where it has one.

    See Also
    --------
    LogitAdjustedClassifier : A fixed prior correction chosen for the balanced
        error, at training time.

    Notes
    -----
    The implied prior of a skltr classifier is declared by the classifier:
    :class:`JointClassifier` and cRT assume their sampler's prior times their
    class weights (instance-balanced: the training prior; class-balanced:
    uniform), Balanced Softmax the training prior to the power 1 - tau, the
    re-balancers and NCM a uniform prior.
    ``CalibratedClassifierCV(method="temperature")`` keeps the prior of the
    classifier it calibrates; its sigmoid and isotonic maps, fit per class
    on training rows, learn the training prior. For another classifier it
    is the training prior of ``y``, times its ``class_weight``. A class the source
    prior gives 0 makes the ratio undefined and is refused.

    EM assumes calibrated probabilities and enough samples per class. With
    ten classes and thousands of samples it comes close to the known prior;
    with a hundred classes and a few hundred samples, or a classifier far
    from calibrated, the maximum-likelihood estimate can do worse than no
    adjustment at all. One pseudo-sample per class raised the mean accuracy
    over the classifiers on every problem the project measured and changed
    nothing where samples were many, but it does not make EM safe where the
    classifier is poor (the user guide's page on prior shift has the
    figures). Check on labelled data of your own before relying on EM, or
    estimate the prior on a large batch.

    References
    ----------
    .. [1] M. Saerens, P. Latinne and C. Decaestecker, "Adjusting the Outputs
       of a Classifier to New a Priori Probabilities: A Simple Procedure",
       Neural Computation 14(1), 2002.
    .. [2] Y. Hong, S. Han, K. Choi, S. Seo, B. Kim and B. Chang, "Disentangling
       Label Distribution for Long-tailed Visual Recognition", CVPR 2021.

    Examples
    --------
    >>> import numpy as np
    >>> from skltr import JointClassifier, PriorAdjustedClassifier
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.arange(3), [300, 60, 12])
    >>> X = rng.normal(size=(len(y), 5)) + 2.0 * np.eye(3, 5)[y]
    >>> clf = PriorAdjustedClassifier(JointClassifier(device="cpu", random_state=0))
    >>> clf = clf.fit(X, y)
    >>> clf.source_prior_.round(2)
    array([0.81, 0.16, 0.03])
    >>> clf.estimate_target_prior(X).round(2)
    array([0.8 , 0.16, 0.04])
    """

    _parameter_constraints: dict = {
        "estimator": [None, HasMethods(["fit", "predict_proba"])],
        "target_prior": [StrOptions({"em"}), "array-like"],
        "em_prior_strength": [Interval(Real, 0, None, closed="left")],
        "em_tol": [Interval(Real, 0, None, closed="neither")],
        "em_max_iter": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        estimator=None,
        *,
        target_prior="em",
        em_prior_strength=1.0,
        em_tol=1e-6,
        em_max_iter=1000,
    ):
        self.estimator = estimator
        self.target_prior = target_prior
        self.em_prior_strength = em_prior_strength
        self.em_tol = em_tol
        self.em_max_iter = em_max_iter

    @_fit_context(
        # The estimator's own parameters are validated by its fit.
        prefer_skip_nested_validation=False
    )
    def fit(self, X, y, **fit_params):
        """Fit the estimator, and check the target prior against its classes.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        **fit_params : dict
            Passed to the estimator's ``fit`` (``sample_weight``, ...).

        Returns
        -------
        self : object
        """
        estimator = JointClassifier() if self.estimator is None else self.estimator
        self.estimator_ = clone(estimator).fit(X, y, **fit_params)
        self.classes_ = self.estimator_.classes_
        if hasattr(self.estimator_, "n_features_in_"):
            self.n_features_in_ = self.estimator_.n_features_in_
        y = column_or_1d(y)
        labels, counts = np.unique(y, return_counts=True)
        self.class_counts_ = counts[label_positions(labels, self.classes_)]
        source = np.asarray(
            implied_prior(self.estimator_, y, self.class_counts_), float
        )
        if not (source > 0).all():
            raise ValueError(
                f"{type(self.estimator_).__name__} implies a prior of 0 for the "
                f"classes {self.classes_[source <= 0]}; the ratio to the target "
                "prior is undefined there."
            )
        self.source_prior_ = source
        self.target_prior_ = (
            None
            if isinstance(self.target_prior, str)
            else self._checked_prior(self.target_prior)
        )
        return self

    def _checked_prior(self, prior):
        prior = np.asarray(prior, dtype=np.float64)
        n_classes = len(self.classes_)
        if prior.shape != (n_classes,):
            raise ValueError(
                f"target_prior has shape {prior.shape}; the estimator has "
                f"{n_classes} classes, so it must be ({n_classes},), in the order "
                "of classes_."
            )
        if not np.isfinite(prior).all() or (prior < 0).any():
            raise ValueError(
                "target_prior must hold finite, non-negative class probabilities."
            )
        if not np.isclose(prior.sum(), 1.0, rtol=0, atol=1e-6):
            raise ValueError(f"target_prior must sum to 1; it sums to {prior.sum():g}.")
        return prior

    def _estimator_proba(self, X):
        check_is_fitted(self)
        proba = np.asarray(self.estimator_.predict_proba(X), dtype=np.float64)
        if len(proba) == 0:
            raise ValueError(
                "No samples to predict or to estimate the target prior from: "
                "X is empty."
            )
        # A probability that underflowed to 0 would make a row of zeros where
        # the target prior rules out the others.
        return np.maximum(proba, np.finfo(np.float64).tiny)

    def estimate_target_prior(self, X):
        """The target prior that EM estimates from unlabelled features ``X``.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)
            Features of the target data, at least one row.

        Returns
        -------
        prior : ndarray of shape (n_classes,)
            In the order of ``classes_``; sums to 1.
        """
        return self._em_prior(self._estimator_proba(X))

    def _em_prior(self, proba):
        return em_prior(
            proba,
            self.source_prior_,
            tol=self.em_tol,
            max_iter=self.em_max_iter,
            strength=self.em_prior_strength,
        )

    def decision_function(self, X):
        """Log-probabilities under the target prior, up to a constant per row.

        ``log p(j | x) + log q_j - log p_j``, the row's largest entry shifted
        to 0; a class of target prior 0 scores ``-inf`` (it is never
        predicted). With two classes, as scikit-learn's binary classifiers,
        the second class's score minus the first's.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples, n_classes) or (n_samples,)
        """
        scores = self._log_scores(X)
        if len(self.classes_) == 2:
            return scores[:, 1] - scores[:, 0]
        return scores

    def _log_scores(self, X):
        proba = self._estimator_proba(X)
        target = self.target_prior_
        if target is None:
            target = self._em_prior(proba)
        # In logs, so that a class of target prior 0 gets probability 0 and
        # no row can sum to 0 (some class has a positive target prior).
        with np.errstate(divide="ignore"):
            scores = np.log(proba) + np.log(target) - np.log(self.source_prior_)
        return scores - scores.max(axis=1, keepdims=True)

    def predict_proba(self, X):
        """Probabilities under the target prior.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
        """
        adjusted = np.exp(self._log_scores(X))
        return adjusted / adjusted.sum(axis=1, keepdims=True)

    def predict(self, X):
        """The class with the highest probability under the target prior.

        Parameters
        ----------
        X : array-like or torch.Tensor of shape (n_samples, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        return self.classes_[np.argmax(self._log_scores(X), axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        estimator = JointClassifier() if self.estimator is None else self.estimator
        inner = estimator.__sklearn_tags__()
        tags.input_tags = inner.input_tags
        return tags
