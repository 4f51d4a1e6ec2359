"""Sharded extraction: two torchrun processes (gloo, CPU) write one store."""

import json
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from _feature_store import write_images_and_weights, write_store
from sklearn.base import clone

from skltr import FeatureExtractor, JointClassifier, NCMClassifier, TauNormClassifier
from skltr._backend import DeviceFeatures
from skltr.datasets import make_long_tailed_features
from skltr.distributed import FeatureStore, extract_sharded, open_feature_store

N_IMAGES = 23  # not a multiple of the process count


@pytest.fixture(scope="module")
def images_and_weights(tmp_path_factory):
    return write_images_and_weights(tmp_path_factory.mktemp("sharded"), N_IMAGES)


def _extractor(weights):
    return FeatureExtractor(
        "cifar_resnet20", weights=str(weights), device="cpu", num_workers=0
    )


def test_one_process_store_equals_transform(images_and_weights, tmp_path):
    paths, weights = images_and_weights
    store = extract_sharded(_extractor(weights), paths, tmp_path / "store")
    features = open_feature_store(store)
    assert isinstance(features, FeatureStore) and features.shape == (N_IMAGES, 64)
    assert [type(a) for a in features.arrays] == [np.memmap]
    expected = _extractor(weights).fit(paths).transform(paths)
    np.testing.assert_array_equal(features, expected)
    # Classifiers train on the store as it is.
    labels = np.arange(N_IMAGES) % 2
    JointClassifier(device="cpu", epochs=2).fit(features, labels)


@pytest.mark.slow  # torchrun starts two processes
@pytest.mark.parametrize("layout", ["one_file", "per_process"])
def test_torchrun_two_processes_write_one_store(images_and_weights, tmp_path, layout):
    paths, weights = images_and_weights
    worker = tmp_path / "worker.py"
    worker.write_text(
        textwrap.dedent(
            f"""
            import json, os, sys
            import torch.distributed as dist
            from skltr import FeatureExtractor
            from skltr.distributed import extract_sharded

            dist.init_process_group("gloo")
            paths = json.loads(open(sys.argv[1]).read())
            extractor = FeatureExtractor("cifar_resnet20", weights={str(weights)!r},
                                         device="cpu", num_workers=0)
            calls = []
            transform = extractor.transform
            extractor.transform = lambda X: calls.append(len(X)) or transform(X)
            extract_sharded(extractor, paths, sys.argv[2], layout={layout!r})
            with open(os.path.join(sys.argv[2], f"rank{{dist.get_rank()}}.json"),
                      "w") as out:
                json.dump(calls, out)
            dist.destroy_process_group()
            """
        )
    )
    listing = tmp_path / "paths.json"
    listing.write_text(json.dumps(paths))
    store = tmp_path / "store"
    result = subprocess.run(
        [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc_per_node=2", str(worker), str(listing), str(store),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    expected = _extractor(weights).fit(paths).transform(paths)
    features = open_feature_store(store)
    np.testing.assert_array_equal(features[:], expected)
    assert len(features.arrays) == (1 if layout == "one_file" else 2)
    # Each process extracted its own half (11 and 12 images), nothing more.
    shares = [json.loads((store / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert shares == [[11], [12]]


def test_an_unfinished_store_is_refused(images_and_weights, tmp_path):
    paths, weights = images_and_weights
    store = extract_sharded(_extractor(weights), paths[:4], tmp_path / "store")
    (store / "store.json").unlink()
    with pytest.raises(FileNotFoundError, match="did not finish in every process"):
        open_feature_store(store)
    with pytest.raises(FileNotFoundError, match="no complete feature store"):
        open_feature_store(tmp_path / "nowhere")


# -- stores of one file per process --------------------------------------------


@pytest.fixture
def gaussian_features():
    X, _, y, _ = make_long_tailed_features(600, 16, 5, random_state=0)
    return X.astype(np.float32), y


def test_a_store_of_several_files_indexes_as_one_array(gaussian_features, tmp_path):
    X, _ = gaussian_features
    store = open_feature_store(write_store(X, tmp_path / "store", n_files=3))
    assert len(store.arrays) == 3 and store.shape == X.shape and len(store) == 600
    for key in [slice(None), slice(150, 450), slice(10, 590, 7), [599, 0, 300, 200]]:
        np.testing.assert_array_equal(store[key], X[key])
    np.testing.assert_array_equal(store[-1], X[-1])
    np.testing.assert_array_equal(store[np.arange(600) % 7 == 0], X[::7])
    np.testing.assert_array_equal(store[[-600, -1]], X[[0, 599]])
    for out_of_range in ([600], [-601]):
        with pytest.raises(IndexError, match="out of range"):
            store[out_of_range]
    np.testing.assert_array_equal(store[100:300, 2:5], X[100:300, 2:5])
    np.testing.assert_array_equal(np.asarray(store), X)
    # Pickled, it is its path.
    assert len(pickle.dumps(store)) < 1_000
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(store))[:], X)


@pytest.mark.parametrize(
    "estimator",
    [
        JointClassifier(device="cpu", random_state=0, epochs=3),
        NCMClassifier(device="cpu"),
        TauNormClassifier(device="cpu", random_state=0, tau=0.5),
    ],
    ids=lambda e: type(e).__name__,
)
def test_classifiers_train_on_several_files_as_on_the_array(
    gaussian_features, tmp_path, estimator, monkeypatch
):
    X, y = gaussian_features
    store = open_feature_store(write_store(X, tmp_path / "store", n_files=3))
    served = []
    original = DeviceFeatures.__init__

    def recording_init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        served.append(self.resident)

    monkeypatch.setattr(DeviceFeatures, "__init__", recording_init)
    on_store = clone(estimator).fit(store, y)
    # The fit read the files a batch at a time: nothing was made resident.
    assert served and not any(served)
    on_array = clone(estimator).fit(X, y)
    # Streamed from the files, never made one array: the same model.
    for name in ("coef_", "intercept_", "centroids_"):
        if hasattr(on_array, name):
            np.testing.assert_allclose(
                getattr(on_store, name), getattr(on_array, name), rtol=1e-6, atol=1e-7
            )
    np.testing.assert_array_equal(on_store.predict(store), on_array.predict(X))


def test_training_on_several_files_streams_them(gaussian_features, tmp_path):
    X, y = gaussian_features
    store = open_feature_store(write_store(X, tmp_path / "store", n_files=2))
    data = DeviceFeatures(store, y, torch.device("cpu"))
    assert not data.resident  # read a batch at a time, not loaded whole


def test_broken_stores_are_refused(gaussian_features, tmp_path):
    X, _ = gaussian_features
    folder = write_store(X, tmp_path / "store", n_files=2)
    manifest = json.loads((folder / "store.json").read_text())

    (folder / "store.json").write_text(json.dumps({**manifest, "processes": 3}))
    with pytest.raises(ValueError, match="3 processes wrote the store but lists 2"):
        open_feature_store(folder)

    (folder / "store.json").write_text(json.dumps(manifest))
    (folder / "features-00001-of-00002.npy").unlink()
    with pytest.raises(FileNotFoundError, match="features-00001-of-00002.npy.*missing"):
        open_feature_store(folder)

    one = write_store(X, tmp_path / "one")
    (one / "features.npy").unlink()
    with pytest.raises(FileNotFoundError, match="features.npy.*missing"):
        open_feature_store(one)


def test_a_store_with_non_finite_features_is_refused(gaussian_features, tmp_path):
    X, y = gaussian_features
    X = X.copy()
    X[450, 3] = np.nan
    store = open_feature_store(write_store(X, tmp_path / "store", n_files=2))
    with pytest.raises(ValueError, match="NaN or infinity.*feature store"):
        JointClassifier(device="cpu").fit(store, y)
