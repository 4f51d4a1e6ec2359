"""NCM: nearest class mean (METHODS.md, "NCM").

Reference default ("cl2n" features, "l2" distance):
1. mu = mean of all training features.
2. Normalise every feature: z' = (z - mu) / ||z - mu||.
3. Class centroid c_j = mean of the normalised features of class j (not
   re-normalised).
4. Score of class j: -||z' - c_j||^2; the prediction is the argmax.
"""

from numbers import Real

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.sparse import csr_matrix
from scipy.special import logsumexp
from sklearn.utils._param_validation import Interval, StrOptions

from ._backend import iter_row_chunks
from ._base import BaseLongTailClassifier
from ._docstrings import fill_doc

# Rows used to fit the softmax temperature: enough for a one-parameter fit,
# and few enough that their (rows x classes) scores stay near 32 MB when there
# are many classes (at least 1,000 rows whatever the number of classes).
_TEMPERATURE_FIT_ROWS = 10_000
_TEMPERATURE_FIT_SCORES = 4_000_000


@fill_doc()
class NCMClassifier(BaseLongTailClassifier):
    """Nearest class mean classifier on normalised features.

    Each class is represented by the mean of its normalised training features;
    a sample goes to the closest mean. It has no trained weights, so nothing
    in it depends on how many samples a class has beyond its mean: a strong
    re-balancing baseline that needs no tuning.

    Parameters
    ----------
    normalization : {"cl2n", "l2n", "none"}, default="cl2n"
        How features are normalised before the means are taken. ``"cl2n"``
        (the reference default) centres them on the mean training feature and
        scales them to unit L2 norm; ``"l2n"`` only scales to unit norm;
        ``"none"`` uses them as they are (the reference's "un").

    metric : {"sqeuclidean", "cosine", "dot"}, default="sqeuclidean"
        The score of a class. ``"sqeuclidean"`` is minus the squared Euclidean
        distance to the class mean (the reference "l2"); ``"dot"`` is the dot
        product with the class mean (the reference "cos", which does not
        normalise the mean); ``"cosine"`` is the true cosine similarity to the
        class mean (the Decoupling paper's Figure 4).

    temperature : float or "auto", default="auto"
        ``predict_proba`` is the softmax of the scores divided by the
        temperature. The scores of normalised features span a range of about
        4, so with a temperature of 1 the probabilities would be nearly uniform
        over many classes; ``"auto"`` fits the temperature that minimises the
        log-loss on up to 10,000 evenly spaced training samples (fewer with
        more than 400 classes, so that their scores stay small; never fewer
        than 1,000). It changes probabilities only, never predictions.

    Attributes
    ----------
    centroids_ : ndarray of shape (n_classes, n_features)
        The class means of the normalised training features.

    feature_mean_ : ndarray of shape (n_features,) or None
        The mean training feature subtracted by ``"cl2n"``, else None.

    temperature_ : float
        The softmax temperature of ``predict_proba``.

    %(common_attributes)s

    See Also
    --------
    sklearn.neighbors.NearestCentroid : Nearest centroid on raw features.
    TauNormClassifier : Balances the classifier by its weight norms instead.

    Examples
    --------
    >>> import numpy as np
    >>> from skltr import NCMClassifier
    >>> X = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.2, 0.8]])
    >>> y = np.array(["cat", "cat", "dog", "dog"])
    >>> NCMClassifier().fit(X, y).predict([[0.8, 0.3]])
    array(['cat'], dtype='<U3')
    """

    _parameter_constraints: dict = {
        "normalization": [StrOptions({"cl2n", "l2n", "none"})],
        "metric": [StrOptions({"sqeuclidean", "cosine", "dot"})],
        "temperature": [
            StrOptions({"auto"}),
            Interval(Real, 0, None, closed="neither"),
        ],
    }

    def __init__(
        self, *, normalization="cl2n", metric="sqeuclidean", temperature="auto"
    ):
        self.normalization = normalization
        self.metric = metric
        self.temperature = temperature

    def _fit(self, X, y):
        n_samples, n_features = X.shape
        n_classes = len(self.classes_)
        self.feature_mean_ = None
        if self.normalization == "cl2n":
            total = np.zeros(n_features)
            for rows in iter_row_chunks(n_samples, n_features):
                total += X[rows].sum(axis=0, dtype=np.float64)
            self.feature_mean_ = total / n_samples
        sums = np.zeros((n_classes, n_features))
        for rows in iter_row_chunks(n_samples, n_features):
            membership = csr_matrix(
                (
                    np.ones(rows.stop - rows.start),
                    (y[rows], np.arange(rows.stop - rows.start)),
                ),
                shape=(n_classes, rows.stop - rows.start),
            )
            sums += membership @ self._normalise(X[rows])
        self.centroids_ = sums / self.class_counts_[:, None]
        self.temperature_ = (
            self._fit_temperature(X, y)
            if self.temperature == "auto"
            else float(self.temperature)
        )

    def _normalise(self, X):
        """A new float64 array of the rows, normalised in place."""
        X = np.array(X, dtype=np.float64)
        if self.normalization == "none":
            return X
        if self.feature_mean_ is not None:
            X -= self.feature_mean_
        norms = np.linalg.norm(X, axis=1, keepdims=True)
        # A row equal to the mean has no direction; it stays at the origin.
        X /= np.where(norms > 0, norms, 1.0)
        return X

    def _scores(self, X):
        Z = self._normalise(X)
        similarity = Z @ self.centroids_.T
        if self.metric == "dot":
            return similarity
        if self.metric == "cosine":
            centroid_norms = np.linalg.norm(self.centroids_, axis=1)
            row_norms = np.linalg.norm(Z, axis=1, keepdims=True)
            return similarity / np.maximum(row_norms * centroid_norms, 1e-300)
        squared_distance = (
            np.square(Z).sum(axis=1, keepdims=True)
            - 2.0 * similarity
            + np.square(self.centroids_).sum(axis=1)
        )
        return -np.maximum(squared_distance, 0.0)

    def _probability_logits(self, scores):
        return scores / self.temperature_

    def _fit_temperature(self, X, y):
        n_rows = min(
            len(y),
            _TEMPERATURE_FIT_ROWS,
            max(1_000, _TEMPERATURE_FIT_SCORES // len(self.classes_)),
        )
        rows = np.unique(np.linspace(0, len(y) - 1, n_rows).astype(int))
        scores = np.concatenate(list(self._iter_scores(X[rows])))
        true_scores = scores[np.arange(len(rows)), y[rows]]

        def log_loss(log_temperature):
            temperature = np.exp(log_temperature)
            return np.mean(
                logsumexp(scores / temperature, axis=1) - true_scores / temperature
            )

        best = minimize_scalar(
            log_loss, bounds=(np.log(1e-4), np.log(1e4)), method="bounded"
        )
        return float(np.exp(best.x))
