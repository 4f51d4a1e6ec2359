"""GridSearchCV on a Dask cluster over a feature store, as docs/scaling.md says."""

import joblib
import numpy as np
import pytest
from _feature_store import assert_search_matches_local, write_store

from skltr.datasets import make_long_tailed_features
from skltr.distributed import FeatureStore, open_feature_store

distributed = pytest.importorskip(
    "dask.distributed", reason="needs dask[distributed]: pip install skltr[dask]"
)
from dask.sizeof import sizeof  # noqa: E402

# Slow: a local Dask cluster starts worker processes; CI runs them, the quick command
# does not.
pytestmark = pytest.mark.slow


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

    def on_cluster(search, store, y):
        with joblib.parallel_backend("dask"):
            return search.fit(store, y)

    assert_search_matches_local(X, y, tmp_path, on_cluster)


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
