"""Stage 1 of decoupled training: a network trained on the long-tailed set itself.

Instance-balanced sampling and plain cross-entropy (the Decoupling paper's
stage 1); the network is then frozen and only its features are used.
"""

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from skltr import models


def _sgd_epochs(
    model, batches, epochs, steps_per_epoch, *, lr, weight_decay, desc, verbose
):
    """SGD with momentum 0.9 and a cosine schedule to 0 over every step.

    ``batches(epoch)`` yields the (inputs, labels) of one epoch.
    """
    optimizer = torch.optim.SGD(
        model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay
    )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, epochs * steps_per_epoch
    )
    model.train()
    for epoch in tqdm(range(epochs), desc=desc, disable=not verbose, leave=False):
        for inputs, labels in batches(epoch):
            optimizer.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(inputs), labels).backward()
            optimizer.step()
            schedule.step()
    model.eval()
    return model


def _shuffled_batches(n_samples, batch_size, seed):
    def batches_of(epoch):
        order = np.random.default_rng([seed, epoch]).permutation(n_samples)
        return [order[i : i + batch_size] for i in range(0, n_samples, batch_size)]

    return batches_of


class DigitsNetwork(nn.Module):
    """A small MLP on 8x8 digits; ``features`` is its last hidden layer."""

    def __init__(self, n_classes, hidden=128, n_features=64):
        super().__init__()
        self.features = nn.Sequential(
            nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, n_features), nn.ReLU()
        )
        self.head = nn.Linear(n_features, n_classes)

    def forward(self, x):
        return self.head(self.features(x))


def train_digits_network(X, y, *, epochs=60, seed=0, verbose=True):
    """Train the MLP on pixel features in [0, 16]; returns it frozen, on the CPU."""
    torch.manual_seed(seed)
    model = DigitsNetwork(int(y.max()) + 1)
    inputs = torch.as_tensor(X / 16.0, dtype=torch.float32)
    labels = torch.as_tensor(y)
    order = _shuffled_batches(len(y), 32, seed)

    def batches(epoch):
        return [(inputs[rows], labels[rows]) for rows in order(epoch)]

    return _sgd_epochs(
        model,
        batches,
        epochs,
        -(-len(y) // 32),
        lr=0.05,
        weight_decay=5e-4,
        desc="stage 1",
        verbose=verbose,
    )


def digits_features(model, X):
    with torch.no_grad():
        return model.features(torch.as_tensor(X / 16.0, dtype=torch.float32)).numpy()


def _augment(images, generator):
    """Random 32x32 crop of the 4-pixel zero-padded image and a horizontal flip."""
    padded = nn.functional.pad(images, (4, 4, 4, 4))
    n = len(images)
    offsets = torch.randint(0, 9, (n, 2), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5
    out = torch.empty_like(images)
    for i in range(n):
        top, left = offsets[i].tolist()
        crop = padded[i, :, top : top + 32, left : left + 32]
        out[i] = crop.flip(-1) if flips[i] else crop
    return out


def train_cifar_network(
    arch,
    images,
    y,
    *,
    epochs,
    batch_size=128,
    lr=0.1,
    weight_decay=5e-4,
    device="cpu",
    seed=0,
    verbose=True,
):
    """Train a CIFAR ResNet from scratch on uint8 images (N, 32, 32, 3).

    The inputs are normalised as skltr's CIFAR ResNets expect, so the trained
    weights go through ``FeatureExtractor(arch, weights=...)`` unchanged.
    Returns the state dict on the CPU.
    """
    torch.manual_seed(seed)
    model = getattr(models, arch)(num_classes=int(y.max()) + 1).to(device)
    # The ImageNet statistics, which skltr's CIFAR ResNets are normalised with;
    # timm is imported here, after the script has set HF_HUB_OFFLINE.
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    mean = torch.tensor(IMAGENET_DEFAULT_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_DEFAULT_STD).view(1, 3, 1, 1)
    pixels = torch.as_tensor(images).permute(0, 3, 1, 2).float().div_(255)
    pixels = (pixels - mean) / std
    labels = torch.as_tensor(y)
    order = _shuffled_batches(len(y), batch_size, seed)
    generator = torch.Generator().manual_seed(seed)

    def batches(epoch):
        for rows in order(epoch):
            rows = torch.as_tensor(rows)
            yield (
                _augment(pixels[rows], generator).to(device, non_blocking=True),
                labels[rows].to(device, non_blocking=True),
            )

    _sgd_epochs(
        model,
        batches,
        epochs,
        -(-len(y) // batch_size),
        lr=lr,
        weight_decay=weight_decay,
        desc=f"stage 1 ({arch})",
        verbose=verbose,
    )
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}
