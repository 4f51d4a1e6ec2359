"""The CIFAR ResNets of He et al. (2016), section 4.2: ResNet-20, 32, 44 and 56.

The long-tail literature trains these on CIFAR-10-LT and CIFAR-100-LT. The
parameter names follow the widely used pytorch_resnet_cifar10 release
(Idelbayev), so its checkpoints load as they are once the ``module.`` prefix of
``DataParallel`` is removed. The interface follows timm's: ``forward_features``,
``forward_head(x, pre_logits=True)`` and ``num_features``.
"""

import torch.nn.functional as F
from torch import nn

# ImageNet statistics: the normalisation the reference checkpoints were
# trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_STAGE_WIDTHS = (16, 32, 64)


class _BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus a shortcut, then ReLU.

    Where the shape changes the shortcut is the paper's option A: subsample by
    two and zero-pad the new channels, so the block adds no parameters.
    """

    def __init__(self, in_planes, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.pad_shortcut = stride != 1 or in_planes != planes
        self.planes = planes

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.pad_shortcut:
            pad = self.planes // 4
            x = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, pad, pad))
        return F.relu(out + x)


class CifarResNet(nn.Module):
    """A CIFAR ResNet with ``6 * blocks_per_stage + 2`` layers.

    Parameters
    ----------
    blocks_per_stage : int
        Basic blocks in each of the three stages (3 for ResNet-20, 5, 7, 9 for
        ResNet-32, 44, 56).
    num_classes : int, default=10
        Outputs of the final ``linear`` layer.

    Attributes
    ----------
    num_features : int
        Size of the pooled feature the head takes, 64.

    Examples
    --------
    >>> import torch
    >>> from skltr.models import cifar_resnet20
    >>> net = cifar_resnet20().eval()
    >>> net.forward_head(net.forward_features(torch.zeros(2, 3, 32, 32)),
    ...                  pre_logits=True).shape
    torch.Size([2, 64])
    """

    def __init__(self, blocks_per_stage, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, _STAGE_WIDTHS[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(_STAGE_WIDTHS[0])
        in_planes = _STAGE_WIDTHS[0]
        for stage, planes in enumerate(_STAGE_WIDTHS, start=1):
            blocks = []
            for index in range(blocks_per_stage):
                stride = 2 if stage > 1 and index == 0 else 1
                blocks.append(_BasicBlock(in_planes, planes, stride))
                in_planes = planes
            self.add_module(f"layer{stage}", nn.Sequential(*blocks))
        self.num_features = in_planes
        self.linear = nn.Linear(in_planes, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.kaiming_normal_(module.weight)

    def forward_features(self, x):
        """The last stage's feature map, (N, 64, H / 4, W / 4)."""
        x = F.relu(self.bn1(self.conv1(x)))
        return self.layer3(self.layer2(self.layer1(x)))

    def forward_head(self, x, pre_logits=False):
        """Global average pooling, then the linear head unless ``pre_logits``."""
        x = x.mean(dim=(2, 3))
        return x if pre_logits else self.linear(x)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


def cifar_resnet20(num_classes=10):
    """ResNet-20 for 32x32 images (0.27 M parameters)."""
    return CifarResNet(3, num_classes)


def cifar_resnet32(num_classes=10):
    """ResNet-32 for 32x32 images (0.46 M parameters)."""
    return CifarResNet(5, num_classes)


def cifar_resnet44(num_classes=10):
    """ResNet-44 for 32x32 images (0.66 M parameters)."""
    return CifarResNet(7, num_classes)


def cifar_resnet56(num_classes=10):
    """ResNet-56 for 32x32 images (0.85 M parameters)."""
    return CifarResNet(9, num_classes)
