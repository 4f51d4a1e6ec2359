import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, settings

# Property-based tests (test_properties.py): "ci" is quick and repeatable, for
# the default run; "long" is for a developer, --hypothesis-profile=long.
_SLOW_EXAMPLES_ARE_FINE = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile(
    "ci",
    max_examples=6,
    derandomize=True,
    deadline=None,
    suppress_health_check=_SLOW_EXAMPLES_ARE_FINE,
)
settings.register_profile(
    "dev",
    max_examples=200,
    deadline=None,
    suppress_health_check=_SLOW_EXAMPLES_ARE_FINE,
)
settings.register_profile(
    "long",
    max_examples=2000,
    deadline=None,
    suppress_health_check=_SLOW_EXAMPLES_ARE_FINE,
)
settings.load_profile("ci")


def pytest_configure(config):
    # Under pytest-xdist every worker would start one PyTorch thread per CPU,
    # and the spinning OpenMP threads of the workers starve each other (the
    # suite ran 5x slower on 2 CPUs). Share the CPUs out instead.
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(workers)))


def long_tailed_gaussians(
    n_classes=10, n_features=16, n_max=1000, n_min=5, separation=1.5, seed=0
):
    """Class-conditional Gaussians, n_max down to n_min samples per class
    (exponential profile), and a balanced test set of 100 per class."""
    rng = np.random.default_rng(seed)
    counts = np.round(
        n_max * (n_min / n_max) ** (np.arange(n_classes) / (n_classes - 1))
    ).astype(int)
    means = rng.normal(size=(n_classes, n_features)) * separation
    y = np.repeat(np.arange(n_classes), counts)
    y_test = np.repeat(np.arange(n_classes), 100)
    X = means[y] + rng.normal(size=(len(y), n_features))
    X_test = means[y_test] + rng.normal(size=(len(y_test), n_features))
    return X.astype(np.float32), y, X_test.astype(np.float32), y_test


@pytest.fixture(scope="session")
def long_tailed():
    return long_tailed_gaussians()


@pytest.fixture(scope="session")
def small_problem():
    """A small 4-class problem for fast formula checks."""
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(4), [120, 60, 25, 10])
    X = rng.normal(size=(len(y), 6)) + 2.5 * np.eye(4, 6)[y]
    return X.astype(np.float32), y


@pytest.fixture
def chunks_of(monkeypatch):
    """``chunks_of(n_rows, module)`` makes ``module``'s passes over features
    (its ``iter_row_chunks``) take ``n_rows`` rows at a time, until the test
    ends (or ``patch``, a ``monkeypatch.context()``, does). It returns the
    list of the row counts of the passes made."""
    import skltr._backend

    original = skltr._backend.iter_row_chunks

    def use(n_rows, module, patch=monkeypatch):
        passes = []

        def small_chunks(rows, cols):
            passes.append(rows)
            return original(rows, cols, bytes_per_chunk=8 * cols * n_rows)

        patch.setattr(module, "iter_row_chunks", small_chunks)
        return passes

    return use


@pytest.fixture
def joint_fits(monkeypatch):
    """The training-set sizes of the JointClassifier fits made until the test ends
    (a list that grows as they are made; cached fits are not made)."""
    from skltr import JointClassifier

    fits = []
    original = JointClassifier.fit

    def counting_fit(self, X, y, sample_weight=None, **fit_params):
        fits.append(len(y))
        return original(self, X, y, sample_weight=sample_weight, **fit_params)

    monkeypatch.setattr(JointClassifier, "fit", counting_fit)
    return fits
