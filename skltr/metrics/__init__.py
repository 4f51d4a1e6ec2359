"""Metrics for long-tailed recognition: shot-split accuracies, scorers, diagnostics."""

from ._calibration import (
    expected_calibration_error,
    make_calibration_scorer,
    shot_calibration_error,
)
from ._logits import logits_magnitude, regularized_std
from ._relative import relative_accuracy
from ._scorer import make_shot_scorer
from ._shot import shot_accuracy, shot_report
from ._tau_sweep import tau_sweep

__all__ = [
    "expected_calibration_error",
    "logits_magnitude",
    "make_calibration_scorer",
    "make_shot_scorer",
    "regularized_std",
    "relative_accuracy",
    "shot_calibration_error",
    "shot_accuracy",
    "shot_report",
    "tau_sweep",
]
