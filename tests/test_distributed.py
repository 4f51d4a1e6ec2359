"""Sharded extraction: two torchrun processes (gloo, CPU) write one store."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from skltr import FeatureExtractor, JointClassifier
from skltr.distributed import FeatureStore, extract_sharded, open_feature_store
from skltr.models import cifar_resnet20

N_IMAGES = 23  # not a multiple of the process count


@pytest.fixture(scope="module")
def images_and_weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("sharded")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(N_IMAGES):
        path = root / f"{i:03d}.png"
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    torch.manual_seed(0)
    weights = root / "r20.safetensors"
    save_file(cifar_resnet20().state_dict(), weights)
    return paths, weights


def _extractor(weights):
    return FeatureExtractor(
        "cifar_resnet20", weights=str(weights), device="cpu", num_workers=0
    )


def test_one_process_store_equals_transform(images_and_weights, tmp_path):
    paths, weights = images_and_weights
    store = extract_sharded(_extractor(weights), paths, tmp_path / "store")
    features = open_feature_store(store)
    assert isinstance(features, FeatureStore) and features.shape == (N_IMAGES, 64)
    assert isinstance(features.array, np.memmap)
    expected = _extractor(weights).fit(paths).transform(paths)
    np.testing.assert_array_equal(features, expected)
    # Classifiers train on the store as it is.
    labels = np.arange(N_IMAGES) % 2
    JointClassifier(device="cpu", epochs=2).fit(features, labels)


def test_torchrun_two_processes_write_one_store(images_and_weights, tmp_path):
    paths, weights = images_and_weights
    worker = tmp_path / "worker.py"
    worker.write_text(
        textwrap.dedent(
            f"""
            import json, os, sys
            import torch.distributed as dist
            from skltr import FeatureExtractor
            from skltr.distributed import extract_sharded

            dist.init_process_group("gloo")
            paths = json.loads(open(sys.argv[1]).read())
            extractor = FeatureExtractor("cifar_resnet20", weights={str(weights)!r},
                                         device="cpu", num_workers=0)
            calls = []
            transform = extractor.transform
            extractor.transform = lambda X: calls.append(len(X)) or transform(X)
            extract_sharded(extractor, paths, sys.argv[2])
            with open(os.path.join(sys.argv[2], f"rank{{dist.get_rank()}}.json"),
                      "w") as out:
                json.dump(calls, out)
            dist.destroy_process_group()
            """
        )
    )
    listing = tmp_path / "paths.json"
    listing.write_text(json.dumps(paths))
    store = tmp_path / "store"
    result = subprocess.run(
        [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc_per_node=2", str(worker), str(listing), str(store),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    expected = _extractor(weights).fit(paths).transform(paths)
    np.testing.assert_array_equal(open_feature_store(store), expected)
    # Each process extracted its own half (11 and 12 images), nothing more.
    shares = [json.loads((store / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert shares == [[11], [12]]


def test_an_unfinished_store_is_refused(images_and_weights, tmp_path):
    paths, weights = images_and_weights
    store = extract_sharded(_extractor(weights), paths[:4], tmp_path / "store")
    (store / "store.json").unlink()
    with pytest.raises(FileNotFoundError, match="did not finish in every process"):
        open_feature_store(store)
    with pytest.raises(FileNotFoundError, match="no complete feature store"):
        open_feature_store(tmp_path / "nowhere")
