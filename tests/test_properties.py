"""Property-based tests (hypothesis): no silent NaN, whatever the features.

Every public classifier of ``skltr.__all__`` (found there, so that a classifier
added later is covered without editing this file) is fit on small
long-tailed problems with unusual but legal features: any scale from 1e-8 to
1e8, float16 / float32 / float64 arrays, memory-mapped arrays and tensors,
with constant, zero, duplicated and near-duplicate columns and rows, and
integer or string labels. Either ``fit`` raises a ``ValueError`` that says
what is wrong, or the fitted classifier's probabilities are finite,
non-negative and sum to one, its decision function is finite, its
predictions are classes it knows, and a second fit with the same
``random_state`` gives the same model.

The hypothesis profiles are in ``conftest.py``: "ci", the default, runs a few
examples per classifier, derandomised, so that the default run is quick and
repeatable; "dev" runs 200 per test and "long" 2,000, random::

    python -m pytest tests/test_properties.py --hypothesis-profile=long -n auto
"""

import os
import tempfile
import warnings

import numpy as np
import pytest
import torch
from _estimators import CLASSIFIERS
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from sklearn.base import clone

from skltr import FeatureExtractor

#: What each generated column is.
COLUMN_KINDS = ("informative", "noise", "constant", "zero", "duplicate", "near")


@st.composite
def long_tailed_features(draw):
    """(X, y): a small long-tailed problem with degenerate columns and rows.

    X is a float16, float32 or float64 array, a memory-mapped array (a path
    to open, see :func:`as_container`) or a tensor; y holds ints or strings.
    """
    n_classes = draw(st.integers(2, 50))
    n_max = draw(st.integers(1, 300))
    n_min = draw(st.integers(1, n_max))
    # An exponential profile from n_max down to n_min samples per class.
    counts = np.round(
        n_max * (n_min / n_max) ** (np.arange(n_classes) / max(1, n_classes - 1))
    ).astype(int)
    n_features = draw(st.integers(1, 64))
    scale = 10.0 ** draw(st.floats(-8, 8))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    y = np.repeat(np.arange(n_classes), counts)
    kinds = draw(
        st.lists(
            st.sampled_from(COLUMN_KINDS), min_size=n_features, max_size=n_features
        )
    )
    means = rng.normal(size=(n_classes, n_features)) * 2.0
    X = rng.normal(size=(len(y), n_features))
    for j, kind in enumerate(kinds):
        if kind == "informative":
            X[:, j] += means[y, j]
        elif kind == "constant":
            X[:, j] = rng.normal()
        elif kind == "zero":
            X[:, j] = 0.0
        elif kind in ("duplicate", "near") and j > 0:
            X[:, j] = X[:, rng.integers(j)]
            if kind == "near":
                X[:, j] *= 1.0 + 1e-7 * rng.normal(size=len(y))
    rows = draw(st.sampled_from(["distinct", "duplicated", "identical"]))
    if rows == "duplicated":
        # Half the rows copy another row (of any class).
        copies = rng.random(len(y)) < 0.5
        X[copies] = X[rng.integers(len(y), size=copies.sum())]
    elif rows == "identical":
        X[:] = X[0]
    X *= scale
    dtype = draw(st.sampled_from([np.float16, np.float32, np.float64]))
    with np.errstate(over="ignore"):
        X = X.astype(dtype)
    container = draw(st.sampled_from(["array", "memmap", "tensor"]))
    if draw(st.booleans()):
        y = np.array([f"class {label:02d}" for label in y])
    else:
        y = 7 * y - 3
    return X, y, container


def as_container(X, container, folder):
    """``X`` as the array, memory-mapped array or tensor ``container`` names."""
    if container == "tensor":
        return torch.from_numpy(X)
    if container == "memmap":
        path = os.path.join(folder, "X.npy")
        np.save(path, X)
        return np.load(path, mmap_mode="r")
    return X


def make(estimator_class):
    """The classifier with its defaults, on the CPU, seeded where it draws."""
    estimator = estimator_class()
    params = estimator.get_params()
    if "estimator" in params and params["estimator"] is None:
        # A meta-estimator: around a seeded JointClassifier, its default.
        from skltr import JointClassifier

        estimator.set_params(estimator=make(JointClassifier))
    if "device" in params:
        estimator.set_params(device="cpu")
    if "random_state" in params:
        estimator.set_params(random_state=0)
    return estimator


def fit_or_explain(estimator, X, y):
    """The fitted estimator, or None when fit raised a ValueError with a message."""
    with warnings.catch_warnings():
        # Warnings are allowed (a choice the training set cannot make, for
        # one); this test is about what the fit returns.
        warnings.simplefilter("ignore")
        try:
            return estimator.fit(X, y)
        except ValueError as error:
            assert len(str(error)) > 20, f"unhelpful error: {error!r}"
            return None


@pytest.mark.parametrize("estimator_class", CLASSIFIERS, ids=lambda c: c.__name__)
@given(problem=long_tailed_features())
def test_fit_gives_finite_probabilities_or_explains(estimator_class, problem):
    X, y, container = problem
    with tempfile.TemporaryDirectory() as folder:
        X = as_container(X, container, folder)
        estimator = fit_or_explain(make(estimator_class), X, y)
        if estimator is None:
            return
        proba = estimator.predict_proba(X)
        assert proba.shape == (len(y), len(np.unique(y)))
        assert np.all(np.isfinite(proba)), "predict_proba is not finite"
        assert np.all(proba >= 0)
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-5)
        scores = estimator.decision_function(X)
        assert np.all(np.isfinite(scores)), "decision_function is not finite"
        assert np.all(np.isin(estimator.predict(X), estimator.classes_))
        again = fit_or_explain(clone(estimator), X, y)
        np.testing.assert_array_equal(again.decision_function(X), scores)
        del X  # the memory map, before its folder goes


# FeatureExtractor: images of any size and PIL mode, from files (PNG, JPEG,
# animated GIF, truncated or empty) or in memory; float pixel arrays with NaN.

IMAGE_MODES = ("L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "F")
#: How an image reaches the extractor; the last two are broken files.
IMAGE_SOURCES = ("pil", "png", "jpeg", "exif", "gif", "truncated", "empty")


@st.composite
def images(draw):
    """(source, PIL image): an image of any size and mode, and how it is given.

    The source is one of :data:`IMAGE_SOURCES`: in memory, or a file written
    by :func:`save` (PNG, JPEG, a JPEG with an EXIF orientation, an animated
    GIF, a truncated file or an empty one).
    """
    width, height = draw(
        st.one_of(
            st.tuples(st.integers(1, 64), st.integers(1, 64)),
            # Very wide or very tall.
            st.tuples(st.integers(1, 3), st.integers(200, 2000)),
            st.tuples(st.integers(200, 2000), st.integers(1, 3)),
        )
    )
    mode = draw(st.sampled_from(IMAGE_MODES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    grey = rng.random((height, width))
    if mode == "I;16":
        image = Image.fromarray((grey * 65535).astype(np.uint16))
    elif mode == "F":
        image = Image.fromarray((grey * 255).astype(np.float32))
    else:
        rgb = (rng.random((height, width, 3)) * 255).astype(np.uint8)
        image = Image.fromarray(rgb).convert(mode)
    return draw(st.sampled_from(IMAGE_SOURCES)), image


def save(source, image, path):
    """Write ``image`` as ``source`` says; returns the path."""
    if source == "empty":
        open(path, "wb").close()
        return path
    if source == "gif":
        frames = [image.convert("P"), image.convert("L").convert("P")]
        frames[0].save(path, format="GIF", save_all=True, append_images=frames[1:])
        return path
    savable = image if image.mode in ("L", "RGB") else image.convert("RGB")
    if source == "exif":
        # A JPEG as cameras write it: pixels as shot, and an orientation.
        exif = savable.getexif()
        exif[0x0112] = 1 + sum(image.size) % 8
        savable.save(path, format="JPEG", exif=exif.tobytes())
        return path
    savable.save(path, format="JPEG" if source == "jpeg" else "PNG")
    if source == "truncated":
        with open(path, "r+b") as file:
            file.truncate(max(1, os.path.getsize(path) // 2))
    return path


@pytest.fixture(scope="module")
def extractor():
    return FeatureExtractor(
        "cifar_resnet20", pretrained=False, device="cpu", num_workers=0, verbose=0
    ).fit([Image.new("RGB", (8, 8))])


@given(items=st.lists(images(), min_size=1, max_size=4))
def test_extractor_features_are_finite_or_the_error_names_the_image(extractor, items):
    with tempfile.TemporaryDirectory() as folder:
        inputs, broken = [], []
        for i, (source, image) in enumerate(items):
            if source == "pil":
                inputs.append(image)
                continue
            path = save(source, image, os.path.join(folder, f"image_{i}.img"))
            inputs.append(path)
            if source in ("truncated", "empty"):
                broken.append(path)
        try:
            features = extractor.transform(inputs)
        except ValueError as error:
            # Only a broken file may fail, and the error names it.
            assert broken, f"a readable image failed: {error}"
            assert any(os.path.basename(path) in str(error) for path in broken)
            return
        # A truncated file may still decode (PIL reads what is there); an
        # empty one never does.
        assert "empty" not in {source for source, _ in items}
        assert features.shape == (len(inputs), extractor.n_features_out_)
        assert np.all(np.isfinite(features))


@given(
    n_images=st.integers(1, 5),
    data=st.data(),
)
def test_extractor_names_the_float_image_that_is_not_finite(extractor, n_images, data):
    rng = np.random.default_rng(0)
    pixels = rng.random((n_images, 3, 8, 8)).astype(np.float32)
    bad = data.draw(st.integers(0, n_images - 1))
    pixels[bad, data.draw(st.integers(0, 2)), 3, 4] = data.draw(
        st.sampled_from([np.nan, np.inf, -np.inf])
    )
    with pytest.raises(ValueError, match=f"Image {bad} "):
        extractor.transform(pixels)
