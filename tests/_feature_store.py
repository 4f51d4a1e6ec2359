"""Feature stores written from features already computed, for the tests."""

import json

import numpy as np


def write_store(X, folder, n_files=1):
    """The folder that extract_sharded would have written for features ``X``.

    One file (``layout="one_file"``) or ``n_files`` files, as ``n_files``
    processes write with ``layout="per_process"``.
    """
    folder.mkdir()
    manifest = {"n_rows": X.shape[0], "n_features": X.shape[1], "processes": n_files}
    if n_files == 1:
        np.save(folder / "features.npy", X.astype(np.float32))
        manifest["layout"] = "one_file"
    else:
        files = []
        for rank, block in enumerate(np.array_split(X, n_files)):
            name = f"features-{rank:05d}-of-{n_files:05d}.npy"
            np.save(folder / name, block.astype(np.float32))
            files.append({"name": name, "n_rows": len(block)})
        manifest.update(layout="per_process", files=files)
    (folder / "store.json").write_text(json.dumps(manifest))
    return folder


def write_images_and_weights(root, n_images):
    """``n_images`` random PNGs and a CIFAR ResNet-20's random weights, in ``root``.

    Returns the image paths and the weights file, which every process of an
    extraction test loads, so that they all compute the same features.
    """
    import torch
    from PIL import Image
    from safetensors.torch import save_file

    from skltr.models import cifar_resnet20

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n_images):
        path = root / f"{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    torch.manual_seed(0)
    weights = root / "r20.safetensors"
    save_file(cifar_resnet20().state_dict(), weights)
    return paths, str(weights)


def assert_search_matches_local(X, y, folder, fit_on_backend):
    """A GridSearchCV over tau on a store of ``X``: on a backend, and locally.

    ``fit_on_backend(search, store, y)`` fits the search under the backend
    (with ``n_jobs`` set); the joint fits are cached in a folder of their
    own. Both must choose the same tau with the same scores. Returns the
    store.
    """
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    from skltr import TauNormClassifier
    from skltr.distributed import open_feature_store

    store = open_feature_store(write_store(X, folder / "store"))
    search = GridSearchCV(
        TauNormClassifier(
            memory=str(folder / "joint_cache"), device="cpu", random_state=0
        ),
        {"tau": [0.0, 0.5, 1.0]},
        cv=StratifiedKFold(3, shuffle=True, random_state=0),
        scoring="balanced_accuracy",
    )
    on_backend = fit_on_backend(clone(search).set_params(n_jobs=2), store, y)
    local = clone(search).set_params(estimator__memory=str(folder / "local_cache"))
    local.fit(store, y)
    assert on_backend.best_params_ == local.best_params_
    np.testing.assert_allclose(
        on_backend.cv_results_["mean_test_score"],
        local.cv_results_["mean_test_score"],
        rtol=0,
        atol=1e-12,
    )
    # The workers fit the joint classifiers into the shared cache folder.
    assert list((folder / "joint_cache").rglob("output.pkl"))
    return store
