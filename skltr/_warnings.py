"""Warnings that point at the user's line, not at skltr's."""

import os
import sys
import warnings
from pathlib import Path

import joblib
import sklearn

from .exceptions import SkltrWarning

# Frames in these packages are skipped: skltr itself, and scikit-learn and
# joblib, through which GridSearchCV and cross_validate call a fit.
_INTERNAL = tuple(
    str(Path(file).resolve().parent) + os.sep
    for file in (__file__, sklearn.__file__, joblib.__file__)
)


def warn(message, category=SkltrWarning):
    """``warnings.warn`` attributed to the first caller outside skltr.

    How deep inside skltr a warning is raised depends on the path that
    reached it (``fit`` through scikit-learn's wrapper, then one private
    helper or two), so a fixed ``stacklevel`` points at a line of skltr from
    some of them.
    """
    frame, level = sys._getframe(1), 1
    while frame is not None and str(
        Path(frame.f_code.co_filename).resolve()
    ).startswith(_INTERNAL):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level + 1)
