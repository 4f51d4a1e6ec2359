"""Caltech-101 from a zip archive or a folder: the balanced test split and bad data."""

import io
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from skltr.datasets import load_caltech101
from skltr.datasets._caltech import ArchiveImages

CALTECH = (
    Path(__file__).parents[2] / "shared" / "data" / "caltech101" / "caltech101.zip"
)


def _jpeg(mode="RGB", seed=0):
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "L": 1, "CMYK": 4}[mode]
    pixels = rng.integers(0, 256, (12, 16, channels), dtype=np.uint8)
    image = Image.fromarray(pixels[..., 0] if mode == "L" else pixels, mode)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    return buffer.getvalue()


def _write_caltech(folder, n_classes=101, sizes=None, top="caltech"):
    """A Caltech-101 layout of tiny JPEGs, with the background class."""
    root = folder / top / "101_ObjectCategories"
    sizes = sizes or {}
    for j in range(n_classes):
        (root / f"class_{j:03d}").mkdir(parents=True)
        for i in range(sizes.get(j, 4 + j % 3)):
            (root / f"class_{j:03d}" / f"image_{i:04d}.jpg").write_bytes(
                _jpeg(seed=j * 100 + i)
            )
    (root / "BACKGROUND_Google").mkdir()
    (root / "BACKGROUND_Google" / "image_0001.jpg").write_bytes(_jpeg())
    return folder / top


def _zip(folder, path):
    with zipfile.ZipFile(path, "w") as archive:
        for file in sorted(folder.rglob("*")):
            archive.write(file, file.relative_to(folder.parent))
    return path


@pytest.fixture(scope="module")
def caltech(tmp_path_factory):
    base = tmp_path_factory.mktemp("caltech")
    folder = _write_caltech(base)
    return folder, _zip(folder, base / "caltech101.zip")


def test_the_test_split_is_balanced_and_disjoint_from_training(caltech):
    folder, archive = caltech
    X, X_test, y, y_test, classes = load_caltech101(archive, test_per_class=2)
    assert len(classes) == 101 and "BACKGROUND_Google" not in classes
    assert list(classes) == sorted(classes)
    np.testing.assert_array_equal(np.bincount(y_test), np.full(101, 2))
    # Every other image trains: the classes keep their own sizes.
    np.testing.assert_array_equal(np.bincount(y), [4 + j % 3 - 2 for j in range(101)])
    assert not set(X.names) & set(X_test.names)
    # The folder gives the same split, as paths.
    paths, paths_test, y_folder, _, _ = load_caltech101(folder, test_per_class=2)
    np.testing.assert_array_equal(y_folder, y)
    assert [Path(p).name for p in paths_test] == [Path(n).name for n in X_test.names]
    # The seed draws the test images.
    _, other_test, _, _, _ = load_caltech101(archive, test_per_class=2, random_state=1)
    assert other_test.names != X_test.names


def test_archive_images_decode_index_slice_and_pickle(caltech, tmp_path):
    _, archive = caltech
    X, _, y, _, _ = load_caltech101(archive, test_per_class=2)
    image = X[0]
    assert isinstance(image, Image.Image) and image.mode == "RGB"
    subset = X[np.flatnonzero(y == 3)]
    assert isinstance(subset, ArchiveImages) and len(subset) == int((y == 3).sum())
    assert X[:5].names == X.names[:5]
    assert pickle.loads(pickle.dumps(X))[1].size == X[1].size
    # Grayscale and CMYK photographs (Caltech-101 has both) become RGB.
    with zipfile.ZipFile(tmp_path / "modes.zip", "w") as modes:
        modes.writestr("gray.jpg", _jpeg("L"))
        modes.writestr("cmyk.jpg", _jpeg("CMYK"))
    converted = ArchiveImages(tmp_path / "modes.zip", ["gray.jpg", "cmyk.jpg"])
    assert [converted[i].mode for i in range(2)] == ["RGB", "RGB"]


def test_bad_data_is_refused_naming_what_is_wrong(tmp_path):
    folder = _write_caltech(tmp_path / "a")
    (folder / "101_ObjectCategories" / "class_007" / "image_0001.jpg").write_bytes(
        b"not a jpeg"
    )
    X, X_test, _, _, _ = load_caltech101(
        _zip(folder, tmp_path / "corrupt.zip"), test_per_class=1
    )
    images = [*X.names, *X_test.names]
    corrupt = images.index("caltech/101_ObjectCategories/class_007/image_0001.jpg")
    source = X if corrupt < len(X) else X_test
    index = corrupt if corrupt < len(X) else corrupt - len(X)
    with pytest.raises(ValueError, match="Cannot read image .*class_007/image_0001"):
        source[index]
    with pytest.raises(ValueError, match="no training image in the classes"):
        load_caltech101(folder, test_per_class=4)
    shutil.rmtree(folder / "101_ObjectCategories" / "class_100")
    with pytest.raises(ValueError, match="has 100 classes"):
        load_caltech101(folder)
    (folder / "101_ObjectCategories" / "class_100").mkdir()
    with pytest.raises(ValueError, match=r"\['class_100'\].*hold no image"):
        load_caltech101(folder)
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as other:
        other.writestr("photos/cat/image_0001.jpg", _jpeg())
    with pytest.raises(ValueError, match="no 101_ObjectCategories"):
        load_caltech101(tmp_path / "other.zip")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="is not a zip archive"):
        load_caltech101(tmp_path / "notes.txt")
    with pytest.raises(FileNotFoundError):
        load_caltech101(tmp_path / "missing")


@pytest.mark.skipif(
    not CALTECH.exists(), reason="../shared/data/caltech101 is not on this machine"
)
def test_the_real_caltech101():
    X, X_test, y, y_test, classes = load_caltech101(CALTECH)
    assert (len(y), len(y_test), len(classes)) == (6657, 2020, 101)
    counts = np.bincount(y)
    assert counts.max() == 780 and counts.min() == 11
    assert {"Faces", "Faces_easy", "airplanes"} <= set(classes)
    assert X[0].mode == X_test[-1].mode == "RGB"
