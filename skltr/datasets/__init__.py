"""Long-tailed data sets: builders, loaders and a synthetic generator."""

from ._caltech import load_caltech101
from ._cifar import load_cifar10_lt, load_cifar100_lt
from ._long_tailed import load_digits_lt, make_long_tailed
from ._split_list import load_split_list
from ._synthetic import make_long_tailed_features

__all__ = [
    "load_caltech101",
    "load_cifar100_lt",
    "load_cifar10_lt",
    "load_digits_lt",
    "load_split_list",
    "make_long_tailed",
    "make_long_tailed_features",
]
