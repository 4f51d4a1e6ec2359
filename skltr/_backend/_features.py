"""Training features on the device: whole when they fit, a batch at a time
when they do not (memory-mapped files, feature stores), with their one-pass
statistics, their chunked reads and their float64 copies for scoring.
"""

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch

from ..distributed import FeatureStore
from ._device import _with_index, float64_device
from ._training import torch_generator

# Share of the free accelerator memory that resident training features may use;
# the rest is left to the parameters, the activations and other processes.
_DEVICE_MEMORY_SHARE = 0.5


def iter_row_chunks(n_rows, n_cols, *, bytes_per_chunk=64 * 2**20):
    """Yield slices over ``n_rows`` rows, each covering about ``bytes_per_chunk``.

    Used wherever a pass over features must not hold more than a chunk of them
    in memory (memory-mapped training files, predicting on millions of rows).
    """
    rows = max(1, bytes_per_chunk // max(1, 8 * n_cols))
    for start in range(0, n_rows, rows):
        yield slice(start, min(start + rows, n_rows))


@dataclass(frozen=True)
class ColumnStatistics:
    """Per-feature statistics of a pass over features (float64 arrays)."""

    mean: np.ndarray
    var: np.ndarray
    min: np.ndarray
    max: np.ndarray


class DeviceFeatures:
    """Training features and labels, served to the device one batch at a time.

    The features are moved to the device once when they take at most half of
    its free memory (on the CPU, when they are an in-memory array: then the
    tensor shares the array's memory, no copy). Memory-mapped arrays, and
    arrays too large for the accelerator, stay where they are and each batch's
    rows are read and copied on their own, so memory stays bounded by a batch.
    Float16 features stay float16 until a batch reaches the device. A tensor
    is moved whole, and one already on the device in the precision it would
    be served in (float32, or float16) is used as it is.

    Parameters
    ----------
    X : ndarray or torch.Tensor of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
        Encoded labels, 0 to n_classes - 1.
    device : torch.device
    shift, scale : ndarray of shape (n_features,) or None
        Rows are served as ``(x - shift) / scale``; None serves them as they
        are (see also :meth:`standardise`).
    keep_float64 : bool
        Move float64 features to an accelerator in float64 rather than
        float32, for computations that need their precision (float32 on one
        without float64, Apple's MPS).
    sample_weight : ndarray of shape (n_samples,) or None
        Each row's weight in the loss; batches then carry their rows'
        weights after the labels.
    """

    def __init__(
        self,
        X,
        y,
        device,
        *,
        shift=None,
        scale=None,
        keep_float64=False,
        sample_weight=None,
    ):
        self.X = X
        self.device = device
        self.keep_float64 = keep_float64
        self.n_samples, self.n_features = X.shape
        self.y = torch.as_tensor(np.asarray(y), dtype=torch.long).to(device)
        self.weight = None
        if sample_weight is not None:
            weight = np.asarray(sample_weight, dtype=np.float32)
            self.weight = torch.as_tensor(weight).to(device)
        self.resident = self._fits_on_device()
        self._X_device = self._to_device() if self.resident else None
        self._inv_scale = self._offset = None
        if shift is not None:
            self.standardise(shift, scale)

    def _fits_on_device(self):
        # A tensor is moved whole: it is in memory somewhere already.
        if isinstance(self.X, torch.Tensor):
            return True
        if isinstance(self.X, (np.memmap, FeatureStore)):
            # Mapped files are streamed a batch at a time.
            return False
        if self.device.type != "cuda":
            return True
        free_bytes, _ = torch.cuda.mem_get_info(self.device)
        itemsize = self._served_dtype().itemsize
        return self.X.shape[0] * self.X.shape[1] * itemsize <= (
            _DEVICE_MEMORY_SHARE * free_bytes
        )

    def _served_dtype(self):
        """The precision the features have on an accelerator."""
        if _is_half(self.X):
            return torch.float16
        if (
            self.keep_float64
            and self.X.dtype in (np.float64, torch.float64)
            and float64_device(self.device) == self.device
        ):
            return torch.float64
        return torch.float32

    def _to_device(self):
        X = self.X
        if self.device.type == "cpu":
            # On the host the features serve as they are; each batch is cast.
            return X.cpu() if isinstance(X, torch.Tensor) else _numpy_as_tensor(X)
        dtype = self._served_dtype()
        if (
            isinstance(X, torch.Tensor)
            and X.dtype == dtype
            and X.device == _with_index(self.device)
        ):
            return X
        out = torch.empty(X.shape, dtype=dtype, device=self.device)
        # Copied in chunks so a float64 array never gets a whole float32 twin on
        # the host.
        for rows in iter_row_chunks(*X.shape):
            out[rows].copy_(feature_rows(X, rows))
        return out

    def moments(self):
        """Per-feature mean and variance of the features as given, float64."""
        statistics = self.column_statistics()
        return statistics.mean, statistics.var

    def column_statistics(self):
        """Per-feature mean, variance, minimum and maximum, as given, float64.

        One pass, a chunk of rows at a time, where the features are (on the
        accelerator when they are resident there): each chunk's mean and
        variance in float32, merged in float64 by the pairwise update of Chan,
        Golub and LeVeque (on the host for a device without float64). The
        minimum and maximum are exact: they tell a constant column from one
        whose float32 variance is only rounding.

        A chunk's variance is the mean of its centred squares, not
        ``torch.var_mean``, which is several times slower on the CPU.

        Returns
        -------
        ColumnStatistics
        """
        merged_on = float64_device(self.device)
        mean = torch.zeros(self.n_features, dtype=torch.float64, device=merged_on)
        squares = torch.zeros_like(mean)
        low = torch.full_like(mean, np.inf)
        high = torch.full_like(mean, -np.inf)
        count = 0
        for _, chunk in self.raw_chunks():
            chunk_low, chunk_high = torch.aminmax(chunk, dim=0)
            low = torch.minimum(low, chunk_low.to(merged_on, torch.float64))
            high = torch.maximum(high, chunk_high.to(merged_on, torch.float64))
            rows = chunk.float()
            chunk_mean = rows.mean(dim=0)
            # Float32 rows are the features themselves: centre a copy of them.
            centred = rows - chunk_mean if rows is chunk else rows.sub_(chunk_mean)
            chunk_var = centred.square_().mean(dim=0).to(merged_on, torch.float64)
            n, total = len(chunk), count + len(chunk)
            delta = chunk_mean.to(merged_on, torch.float64) - mean
            mean += delta * (n / total)
            squares += chunk_var * n + delta.square() * (count * n / total)
            count = total
        return ColumnStatistics(
            *(v.cpu().numpy() for v in (mean, squares / count, low, high))
        )

    def standardise(self, shift, scale):
        """Serve rows as ``(x - shift) / scale`` from now on."""
        inv_scale = 1.0 / np.asarray(scale, dtype=np.float64)
        self._inv_scale = _as_float_tensor(inv_scale, self.device)
        self._offset = _as_float_tensor(-np.asarray(shift) * inv_scale, self.device)

    def preprocess(self, rows):
        rows = rows.float()
        if self._inv_scale is None:
            return rows
        return torch.addcmul(self._offset, rows, self._inv_scale)

    def rows(self, indices):
        """The rows ``indices`` (sorted), preprocessed, on the device."""
        return self.preprocess(self.raw_rows(indices))

    def raw_rows(self, indices):
        """The rows ``indices`` (sorted) as given (not preprocessed), on the device."""
        if self.resident:
            return self._X_device[torch.as_tensor(indices).to(self.device)]
        host = feature_rows(self.X, indices)
        if self.device.type == "cuda":
            host = host.pin_memory()
        return host.to(self.device, non_blocking=True)

    def epoch_batches(self, order, batch_size):
        """Features and labels (and weights) of the rows ``order``, a batch at a time.

        Each batch's rows are read in increasing order (memory-mapped files are
        read forward), resident or not, so both give the same sums.
        """
        if self.resident:
            for indices in self.epoch_index_batches(order, batch_size):
                yield self.gather(indices)
            return
        order = self._sorted_batches(order, batch_size)
        for start in range(0, len(order), batch_size):
            indices = order[start : start + batch_size]
            yield (
                self.rows(indices),
                *self._targets(torch.as_tensor(indices).to(self.device)),
            )

    def epoch_index_batches(self, order, batch_size):
        """The batches of :meth:`epoch_batches` as row indices on the device.

        Resident features only; :meth:`gather` turns them into batches.
        """
        # One copy of the epoch's order to the device instead of one per step,
        # from pinned memory so that it does not wait for the steps queued
        # before it.
        order = torch.as_tensor(self._sorted_batches(order, batch_size))
        if self.device.type == "cuda":
            order = order.pin_memory()
        order = order.to(self.device, non_blocking=True)
        for start in range(0, len(order), batch_size):
            yield order[start : start + batch_size]

    def gather(self, indices):
        """Features and labels (and weights) of the resident rows ``indices``.

        ``indices`` is a device tensor.
        """
        # index_select, not X[indices]: on the CPU it copies a 512-row batch
        # in a quarter of the time (23 against 92 us at d = 512).
        return (
            self.preprocess(torch.index_select(self._X_device, 0, indices)),
            *self._targets(indices),
        )

    def _targets(self, indices):
        """The labels of rows ``indices``, and their weights when there are any."""
        if self.weight is None:
            return (self.y[indices],)
        return self.y[indices], self.weight[indices]

    @staticmethod
    def _sorted_batches(order, batch_size):
        full = len(order) - len(order) % batch_size
        return np.concatenate(
            [
                np.sort(order[:full].reshape(-1, batch_size), axis=1).ravel(),
                np.sort(order[full:]),
            ]
        )

    def top_eigenvalue(
        self, rng, *, max_values=2**22, rows_per_feature=16, tol=1e-4, max_iter=50
    ):
        """Largest eigenvalue of E[x x^T] over the rows as they are served.

        The curvature of a linear layer's loss (:func:`feature_scaled_lr`).
        E[x x^T] is accumulated over a random subset of the rows when there
        are many (``max_values`` feature values, but at least
        ``rows_per_feature`` rows per feature), a chunk of rows at a time, so
        memory holds a chunk and the d x d matrix whatever the subset's size;
        Lanczos iteration then finds its top eigenvalue.

        A subset estimates the eigenvalue high, which errs toward a smaller,
        stable step. How high depends on its rows per feature, not on its
        size: with a flat spectrum (isotropic features) 4 rows per feature
        overestimate it by up to (1 + 1/2)^2 = 2.25 times and 16 by up to
        1.56 times. On ImageNet-LT-size synthetic features 4 rows per feature
        gave 1.74 times the exact value and 16 gave 1.22; on CIFAR-100-LT-size
        ones, whose top eigenvalue stands out more, 16 give 2% high.

        Lanczos needs far fewer iterations than power iteration when the top
        of the spectrum is crowded, as it is for standardised features: at
        CIFAR-100-LT size it comes within 2e-5 where power iteration stalled
        3e-3 short.

        Parameters
        ----------
        rng : numpy.random.Generator
        """
        n_rows = min(
            self.n_samples,
            max(1, max_values // self.n_features, rows_per_feature * self.n_features),
        )
        if n_rows < self.n_samples:
            indices = np.sort(rng.choice(self.n_samples, n_rows, replace=False))
        else:
            indices = np.arange(self.n_samples)
        second_moment = torch.zeros(
            self.n_features, self.n_features, device=self.device
        )
        for rows in iter_row_chunks(n_rows, self.n_features):
            sample = self.rows(indices[rows])
            second_moment.addmm_(sample.T, sample, alpha=1.0 / n_rows)
        n_steps = min(max_iter, self.n_features)
        basis = torch.zeros(n_steps, self.n_features, device=self.device)
        start = torch.randn(self.n_features, generator=torch_generator(rng))
        basis[0] = (start / torch.linalg.vector_norm(start)).to(self.device)
        # The tridiagonal matrix T = basis E[x x^T] basis^T, whose top
        # eigenvalue approaches the wanted one from below.
        diagonal, off_diagonal, eigenvalue = [], [], 0.0
        for step in range(n_steps):
            image = second_moment @ basis[step]
            diagonal.append(float(basis[step] @ image))
            # Twice, so the basis stays orthogonal in float32.
            for _ in range(2):
                image -= basis[: step + 1].T @ (basis[: step + 1] @ image)
            previous = eigenvalue
            eigenvalue = scipy.linalg.eigh_tridiagonal(
                np.array(diagonal), np.array(off_diagonal), eigvals_only=True
            )[-1]
            norm = float(torch.linalg.vector_norm(image))
            if not np.isfinite(eigenvalue) or not np.isfinite(norm):
                return 0.0
            converged = abs(eigenvalue - previous) <= tol * eigenvalue
            # A tiny remainder: the rows span no further direction.
            if converged or norm <= 1e-6 * max(eigenvalue, 1e-30):
                break
            if step + 1 < n_steps:
                off_diagonal.append(norm)
                basis[step + 1] = image / norm
        return max(float(eigenvalue), 0.0)

    def iter_all(self):
        """All rows in order, in chunks, on the device (for evaluation)."""
        for rows, chunk in self.raw_chunks():
            yield self.preprocess(chunk), self.y[rows]

    def raw_chunks(self):
        """Row slices and their rows as given (not preprocessed), on the device."""
        for rows in iter_row_chunks(self.n_samples, self.n_features):
            if self.resident:
                yield rows, self._X_device[rows]
            else:
                yield rows, feature_rows(self.X, rows).to(self.device)


def feature_rows(X, rows):
    """Rows ``rows`` of features ``X`` as a tensor where ``X`` is.

    ``X`` is a NumPy array (a memory map too; the tensor then shares the rows
    read) or a tensor.
    """
    if isinstance(X, torch.Tensor):
        return X[rows]
    return _numpy_as_tensor(np.ascontiguousarray(X[rows]))


def host_rows(X, rows):
    """Rows ``rows`` of features ``X`` (an array, or a tensor anywhere) as NumPy."""
    if isinstance(X, torch.Tensor):
        return X[rows].cpu().numpy()
    return X[rows]


class Float64Rows:
    """Chunks of rows copied to float64 on ``device``, into one reused buffer.

    Scoring works on a float64 copy of each chunk of rows, in place, so the
    caller's rows are never written to. Into a fresh tensor, the copy's
    time is mostly page faults; so the buffer is allocated once and grows
    with the chunks. Rows from another device travel in their own precision and
    become float64 on ``device`` (a blocking copy_ across devices would
    convert them on the host and send twice the bytes). A chunk returned is
    valid until the next call.
    """

    def __init__(self, device):
        self.device = device
        self._buffer = None

    def __call__(self, rows):
        n_rows, n_features = rows.shape
        if (
            self._buffer is None
            or self._buffer.shape[0] < n_rows
            or self._buffer.shape[1] != n_features
        ):
            self._buffer = torch.empty(
                (n_rows, n_features), dtype=torch.float64, device=self.device
            )
        return self._buffer[:n_rows].copy_(rows.to(self.device))


def _is_half(X):
    return X.dtype in (np.float16, torch.float16)


def _as_float_tensor(values, device):
    if values is None:
        return None
    return torch.as_tensor(np.asarray(values, dtype=np.float32)).to(device)


def _numpy_as_tensor(array):
    # Read-only arrays (memory maps opened with mode="r", arrays from joblib)
    # make torch warn that writing would be undefined; we never write to them.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*not writable.*")
        return torch.from_numpy(array)
