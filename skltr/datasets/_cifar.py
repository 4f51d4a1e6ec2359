"""CIFAR-10-LT and CIFAR-100-LT from a user's copy of CIFAR.

Three forms of CIFAR are read, found from ``path``:

- the original python pickles: the folder ``cifar-10-batches-py`` or
  ``cifar-100-python`` (or the folder holding it, as torchvision leaves it), or
  the ``.tar.gz`` archive they come in;
- a folder of images ``train/<class>/*.jpg`` and ``test/<class>/*.jpg``;
- a zip archive of that folder (such as ``cifar10-jpeg.zip``).

The training half is cut to the long-tailed profile; the test half is the
balanced CIFAR test set.
"""

import codecs
import contextlib
import io
import pickle
import tarfile
import zipfile
from numbers import Real
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.utils._param_validation import Interval, StrOptions, validate_params

from ._long_tailed import PROFILES, make_long_tailed

try:  # numpy >= 2 moved the pickle helpers; CIFAR's pickles name the old module.
    from numpy._core import multiarray as _multiarray
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}

_CIFAR = {
    "cifar10": {
        "n_classes": 10,
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "label_key": "labels",
    },
    "cifar100": {
        "n_classes": 100,
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "label_key": "fine_labels",
    },
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts of numpy arrays, lists and strings, and nothing else.

    A pickle can run any code when it is loaded; CIFAR's hold only data, so
    everything that is not a numpy array or dtype is refused.
    """

    _ALLOWED = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("numpy.core.multiarray", "_reconstruct"): _multiarray._reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _multiarray._reconstruct,
        ("numpy.core.multiarray", "scalar"): _multiarray.scalar,
        ("numpy._core.multiarray", "scalar"): _multiarray.scalar,
        # Python 3 pickles of protocol 2 carry bytes as _codecs.encode(str).
        ("_codecs", "encode"): codecs.encode,
    }

    def find_class(self, module, name):
        try:
            return self._ALLOWED[module, name]
        except KeyError:
            raise pickle.UnpicklingError(
                f"it asks to load {module}.{name}; a CIFAR pickle holds only "
                "arrays, lists and strings, so it is not loaded"
            ) from None


def _read_pickle(stream, name):
    """A CIFAR batch as a dict with str keys; a clear error if it is not one."""
    try:
        # The batches were pickled by Python 2: latin1 reads its byte strings.
        batch = _ArrayUnpickler(stream, encoding="latin1").load()
    except Exception as error:
        raise ValueError(
            f"{name} is not a readable CIFAR pickle ({error}). Re-download or "
            "re-extract the archive."
        ) from error
    if not isinstance(batch, dict):
        raise ValueError(
            f"{name} holds a {type(batch).__name__}, not a CIFAR batch (a dict)."
        )
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}


def _batch_arrays(batch, name, label_key):
    try:
        data, labels = batch["data"], batch[label_key]
    except KeyError as missing:
        raise ValueError(
            f"{name} has no {missing} entry: it is not a batch of this CIFAR "
            f"(its keys are {sorted(batch)})."
        ) from None
    data = np.asarray(data, dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise ValueError(
            f"{name} has data of shape {data.shape} for {len(labels)} labels; a "
            "CIFAR batch has one row of 3,072 bytes per label."
        )
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, np.asarray(labels, dtype=np.int64)


def _from_pickles(read, spec):
    """``read(member)`` returns a binary stream of one pickle file."""
    splits = {}
    for split in ("train", "test"):
        parts = []
        for member in spec[split]:
            with read(member) as stream:
                batch = _read_pickle(stream, member)
            parts.append(_batch_arrays(batch, member, spec["label_key"]))
        splits[split] = tuple(np.concatenate(p) for p in zip(*parts, strict=True))
    return splits


def _pickle_folder_reader(folder):
    def read(member):
        file = folder / member
        if not file.is_file():
            raise FileNotFoundError(
                f"{file} is missing: a CIFAR python folder holds "
                "data_batch_1..5 and test_batch (CIFAR-10) or train and test "
                "(CIFAR-100)."
            )
        return open(file, "rb")

    return read


def _tar_reader(archive, spec):
    def read(member):
        name = f"{spec['folder']}/{member}"
        try:
            stream = archive.extractfile(name)
        except KeyError:
            stream = None
        if stream is None:
            raise ValueError(
                f"{archive.name} has no member {name}: it is not the CIFAR "
                "python archive for this data set."
            )
        return stream

    return read


def _image_members(names):
    """``(split, class, name)`` of every image name under train/ or test/."""
    found = []
    for name in names:
        parts = Path(name).parts
        if (
            len(parts) >= 3
            and parts[-3] in ("train", "test")
            and Path(name).suffix.lower() in IMAGE_SUFFIXES
        ):
            found.append((parts[-3], parts[-2], name))
    return sorted(found)


def _decode(data, name):
    try:
        with Image.open(io.BytesIO(data)) as image:
            return np.asarray(image.convert("RGB"))
    except Exception as error:
        raise ValueError(f"Cannot decode the image {name}: {error}") from error


def _from_images(names, n_classes, where):
    """Per split: (names, labels), labels from the sorted class folder names."""
    members = _image_members(names)
    splits = {}
    for split in ("train", "test"):
        of_split = [(c, n) for s, c, n in members if s == split]
        classes = sorted({c for c, _ in of_split})
        if len(classes) != n_classes:
            raise ValueError(
                f"{where} has {len(classes)} class folders under {split}/, "
                f"but this data set has {n_classes}: expected "
                f"{split}/<class>/<image> for each class."
            )
        index = {c: j for j, c in enumerate(classes)}
        splits[split] = (
            np.array([n for _, n in of_split], dtype=object),
            np.array([index[c] for c, _ in of_split], dtype=np.int64),
        )
    return splits


def _find_source(path, spec):
    """What ``path`` is: ("pickles", reader), ("folder", root) or ("zip", file)."""
    path = Path(path)
    if path.is_file():
        if zipfile.is_zipfile(path):
            return "zip", path
        if tarfile.is_tarfile(path):
            return "tar", path
        raise ValueError(
            f"{path} is neither a zip archive of images nor the CIFAR python "
            "tar.gz archive."
        )
    if not path.is_dir():
        raise FileNotFoundError(f"{path} does not exist.")
    for folder in (path, path / spec["folder"]):
        if (folder / spec["test"][0]).is_file():
            return "pickles", folder
    if (path / "train").is_dir() and (path / "test").is_dir():
        return "folder", path.resolve()
    raise ValueError(
        f"{path} holds no CIFAR data: expected the python pickles (a "
        f"{spec['folder']} folder), or train/<class>/*.jpg and "
        "test/<class>/*.jpg."
    )


@contextlib.contextmanager
def _image_files(kind, source):
    """The image names of a zip or folder source, and a reader of their bytes."""
    if kind == "zip":
        with zipfile.ZipFile(source) as archive:
            yield archive.namelist(), archive.read
    else:
        names = [
            str(p) for split in ("train", "test") for p in (source / split).rglob("*")
        ]
        yield names, lambda name: Path(name).read_bytes()


def _load_cifar_lt(path, name, imbalance_ratio, profile, random_state, return_paths):
    spec = _CIFAR[name]
    kind, source = _find_source(path, spec)
    if return_paths and kind != "folder":
        raise ValueError(
            f"return_paths=True needs a folder of image files, but {source} is "
            f"{'an archive' if kind in ('zip', 'tar') else 'the python pickles'}"
            "; extract the images to a folder, or load the pixels with "
            "return_paths=False."
        )

    def long_tailed(labels):
        return make_long_tailed(
            labels,
            imbalance_ratio=imbalance_ratio,
            profile=profile,
            random_state=random_state,
        )

    if kind in ("pickles", "tar"):
        if kind == "tar":
            with tarfile.open(source) as archive:
                splits = _from_pickles(_tar_reader(archive, spec), spec)
        else:
            splits = _from_pickles(_pickle_folder_reader(source), spec)
        (images, y_train), (X_test, y_test) = splits["train"], splits["test"]
        keep = long_tailed(y_train)
        return images[keep], X_test, y_train[keep], y_test
    with _image_files(kind, source) as (names, read):
        splits = _from_images(names, spec["n_classes"], source)
        keep = long_tailed(splits["train"][1])
        X = {"train": splits["train"][0][keep], "test": splits["test"][0]}
        if not return_paths:
            X = {
                split: np.stack([_decode(read(name), name) for name in names])
                for split, names in X.items()
            }
    return X["train"], X["test"], splits["train"][1][keep], splits["test"][1]


_LOADER_CONSTRAINTS = {
    "path": [str, Path],
    "imbalance_ratio": [Interval(Real, 1, None, closed="left")],
    "profile": [StrOptions(set(PROFILES))],
    "random_state": ["random_state"],
    "return_paths": ["boolean"],
}

_LOADER_DOC = """{title}

    The training half of {data} is cut to the long-tailed profile of
    :func:`make_long_tailed` (class j keeps ``int({n_max} * imbalance_ratio **
    (-j / {last}))`` images, {n_max} down to ``{n_max} / imbalance_ratio``); the
    test half is the balanced {data} test set ({n_test} per class). Nothing is
    downloaded: ``path`` is your copy.

    Parameters
    ----------
    path : str or path-like
        One of: the python pickles' folder ``{folder}`` (or the folder holding
        it, as torchvision leaves it); the ``.tar.gz`` archive they come in; a
        folder of images ``train/<class>/*.jpg`` and ``test/<class>/*.jpg``;
        or a zip archive of such a folder (possibly under a top folder).
    imbalance_ratio : float, default=100
        Largest over smallest class size, >= 1 (the papers use 10, 50, 100).
    profile : {{"exp", "step"}}, default="exp"
        The shape of the tail.
    random_state : int, RandomState instance or None, default=None
        None keeps the first images of each class (data order; file-name
        order for images), as the reference builders do; otherwise a random
        subset of each class.
    return_paths : bool, default=False
        Return file paths instead of pixels (a folder of images only), to
        hand to :class:`~skltr.FeatureExtractor`.

    Returns
    -------
    X_train, X_test : ndarray
        uint8 images of shape (n, 32, 32, 3), or paths (object arrays of str).
    y_train, y_test : ndarray of int
        Labels 0 to {last}: CIFAR's own labels for the pickles; for images,
        the index of the class folder in sorted order, which is CIFAR's order
        when the folders carry CIFAR's class names.

    Raises
    ------
    ValueError
        A path that holds no CIFAR, the wrong number of classes, a class with
        fewer images than the profile asks for, a corrupt pickle or image.

    See Also
    --------
    make_long_tailed : The profile.

    Examples
    --------
    >>> from skltr.datasets import {function}
    >>> X_train, X_test, y_train, y_test = {function}(
    ...     "{example}", imbalance_ratio=100)  # doctest: +SKIP
    >>> len(y_train)  # doctest: +SKIP
    {example_n}
    """


def _loader_doc(function, **values):
    function.__doc__ = _LOADER_DOC.format(function=function.__name__, **values)
    return function


@validate_params(_LOADER_CONSTRAINTS, prefer_skip_nested_validation=True)
def load_cifar10_lt(
    path, *, imbalance_ratio=100, profile="exp", random_state=None, return_paths=False
):
    return _load_cifar_lt(
        path, "cifar10", imbalance_ratio, profile, random_state, return_paths
    )


@validate_params(_LOADER_CONSTRAINTS, prefer_skip_nested_validation=True)
def load_cifar100_lt(
    path, *, imbalance_ratio=100, profile="exp", random_state=None, return_paths=False
):
    return _load_cifar_lt(
        path, "cifar100", imbalance_ratio, profile, random_state, return_paths
    )


_loader_doc(
    load_cifar10_lt,
    title="CIFAR-10-LT: long-tailed CIFAR-10 training images, balanced test set.",
    data="CIFAR-10",
    n_max=5000,
    last=9,
    n_test=1000,
    folder="cifar-10-batches-py",
    example="cifar10-jpeg.zip",
    example_n="12406",
)
_loader_doc(
    load_cifar100_lt,
    title="CIFAR-100-LT: long-tailed CIFAR-100 training images, balanced test set.",
    data="CIFAR-100",
    n_max=500,
    last=99,
    n_test=100,
    folder="cifar-100-python",
    example="cifar-100-python",
    example_n="10847",
)
