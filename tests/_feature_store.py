"""A feature store written from features already computed, for the tests."""

import json

import numpy as np


def write_store(X, folder):
    """The folder that extract_sharded would have written for features ``X``."""
    folder.mkdir()
    out = np.lib.format.open_memmap(
        folder / "features.npy", mode="w+", dtype=np.float32, shape=X.shape
    )
    out[:] = X
    out.flush()
    manifest = {"n_rows": X.shape[0], "n_features": X.shape[1], "processes": 1}
    (folder / "store.json").write_text(json.dumps(manifest))
    return folder
