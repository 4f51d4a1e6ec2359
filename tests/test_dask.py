"""GridSearchCV on a Dask cluster over a feature store, as docs/scaling.md says."""

import joblib
import numpy as np
import pytest
from _feature_store import write_store
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from skltr import TauNormClassifier
from skltr.datasets import make_long_tailed_features
from skltr.distributed import FeatureStore, open_feature_store

distributed = pytest.importorskip(
    "dask.distributed", reason="needs dask[distributed]: pip install skltr[dask]"
)
from dask.sizeof import sizeof  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def test_grid_search_on_a_dask_cluster_matches_the_local_search(cluster, tmp_path):
    X, _, y, _ = make_long_tailed_features(4000, 64, 20, class_sep=5.0, random_state=0)
    store = open_feature_store(write_store(X, tmp_path / "store"))
    assert isinstance(store, FeatureStore)
    search = GridSearchCV(
        TauNormClassifier(
            memory=str(tmp_path / "joint_cache"), device="cpu", random_state=0
        ),
        {"tau": [0.0, 0.5, 1.0]},
        cv=StratifiedKFold(3, shuffle=True, random_state=0),
        scoring="balanced_accuracy",
    )
    with joblib.parallel_backend("dask"):
        on_cluster = clone(search).set_params(n_jobs=2).fit(store, y)
    local = (
        clone(search)
        .set_params(estimator__memory=str(tmp_path / "local_cache"))
        .fit(store, y)
    )

    assert on_cluster.best_params_ == local.best_params_
    np.testing.assert_allclose(
        on_cluster.cv_results_["mean_test_score"],
        local.cv_results_["mean_test_score"],
        rtol=0,
        atol=1e-12,
    )
    # The workers fit the joint classifiers into the shared cache folder.
    assert list((tmp_path / "joint_cache").rglob("output.pkl"))


def _received(value):
    """What a worker's task gets for ``value``: its type, and whether mapped."""
    array = value.arrays[0] if isinstance(value, FeatureStore) else value
    return type(value).__name__, isinstance(array, np.memmap)


def test_a_store_reaches_a_worker_by_reference_a_memmap_as_a_copy(cluster, tmp_path):
    X = np.random.default_rng(0).normal(size=(2000, 64)).astype(np.float32)
    store = open_feature_store(write_store(X, tmp_path / "store"))
    # joblib's Dask backend scatters (sends to the workers' memory) every
    # argument dask sizes above 1 kB: the plain memmap, not the store.
    assert sizeof(store) < 1e3 <= sizeof(store.arrays[0])
    assert cluster.submit(_received, store).result() == ("FeatureStore", True)
    # Scattered, a plain memmap is an in-memory copy on the workers.
    [scattered] = cluster.scatter([store.arrays[0]], hash=False)
    assert cluster.submit(_received, scattered).result() == ("ndarray", False)
