"""Metrics for long-tailed recognition: shot-split accuracies, scorers, diagnostics."""

from ._logits import logits_magnitude, regularized_std
from ._relative import relative_accuracy
from ._scorer import make_shot_scorer
from ._shot import shot_accuracy, shot_report
from ._tau_sweep import tau_sweep

__all__ = [
    "logits_magnitude",
    "make_shot_scorer",
    "regularized_std",
    "relative_accuracy",
    "shot_accuracy",
    "shot_report",
    "tau_sweep",
]
