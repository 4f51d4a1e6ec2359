"""Caltech-101 from a user's copy: naturally long-tailed, with a balanced test split.

Caltech-101 (Fei-Fei, Fergus and Perona, 2004) holds 101 object classes of
31 (inline skates) to 800 (airplanes) photographs each: a long tail that no
one cut. It is read from ``101_ObjectCategories/<class>/<image>`` in a folder
or a zip archive (possibly under a top folder); the background class
``BACKGROUND_Google`` is left out, as in the standard 101-class setting,
which also keeps ``Faces`` and ``Faces_easy``, two near-duplicate classes of
the same faces.
"""

import io
import zipfile
from numbers import Integral
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, validate_params

from .._images import open_image
from ._cifar import IMAGE_SUFFIXES

ROOT = "101_ObjectCategories"
BACKGROUND = "BACKGROUND_Google"
N_CLASSES = 101


class ArchiveImages(torch.utils.data.Dataset):
    """Images of a zip archive, read and decoded one at a time, as RGB PIL images.

    Picklable: each process (a ``DataLoader`` worker) opens the archive
    itself. An image that does not decode raises a ValueError naming it.

    Parameters
    ----------
    archive : path-like
        The zip file.
    names : sequence of str
        The members, in order. Indexing with a slice or an array of indices
        gives the images of those members, as NumPy indexing does.
    """

    def __init__(self, archive, names):
        self.archive = Path(archive)
        self.names = list(names)
        self._zip = None

    def __len__(self):
        return len(self.names)

    def __getitem__(self, index):
        """Image ``index``; a slice or an array of indices gives their subset."""
        if isinstance(index, slice):
            return ArchiveImages(self.archive, self.names[index])
        if not isinstance(index, Integral) and np.ndim(index) == 1:
            return ArchiveImages(self.archive, np.asarray(self.names)[index])
        if self._zip is None:
            self._zip = zipfile.ZipFile(self.archive)
        name = self.names[index]
        # As FeatureExtractor reads an image file, so that a photograph is the
        # same from the archive as from a folder.
        return open_image(io.BytesIO(self._zip.read(name)), name, str(self.archive))

    def __getstate__(self):
        return {"archive": self.archive, "names": self.names, "_zip": None}


def _class_images(names, where):
    """{class: sorted image names} under ``101_ObjectCategories/``."""
    classes = {}
    for name in names:
        parts = PurePosixPath(name).parts
        if ROOT not in parts:
            continue
        below = parts[parts.index(ROOT) + 1 :]
        if len(below) == 1 and name.endswith("/"):
            classes.setdefault(below[0], [])  # a folder entry of the zip
        elif len(below) == 2 and PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES:
            classes.setdefault(below[0], []).append(name)
    classes.pop(BACKGROUND, None)
    if not classes:
        raise ValueError(
            f"{where} holds no {ROOT}/<class>/<image> files: expected the "
            f"Caltech-101 folder {ROOT} (at its top or under one folder)."
        )
    empty = sorted(c for c, images in classes.items() if not images)
    if empty:
        raise ValueError(
            f"{where}: the class folders {empty} under {ROOT} hold no image."
        )
    return {c: sorted(images) for c, images in sorted(classes.items())}


def _folder_names(folder):
    root = next(
        (p for p in (folder / ROOT, *folder.glob(f"*/{ROOT}")) if p.is_dir()), None
    )
    if root is None:
        return []
    names = [str(p.as_posix()) for p in root.glob("*/*") if p.is_file()]
    names += [str(p.as_posix()) + "/" for p in root.iterdir() if p.is_dir()]
    return names


@validate_params(
    {
        "path": [str, Path],
        "test_per_class": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    },
    prefer_skip_nested_validation=True,
)
def load_caltech101(path, *, test_per_class=20, random_state=0):
    """Caltech-101: 101 naturally long-tailed classes and a balanced test split.

    ``test_per_class`` photographs of every class, drawn at random, are the
    test set; all the others are the training set, so the training classes
    keep Caltech-101's own tail (780 down to 11 with the default 20). No
    photograph is in both. The background class is left out; ``Faces`` and
    ``Faces_easy`` (near-duplicates) are kept, as in the standard setting.
    Nothing is downloaded: ``path`` is your copy.

    Parameters
    ----------
    path : str or path-like
        A zip archive or a folder holding ``101_ObjectCategories/<class>/``
        (at its top or under one folder), such as ``caltech101.zip``.
    test_per_class : int, default=20
        Test photographs per class; every class must have more.
    random_state : int, RandomState instance or None, default=0
        Draws the test photographs of each class.

    Returns
    -------
    X_train, X_test : ndarray of str or ArchiveImages
        For a folder, the image paths (object arrays); for a zip archive, a
        ``torch.utils.data.Dataset`` of RGB PIL images read from it one at a
        time. Either goes to :class:`~skltr.FeatureExtractor` as it is.
    y_train, y_test : ndarray of int
        The index of each image's class in the sorted class names.
    classes : ndarray of str
        The 101 class names, in label order.

    Raises
    ------
    ValueError
        No ``101_ObjectCategories`` in ``path``, an empty class folder, a
        number of classes other than 101, a class with no more photographs
        than ``test_per_class``.

    Examples
    --------
    >>> from skltr.datasets import load_caltech101
    >>> X_train, X_test, y_train, y_test, classes = load_caltech101(
    ...     "caltech101.zip")  # doctest: +SKIP
    >>> len(y_train), len(y_test), len(classes)  # doctest: +SKIP
    (6657, 2020, 101)
    """
    path = Path(path)
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise ValueError(f"{path} is not a zip archive.")
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    elif path.is_dir():
        names = _folder_names(path)
    else:
        raise FileNotFoundError(f"{path} does not exist.")
    classes = _class_images(names, path)
    if len(classes) != N_CLASSES:
        raise ValueError(
            f"{path} has {len(classes)} classes under {ROOT} (the background "
            f"class left out); Caltech-101 has {N_CLASSES}."
        )
    small = {
        c: len(images) for c, images in classes.items() if len(images) <= test_per_class
    }
    if small:
        raise ValueError(
            f"test_per_class={test_per_class} leaves no training image in the "
            f"classes {small}; choose a smaller test_per_class."
        )
    rng = check_random_state(random_state)
    split = {"train": ([], []), "test": ([], [])}
    for label, images in enumerate(classes.values()):
        test = np.zeros(len(images), dtype=bool)
        test[rng.choice(len(images), test_per_class, replace=False)] = True
        for part, chosen in (("train", ~test), ("test", test)):
            split[part][0].extend(np.asarray(images)[chosen])
            split[part][1].extend([label] * int(chosen.sum()))
    out = []
    for part in ("train", "test"):
        files, _ = split[part]
        out.append(
            ArchiveImages(path, files)
            if path.is_file()
            else np.array(files, dtype=object)
        )
    return (
        out[0],
        out[1],
        np.array(split["train"][1], dtype=np.int64),
        np.array(split["test"][1], dtype=np.int64),
        np.array(list(classes), dtype=object),
    )
