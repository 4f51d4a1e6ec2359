"""Feature extraction across processes with ``torch.distributed``, into one store.

One process per GPU (``torchrun --nproc_per_node=N``) each extracts a
contiguous block of the images and writes its rows into one ``.npy`` file at
their offset; the classifiers then read the whole file as a single
memory-mapped array (``np.load(path, mmap_mode="r")``, or
:func:`open_feature_store`, which also checks that every process finished).
Without an initialised process group the same call runs in one process.

The store is a folder: ``features.npy`` (float32, one row per image, in the
order of the input) and ``store.json``, written last, once every process has
written its rows.
"""

import json
from pathlib import Path

import numpy as np
import torch.distributed as dist
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_is_fitted
from torch.utils.data import Dataset, Subset

__all__ = ["FeatureStore", "extract_sharded", "open_feature_store"]

_FEATURES = "features.npy"
_MANIFEST = "store.json"


def _rank_and_world():
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _rows(X, start, stop):
    """Rows ``start:stop`` of any input the extractor takes."""
    if isinstance(X, Dataset):
        return Subset(X, range(start, stop))
    return X[start:stop]


def _barrier():
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def extract_sharded(extractor, X, path):
    """Extract the features of ``X`` into a feature store, this process's share.

    Every process of the group calls this with the same ``X`` (paths, or any
    input :class:`~skltr.FeatureExtractor` takes) and the same ``path``.
    Process ``r`` of ``W`` extracts rows ``[r * N // W, (r + 1) * N // W)``
    on its extractor's device (give each its own, e.g.
    ``device=f"cuda:{local_rank}"``), and writes them in place.

    Parameters
    ----------
    extractor : FeatureExtractor
        Fitted, or fitted here on the first image. Every process must use the
        same model and weights (a weights file, or pretrained weights): a
        randomly initialised network differs between processes.
    X : sequence of images, length N
    path : str or path-like
        The store's folder; created by process 0.

    Returns
    -------
    path : pathlib.Path
        The store's folder, complete in every process when this returns.

    See Also
    --------
    open_feature_store : Reads the store as one memory-mapped array.

    Examples
    --------
    A script run as ``torchrun --nproc_per_node=2 extract.py``::

        import torch.distributed as dist
        from skltr import FeatureExtractor
        from skltr.distributed import extract_sharded

        dist.init_process_group("nccl")  # "gloo" on CPUs
        rank = dist.get_rank()
        extractor = FeatureExtractor("resnet50", weights="resnet50.safetensors",
                                     device=f"cuda:{rank}")
        extract_sharded(extractor, image_paths, "features_store")
    """
    rank, world = _rank_and_world()
    path = Path(path)
    n_rows = len(X)
    start, stop = rank * n_rows // world, (rank + 1) * n_rows // world
    try:
        check_is_fitted(extractor)
    except NotFittedError:
        extractor.fit(_rows(X, 0, 1))
    n_features = extractor.n_features_out_
    if rank == 0:
        path.mkdir(parents=True, exist_ok=True)
        (path / _MANIFEST).unlink(missing_ok=True)
        np.lib.format.open_memmap(
            path / _FEATURES, mode="w+", dtype=np.float32, shape=(n_rows, n_features)
        ).flush()
    _barrier()
    if stop > start:
        rows = extractor.transform(_rows(X, start, stop))
        out = np.load(path / _FEATURES, mmap_mode="r+")
        out[start:stop] = rows
        out.flush()
        del out
    _barrier()
    if rank == 0:
        manifest = {"n_rows": n_rows, "n_features": n_features, "processes": world}
        (path / _MANIFEST).write_text(json.dumps(manifest))
    _barrier()
    return path


class FeatureStore:
    """The features of a store: a read-only memory-mapped array, by reference.

    What :func:`open_feature_store` returns. It indexes like the array
    (``store[rows]`` reads those rows from the file) and every skltr
    classifier fits on it directly, reading it a chunk at a time. Pickled,
    it is its path: a process that unpickles it (a joblib, Dask or Ray
    worker) maps the same file instead of receiving a copy of the features,
    so the store must sit on a file system every worker sees. A plain
    ``numpy.memmap`` pickles as a copy of its data, and Dask's joblib
    backend sends such an array to every worker.

    Attributes
    ----------
    path : pathlib.Path
        The store's folder.
    array : numpy.memmap of shape (n_rows, n_features), float32
        The features, mapped read-only.
    shape, dtype, ndim
        Those of ``array``.
    """

    def __init__(self, path, array):
        self.path = Path(path)
        self.array = array

    @property
    def shape(self):
        return self.array.shape

    @property
    def dtype(self):
        return self.array.dtype

    @property
    def ndim(self):
        return self.array.ndim

    def __len__(self):
        return len(self.array)

    def __getitem__(self, key):
        return self.array[key]

    def __array__(self, dtype=None, copy=None):
        if copy:
            return np.array(self.array, dtype=dtype)
        # A view of the mapped file: its pages are read as they are used.
        return np.asarray(self.array, dtype=dtype)

    def __reduce__(self):
        return open_feature_store, (str(self.path),)

    def __repr__(self):
        return f"FeatureStore({str(self.path)!r}, shape={self.shape})"


def open_feature_store(path):
    """The features of a store, mapped read-only; pickled by reference.

    Parameters
    ----------
    path : str or path-like
        A folder written by :func:`extract_sharded`.

    Returns
    -------
    features : FeatureStore of shape (n_rows, n_features), float32
        Rows in the order of the extracted input; fit any classifier on it
        directly (it is read a chunk at a time), or search over it with
        ``GridSearchCV`` on a joblib, Dask or Ray backend (the workers map
        the file; each still holds the rows of its own fold in memory).
        ``features.array`` is the ``numpy.memmap``.

    Raises
    ------
    FileNotFoundError
        No store there, or one whose processes did not all finish (no
        manifest yet): re-run the extraction. On a worker of a cluster, the
        store's folder must be visible at the same path.

    Examples
    --------
    >>> import numpy as np, tempfile
    >>> from skltr import FeatureExtractor
    >>> from skltr.distributed import extract_sharded, open_feature_store
    >>> images = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3),
    ...                                            dtype=np.uint8)
    >>> extractor = FeatureExtractor("cifar_resnet20", pretrained=False,
    ...                              device="cpu", verbose=0)
    >>> folder = extract_sharded(extractor, images, tempfile.mkdtemp())
    >>> open_feature_store(folder).shape
    (5, 64)
    """
    path = Path(path)
    manifest = path / _MANIFEST
    if not manifest.is_file():
        raise FileNotFoundError(
            f"{path} holds no complete feature store ({_MANIFEST} is missing): "
            "the extraction did not finish in every process, or this machine "
            "does not see the folder (on a cluster, put the store on a file "
            "system every worker mounts at the same path). Run the extraction "
            "again if it did not finish."
        )
    expected = json.loads(manifest.read_text())
    features = np.load(path / _FEATURES, mmap_mode="r")
    if features.shape != (expected["n_rows"], expected["n_features"]):
        raise ValueError(
            f"{path / _FEATURES} has shape {features.shape}, but its manifest "
            f"says ({expected['n_rows']}, {expected['n_features']}): the store "
            "was changed after it was written. Run the extraction again."
        )
    return FeatureStore(path, features)
