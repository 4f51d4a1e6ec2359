"""GridSearchCV on a local Ray instance over a feature store (joblib's Ray backend)."""

import joblib
import numpy as np
import pytest
from _feature_store import write_store
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from skltr import TauNormClassifier
from skltr.datasets import make_long_tailed_features
from skltr.distributed import FeatureStore, open_feature_store

ray = pytest.importorskip("ray", reason="needs ray: pip install skltr[ray]")
from ray.util.joblib import register_ray  # noqa: E402


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
    store = open_feature_store(write_store(X, tmp_path / "store"))
    search = GridSearchCV(
        TauNormClassifier(
            memory=str(tmp_path / "joint_cache"), device="cpu", random_state=0
        ),
        {"tau": [0.0, 0.5, 1.0]},
        cv=StratifiedKFold(3, shuffle=True, random_state=0),
        scoring="balanced_accuracy",
    )
    with joblib.parallel_backend("ray"):
        on_ray = clone(search).set_params(n_jobs=2).fit(store, y)
    local = (
        clone(search)
        .set_params(estimator__memory=str(tmp_path / "local_cache"))
        .fit(store, y)
    )
    assert on_ray.best_params_ == local.best_params_
    np.testing.assert_allclose(
        on_ray.cv_results_["mean_test_score"],
        local.cv_results_["mean_test_score"],
        rtol=0,
        atol=1e-12,
    )
    assert list((tmp_path / "joint_cache").rglob("output.pkl"))

    # A Ray task gets the store by reference: the worker maps the file. (The
    # function is defined here so that Ray ships it by value: the workers
    # cannot import the test module.)
    def _received(value):
        array = value.arrays[0] if isinstance(value, FeatureStore) else value
        return type(value).__name__, isinstance(array, np.memmap)

    received = ray.remote(_received)
    assert ray.get(received.remote(store)) == ("FeatureStore", True)
