"""The on-disk feature cache under concurrent writers and interrupted runs."""

import json
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from _feature_store import write_images_and_weights

from skltr import FeatureExtractor

# Each child process extracts with shards of 4 rows and batches of 4 images,
# so every batch is written as its own shard.
CHILD = textwrap.dedent(
    """
    import json, os, sys, time
    import skltr._feature_cache as feature_cache
    from skltr import FeatureExtractor

    feature_cache.SHARD_ROWS = 4
    paths, weights, memory, go, kill_after = json.loads(sys.argv[1])
    if kill_after:
        # Simulate a process killed midway: the shards stored so far stay,
        # the rest of the run is lost.
        store, stored = feature_cache.FeatureCache.store, []

        def store_then_maybe_die(self, keys, features):
            store(self, keys, features)
            stored.append(len(keys))
            if len(stored) == kill_after:
                os._exit(9)

        feature_cache.FeatureCache.store = store_then_maybe_die
    while go and not os.path.exists(go):  # start together with the others
        time.sleep(0.01)
    FeatureExtractor(
        "cifar_resnet20", weights=weights, memory=memory, batch_size=4,
        device="cpu", num_workers=0, verbose=0,
    ).fit_transform(paths)
    """
)


@pytest.fixture(scope="module")
def images_and_weights(tmp_path_factory):
    return write_images_and_weights(tmp_path_factory.mktemp("cache_images"), 44)


def _child(paths, weights, memory, *, go=None, kill_after=0):
    arguments = json.dumps([paths, weights, str(memory), go and str(go), kill_after])
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, arguments],
        stderr=subprocess.PIPE,
        text=True,
    )


def _counting_extractor(weights, memory):
    """An extractor that records which images it passes through the network."""
    extractor = FeatureExtractor(
        "cifar_resnet20",
        weights=weights,
        memory=memory,
        device="cpu",
        num_workers=0,
        verbose=0,
    )
    extractor.computed = []
    compute = extractor._compute

    def counting(source, indices, *args, **kwargs):
        indices = list(indices)
        extractor.computed.extend(indices)
        return compute(source, indices, *args, **kwargs)

    extractor._compute = counting
    return extractor


@pytest.mark.slow  # extraction in child processes
def test_two_processes_writing_one_cache_lose_and_corrupt_nothing(
    images_and_weights, tmp_path
):
    paths, weights = images_and_weights
    memory, go = tmp_path / "cache", tmp_path / "go"
    # Overlapping lists: images 10 to 33 are extracted by both.
    children = [
        _child(paths[:34], weights, memory, go=go),
        _child(paths[10:], weights, memory, go=go),
    ]
    time.sleep(0.5)
    go.touch()
    for child in children:
        _, stderr = child.communicate(timeout=300)
        assert child.returncode == 0, stderr[-3000:]

    files = list((memory / "skltr-features").rglob("*"))
    assert not [f for f in files if f.suffix == ".tmp"]
    for shard in (f for f in files if f.suffix == ".npz"):
        with np.load(shard) as data:  # every shard is whole
            assert len(data["keys"]) == len(data["features"]) > 0

    extractor = _counting_extractor(weights, memory)
    features = extractor.fit(paths).transform(paths)
    assert extractor.computed == []  # every image was cached by one of them
    fresh = FeatureExtractor(
        "cifar_resnet20", weights=weights, device="cpu", num_workers=0, verbose=0
    ).fit_transform(paths)
    np.testing.assert_allclose(features, fresh, rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # extraction in child processes
def test_a_killed_extraction_resumes_with_what_is_missing(images_and_weights, tmp_path):
    paths, weights = images_and_weights
    memory = tmp_path / "cache"
    child = _child(paths[:40], weights, memory, kill_after=3)
    _, stderr = child.communicate(timeout=300)
    assert child.returncode == 9, stderr[-3000:]  # it died after three shards

    extractor = _counting_extractor(weights, memory)
    features = extractor.fit(paths[:40]).transform(paths[:40])
    # The killed run stored three shards: the first image (its fit), then
    # images 1 to 4 and 5 to 8. The rerun computes exactly the rest.
    assert sorted(extractor.computed) == list(range(9, 40))
    fresh = FeatureExtractor(
        "cifar_resnet20", weights=weights, device="cpu", num_workers=0, verbose=0
    ).fit_transform(paths[:40])
    np.testing.assert_allclose(features, fresh, rtol=1e-5, atol=1e-6)
    # Run again: nothing left to compute.
    extractor.computed.clear()
    extractor.transform(paths[:40])
    assert extractor.computed == []
