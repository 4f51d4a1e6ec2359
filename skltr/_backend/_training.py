"""The minibatch loop: epochs of batches from a sampler, the learning rate on
a cosine to 0, and how many steps an epoch has.
"""

import math

import torch
from tqdm.auto import tqdm

from ._steps import CapturedStep

# Small training sets would get one SGD step per epoch at the usual batch
# sizes (cRT on 417 digits: 10 steps in all, underfit); batches shrink so that
# an epoch has at least this many steps.
MIN_STEPS_PER_EPOCH = 16


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
