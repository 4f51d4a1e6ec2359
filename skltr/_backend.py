"""The PyTorch backend shared by every trained classifier.

Three things live here and nowhere else: turning a ``device`` parameter into a
``torch.device``, getting training features onto that device (whole when they
fit, in minibatch-sized pieces when they do not), and the minibatch SGD loop
with its cosine schedule and its two kinds of step (autograd, and the closed
form of a linear layer's cross-entropy).
"""

import math
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch
from tqdm.auto import tqdm

from ._warnings import warn
from .distributed import FeatureStore
from .exceptions import FallbackWarning

# Small training sets would get one SGD step per epoch at the usual batch
# sizes (cRT on 417 digits: 10 steps in all, underfit); batches shrink so that
# an epoch has at least this many steps.
MIN_STEPS_PER_EPOCH = 16

# Share of the free accelerator memory that resident training features may use;
# the rest is left to the parameters, the activations and other processes.
_DEVICE_MEMORY_SHARE = 0.5

# Float32 lanes of the SIMD vectors torch's CPU kernels use (measured on
# AVX-512, and on AVX2 through ATEN_CPU_CAPABILITY=avx2): see log_softmax_rows.
_CPU_FLOAT32_LANES = {"AVX512": 16, "AVX2": 8}.get(
    torch.backends.cpu.get_cpu_capability(), 0
)


#: The parameter constraint of every estimator's ``device``, which
#: :func:`resolve_device` then reads.
DEVICE_CONSTRAINT = [str, torch.device]


def resolve_device(device):
    """Turn a ``device`` parameter into a usable :class:`torch.device`.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda", "cuda:N", "mps"} or torch.device
        ``"auto"`` picks CUDA when it is available, else the CPU; it never
        picks MPS.

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        If the string is not a device, or names an accelerator that this
        machine does not have.
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(device, torch.device):
        resolved = device
    elif isinstance(device, str):
        try:
            resolved = torch.device(device)
        except RuntimeError as exc:
            raise ValueError(
                f"device={device!r} is not a device; use 'auto', 'cpu', 'cuda', "
                "'cuda:N' or 'mps'."
            ) from exc
    else:
        raise ValueError(
            "device must be 'auto', 'cpu', 'cuda', 'cuda:N', 'mps' or a "
            f"torch.device; got {device!r}."
        )
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={str(device)!r} asks for CUDA, but this PyTorch "
                f"({torch.__version__}, CUDA build: {torch.version.cuda or 'none'}) "
                "sees no CUDA device. Use device='auto' or device='cpu', or run "
                "on a machine with a GPU and a CUDA build of PyTorch."
            )
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise ValueError(
                f"device={str(device)!r} asks for CUDA device {resolved.index}, "
                f"but only {count} CUDA device(s) are visible (0 to {count - 1})."
            )
    elif resolved.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(
                f"device={str(device)!r} asks for Apple MPS, which is not "
                "available here. Use device='auto' or device='cpu'."
            )
    elif resolved.type != "cpu":
        raise ValueError(
            f"device={str(device)!r} is not supported; use 'auto', 'cpu', 'cuda', "
            "'cuda:N' or 'mps'."
        )
    return resolved


def iter_row_chunks(n_rows, n_cols, *, bytes_per_chunk=64 * 2**20):
    """Yield slices over ``n_rows`` rows, each covering about ``bytes_per_chunk``.

    Used wherever a pass over features must not hold more than a chunk of them
    in memory (memory-mapped training files, predicting on millions of rows).
    """
    rows = max(1, bytes_per_chunk // max(1, 8 * n_cols))
    for start in range(0, n_rows, rows):
        yield slice(start, min(start + rows, n_rows))


def feature_scaled_lr(lr, curvature):
    """The SGD step size for parameters whose loss has curvature ``curvature``.

    For the weights W of a linear layer, ``curvature`` is the largest
    eigenvalue of the second moment E[x x^T] of the features it sees
    (:meth:`DeviceFeatures.top_eigenvalue`): the Hessian of the mean
    cross-entropy in W is at most half of it. Dividing ``lr`` by it makes one
    default mean the same thing for a 64-d ResNet feature and a 2048-d ViT
    token, whitened or not, and keeps heavy-ball SGD with momentum 0.9 stable
    for any ``lr`` below about 7. The objective, and so the weight decay in
    it, is unchanged.
    """
    curvature = float(curvature)
    # Zero curvature: the features are all zero (every column constant, once
    # centred), the weights get no gradient and any finite step will do.
    return lr / curvature if curvature > 0 else lr


def logit_scaled_lr(lr, squared_logit):
    """The SGD step size for per-class scales that multiply logits.

    ``lr`` divided by the mean squared logit, as :func:`feature_scaled_lr`
    divides by the features' curvature, but never more than ``lr`` itself.
    Logits smaller than 1 say almost nothing (a joint classifier that
    predicts the prior), so there is nothing to scale, while dividing by
    their square would make the steps as large as the logits are small: on
    identical rows of balanced classes, DisAlign's scales went to 1e8 in a
    few hundred steps, and then to NaN.
    """
    return lr / max(float(squared_logit), 1.0)


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


def float64_device(device):
    """``device``, or the host where ``device`` has no float64 (Apple's MPS)."""
    return torch.device("cpu") if device.type == "mps" else device


def scoring_device(X):
    """Where rows of features ``X`` are scored in float64: where they are.

    That is a tensor's own device (so features on a GPU are not copied to
    the host) and the host for arrays; and the host for MPS tensors.
    """
    where = X.device if isinstance(X, torch.Tensor) else torch.device("cpu")
    return float64_device(where)


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


def _with_index(device):
    """``device`` with its index: "cuda" is the current CUDA device."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


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


def torch_generator(rng):
    """A CPU torch generator seeded from a numpy ``Generator``."""
    return torch.Generator().manual_seed(int(rng.integers(2**63 - 1)))


def effective_batch_size(batch_size, n_samples):
    """The batch size used: at most ``batch_size``, and small enough that an
    epoch has ``MIN_STEPS_PER_EPOCH`` steps when there are enough samples."""
    return max(1, min(batch_size, math.ceil(n_samples / MIN_STEPS_PER_EPOCH)))


def steps_per_epoch(n_samples, batch_size):
    """SGD steps in one epoch: ``ceil(n_samples / effective_batch_size)``."""
    return math.ceil(n_samples / effective_batch_size(batch_size, n_samples))


class AutogradSGD:
    """One SGD-with-momentum step on a loss that autograd differentiates.

    Parameters
    ----------
    param_groups : list of dict
        As for :class:`torch.optim.SGD`; every group names its own ``lr``.
    loss_fn : callable
        ``loss_fn(features, labels)`` returns each row's loss, a tensor of
        shape (n,). The step descends their mean; when the batches carry row
        weights, each row's loss is multiplied by its weight first, as the
        closed-form steps weigh their rows.
    momentum, weight_decay : float
    """

    def __init__(self, param_groups, loss_fn, *, momentum, weight_decay):
        self.optimizer = torch.optim.SGD(
            param_groups, momentum=momentum, weight_decay=weight_decay
        )
        self.base_lrs = [group["lr"] for group in self.optimizer.param_groups]
        self.loss_fn = loss_fn

    def __call__(self, features, labels, weights=None, *, lr_factor):
        for group, lr in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = lr * lr_factor
        losses = self.loss_fn(features, labels)
        loss = (losses if weights is None else losses * weights).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()


def log_softmax_rows(logits):
    """``torch.log_softmax(logits, 1)``, by the faster of torch's CPU kernels.

    On the CPU, torch's log-softmax over a last dimension shorter than one
    SIMD vector (16 float32 lanes with AVX-512, 8 with AVX2) runs a scalar
    loop, several times slower than over the first dimension of the
    transposed view, whose kernel is vectorised across the rows and gives
    the same values. From one vector up the last dimension is the faster
    one.
    """
    if logits.device.type == "cpu" and logits.shape[1] < _CPU_FLOAT32_LANES:
        return torch.log_softmax(logits.T, 0).T
    return torch.log_softmax(logits, 1)


def focal_terms(log_p_true, gamma):
    """The focal loss's per-row gradient factor and its per-row loss.

    The focal loss -(1 - p)^gamma log p of a row whose true class has
    probability p has, in the logits, the cross-entropy's gradient
    (softmax - one-hot) times ``(1 - p)^gamma (1 - gamma p log(p) / (1 - p))``:
    the factor returned, so that the closed-form step only multiplies its
    rows. The second term's ratio tends to -1 as p tends to 1; it is taken as
    its limit where 1 - p is too small for float32.

    Returns
    -------
    factor : torch.Tensor of shape (n,)
        Multiplies each row's cross-entropy gradient.
    loss : torch.Tensor of shape (n,)
        Each row's focal loss.
    """
    p_true = log_p_true.exp()
    q = -torch.expm1(log_p_true)  # 1 - p, exact for p near 1
    ratio = torch.where(q < 1e-6, -1.0, p_true * log_p_true / q.clamp_min(1e-6))
    modulation = q.pow(gamma)
    return modulation * (1.0 - gamma * ratio), -modulation * log_p_true


def linear_logits(features, coef, intercept):
    """``features @ coef.T + intercept``, in one fused product."""
    return torch.addmm(intercept, features, coef.T)


class ClosedFormSGD:
    """A training step whose gradient is written out, capturable in a CUDA graph.

    Subclasses are SGD with momentum (the heavy ball of
    :class:`torch.optim.SGD`) on a cross-entropy, from its gradient in closed
    form: about half the kernel launches of autograd and the optimizer, and
    all of them capturable (:class:`CapturedStep`). They implement
    ``set_lr_factor(lr_factor)`` and ``update(features, labels)``, which
    returns the batch loss, and hold their step sizes, negated, in
    ``_steps``: a float32 tensor on the device, which a captured graph reads.
    """

    capturable = True
    label_smoothing = 0.0
    focal_gamma = 0.0
    _true_class_step = None  # allocated at the first step, by true_class_term

    def __call__(self, features, labels, weights=None, *, lr_factor):
        self.set_lr_factor(lr_factor)
        return self.update(features, labels, weights)

    def momentum_step(self, param, velocity, grad, step):
        """The heavy ball of :class:`torch.optim.SGD`, in place: ``velocity``
        becomes ``momentum * velocity + grad``, and ``param`` moves by
        ``step`` (negative) times it."""
        velocity.mul_(self.momentum).add_(grad)
        param.addcmul_(velocity, step)

    def cross_entropy_gradient(self, logits, labels, weights=None):
        """The batch's mean cross-entropy, and its gradient in ``logits`` times n.

        The gradient is the softmax minus the (smoothed) targets; with
        ``weights``, each row's loss and gradient are multiplied by its
        weight (the mean is still over the rows, so weights of mean 1 keep
        the step's scale). With ``focal_gamma`` set, the loss is the focal
        loss and each row's gradient is multiplied by its factor
        (:func:`focal_terms`). The
        log-probabilities are raised to -87 before their exponential: on the
        CPU, exp is ten times slower where its result is denormal (below
        exp(-87.3), as LWS's scaled joint logits can give), and a
        probability that small is zero to float32's precision beside the
        targets.
        """
        n, n_classes, smoothing = len(labels), logits.shape[1], self.label_smoothing
        log_p = log_softmax_rows(logits)
        log_p_true = log_p.gather(1, labels[:, None])[:, 0]
        row_loss = -(1.0 - smoothing) * log_p_true
        if smoothing:
            row_loss -= smoothing / n_classes * log_p.sum(dim=1)
        row_factor = weights
        if self.focal_gamma:
            focal_factor, row_loss = focal_terms(log_p_true, self.focal_gamma)
            row_factor = focal_factor if weights is None else focal_factor * weights
        loss = (row_loss if weights is None else row_loss * weights).mean()
        grad = log_p.clamp_min_(-87.0).exp_()
        if smoothing:
            grad -= smoothing / n_classes
        grad.scatter_add_(1, labels[:, None], self.true_class_term(n, grad))
        if row_factor is not None:
            grad.mul_(row_factor[:, None])
        return loss, grad

    def true_class_term(self, n, like):
        """-(1 - smoothing) for each of ``n`` rows' true class; kept between steps.

        Added to the softmax at each row's true class, it gives the gradient
        of the cross-entropy in the logits (times the batch size).
        """
        if self._true_class_step is None or len(self._true_class_step) < n:
            self._true_class_step = torch.full(
                (n, 1),
                -(1.0 - self.label_smoothing),
                dtype=like.dtype,
                device=like.device,
            )
        return self._true_class_step[:n]

    def prepare_capture(self, batch_size):
        """Allocate before a capture what :meth:`update` would allocate in it.

        Returns what the graph reads, for the caller to hold: a larger batch
        later makes the step allocate anew, and the graph keeps reading the
        old addresses.
        """
        return self.true_class_term(batch_size, self._steps)


class SoftmaxRegressionSGD(ClosedFormSGD):
    """SGD with momentum on a linear layer's cross-entropy, gradient in closed form.

    The updates of :class:`AutogradSGD` on
    ``cross_entropy(layer(x), y, label_smoothing=label_smoothing)`` (the
    heavy ball of :class:`torch.optim.SGD`, weight decay on weight and bias),
    from the gradient ``(softmax(z) - targets)^T x / n``: half the kernel
    launches of autograd and the optimizer, all of them capturable in a CUDA
    graph (:class:`CapturedStep`).

    Parameters
    ----------
    layer : torch.nn.Linear
        Updated in place.
    lr_weight, lr_bias : float
    momentum, weight_decay : float
    label_smoothing : float
        Weight of the uniform distribution in the targets.
    logit_offset : torch.Tensor of shape (n_classes,) or None
        Added to the logits in the loss only (the logit-adjusted loss):
        the layer learns to predict without it.
    focal_gamma : float
        The focal loss's gamma; 0 is the cross-entropy.
    """

    def __init__(
        self,
        layer,
        *,
        lr_weight,
        lr_bias,
        momentum,
        weight_decay,
        label_smoothing=0.0,
        logit_offset=None,
        focal_gamma=0.0,
    ):
        self.weight, self.bias = layer.weight, layer.bias
        self.lr_weight, self.lr_bias = lr_weight, lr_bias
        self.momentum, self.weight_decay = momentum, weight_decay
        self.label_smoothing = label_smoothing
        self.logit_offset = logit_offset
        self.focal_gamma = focal_gamma
        self.velocity_weight = torch.zeros_like(self.weight, requires_grad=False)
        self.velocity_bias = torch.zeros_like(self.bias, requires_grad=False)
        # Minus the step sizes, as tensors so that a captured graph reads them.
        self._steps = torch.zeros(2, device=self.weight.device)

    def set_lr_factor(self, lr_factor):
        # fill_ passes the value with the kernel launch; a copy from host memory
        # would wait for the device at every step.
        self._steps[0].fill_(-self.lr_weight * lr_factor)
        self._steps[1].fill_(-self.lr_bias * lr_factor)

    @torch.no_grad()
    def update(self, features, labels, weights=None):
        """One step at the current step sizes; returns the batch loss."""
        n = len(labels)
        logits = linear_logits(features, self.weight, self.bias)
        if self.logit_offset is not None:
            logits += self.logit_offset
        loss, grad = self.cross_entropy_gradient(logits, labels, weights)
        grad_weight = torch.addmm(
            self.weight, grad.T, features, beta=self.weight_decay, alpha=1.0 / n
        )
        grad_bias = grad.sum(dim=0).div_(n).add_(self.bias, alpha=self.weight_decay)
        for param, velocity, grad_param, step in (
            (self.weight, self.velocity_weight, grad_weight, self._steps[0]),
            (self.bias, self.velocity_bias, grad_bias, self._steps[1]),
        ):
            self.momentum_step(param, velocity, grad_param, step)
        return loss


class ClassScaleSGD(ClosedFormSGD):
    """SGD with momentum on one scale per class of fixed logits (LWS).

    The updates of :class:`AutogradSGD` on
    ``cross_entropy(scales * (features @ coef.T + intercept), labels)``, with
    weight decay on the scales, from the gradient in closed form: the mean
    over the batch of ``(softmax - targets) * joint logits``.

    Parameters
    ----------
    scales : torch.Tensor of shape (n_classes,)
        Updated in place.
    coef : torch.Tensor of shape (n_classes, n_features) or None
    intercept : torch.Tensor of shape (n_classes,) or None
        The fixed joint classifier; None when the features served are its
        logits already (scales learned on held-out logits).
    lr, momentum, weight_decay : float
    """

    def __init__(self, scales, coef, intercept, *, lr, momentum, weight_decay):
        self.scales, self.coef, self.intercept = scales, coef, intercept
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.velocity = torch.zeros_like(scales)
        # Minus the step size, as a tensor so that a captured graph reads it.
        self._steps = torch.zeros((), device=scales.device)

    def set_lr_factor(self, lr_factor):
        self._steps.fill_(-self.lr * lr_factor)

    @torch.no_grad()
    def update(self, features, labels, weights=None):
        """One step at the current step size; returns the batch loss."""
        n = len(labels)
        if self.coef is None:
            joint_logits = features
        else:
            joint_logits = linear_logits(features, self.coef, self.intercept)
        loss, grad = self.cross_entropy_gradient(
            joint_logits * self.scales, labels, weights
        )
        grad_scales = (
            grad.mul_(joint_logits)
            .sum(dim=0)
            .div_(n)
            .add_(self.scales, alpha=self.weight_decay)
        )
        self.momentum_step(self.scales, self.velocity, grad_scales, self._steps)
        return loss


class CapturedStep:
    """A batch's gather and a step on it, captured once as a CUDA graph.

    Launching a step's kernels one by one from Python takes longer than the
    device takes to run them; a replay is one launch. Batches of another
    size (an epoch's last) run eagerly.

    Parameters
    ----------
    step : ClosedFormSGD
    data : DeviceFeatures
        Resident on a CUDA device.
    batch_size : int
        The size of the batches the graph is captured for.
    """

    # Steps run eagerly before the capture (lazy library initialisation).
    EAGER_STEPS = 3

    def __init__(self, step, data, batch_size):
        self.step, self.data, self.batch_size = step, data, batch_size
        self.graph = None
        self.failed = False
        self._eager_steps = 0

    @torch.no_grad()
    def __call__(self, indices, lr_factor):
        self.step.set_lr_factor(lr_factor)
        if self.graph is not None and len(indices) == self.batch_size:
            self._indices.copy_(indices)
            self.graph.replay()
            return self._loss
        if (
            len(indices) == self.batch_size
            and not self.failed
            and self._eager_steps >= self.EAGER_STEPS
        ):
            return self._capture(indices)
        self._eager_steps += 1
        return self.step.update(*self.data.gather(indices))

    def _capture(self, indices):
        self._indices = indices.clone()
        self._held = self.step.prepare_capture(self.batch_size)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self._loss = self.step.update(*self.data.gather(self._indices))
        except RuntimeError as exc:  # pragma: no cover - needs a failing CUDA
            warn(
                f"Capturing the training step as a CUDA graph failed ({exc}); "
                "training goes on step by step.",
                FallbackWarning,
            )
            self.failed = True
            return self.step.update(*self.data.gather(indices))
        self.graph = graph
        graph.replay()
        return self._loss


def train_minibatch(step, data, sampler, *, epoch_end=None, **settings):
    """Run ``step`` over minibatches for ``epochs``, the learning rate on a cosine to 0.

    The loop of :func:`iter_training`, run to its end or until
    ``epoch_end(epoch)``, called after each epoch, returns True. ``settings``
    are :func:`iter_training`'s keywords.

    Returns
    -------
    losses : list of float
        The mean training loss of each epoch run.
    """
    losses = []  # one device tensor per epoch
    for epoch, epoch_loss in iter_training(step, data, sampler, **settings):
        losses.append(epoch_loss)
        if epoch_end is not None and epoch_end(epoch):
            break
    if not losses:
        return []
    steps = steps_per_epoch(data.n_samples, settings["batch_size"])
    return [loss / steps for loss in torch.stack(losses).tolist()]


def iter_training(
    step, data, sampler, *, epochs, batch_size, verbose=0, desc="training"
):
    """Train ``step`` over minibatches, yielding after each epoch.

    The learning rate follows a cosine from its initial value to 0 over
    ``epochs``. An epoch is ``ceil(n_samples / batch_size)`` steps whatever
    the sampler, with the batch size of :func:`effective_batch_size`. A
    caller that stops early keeps the parameters of the epoch it stopped at;
    several such loops advanced in turn walk their paths in lockstep.

    Parameters
    ----------
    step : callable
        ``step(features, labels[, weights], lr_factor=lr_factor)`` (weights
        when ``data`` has them) updates the parameters with
        their learning rates times ``lr_factor`` and returns the batch loss
        (:class:`AutogradSGD`, or a :class:`ClosedFormSGD`). A step marked
        ``capturable`` on features resident on a CUDA device runs through
        :class:`CapturedStep`.
    data : DeviceFeatures
    sampler : object with ``epoch_indices(epoch)``
        Returns the ``n_samples`` row indices of one epoch, in order.
    epochs, batch_size : int
    verbose : int
        A progress bar over epochs when positive.

    Yields
    ------
    epoch : int
    loss : torch.Tensor
        The summed batch losses of the epoch, on the device: reading it waits
        for the accelerator, so callers read the losses once training ends
        rather than after each epoch.
    """
    steps = steps_per_epoch(data.n_samples, batch_size)
    batch_size = effective_batch_size(batch_size, data.n_samples)
    total_steps = max(1, epochs * steps)
    step_number = 0
    if (
        getattr(step, "capturable", False)
        and data.resident
        and data.device.type == "cuda"
    ):
        # Batches as row indices on the device, gathered inside the graph.
        batches_of, run = data.epoch_index_batches, CapturedStep(step, data, batch_size)
    else:
        batches_of = data.epoch_batches

        def run(batch, lr_factor):
            return step(*batch, lr_factor=lr_factor)

    progress = tqdm(range(epochs), desc=desc, disable=verbose <= 0, leave=False)
    for epoch in progress:
        epoch_loss = torch.zeros((), device=data.device)
        for batch in batches_of(sampler.epoch_indices(epoch), batch_size):
            lr_factor = 0.5 * (1.0 + math.cos(math.pi * step_number / total_steps))
            epoch_loss += run(batch, lr_factor)
            step_number += 1
        if verbose > 0:
            progress.set_postfix(loss=f"{float(epoch_loss) / steps:.4f}")
        yield epoch, epoch_loss
