"""The tau-norm correction, below the classifiers that choose tau and the
metrics that sweep it.

tau-norm divides each class's weight vector by its L2 norm to the power
tau; :func:`correct_by_tau` counts what the corrected classifier gets
right, per class and per candidate tau, for :class:`TauNormClassifier`'s
held-out choice and for :func:`skltr.metrics.tau_sweep`.
"""

import numpy as np
import torch

from ._backend import float64_device
from ._linear import LinearScores
from ._selection import count_correct


def tau_normalize(coef, tau):
    """Rows of ``coef`` divided by their L2 norm to the power ``tau``."""
    norms = np.linalg.norm(coef, axis=1, keepdims=True)
    return coef / np.maximum(norms, np.finfo(coef.dtype).tiny) ** tau


def correct_by_tau(
    X, labels, coef, taus, n_classes, *, shift=None, scale=None, device=None
):
    """Correct predictions per class of the tau-normalised classifier, per tau.

    The joint logits without bias, ``((rows - shift) / scale) @ coef.T`` in
    float64 (the rows as they are when ``shift`` is None), are computed a
    chunk of rows of ``X`` at a time; dividing logit j by
    ``||coef_j||**tau`` gives the tau-normalised logits. ``labels`` are the
    rows' encoded labels. Everything but reading the rows runs on ``device``
    (the CPU by default; also for Apple's MPS, which has no float64), and only
    the counts come back. Returns an (n_taus, n_classes) array.
    """
    device = torch.device("cpu") if device is None else device
    joint_logits = LinearScores(
        coef, shift=shift, scale=scale, device=float64_device(device)
    )
    norms = np.linalg.norm(np.asarray(coef, dtype=np.float64), axis=1)
    divisors = torch.as_tensor(
        norms[None, :] ** np.asarray(taus, dtype=np.float64)[:, None],
        device=float64_device(device),
    )
    return count_correct(
        X,
        labels,
        joint_logits,
        lambda logits, i: logits / divisors[i],
        len(divisors),
        n_classes,
        device,
    )
