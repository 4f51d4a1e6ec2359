"""GridSearchCV on a local Ray instance over a feature store (joblib's Ray backend)."""

import joblib
import numpy as np
import pytest
from _feature_store import assert_search_matches_local

from skltr.datasets import make_long_tailed_features
from skltr.distributed import FeatureStore

ray = pytest.importorskip("ray", reason="needs ray: pip install skltr[ray]")
from ray.util.joblib import register_ray  # noqa: E402

# Slow: a local Ray instance starts worker processes; CI runs them, the quick command
# does not.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_instance():
    # A small object store: the features travel by reference, not through it.
    ray.init(
        num_cpus=2,
        object_store_memory=100 * 2**20,
        include_dashboard=False,
        log_to_driver=False,
    )
    register_ray()
    yield
    ray.shutdown()


def test_grid_search_on_ray_matches_the_local_search(ray_instance, tmp_path):
    X, _, y, _ = make_long_tailed_features(4000, 64, 20, class_sep=5.0, random_state=0)

    def on_ray(search, store, y):
        with joblib.parallel_backend("ray"):
            return search.fit(store, y)

    store = assert_search_matches_local(X, y, tmp_path, on_ray)

    # A Ray task gets the store by reference: the worker maps the file. (The
    # function is defined here so that Ray ships it by value: the workers
    # cannot import the test module.)
    def _received(value):
        array = value.arrays[0] if isinstance(value, FeatureStore) else value
        return type(value).__name__, isinstance(array, np.memmap)

    received = ray.remote(_received)
    assert ray.get(received.remote(store)) == ("FeatureStore", True)
