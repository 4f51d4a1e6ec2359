"""Long-tailed data sets."""

from ._long_tailed import load_digits_lt, make_long_tailed

__all__ = ["load_digits_lt", "make_long_tailed"]
