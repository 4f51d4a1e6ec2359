"""NCM: nearest class mean (user guide: docs/guide/ncm.md).

Reference default ("cl2n" features, "l2" distance):
1. mu = mean of all training features.
2. Normalise every feature: z' = (z - mu) / ||z - mu||.
3. Class centroid c_j = mean of the normalised features of class j (not
   re-normalised).
4. Score of class j: -||z' - c_j||^2; the prediction is the argmax.
"""

from numbers import Real

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from sklearn.utils._param_validation import Interval, StrOptions

from ._backend import (
    DEVICE_CONSTRAINT,
    DeviceFeatures,
    Float64Rows,
    float64_device,
    iter_row_chunks,
)
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

    Read more in the :ref:`User Guide <ncm>`.

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

    %(device_parameter)s

    Attributes
    ----------
    centroids_ : ndarray of shape (n_classes, n_features)
        The class means of the normalised training features.

    feature_mean_ : ndarray of shape (n_features,) or None
        The mean training feature subtracted by ``"cl2n"``, else None.

    temperature_ : float
        The softmax temperature of ``predict_proba``.

    device_ : str
        The device the class means and the temperature were computed on.

    %(common_attributes)s

    See Also
    --------
    sklearn.neighbors.NearestCentroid : Nearest centroid on raw features.
    TauNormClassifier : Balances the classifier by its weight norms instead.

    References
    ----------
    %(decoupling_reference)s

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
        "device": DEVICE_CONSTRAINT,
    }

    def __init__(
        self,
        *,
        normalization="cl2n",
        metric="sqeuclidean",
        temperature="auto",
        device="auto",
    ):
        self.normalization = normalization
        self.metric = metric
        self.temperature = temperature
        self.device = device

    def _fit(self, X, y):
        device = self._resolve_device()
        data = DeviceFeatures(X, y, device, keep_float64=True)
        # Each chunk is worked in the features' precision (at least float32)
        # and its sums are added up in float64, on the host where the device
        # has no float64.
        summed_on = float64_device(device)
        mean = None
        if self.normalization == "cl2n":
            total = torch.zeros(data.n_features, dtype=torch.float64, device=summed_on)
            for _, chunk in data.raw_chunks():
                total += chunk.to(_working_dtype(chunk)).sum(dim=0).to(summed_on)
            mean = total / data.n_samples
        n_classes = len(self.classes_)
        sums = torch.zeros(
            (n_classes, data.n_features), dtype=torch.float64, device=summed_on
        )
        for rows, chunk in data.raw_chunks():
            normalised = self._normalised(chunk, mean, _working_dtype(chunk))
            sums += _class_sums(data.y[rows], normalised, n_classes).to(summed_on)
        centroids = (
            sums / torch.as_tensor(self.class_counts_, device=summed_on)[:, None]
        )
        self.feature_mean_ = None if mean is None else mean.cpu().numpy()
        self.centroids_ = centroids.cpu().numpy()
        self.temperature_ = (
            self._fit_temperature(data, y, centroids, mean)
            if self.temperature == "auto"
            else float(self.temperature)
        )

    def _normalised(self, rows, mean, dtype):
        """A new ``dtype`` tensor of the rows, on their device, normalised."""
        return self._normalise_(rows.to(dtype, copy=True), mean)

    def _normalise_(self, rows, mean):
        """Normalise ``rows``, a copy of the caller's, in place."""
        if self.normalization == "none":
            return rows
        if mean is not None:
            rows -= mean.to(rows.device, rows.dtype)
        norms = torch.linalg.vector_norm(rows, dim=1, keepdim=True)
        # A row equal to the mean has no direction; it stays at the origin.
        return rows.div_(torch.where(norms > 0, norms, 1.0))

    def _class_scores(self, Z, centroids):
        """Scores of normalised float64 rows ``Z`` against ``centroids``.

        In float64, so that a row's score does not depend on how many rows a
        float32 product sees at once.
        """
        similarity = Z @ centroids.T
        if self.metric == "dot":
            return similarity
        if self.metric == "cosine":
            centroid_norms = torch.linalg.vector_norm(centroids, dim=1)
            row_norms = torch.linalg.vector_norm(Z, dim=1, keepdim=True)
            return similarity / torch.clamp(row_norms * centroid_norms, min=1e-300)
        squared_distance = (
            Z.square().sum(dim=1, keepdim=True)
            - 2.0 * similarity
            + centroids.square().sum(dim=1)
        )
        return -squared_distance.clamp_(min=0.0)

    def _scorer(self, device):
        centroids = torch.as_tensor(self.centroids_, device=device)
        mean = (
            None
            if self.feature_mean_ is None
            else torch.as_tensor(self.feature_mean_, device=device)
        )
        return self._scorer_against(centroids, mean)

    def _scorer_against(self, centroids, mean):
        """Scores of raw rows: normalised in a float64 copy where ``centroids`` are."""
        float64_rows = Float64Rows(centroids.device)
        return lambda rows: self._class_scores(
            self._normalise_(float64_rows(rows), mean), centroids
        )

    def _probability_logits(self, scores):
        return scores / self.temperature_

    def _fit_temperature(self, data, y, centroids, mean):
        """The temperature minimising the log-loss on evenly spaced training rows.

        The rows are read from ``data`` (a :class:`DeviceFeatures`, so from
        the device when they are resident there); the scores and the log-loss
        are computed in float64 where the centroids are, which is there too
        unless the device has no float64.
        """
        n_rows = min(
            len(y),
            _TEMPERATURE_FIT_ROWS,
            max(1_000, _TEMPERATURE_FIT_SCORES // len(self.classes_)),
        )
        rows = np.unique(np.linspace(0, len(y) - 1, n_rows).astype(int))
        score = self._scorer_against(centroids, mean)
        scores = torch.cat(
            [
                score(data.raw_rows(rows[chunk]))
                for chunk in iter_row_chunks(
                    len(rows), max(data.n_features, len(self.classes_))
                )
            ]
        )
        labels = torch.as_tensor(y[rows], device=centroids.device)
        true_scores = scores.gather(1, labels[:, None])

        def log_loss(log_temperature):
            inverse = float(np.exp(-log_temperature))
            losses = (
                torch.logsumexp(scores * inverse, dim=1) - true_scores[:, 0] * inverse
            )
            return losses.mean().item()

        best = minimize_scalar(
            log_loss, bounds=(np.log(1e-4), np.log(1e4)), method="bounded"
        )
        return float(np.exp(best.x))


def _class_sums(labels, rows, n_classes):
    """Per-class sums of ``rows``, in their precision, on their device."""
    sums = torch.zeros((n_classes, rows.shape[1]), dtype=rows.dtype, device=rows.device)
    if rows.device.type == "cuda":
        # index_add_ adds with atomics on CUDA, in an order that changes from
        # run to run; index_put_ with accumulate sorts the labels first, so a
        # fit repeats bit for bit. On the CPU index_add_ is deterministic and
        # 3.5 times faster.
        return sums.index_put_((labels,), rows, accumulate=True)
    return sums.index_add_(0, labels, rows)


def _working_dtype(rows):
    """float64 for float64 rows, else float32."""
    return torch.float64 if rows.dtype == torch.float64 else torch.float32
