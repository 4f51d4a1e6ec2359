"""The official split lists of ImageNet-LT, Places-LT and iNaturalist 2018."""

from pathlib import Path

import numpy as np
from sklearn.utils._param_validation import validate_params


@validate_params(
    {"txt": [str, Path], "root": [None, str, Path], "check_files": ["boolean"]},
    prefer_skip_nested_validation=True,
)
def load_split_list(txt, root=None, *, check_files=True):
    """Image paths and labels from a split list of the long-tailed benchmarks.

    The Decoupling paper's code release defines ImageNet-LT, Places-LT and
    iNaturalist 2018 by text files with one ``relative/path.jpg label`` per
    line (``ImageNet_LT_train.txt``, ``Places_LT_test.txt``,
    ``iNaturalist18_val.txt``, ...). With the images of the data set on disk,
    this gives the official splits to hand to
    :class:`~skltr.FeatureExtractor`.

    Parameters
    ----------
    txt : str or path-like
        The split list.
    root : str or path-like, default=None
        The folder the list's relative paths start from (the data set's
        root, holding ``train/``, ``val/`` ...). None returns the paths as
        written, unchecked.
    check_files : bool, default=True
        With ``root``, check that every listed file exists, and raise if any
        is missing.

    Returns
    -------
    paths : ndarray of str, dtype object
        One path per line, joined to ``root`` when given.
    labels : ndarray of int64
        The class of each path.

    Raises
    ------
    ValueError
        A line that is not ``path label`` with an integer label (its number
        is given), or an empty list.
    FileNotFoundError
        Listed files missing under ``root``: how many, and the first ones.

    See Also
    --------
    load_cifar10_lt : CIFAR-10-LT, which has no list.

    Examples
    --------
    >>> import numpy as np
    >>> from skltr.datasets import load_split_list
    >>> paths, labels = load_split_list("Places_LT_train.txt")  # doctest: +SKIP
    >>> len(paths), np.bincount(labels).max()  # doctest: +SKIP
    (62500, 4980)
    """
    paths, labels = [], []
    with open(txt, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            fields = line.rsplit(maxsplit=1)
            try:
                if len(fields) != 2:
                    raise ValueError
                labels.append(int(fields[1]))
            except ValueError:
                raise ValueError(
                    f"Line {number} of {txt} is {line.strip()!r}; a split list "
                    "has one 'relative/path label' per line, the label an integer."
                ) from None
            paths.append(fields[0])
    if not paths:
        raise ValueError(f"{txt} lists no images.")
    if root is not None:
        root = Path(root)
        paths = [str(root / path) for path in paths]
        if check_files:
            missing = [path for path in paths if not Path(path).is_file()]
            if missing:
                raise FileNotFoundError(
                    f"{len(missing)} of the {len(paths)} files listed in {txt} "
                    f"are missing under {root}, e.g. {missing[:3]}. root must be "
                    "the folder the list's paths start from; check_files=False "
                    "skips this check."
                )
    return np.array(paths, dtype=object), np.array(labels, dtype=np.int64)
