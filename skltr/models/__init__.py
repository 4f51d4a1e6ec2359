"""Backbones that skltr provides itself, by name in :class:`skltr.FeatureExtractor`.

``"cifar_resnet20"``, ``"cifar_resnet32"``, ``"cifar_resnet44"`` and
``"cifar_resnet56"``: the CIFAR ResNets the long-tail literature uses on
CIFAR-10-LT and CIFAR-100-LT. Everything else comes from timm or torchvision.
"""

from ._cifar_resnet import (
    CifarResNet,
    cifar_resnet20,
    cifar_resnet32,
    cifar_resnet44,
    cifar_resnet56,
)

__all__ = [
    "CifarResNet",
    "cifar_resnet20",
    "cifar_resnet32",
    "cifar_resnet44",
    "cifar_resnet56",
]
