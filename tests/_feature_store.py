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
