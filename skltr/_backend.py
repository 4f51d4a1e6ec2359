"""The PyTorch backend shared by every trained classifier.

Three things live here and nowhere else: turning a ``device`` parameter into a
``torch.device``, getting training features onto that device (whole when they
fit, in minibatch-sized pieces when they do not), and the minibatch SGD loop
with its cosine schedule.
"""

import math
import warnings

import numpy as np
import torch
from tqdm.auto import tqdm

# Small training sets would get one SGD step per epoch at the usual batch
# sizes (cRT on 417 digits: 10 steps in all, underfit); batches shrink so that
# an epoch has at least this many steps.
MIN_STEPS_PER_EPOCH = 16

# Share of the free accelerator memory that resident training features may use;
# the rest is left to the parameters, the activations and other processes.
_DEVICE_MEMORY_SHARE = 0.5


def resolve_device(device):
    """Turn a ``device`` parameter into a usable :class:`torch.device`.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda", "cuda:N"} or torch.device
        ``"auto"`` picks CUDA when it is available, else the CPU.

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
                f"device={device!r} is not a device; use 'auto', 'cpu', 'cuda' or "
                "'cuda:N'."
            ) from exc
    else:
        raise ValueError(
            "device must be 'auto', 'cpu', 'cuda', 'cuda:N' or a torch.device; "
            f"got {device!r}."
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


def feature_moments(X):
    """Per-feature mean and variance, in float64, one chunk at a time.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        May be memory-mapped; it is never loaded whole.

    Returns
    -------
    mean, var : ndarray of shape (n_features,)
    """
    n_samples, n_features = X.shape
    total = np.zeros(n_features)
    for rows in iter_row_chunks(n_samples, n_features):
        total += X[rows].sum(axis=0, dtype=np.float64)
    mean = total / n_samples
    squared = np.zeros(n_features)
    for rows in iter_row_chunks(n_samples, n_features):
        squared += np.square(X[rows] - mean).sum(axis=0)
    return mean, squared / n_samples


def feature_scaled_lr(lr, mean_squared_norm):
    """The SGD step size for weights that multiply the features.

    Dividing ``lr`` by the mean squared norm of the features makes a step change
    the logits by the same amount whatever the scale and dimension of the
    features: ``lr`` means the same thing for a 64-d ResNet feature and a
    2048-d one, and SGD stays stable for any ``lr`` below about 7 (the
    curvature of the cross-entropy in the weights is at most half the largest
    eigenvalue of E[x x^T], which is at most the mean squared norm). The
    objective, and so the weight decay in it, is unchanged.
    """
    return lr / max(float(mean_squared_norm), np.finfo(np.float32).tiny)


class DeviceFeatures:
    """Training features and labels, served to the device one batch at a time.

    The features are moved to the device once when they take at most half of
    its free memory (on the CPU, when they are an in-memory array: then the
    tensor shares the array's memory, no copy). Memory-mapped arrays, and
    arrays too large for the accelerator, stay where they are and each batch's
    rows are read and copied on their own, so memory stays bounded by a batch.
    Float16 features stay float16 until a batch reaches the device.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,)
        Encoded labels, 0 to n_classes - 1.
    device : torch.device
    shift, scale : ndarray of shape (n_features,) or None
        Each batch is returned as ``(x - shift) / scale``; None skips the step.
    """

    def __init__(self, X, y, device, *, shift=None, scale=None):
        self.X = X
        self.device = device
        self.n_samples, self.n_features = X.shape
        self.y = torch.as_tensor(np.asarray(y), dtype=torch.long).to(device)
        self.shift = _as_float_tensor(shift, device)
        self.inv_scale = _as_float_tensor(
            None if scale is None else 1.0 / np.asarray(scale), device
        )
        self.resident = self._fits_on_device()
        self._X_device = self._to_device() if self.resident else None

    def _fits_on_device(self):
        if isinstance(self.X, np.memmap):
            return False
        if self.device.type != "cuda":
            return True
        free_bytes, _ = torch.cuda.mem_get_info(self.device)
        itemsize = 2 if self.X.dtype == np.float16 else 4
        return self.X.shape[0] * self.X.shape[1] * itemsize <= (
            _DEVICE_MEMORY_SHARE * free_bytes
        )

    def _to_device(self):
        if self.device.type == "cpu":
            return _numpy_as_tensor(self.X)
        dtype = torch.float16 if self.X.dtype == np.float16 else torch.float32
        out = torch.empty(self.X.shape, dtype=dtype, device=self.device)
        # Copied in chunks so a float64 array never gets a whole float32 twin on
        # the host.
        for rows in iter_row_chunks(*self.X.shape):
            out[rows].copy_(_numpy_as_tensor(self.X[rows]), non_blocking=False)
        return out

    def batch(self, indices):
        """Features and labels of the rows ``indices``, on the device."""
        indices = np.sort(indices)
        if self.resident:
            rows = self._X_device[torch.as_tensor(indices).to(self.device)]
        else:
            host = _numpy_as_tensor(np.ascontiguousarray(self.X[indices]))
            if self.device.type == "cuda":
                host = host.pin_memory()
            rows = host.to(self.device, non_blocking=True)
        return self.preprocess(rows), self.y[torch.as_tensor(indices).to(self.device)]

    def preprocess(self, rows):
        rows = rows.float()
        if self.shift is not None:
            rows = rows - self.shift
        if self.inv_scale is not None:
            rows = rows * self.inv_scale
        return rows

    def iter_all(self):
        """All rows in order, in chunks, on the device (for evaluation)."""
        for rows in iter_row_chunks(self.n_samples, self.n_features):
            if self.resident:
                chunk = self._X_device[rows]
            else:
                chunk = _numpy_as_tensor(np.ascontiguousarray(self.X[rows]))
                chunk = chunk.to(self.device)
            yield self.preprocess(chunk), self.y[rows]


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


def train_minibatch(
    param_groups,
    loss_fn,
    data,
    sampler,
    *,
    epochs,
    batch_size,
    momentum,
    weight_decay,
    epoch_end=None,
    verbose=0,
    desc="training",
):
    """Minimise ``loss_fn`` with minibatch SGD and a cosine schedule to 0.

    An epoch is ``ceil(n_samples / batch_size)`` steps whatever the sampler,
    with the batch size of :func:`effective_batch_size`.

    Parameters
    ----------
    param_groups : list of dict
        As for :class:`torch.optim.SGD`; every group names its own ``lr``.
    loss_fn : callable
        ``loss_fn(features, labels)`` returns a scalar tensor.
    data : DeviceFeatures
    sampler : object with ``epoch_indices(epoch)``
        Returns the ``n_samples`` row indices of one epoch, in order.
    epochs, batch_size, momentum, weight_decay
        The SGD settings; each group's learning rate decays to 0 along a
        cosine over all steps.
    epoch_end : callable, optional
        Called as ``epoch_end(epoch)`` after each epoch; training stops early
        when it returns True.
    verbose : int
        A progress bar over epochs when positive.

    Returns
    -------
    losses : list of float
        The mean training loss of each epoch run.
    """
    optimizer = torch.optim.SGD(
        param_groups, momentum=momentum, weight_decay=weight_decay
    )
    batch_size = effective_batch_size(batch_size, data.n_samples)
    steps_per_epoch = math.ceil(data.n_samples / batch_size)
    total_steps = max(1, epochs * steps_per_epoch)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * step / total_steps))
    )
    losses = []
    progress = tqdm(range(epochs), desc=desc, disable=verbose <= 0, leave=False)
    for epoch in progress:
        order = sampler.epoch_indices(epoch)
        epoch_loss = torch.zeros((), device=data.device)
        for step in range(steps_per_epoch):
            features, labels = data.batch(
                order[step * batch_size : (step + 1) * batch_size]
            )
            loss = loss_fn(features, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            epoch_loss += loss.detach()
        losses.append(float(epoch_loss) / steps_per_epoch)
        progress.set_postfix(loss=f"{losses[-1]:.4f}")
        if epoch_end is not None and epoch_end(epoch):
            break
    return losses
