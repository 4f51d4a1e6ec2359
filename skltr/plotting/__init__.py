"""Plots of long-tailed classifiers (needs matplotlib: ``pip install 'skltr[plot]'``).

Each function draws on the Axes it is given (or a new figure's) and returns
it.
"""

from ._plots import (
    plot_per_class_accuracy,
    plot_reliability_diagram,
    plot_tau_sweep,
    plot_weight_norms,
)

__all__ = [
    "plot_per_class_accuracy",
    "plot_reliability_diagram",
    "plot_tau_sweep",
    "plot_weight_norms",
]
