"""Feature extraction across processes with ``torch.distributed``, into one store.

One process per GPU (``torchrun --nproc_per_node=N``) each extracts a
contiguous block of the images and writes its rows either into one ``.npy``
file at their offset (``layout="one_file"``) or into a file of its own
(``layout="per_process"``, for stores larger than one file should be).
:func:`open_feature_store` checks that every process finished and presents
the rows as one array, memory-mapped, which the classifiers read a chunk at
a time. Without an initialised process group the same call runs in one
process.

The store is a folder: the feature files (float32, one row per image, in the
order of the input) and ``store.json``, the manifest, written last, once
every process has written its rows.
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
_LAYOUTS = ("one_file", "per_process")


def _process_file(rank, world):
    return f"features-{rank:05d}-of-{world:05d}.npy"


def _block(rank, world, n_rows):
    """The rows process ``rank`` of ``world`` extracts."""
    return rank * n_rows // world, (rank + 1) * n_rows // world


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


def extract_sharded(extractor, X, path, *, layout="one_file"):
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
    layout : {"one_file", "per_process"}, default="one_file"
        ``"one_file"``: one ``features.npy`` that every process writes its
        rows into. ``"per_process"``: each process writes its rows to a file
        of its own, for stores larger than the file system or the object
        store likes one file to be; :func:`open_feature_store` presents the
        files as one array all the same.

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
    if layout not in _LAYOUTS:
        raise ValueError(f"layout must be one of {_LAYOUTS}; got {layout!r}.")
    rank, world = _rank_and_world()
    path = Path(path)
    n_rows = len(X)
    start, stop = _block(rank, world, n_rows)
    try:
        check_is_fitted(extractor)
    except NotFittedError:
        extractor.fit(_rows(X, 0, 1))
    n_features = extractor.n_features_out_
    if rank == 0:
        path.mkdir(parents=True, exist_ok=True)
        (path / _MANIFEST).unlink(missing_ok=True)
        if layout == "one_file":
            np.lib.format.open_memmap(
                path / _FEATURES,
                mode="w+",
                dtype=np.float32,
                shape=(n_rows, n_features),
            ).flush()
    _barrier()
    rows = (
        extractor.transform(_rows(X, start, stop))
        if stop > start
        else np.empty((0, n_features), np.float32)
    )
    if layout == "one_file":
        if stop > start:
            out = np.load(path / _FEATURES, mmap_mode="r+")
            out[start:stop] = rows
            out.flush()
            del out
    else:
        # Written under a temporary name and renamed: a file of this name is
        # always whole.
        temporary = path / f"{_process_file(rank, world)}.tmp"
        with open(temporary, "wb") as file:
            np.save(file, rows.astype(np.float32, copy=False))
        temporary.replace(path / _process_file(rank, world))
    _barrier()
    if rank == 0:
        manifest = {
            "n_rows": n_rows,
            "n_features": n_features,
            "processes": world,
            "layout": layout,
        }
        if layout == "per_process":
            blocks = (_block(r, world, n_rows) for r in range(world))
            manifest["files"] = [
                {"name": _process_file(r, world), "n_rows": block_stop - block_start}
                for r, (block_start, block_stop) in enumerate(blocks)
            ]
        (path / _MANIFEST).write_text(json.dumps(manifest))
    _barrier()
    return path


class FeatureStore:
    """The features of a store: read-only memory-mapped rows, passed by reference.

    What :func:`open_feature_store` returns. It indexes like one array
    (``store[rows]`` reads those rows from the files) and every skltr
    classifier fits on it directly, reading it a chunk at a time, whether
    the store is one file or one file per process. Pickled, it is its path:
    a process that unpickles it (a joblib, Dask or Ray worker) maps the same
    files instead of receiving a copy of the features, so the store must sit
    on a file system every worker sees. A plain ``numpy.memmap`` pickles as
    a copy of its data, and Dask's joblib backend sends such an array to
    every worker.

    Attributes
    ----------
    path : pathlib.Path
        The store's folder.
    arrays : list of numpy.memmap
        The feature files, mapped read-only, in row order: one, or one per
        process that wrote the store.
    shape, dtype, ndim
        Those of the rows as one array.
    """

    def __init__(self, path, arrays):
        self.path = Path(path)
        self.arrays = list(arrays)
        # Row offset of each file, and the total.
        self._offsets = np.concatenate([[0], np.cumsum([len(a) for a in arrays])])

    @property
    def shape(self):
        return (int(self._offsets[-1]), self.arrays[0].shape[1])

    @property
    def dtype(self):
        return self.arrays[0].dtype

    @property
    def ndim(self):
        return 2

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, key):
        columns = slice(None)
        if isinstance(key, tuple):
            key, *rest = key
            rest = [part for part in rest if part is not Ellipsis]
            if len(rest) > 1:
                raise IndexError(
                    "a FeatureStore is 2-D: index it as store[rows, columns]."
                )
            columns = rest[0] if rest else columns
        if len(self.arrays) == 1:
            return self.arrays[0][key, columns]
        if isinstance(key, (int, np.integer)):
            return self[[key], columns][0]
        rows = self._row_numbers(key)
        # Which file each row is in, and its row there.
        files = np.searchsorted(self._offsets, rows, side="right") - 1
        out = np.empty((len(rows), self.shape[1]), dtype=self.dtype)
        for index in np.unique(files):
            here = files == index
            # Increasing positions read a mapped file forward.
            out[here] = self.arrays[index][rows[here] - self._offsets[index]]
        return out[:, columns]

    def _row_numbers(self, key):
        """The non-negative row numbers a slice, mask or index array selects.

        Computed from the key alone: training gathers a batch this way, and
        a 10-million-row store must not allocate a row count's worth of
        indices per batch.
        """
        n_rows = len(self)
        if isinstance(key, slice):
            return np.arange(*key.indices(n_rows))
        rows = np.asarray(key)
        if rows.dtype == bool:
            if rows.shape != (n_rows,):
                raise IndexError(
                    f"a boolean mask of shape {rows.shape} does not match the "
                    f"{n_rows} rows of the store."
                )
            return np.flatnonzero(rows)
        if rows.ndim != 1:
            raise IndexError("index a FeatureStore's rows with a 1-D array.")
        rows = rows.astype(np.intp, copy=False)
        if rows.size and (rows.min() < -n_rows or rows.max() >= n_rows):
            raise IndexError(f"row index out of range for a store of {n_rows} rows.")
        return np.where(rows < 0, rows + n_rows, rows)

    def __array__(self, dtype=None, copy=None):
        if len(self.arrays) == 1 and not copy:
            # A view of the mapped file: its pages are read as they are used.
            return np.asarray(self.arrays[0], dtype=dtype)
        # Several files (or a copy asked for): the rows are read into memory.
        return np.asarray(self[:], dtype=dtype)

    def __reduce__(self):
        return open_feature_store, (str(self.path),)

    def __repr__(self):
        return (
            f"FeatureStore({str(self.path)!r}, shape={self.shape}, "
            f"files={len(self.arrays)})"
        )


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
        ``features.arrays`` are the mapped files.

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
    manifest_file = path / _MANIFEST
    if not manifest_file.is_file():
        raise FileNotFoundError(
            f"{path} holds no complete feature store ({_MANIFEST} is missing): "
            "the extraction did not finish in every process, or this machine "
            "does not see the folder (on a cluster, put the store on a file "
            "system every worker mounts at the same path). Run the extraction "
            "again if it did not finish."
        )
    manifest = json.loads(manifest_file.read_text())
    if manifest.get("layout", "one_file") == "one_file":
        files = [{"name": _FEATURES, "n_rows": manifest["n_rows"]}]
    else:
        files = manifest["files"]
        if len(files) != manifest["processes"]:
            raise ValueError(
                f"{manifest_file} says {manifest['processes']} processes wrote "
                f"the store but lists {len(files)} files: it does not describe "
                "this store. Run the extraction again."
            )
    arrays = []
    for entry in files:
        file = path / entry["name"]
        if not file.is_file():
            raise FileNotFoundError(
                f"{file}, which {manifest_file} lists, is missing: the store is "
                "incomplete. Run the extraction again."
            )
        array = np.load(file, mmap_mode="r")
        if array.shape != (entry["n_rows"], manifest["n_features"]):
            raise ValueError(
                f"{file} has shape {array.shape}, but {manifest_file} says "
                f"({entry['n_rows']}, {manifest['n_features']}): the store was "
                "changed after it was written. Run the extraction again."
            )
        arrays.append(array)
    if sum(len(a) for a in arrays) != manifest["n_rows"]:
        raise ValueError(
            f"The files of {path} hold {sum(len(a) for a in arrays)} rows, but "
            f"{manifest_file} says {manifest['n_rows']}. Run the extraction again."
        )
    return FeatureStore(path, arrays)
