"""Metrics for long-tailed recognition."""

from ._shot import shot_accuracy

__all__ = ["shot_accuracy"]
