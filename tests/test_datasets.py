import pickle
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import balanced_accuracy_score

from skltr import CRTClassifier, JointClassifier, NCMClassifier
from skltr.datasets import (
    load_cifar10_lt,
    load_cifar100_lt,
    load_digits_lt,
    load_split_list,
    make_long_tailed,
    make_long_tailed_features,
)
from skltr.metrics import shot_accuracy

SHARED = Path(__file__).parents[2] / "shared" / "data"
CIFAR10_ZIP = SHARED / "cifar10-jpeg" / "cifar10-jpeg.zip"
SPLIT_LISTS = SHARED / "lt-splits"

# --- make_long_tailed and digits ----------------------------------------------


def test_cifar100_lt_profile_has_10847_samples():
    y = np.repeat(np.arange(100), 500)
    kept = make_long_tailed(y, imbalance_ratio=100)
    counts = np.bincount(y[kept])
    assert len(kept) == 10847 and counts[0] == 500 and counts[-1] == 5
    # The CIFAR-LT profile: n_j = int(n_max * ratio^(-j / (C - 1))).
    expected = (500 * 100 ** (-np.arange(100) / 99)).astype(int)
    np.testing.assert_array_equal(counts, expected)


def test_cifar10_lt_profile_by_hand():
    y = np.repeat(np.arange(10), 5000)
    counts = np.bincount(y[make_long_tailed(y, imbalance_ratio=100)])
    assert counts.tolist() == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


def test_step_profile_and_random_subsets():
    y = np.repeat(np.arange(4), 100)
    kept = make_long_tailed(y, imbalance_ratio=10, profile="step")
    assert np.bincount(y[kept]).tolist() == [100, 100, 10, 10]
    first = make_long_tailed(y, imbalance_ratio=10)
    # None keeps each class's first samples, in data order.
    np.testing.assert_array_equal(first[first < 100], np.arange(100))
    assert np.all(np.diff(first[(first >= 300)]) == 1)
    seeded = make_long_tailed(y, imbalance_ratio=10, random_state=0)
    np.testing.assert_array_equal(
        seeded, make_long_tailed(y, imbalance_ratio=10, random_state=0)
    )
    assert not np.array_equal(seeded, first)
    assert np.array_equal(np.bincount(y[seeded]), np.bincount(y[first]))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(imbalance_ratio=0.5), "'imbalance_ratio' parameter"),
        (dict(imbalance_ratio=10, max_per_class=600), "has 500 samples"),
        (dict(imbalance_ratio=10, profile="linear"), "'profile' parameter"),
    ],
)
def test_make_long_tailed_rejects_bad_input(kwargs, message):
    y = np.repeat(np.arange(10), 500)
    with pytest.raises(ValueError, match=message):
        make_long_tailed(y, **kwargs)


def test_a_class_smaller_than_its_profile_is_named():
    y = np.repeat(np.arange(3), [100, 10, 100])
    with pytest.raises(ValueError, match="Class 1 has 10 samples.*asks for 31"):
        make_long_tailed(y, imbalance_ratio=10)


def test_digits_lt_is_long_tailed_and_balanced_on_the_test_side():
    X_train, X_test, y_train, y_test = load_digits_lt(imbalance_ratio=20)
    counts = np.bincount(y_train)
    assert counts[0] / counts[-1] == pytest.approx(20, rel=0.1)
    assert np.all(np.bincount(y_test) == 50)
    assert X_train.shape[1] == X_test.shape[1] == 64


# --- CIFAR-LT loaders ------------------------------------------------------------

PER_CLASS_TRAIN, PER_CLASS_TEST = 40, 3


def _fake_cifar(n_classes, seed=0):
    """Random CIFAR-shaped pixels and shuffled labels, train and test."""
    rng = np.random.default_rng(seed)
    splits = {}
    for split, per_class in (("train", PER_CLASS_TRAIN), ("test", PER_CLASS_TEST)):
        labels = rng.permutation(np.repeat(np.arange(n_classes), per_class))
        images = rng.integers(0, 256, size=(len(labels), 32, 32, 3), dtype=np.uint8)
        splits[split] = images, labels
    return splits


def _rows(images):
    """CIFAR's layout: one row of 3,072 bytes per image, channel-major."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), -1)


def _write_pickle(file, obj):
    with open(file, "wb") as out:
        pickle.dump(obj, out, protocol=2)


def _write_cifar10_pickles(folder, splits):
    folder.mkdir(parents=True)
    images, labels = splits["train"]
    for i, part in enumerate(np.array_split(np.arange(len(labels)), 5), start=1):
        _write_pickle(
            folder / f"data_batch_{i}",
            {"data": _rows(images[part]), "labels": labels[part].tolist()},
        )
    images, labels = splits["test"]
    _write_pickle(
        folder / "test_batch", {"data": _rows(images), "labels": labels.tolist()}
    )


def _write_image_folder(root, splits, class_names):
    """train/<class>/NNNN.png, numbered in data order, lossless."""
    for split, (images, labels) in splits.items():
        for label, name in enumerate(class_names):
            (root / split / name).mkdir(parents=True)
            for number, i in enumerate(np.flatnonzero(labels == label)):
                Image.fromarray(images[i]).save(
                    root / split / name / f"{number:04d}.png"
                )


def _expected(splits, imbalance_ratio):
    """The long-tailed training images, grouped by class in data order."""
    images, labels = splits["train"]
    keep = make_long_tailed(labels, imbalance_ratio=imbalance_ratio)
    return _by_class(images[keep], labels[keep])


def _by_class(images, labels):
    # Pickles keep CIFAR's data order, image folders list class by class;
    # within a class both keep data order.
    order = np.argsort(labels, kind="stable")
    return images[order], labels[order]


@pytest.fixture(scope="module")
def cifar10_sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar10")
    splits = _fake_cifar(10)
    _write_cifar10_pickles(root / "torchvision" / "cifar-10-batches-py", splits)
    with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as archive:
        archive.add(
            root / "torchvision" / "cifar-10-batches-py", arcname="cifar-10-batches-py"
        )
    names = [f"class{j}" for j in range(10)]
    _write_image_folder(root / "images", splits, names)
    shutil.make_archive(str(root / "images"), "zip", root, "images")
    return root, splits


def test_cifar10_lt_from_every_source_gives_the_same_images(cifar10_sources):
    root, splits = cifar10_sources
    X_expected, y_expected = _expected(splits, 10)
    sources = [
        root / "torchvision" / "cifar-10-batches-py",
        root / "torchvision",
        root / "cifar-10-python.tar.gz",
        root / "images",
        root / "images.zip",  # members under a top folder: images/train/...
    ]
    for source in sources:
        X_train, X_test, y_train, y_test = load_cifar10_lt(source, imbalance_ratio=10)
        X_train, y_train = _by_class(X_train, y_train)
        np.testing.assert_array_equal(X_train, X_expected, err_msg=str(source))
        np.testing.assert_array_equal(y_train, y_expected, err_msg=str(source))
        assert X_test.shape == (10 * PER_CLASS_TEST, 32, 32, 3)
        assert np.all(np.bincount(y_test) == PER_CLASS_TEST)
    assert np.bincount(y_expected).tolist() == [
        int(40 * 10 ** (-j / 9)) for j in range(10)
    ]


def test_cifar10_lt_paths_from_an_image_folder(cifar10_sources):
    root, splits = cifar10_sources
    paths, test_paths, y_train, _ = load_cifar10_lt(
        root / "images", imbalance_ratio=10, return_paths=True
    )
    X_expected, y_expected = _expected(splits, 10)
    np.testing.assert_array_equal(y_train, y_expected)
    assert Path(paths[0]).is_absolute() and len(test_paths) == 30
    np.testing.assert_array_equal(np.asarray(Image.open(paths[-1])), X_expected[-1])
    with pytest.raises(ValueError, match="needs a folder of image files"):
        load_cifar10_lt(root / "images.zip", return_paths=True)


def test_cifar100_lt_from_pickles(tmp_path):
    splits = _fake_cifar(100, seed=1)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for split in ("train", "test"):
        images, labels = splits[split]
        _write_pickle(
            folder / split,
            {
                "data": _rows(images),
                "fine_labels": labels.tolist(),
                "coarse_labels": (labels // 5).tolist(),
            },
        )
    X_train, X_test, y_train, y_test = load_cifar100_lt(tmp_path, imbalance_ratio=10)
    X_train, y_train = _by_class(X_train, y_train)
    X_expected, y_expected = _expected(splits, 10)
    np.testing.assert_array_equal(X_train, X_expected)
    np.testing.assert_array_equal(y_train, y_expected)
    assert len(X_test) == 300
    # CIFAR-10's pickles are not CIFAR-100.
    with pytest.raises(ValueError, match="holds no CIFAR data"):
        load_cifar10_lt(tmp_path)


def test_cifar_loaders_refuse_bad_data(tmp_path, cifar10_sources):
    root, _ = cifar10_sources
    with pytest.raises(ValueError, match="10 class folders.*has 100"):
        load_cifar100_lt(root / "images")
    short = tmp_path / "short"
    shutil.copytree(root / "images", short)
    for extra in sorted((short / "train" / "class1").iterdir())[5:]:
        extra.unlink()
    with pytest.raises(ValueError, match="Class 1 has 5 samples.*asks for 30"):
        load_cifar10_lt(short, imbalance_ratio=10)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_cifar10_lt(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="'imbalance_ratio' parameter"):
        load_cifar10_lt(root / "images", imbalance_ratio=0.5)


def test_a_corrupt_or_malicious_pickle_is_refused(tmp_path, cifar10_sources):
    root, _ = cifar10_sources
    corrupt = tmp_path / "corrupt" / "cifar-10-batches-py"
    shutil.copytree(root / "torchvision" / "cifar-10-batches-py", corrupt)
    data = (corrupt / "data_batch_3").read_bytes()
    (corrupt / "data_batch_3").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="data_batch_3 is not a readable CIFAR"):
        load_cifar10_lt(corrupt)

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            import os

            return os.mkdir, (str(marker),)

    malicious = tmp_path / "malicious" / "cifar-10-batches-py"
    shutil.copytree(root / "torchvision" / "cifar-10-batches-py", malicious)
    _write_pickle(malicious / "data_batch_1", {"data": Payload(), "labels": []})
    with pytest.raises(ValueError, match="asks to load (posix|os)\\.mkdir"):
        load_cifar10_lt(malicious)
    assert not marker.exists()


def test_a_corrupt_image_is_named(tmp_path, cifar10_sources):
    root, _ = cifar10_sources
    broken = tmp_path / "images"
    shutil.copytree(root / "images", broken)
    (broken / "test" / "class4" / "0001.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="Cannot decode the image .*class4/0001.png"):
        load_cifar10_lt(broken, imbalance_ratio=10)


@pytest.mark.skipif(not CIFAR10_ZIP.exists(), reason=f"{CIFAR10_ZIP} is absent")
def test_cifar10_lt_from_the_real_jpeg_zip():
    X_train, X_test, y_train, y_test = load_cifar10_lt(CIFAR10_ZIP, imbalance_ratio=100)
    assert np.bincount(y_train).tolist() == [
        5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50
    ]  # fmt: skip
    assert X_train.shape == (12406, 32, 32, 3) and X_train.dtype == np.uint8
    assert X_test.shape == (10000, 32, 32, 3)
    assert np.all(np.bincount(y_test) == 1000)


# --- split lists -----------------------------------------------------------------


@pytest.mark.skipif(not SPLIT_LISTS.exists(), reason=f"{SPLIT_LISTS} is absent")
def test_the_official_split_lists():
    paths, labels = load_split_list(SPLIT_LISTS / "Places_LT_train.txt")
    counts = np.bincount(labels)
    assert len(paths) == 62500 and len(counts) == 365
    assert counts.max() == 4980 and counts.min() == 5
    assert paths[0] == "train/airfield/00004851.jpg"
    _, test_labels = load_split_list(SPLIT_LISTS / "ImageNet_LT_test.txt")
    assert np.all(np.bincount(test_labels) == 50) and len(test_labels) == 50000
    _, inat = load_split_list(SPLIT_LISTS / "iNaturalist18_val.txt")
    assert len(inat) == 24426 and inat.max() < 8142


def test_split_list_joins_root_and_names_missing_files(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    for name in ("x.jpg", "y z.jpg"):
        (tmp_path / "train" / "a" / name).write_bytes(b"")
    listing = tmp_path / "list.txt"
    listing.write_text("train/a/x.jpg 3\ntrain/a/y z.jpg 0\n\n")
    paths, labels = load_split_list(listing, tmp_path)
    assert paths.tolist() == [
        str(tmp_path / "train/a/x.jpg"),
        str(tmp_path / "train/a/y z.jpg"),
    ]
    assert labels.tolist() == [3, 0] and labels.dtype == np.int64
    listing.write_text("train/a/x.jpg 3\ntrain/b/1.jpg 0\ntrain/b/2.jpg 1\n")
    with pytest.raises(FileNotFoundError, match="2 of the 3 files.*train/b/1.jpg"):
        load_split_list(listing, tmp_path)
    assert len(load_split_list(listing, tmp_path, check_files=False)[0]) == 3


@pytest.mark.parametrize(
    "text, message",
    [
        ("train/a/x.jpg 3\ntrain/a/y.jpg\n", "Line 2 .* is 'train/a/y.jpg'"),
        ("train/a/x.jpg cat\n", "Line 1 .*the label an integer"),
        ("\n\n", "lists no images"),
    ],
)
def test_split_list_rejects_malformed_lines(tmp_path, text, message):
    listing = tmp_path / "list.txt"
    listing.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_split_list(listing)


# --- synthetic features -----------------------------------------------------------


def test_long_tailed_features_sizes_and_profile():
    X, X_test, y, y_test = make_long_tailed_features(random_state=0)
    counts = np.bincount(y)
    assert X.shape == (10847, 64) and X.dtype == np.float32
    assert counts[0] == 500 and counts[-1] == 5 and np.all(np.diff(counts) <= 0)
    assert X_test.shape == (5000, 64) and np.all(np.bincount(y_test) == 50)
    # Any total, exactly: the remainder goes to the head classes.
    X, _, y, _ = make_long_tailed_features(
        20001, 8, 20, imbalance_ratio=50, n_test_per_class=0, random_state=0
    )
    counts = np.bincount(y)
    assert len(y) == len(X) == 20001 and np.all(np.diff(counts) <= 0)
    assert counts[0] / counts[-1] == pytest.approx(50, rel=0.1)


def test_long_tailed_features_are_reproducible_and_typed():
    a = make_long_tailed_features(500, 4, 5, imbalance_ratio=5, random_state=3)
    b = make_long_tailed_features(500, 4, 5, imbalance_ratio=5, random_state=3)
    for left, right in zip(a, b, strict=True):
        np.testing.assert_array_equal(left, right)
    half = make_long_tailed_features(500, 4, 5, imbalance_ratio=5, dtype=np.float16)
    assert half[0].dtype == half[1].dtype == np.float16
    with pytest.raises(ValueError, match="floating-point"):
        make_long_tailed_features(500, 4, 5, dtype=np.int32)
    with pytest.raises(ValueError, match="too few for 100 classes"):
        make_long_tailed_features(150, 4, 100, imbalance_ratio=100)


def test_class_separation_controls_difficulty():
    scores = []
    for class_sep in (2.0, 8.0):
        X, X_test, y, y_test = make_long_tailed_features(
            2000, 16, 10, imbalance_ratio=10, class_sep=class_sep, random_state=0
        )
        scores.append(
            balanced_accuracy_score(y_test, NCMClassifier().fit(X, y).predict(X_test))
        )
    assert scores[0] < 0.6 < 0.9 < scores[1]


def test_synthetic_features_are_a_long_tailed_problem():
    # A joint classifier favours the head; re-balancing lifts the tail.
    X, X_test, y, y_test = make_long_tailed_features(
        3000, 32, 20, imbalance_ratio=100, random_state=0
    )
    counts = np.bincount(y)
    scores = {
        name: shot_accuracy(
            y_test, clf.fit(X, y).predict(X_test), class_counts=counts, few=20
        )
        for name, clf in (
            ("joint", JointClassifier(device="cpu", random_state=0)),
            ("crt", CRTClassifier(device="cpu", random_state=0)),
        )
    }
    assert scores["crt"]["few"] > scores["joint"]["few"] + 0.1
    assert scores["crt"]["all"] > scores["joint"]["all"]
