"""Timing, and the device timed on, shared by the benchmark scripts."""

import time

import numpy as np
import torch


def torch_device(name):
    """The ``--device`` option as a ``torch.device``; "auto" is CUDA when there is
    one, else the CPU, as the estimators' ``device="auto"``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _wait_for_gpu():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(function, *args, **kwargs):
    """``function(*args, **kwargs)`` and the seconds it took.

    The clock starts once the GPU has finished earlier work and stops once it
    has finished the call's, so that queued kernels are counted where they
    belong.
    """
    _wait_for_gpu()
    start = time.perf_counter()
    result = function(*args, **kwargs)
    _wait_for_gpu()
    return result, time.perf_counter() - start


def timed_calls(function, *args, repeats=1, settle=0.0):
    """Median seconds of ``repeats`` calls, each after ``settle`` seconds idle."""
    seconds = []
    for _ in range(repeats):
        time.sleep(settle)
        seconds.append(timed(function, *args)[1])
    return float(np.median(seconds))


def timed_fit(estimator, X, y, repeats=1, settle=0.0):
    """Median seconds of ``repeats`` fits, each after ``settle`` seconds idle.

    ``estimator`` is left fitted.
    """
    return timed_calls(estimator.fit, X, y, repeats=repeats, settle=settle)


def timed_fit_against(reference, estimator, X, y, repeats=1, settle=0.0):
    """Median seconds of ``repeats`` fits of ``estimator``, each right after a
    fit of ``reference``, and the median ratio of each pair's times.

    The ratio of fits made back to back holds still where the machine's speed
    drifts between runs (a third, on a shared 2-core machine), as separate
    medians do not. Both estimators are left fitted.
    """
    seconds, ratios = [], []
    for _ in range(repeats):
        time.sleep(settle)
        _, reference_seconds = timed(reference.fit, X, y)
        time.sleep(settle)
        seconds.append(timed(estimator.fit, X, y)[1])
        ratios.append(seconds[-1] / reference_seconds)
    return float(np.median(seconds)), float(np.median(ratios))
