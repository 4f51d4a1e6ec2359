"""FeatureExtractor: backbones, weights, inputs, caching, pickling, pipelines."""

import os
import pickle
import threading
import warnings

import numpy as np
import pandas as pd
import pytest
import timm
import torch
import torchvision
from PIL import Image
from safetensors.torch import save_file
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from skltr import FeatureExtractor, TauNormClassifier
from skltr.exceptions import FeatureCacheWarning
from skltr.models import cifar_resnet20

CPU = {"device": "cpu", "verbose": 0, "num_workers": 0}


def random_pixels(n, size=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), np.uint8)


def write_images(directory, pixels, fmt="png"):
    paths = []
    for i, image in enumerate(pixels):
        path = os.path.join(directory, f"{i:04d}.{fmt}")
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


class CountingNet(torch.nn.Module):
    """A small CNN that counts the images it sees, across copies of itself."""

    images_seen = 0

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x):
        type(self).images_seen += len(x)
        return torch.relu(self.conv(x)).mean(dim=(2, 3))


@pytest.fixture
def counting_net():
    CountingNet.images_seen = 0
    return CountingNet()


# -- backbones: the output is the pre-logits feature -------------------------


@pytest.mark.parametrize("name", ["test_vit", "test_convnext"])
def test_timm_features_are_the_models_pre_logits(tmp_path, name):
    torch.manual_seed(0)
    full = timm.create_model(name).eval()  # with its classifier head
    path = tmp_path / "weights.safetensors"
    save_file(full.state_dict(), path)
    images = [Image.fromarray(p) for p in random_pixels(3, size=180)]

    extractor = FeatureExtractor(name, weights=path, **CPU).fit(images)
    features = extractor.transform(images)

    batch = torch.stack([extractor.preprocess_(image) for image in images])
    with torch.no_grad():
        expected = full.forward_head(full.forward_features(batch), pre_logits=True)
    assert features.dtype == np.float32
    assert features.shape == (3, full.num_features) == (3, extractor.n_features_out_)
    np.testing.assert_allclose(features, expected.numpy(), rtol=1e-4, atol=1e-5)


def test_torchvision_features_are_the_input_of_the_final_classifier(tmp_path):
    torch.manual_seed(0)
    full = torchvision.models.mobilenet_v3_small().eval()
    path = tmp_path / "mobilenet.pth"
    torch.save(full.state_dict(), path)
    images = [Image.fromarray(p) for p in random_pixels(3, size=240)]

    extractor = FeatureExtractor("torchvision/mobilenet_v3_small", weights=path, **CPU)
    features = extractor.fit_transform(images)

    captured = {}
    full.classifier[-1].register_forward_hook(
        lambda module, inputs, output: captured.setdefault("x", inputs[0])
    )
    weights = torchvision.models.MobileNet_V3_Small_Weights.DEFAULT
    batch = torch.stack([weights.transforms()(image) for image in images])
    with torch.no_grad():
        full(batch)
    assert features.shape == (3, 1024)  # after the classifier's hidden layer
    np.testing.assert_allclose(features, captured["x"].numpy(), rtol=1e-4, atol=1e-5)


def test_a_module_is_used_as_given_and_not_modified():
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 5))
    net.train()
    pixels = random_pixels(4, size=8)
    features = FeatureExtractor(net, **CPU).fit_transform(pixels)

    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        expected = net.eval()(x)
    np.testing.assert_allclose(features, expected.numpy(), rtol=1e-5, atol=1e-6)


def test_module_passed_in_keeps_its_training_mode_and_device():
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 5)).train()
    FeatureExtractor(net, **CPU).fit(random_pixels(2, size=8))
    assert net.training
    assert all(p.requires_grad for p in net.parameters())


def test_layer_takes_a_named_module_averaged_over_space():
    pixels = random_pixels(4)
    extractor = FeatureExtractor(
        "cifar_resnet20", pretrained=False, layer="layer2", **CPU
    )
    features = extractor.fit_transform(pixels)

    network = extractor._loaded_network().network
    batch = torch.stack([extractor.preprocess_(Image.fromarray(p)) for p in pixels])
    with torch.no_grad():
        x = torch.relu(network.bn1(network.conv1(batch)))
        expected = network.layer2(network.layer1(x)).mean(dim=(2, 3))
    assert features.shape == (4, 32)
    np.testing.assert_allclose(features, expected.numpy(), rtol=1e-5, atol=1e-6)


def test_layer_capture_is_per_thread():
    # One thread's forward must not end another's capture of the layer: the
    # first thread is held before the layer until the second has finished.
    from skltr._feature_network import FeatureNetwork

    entered, finished = threading.Event(), threading.Event()

    class Hold(torch.nn.Module):
        def forward(self, x):
            if x[0, 0] > 0:
                entered.set()
                finished.wait(timeout=10)
            return x

    network = FeatureNetwork(
        torch.nn.Sequential(Hold(), torch.nn.Linear(4, 3), torch.nn.Linear(3, 2)),
        layer="1",
    )
    held = {}
    thread = threading.Thread(target=lambda: held.update(out=network(torch.ones(1, 4))))
    thread.start()
    entered.wait(timeout=10)
    assert network(-torch.ones(1, 4)).shape == (1, 3)
    finished.set()
    thread.join(timeout=10)
    assert held["out"].shape == (1, 3)
    # Outside forward, the wrapped network still runs whole.
    assert network.network(-torch.ones(1, 4)).shape == (1, 2)


def test_unknown_layer_suggests_names():
    with pytest.raises(ValueError, match="no layer 'layer4'.*'layer1'"):
        FeatureExtractor("cifar_resnet20", pretrained=False, layer="layer4", **CPU).fit(
            random_pixels(1)
        )


def test_unknown_model_suggests_close_names():
    with pytest.raises(ValueError, match="Unknown model 'resnet5O'.*'resnet50'"):
        FeatureExtractor("resnet5O", **CPU).fit(random_pixels(1))
    with pytest.raises(ValueError, match="Did you mean 'torchvision/resnet18'"):
        FeatureExtractor("torchvision/resnet1", **CPU).fit(random_pixels(1))
    with pytest.raises(ValueError, match="Unknown model source 'torchvison'"):
        FeatureExtractor("torchvison/resnet18", **CPU).fit(random_pixels(1))


def test_the_default_backbone_is_timm_resnet50():
    extractor = FeatureExtractor(pretrained=False, **CPU).fit(random_pixels(1))
    assert extractor.backbone_name_ == "timm/resnet50.a1_in1k"
    assert extractor.n_features_out_ == 2048


# -- weights -----------------------------------------------------------------


def test_weights_round_trip_through_safetensors_and_state_dicts(tmp_path):
    torch.manual_seed(1)
    source = cifar_resnet20()
    pixels = random_pixels(5)
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    save_file(source.state_dict(), tmp_path / "w.safetensors")
    torch.save({"state_dict": state, "best_prec1": 12.5}, tmp_path / "w.th")

    from_safetensors = FeatureExtractor(
        "cifar_resnet20", weights=tmp_path / "w.safetensors", **CPU
    ).fit_transform(pixels)
    from_checkpoint = FeatureExtractor(
        "cifar_resnet20", weights=str(tmp_path / "w.th"), **CPU
    ).fit_transform(pixels)
    random = FeatureExtractor("cifar_resnet20", pretrained=False, **CPU).fit_transform(
        pixels
    )
    np.testing.assert_array_equal(from_safetensors, from_checkpoint)
    assert not np.allclose(from_safetensors, random)


def test_a_decoupling_release_checkpoint_gives_its_best_backbone(tmp_path):
    # The Decoupling code's stage-1 checkpoints: the best epoch's backbone
    # under state_dict_best / feat_model, saved from DataParallel, next to
    # its classifier and plain numbers.
    torch.manual_seed(1)
    best, last = cifar_resnet20(), cifar_resnet20()
    pixels = random_pixels(5)

    def wrapped(network):
        return {f"module.{k}": v for k, v in network.state_dict().items()}

    torch.save(
        {
            "epoch": 90,
            "best_epoch": 87,
            "state_dict_best": {
                "feat_model": wrapped(best),
                "classifier": {"module.fc.weight": torch.zeros(10, 64)},
            },
            "state_dict": {"feat_model": wrapped(last), "classifier": {}},
            "best_acc": 0.43,
            "centroids": None,
        },
        tmp_path / "final_model_checkpoint.pth",
    )
    save_file(best.state_dict(), tmp_path / "best.safetensors")

    from_release = FeatureExtractor(
        "cifar_resnet20", weights=tmp_path / "final_model_checkpoint.pth", **CPU
    ).fit_transform(pixels)
    from_best = FeatureExtractor(
        "cifar_resnet20", weights=tmp_path / "best.safetensors", **CPU
    ).fit_transform(pixels)
    np.testing.assert_array_equal(from_release, from_best)


def test_weights_of_another_architecture_are_refused(tmp_path):
    save_file(torchvision.models.resnet18().state_dict(), tmp_path / "r18.safetensors")
    with pytest.raises(
        ValueError, match=r"weights in .*r18\.safetensors do not fit .*cifar_resnet20"
    ):
        FeatureExtractor(
            "cifar_resnet20", weights=tmp_path / "r18.safetensors", **CPU
        ).fit(random_pixels(1))


def test_pickled_objects_are_never_unpickled(tmp_path):
    torch.save(cifar_resnet20(), tmp_path / "whole_module.pt")  # not a state dict
    with pytest.raises(ValueError, match="never unpickles arbitrary objects"):
        FeatureExtractor(
            "cifar_resnet20", weights=tmp_path / "whole_module.pt", **CPU
        ).fit(random_pixels(1))


def test_missing_weights_file_is_named():
    with pytest.raises(ValueError, match="Weights file 'nowhere.safetensors' does not"):
        FeatureExtractor("cifar_resnet20", weights="nowhere.safetensors", **CPU).fit(
            random_pixels(1)
        )


def test_pretrained_weights_offline_fail_fast_and_say_how(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(
        ValueError, match=r"HF_HUB_OFFLINE.*weights='path/to/that/file'"
    ):
        FeatureExtractor("test_vit", **CPU).fit(random_pixels(1))

    def unreachable(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr("urllib.request.urlopen", unreachable)
    with pytest.raises(ValueError, match=r"no network.*resnet18-f37072fd\.pth"):
        FeatureExtractor("torchvision/resnet18", **CPU).fit(random_pixels(1))


def test_pretrained_weights_are_found_in_the_torch_hub_cache(tmp_path, monkeypatch):
    torch.manual_seed(2)
    source = cifar_resnet20()
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    torch.save(
        {"state_dict": source.state_dict()}, checkpoints / "resnet20-12fca82f.th"
    )
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    pixels = random_pixels(3)

    pretrained = FeatureExtractor("cifar_resnet20", **CPU).fit(pixels)
    assert pretrained.weights_.endswith("resnet20-12fca82f.th")
    with torch.no_grad():
        batch = torch.stack(
            [pretrained.preprocess_(Image.fromarray(p)) for p in pixels]
        )
        expected = source.eval().forward_head(
            source.forward_features(batch), pre_logits=True
        )
    np.testing.assert_allclose(
        pretrained.transform(pixels), expected.numpy(), rtol=1e-5
    )


CIFAR_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")


@pytest.mark.skipif(
    not os.path.exists(os.path.join(CIFAR_DATA, "cifar10-resnet")),
    reason="../shared/data (CIFAR-10 JPEGs and ResNet weights) is not on this machine",
)
def test_pretrained_cifar_resnet20_classifies_cifar10_jpegs():
    import io
    import zipfile

    weights = os.path.join(CIFAR_DATA, "cifar10-resnet", "resnet20-12fca82f.th")
    archive = zipfile.ZipFile(
        os.path.join(CIFAR_DATA, "cifar10-jpeg", "cifar10-jpeg.zip")
    )
    names = sorted(
        n for n in archive.namelist() if n.startswith("test/") and n.endswith(".jpg")
    )
    classes = sorted({n.split("/")[1] for n in names})
    chosen = [
        n for c in classes for n in [m for m in names if m.split("/")[1] == c][:100]
    ]
    labels = np.array([classes.index(n.split("/")[1]) for n in chosen])
    images = [Image.open(io.BytesIO(archive.read(n))) for n in chosen]

    features = FeatureExtractor("cifar_resnet20", weights=weights, **CPU).fit_transform(
        images
    )

    state = torch.load(weights, map_location="cpu", weights_only=True)["state_dict"]
    logits = (
        features @ state["module.linear.weight"].numpy().T
        + state["module.linear.bias"].numpy()
    )
    assert features.shape == (1000, 64)
    assert (logits.argmax(axis=1) == labels).mean() > 0.75


# -- inputs ------------------------------------------------------------------


class LabelledImages(torch.utils.data.Dataset):
    def __init__(self, pixels):
        self.pixels = pixels

    def __len__(self):
        return len(self.pixels)

    def __getitem__(self, index):
        return Image.fromarray(self.pixels[index]), index % 3


def test_every_input_type_gives_the_same_features(tmp_path):
    pixels = random_pixels(6)
    paths = write_images(tmp_path, pixels)
    chw = torch.from_numpy(pixels).permute(0, 3, 1, 2)
    extractor = FeatureExtractor("cifar_resnet20", pretrained=False, **CPU).fit(pixels)
    expected = extractor.transform(pixels)

    inputs = {
        "paths": paths,
        "path objects": [os.path.relpath(p) for p in paths],
        "path Series": pd.Series(paths),
        "path array": np.array(paths),
        "PIL": [Image.fromarray(p) for p in pixels],
        "float array": chw.numpy().astype(np.float64) / 255,
        "float tensor": chw.float() / 255,
        "uint8 tensor": chw,
        "list of arrays": list(pixels),
        "list of tensors": list(chw.float() / 255),
        "dataset": LabelledImages(pixels),
    }
    for kind, X in inputs.items():
        np.testing.assert_allclose(
            extractor.transform(X), expected, rtol=1e-5, atol=1e-6, err_msg=kind
        )


def test_grayscale_and_rgba_become_rgb(tmp_path):
    gray = random_pixels(3)[..., 0]
    extractor = FeatureExtractor("cifar_resnet20", pretrained=False, **CPU).fit(gray)
    as_rgb = extractor.transform(np.repeat(gray[..., None], 3, axis=-1))
    np.testing.assert_array_equal(extractor.transform(gray), as_rgb)
    np.testing.assert_array_equal(extractor.transform(gray[..., None]), as_rgb)
    np.testing.assert_array_equal(
        extractor.transform([Image.fromarray(g, mode="L") for g in gray]), as_rgb
    )
    rgba = np.concatenate([random_pixels(3), np.full((3, 32, 32, 1), 7, np.uint8)], -1)
    paths = write_images(tmp_path, rgba)
    np.testing.assert_array_equal(
        extractor.transform(paths), extractor.transform(rgba[..., :3])
    )


def test_unreadable_image_names_file_and_index(tmp_path):
    paths = write_images(tmp_path, random_pixels(3))
    with open(paths[1], "wb") as file:
        file.write(b"not an image")
    extractor = FeatureExtractor("cifar_resnet20", pretrained=False, **CPU).fit(
        paths[:1]
    )
    with pytest.raises(ValueError, match=r"Cannot read image 1 \(.*0001\.png'\)"):
        extractor.transform(paths)
    with pytest.raises(ValueError, match=r"Cannot read image 0 \('missing\.jpg'\)"):
        extractor.transform(["missing.jpg"])
    with pytest.raises(ValueError, match=r"Cannot read image 1 \('missing\.jpg'\)"):
        extractor.set_params(memory=tmp_path).transform([paths[0], "missing.jpg"])


def test_exif_rotated_photograph_is_read_upright(tmp_path):
    # A camera held sideways stores the pixels as shot and an EXIF
    # orientation (6: turn 90 degrees clockwise to display); the features
    # are those of the image as displayed.
    pixels = random_pixels(1, size=32)[0, :, :20]  # 32 high, 20 wide
    shot = Image.fromarray(pixels)
    exif = shot.getexif()
    exif[0x0112] = 6
    path = str(tmp_path / "sideways.png")
    shot.save(path, exif=exif.tobytes())
    upright = shot.transpose(Image.Transpose.ROTATE_270)
    extractor = FeatureExtractor("cifar_resnet20", pretrained=False, **CPU).fit([path])
    np.testing.assert_array_equal(
        extractor.transform([path]), extractor.transform([upright])
    )


def test_sixteen_bit_images_are_scaled_to_eight_bits_not_clipped(tmp_path):
    eight_bit = random_pixels(1)[0, ..., 0]
    sixteen_bit = Image.fromarray(eight_bit.astype(np.uint16) * 257)  # I;16
    path = str(tmp_path / "sixteen.png")
    sixteen_bit.save(path)  # PIL opens a 16-bit PNG as mode "I"
    extractor = FeatureExtractor("cifar_resnet20", pretrained=False, **CPU).fit(
        [sixteen_bit]
    )
    expected = extractor.transform([Image.fromarray(eight_bit)])
    np.testing.assert_array_equal(extractor.transform([sixteen_bit]), expected)
    np.testing.assert_array_equal(extractor.transform([path]), expected)


def test_image_mode_pil_cannot_convert_names_the_image():
    images = [Image.new("RGB", (8, 8)), Image.new("La", (8, 8))]
    extractor = FeatureExtractor("cifar_resnet20", pretrained=False, **CPU).fit(
        images[:1]
    )
    with pytest.raises(ValueError, match=r"image 1 \(PIL mode 'La'\)"):
        extractor.transform(images)


def test_truncated_jpeg_is_an_error_not_a_partial_image(tmp_path):
    (path,) = write_images(tmp_path, random_pixels(1, size=64), fmt="jpg")
    with open(path, "rb") as file:
        data = file.read()
    with open(path, "wb") as file:
        file.write(data[: len(data) // 2])
    extractor = FeatureExtractor("cifar_resnet20", pretrained=False, **CPU)
    with pytest.raises(ValueError, match="Cannot read image 0"):
        extractor.fit([path])


@pytest.mark.parametrize(
    "X, message",
    [
        (np.zeros((2, 3, 32, 32), np.uint8), r"uint8 image array must have shape \(n_"),
        (np.zeros((2, 32, 32, 3), np.float32), r"channels-last.*np.transpose"),
        (np.full((2, 3, 8, 8), 255.0), r"values in \[0, 1\].*Divide 0\.\.255"),
        (np.full((2, 3, 8, 8), np.nan), "Image 0 of the float images contains NaN"),
        (np.zeros((2, 8, 8, 3), np.int64), "must be uint8 .* or floating"),
        (np.zeros((2, 8, 8)), r"\(n_samples, channels, height, width\)"),
        ("image.jpg", r"single str; pass a list of images"),
        ([], "no images"),
        ([1, 2], "Image 0 is a int"),
        (torch.zeros(2, 32, 32, 3), r"channels-last.*permute"),
    ],
)
def test_bad_input_says_what_was_expected(X, message):
    extractor = FeatureExtractor("cifar_resnet20", pretrained=False, **CPU)
    with pytest.raises(ValueError, match=message):
        extractor.fit(X)


def test_already_preprocessed_tensors_with_identity_preprocess():
    extractor = FeatureExtractor("cifar_resnet20", pretrained=False, **CPU).fit(
        random_pixels(1)
    )
    batch = torch.stack(
        [extractor.preprocess_(Image.fromarray(p)) for p in random_pixels(4)]
    )
    identity = FeatureExtractor(
        "cifar_resnet20", pretrained=False, preprocess=torch.nn.Identity(), **CPU
    )
    identity.fit(batch)
    identity._network = extractor._network  # same random weights
    np.testing.assert_array_equal(
        identity.transform(batch), extractor.transform(random_pixels(4))
    )


def test_images_of_different_sizes_need_a_resizing_preprocess():
    images = [Image.new("RGB", (8, 8)), Image.new("RGB", (9, 9))]
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1))
    extractor = FeatureExtractor(net, batch_size=2, **CPU).fit(images)
    with pytest.raises(ValueError, match="different shapes.*resizes"):
        extractor.transform(images)


def test_cuda_asked_for_and_absent_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ValueError, match="asks for CUDA"):
        FeatureExtractor("cifar_resnet20", pretrained=False, device="cuda").fit(
            random_pixels(1)
        )


# -- speed paths -------------------------------------------------------------


def test_workers_and_batch_sizes_do_not_change_the_features(tmp_path):
    paths = write_images(tmp_path, random_pixels(20))
    base = FeatureExtractor("cifar_resnet20", pretrained=False, **CPU).fit(paths)
    expected = base.transform(paths)
    for params in [{"num_workers": 2, "batch_size": 8}, {"batch_size": 3}]:
        other = base.set_params(**params)
        np.testing.assert_allclose(
            other.transform(paths), expected, rtol=1e-5, atol=1e-6
        )


class RunsOutOfMemory(torch.nn.Module):
    """Raises CUDA's out-of-memory error on batches larger than 3."""

    def forward(self, x):
        if len(x) > 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return x.mean(dim=(2, 3))


def test_out_of_memory_halves_the_batch_and_goes_on():
    pixels = random_pixels(10)
    extractor = FeatureExtractor(RunsOutOfMemory(), batch_size=16, **CPU)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        features = extractor.fit_transform(pixels)
    assert [str(w.message) for w in caught] == [
        f"CUDA ran out of memory; going on with batches of {n} images."
        for n in (8, 4, 2)
    ]
    expected = pixels.transpose(0, 3, 1, 2).astype(np.float32).mean(axis=(2, 3)) / 255
    np.testing.assert_allclose(features, expected, rtol=1e-6)


def test_bfloat16_precision_returns_float32_close_to_float32():
    pixels = random_pixels(4)
    full = FeatureExtractor("cifar_resnet20", pretrained=False, **CPU).fit(pixels)
    half = FeatureExtractor(
        "cifar_resnet20", pretrained=False, precision="bfloat16", **CPU
    ).fit(pixels)
    half._network = full._network
    reduced = half.transform(pixels)
    assert reduced.dtype == np.float32
    exact = full.transform(pixels)
    assert np.abs(reduced - exact).max() < 0.05 * np.abs(exact).max()


# -- the cache ---------------------------------------------------------------


def test_cache_computes_each_image_once(tmp_path, counting_net):
    os.makedirs(tmp_path / "images")
    paths = write_images(tmp_path / "images", random_pixels(12))
    extractor = FeatureExtractor(counting_net, memory=tmp_path / "cache", **CPU).fit(
        paths
    )
    CountingNet.images_seen = 0

    first = extractor.transform(paths[:8])
    assert CountingNet.images_seen == 7  # fit stored the first image's features
    again = extractor.transform(paths[:8])
    assert CountingNet.images_seen == 7
    np.testing.assert_array_equal(first, again)

    overlapping = extractor.transform(paths[4:])
    assert CountingNet.images_seen == 11  # only the 4 new images
    np.testing.assert_array_equal(overlapping[:4], first[4:])

    # A rewritten file is a new image.
    Image.fromarray(random_pixels(1, seed=9)[0]).save(paths[0])
    os.utime(paths[0], ns=(1, 1))
    changed = extractor.transform(paths[:2])
    assert CountingNet.images_seen == 12
    assert not np.array_equal(changed[0], first[0])
    np.testing.assert_array_equal(changed[1], first[1])


def test_cache_keys_cover_the_preprocessing(tmp_path, counting_net):
    pixels = random_pixels(4)
    cache = tmp_path / "cache"
    FeatureExtractor(counting_net, memory=cache, **CPU).fit_transform(pixels)
    CountingNet.images_seen = 0
    FeatureExtractor(
        counting_net, memory=cache, preprocess=torchvision.transforms.ToTensor(), **CPU
    ).fit_transform(pixels)
    assert CountingNet.images_seen == 4


def test_interrupted_cache_write_leaves_no_entry(tmp_path, counting_net, monkeypatch):
    pixels = random_pixels(6)
    extractor = FeatureExtractor(counting_net, memory=tmp_path, **CPU).fit(pixels)
    expected = FeatureExtractor(counting_net, **CPU).fit_transform(pixels)
    stored_by_fit = list((tmp_path / "skltr-features").rglob("*.*"))

    def interrupted(source, destination):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr("skltr._feature_cache.os.replace", interrupted)
        with pytest.raises(KeyboardInterrupt):
            extractor.transform(pixels)
    files = list((tmp_path / "skltr-features").rglob("*.*"))
    assert files == stored_by_fit

    CountingNet.images_seen = 0
    # Cached rows were computed in other batches: equal up to float rounding.
    np.testing.assert_allclose(
        extractor.transform(pixels), expected, rtol=1e-5, atol=1e-6
    )
    assert CountingNet.images_seen == 5


def test_damaged_cache_file_is_skipped_and_recomputed(tmp_path, counting_net):
    pixels = random_pixels(6)
    extractor = FeatureExtractor(counting_net, memory=tmp_path, **CPU).fit(pixels)
    expected = extractor.transform(pixels)
    for shard in (tmp_path / "skltr-features").rglob("*.npz"):
        shard.write_bytes(shard.read_bytes()[:100])

    CountingNet.images_seen = 0
    with pytest.warns(
        FeatureCacheWarning, match="unreadable feature cache file"
    ) as record:
        features = extractor.transform(pixels)
    assert record[0].filename == __file__
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-6)
    assert CountingNet.images_seen == 6


# -- augmented views ---------------------------------------------------------


def test_views_first_plain_then_augmented_reproducible(tmp_path):
    pixels = random_pixels(5)
    extractor = FeatureExtractor(
        "cifar_resnet20", pretrained=False, n_views=3, random_state=0, **CPU
    )
    features, y_views = extractor.fit_transform_views(pixels, ["a", "b", "c", "d", "e"])
    assert features.shape == (15, 64)
    assert list(y_views[:4]) == ["a", "a", "a", "b"]
    np.testing.assert_array_equal(features[::3], extractor.transform(pixels))
    assert not np.allclose(features[1::3], features[::3])
    assert not np.allclose(features[1::3], features[2::3])

    # Reproducible, and independent of batching and of the other images.
    again, _ = extractor.set_params(batch_size=2).transform_views(pixels[::-1])
    np.testing.assert_allclose(
        again.reshape(5, 3, -1)[::-1].reshape(15, -1), features, rtol=1e-5, atol=1e-6
    )
    other_seed, _ = extractor.set_params(random_state=1).transform_views(pixels)
    assert not np.allclose(other_seed[1::3], features[1::3])
    unseeded, _ = extractor.set_params(
        random_state=np.random.RandomState(0)
    ).transform_views(pixels)
    np.testing.assert_allclose(unseeded[::3], features[::3], rtol=1e-5, atol=1e-6)


def test_views_are_cached_with_an_integer_seed(tmp_path, counting_net):
    pixels = random_pixels(4)
    augmentation = torchvision.transforms.Compose(
        [
            torchvision.transforms.RandomHorizontalFlip(),
            torchvision.transforms.ToTensor(),
        ]
    )
    extractor = FeatureExtractor(
        counting_net,
        n_views=3,
        augmentation=augmentation,
        random_state=0,
        memory=tmp_path,
        **CPU,
    ).fit(pixels)
    CountingNet.images_seen = 0
    first, _ = extractor.transform_views(pixels)
    assert CountingNet.images_seen == 11  # fit cached the first plain view
    second, _ = extractor.transform_views(pixels)
    assert CountingNet.images_seen == 11
    np.testing.assert_array_equal(first, second)


def test_views_do_not_fit_in_fit_transform():
    extractor = FeatureExtractor("cifar_resnet20", pretrained=False, n_views=2, **CPU)
    with pytest.raises(ValueError, match="fit_transform_views"):
        extractor.fit_transform(random_pixels(2))


def test_views_of_a_module_need_an_augmentation(counting_net):
    extractor = FeatureExtractor(counting_net, n_views=2, **CPU).fit(random_pixels(2))
    with pytest.raises(ValueError, match="pass augmentation="):
        extractor.transform_views(random_pixels(2))


def test_views_need_one_label_per_image():
    extractor = FeatureExtractor("cifar_resnet20", pretrained=False, n_views=2, **CPU)
    with pytest.raises(ValueError, match="3 images and 2 labels"):
        extractor.fit_transform_views(random_pixels(3), [0, 1])


# -- scikit-learn ------------------------------------------------------------


def test_pickle_holds_no_network_and_rebuilds_it(tmp_path):
    torch.manual_seed(3)
    save_file(cifar_resnet20().state_dict(), tmp_path / "w.safetensors")
    pixels = random_pixels(4)
    extractor = FeatureExtractor(
        "cifar_resnet20", weights=tmp_path / "w.safetensors", **CPU
    )
    expected = extractor.fit_transform(pixels)

    blob = pickle.dumps(extractor)
    assert len(blob) < 20_000  # the network's 0.27 M parameters would be ~1 MB
    assert extractor._network is not None  # pickling leaves the original whole
    restored = pickle.loads(blob)
    assert getattr(restored, "_network", None) is None
    np.testing.assert_array_equal(restored.transform(pixels), expected)

    torch.manual_seed(4)
    save_file(cifar_resnet20().state_dict(), tmp_path / "w.safetensors")
    with pytest.raises(ValueError, match="differ from those this extractor was fitted"):
        pickle.loads(blob).transform(pixels)


@pytest.mark.parametrize("model", ["cifar_resnet20", "resnet18"])
def test_random_weights_travel_in_the_pickle(model):
    # A named model with random weights is drawn anew at each build: the
    # pickle must carry the weights for the features to match.
    pixels = random_pixels(3, size=64 if model == "resnet18" else 32)
    extractor = FeatureExtractor(model, pretrained=False, **CPU)
    expected = extractor.fit_transform(pixels)
    n_weights = sum(t.numel() for t in extractor._network.state_dict().values())

    blob = pickle.dumps(extractor)
    assert len(blob) > 4 * n_weights  # float32 weights, not a rebuild recipe
    restored = pickle.loads(blob)
    np.testing.assert_array_equal(restored.transform(pixels), expected)
    # And again after a second round trip, before the network was rebuilt.
    twice = pickle.loads(pickle.dumps(pickle.loads(blob)))
    np.testing.assert_array_equal(twice.transform(pixels), expected)
    # A fresh build of the same parameters has other weights.
    other = FeatureExtractor(model, pretrained=False, **CPU).fit(pixels)
    assert other.weights_digest_ != extractor.weights_digest_


def test_feature_names_and_pandas_output():
    pixels = random_pixels(3)
    extractor = FeatureExtractor("cifar_resnet20", pretrained=False, **CPU).fit(pixels)
    names = extractor.get_feature_names_out()
    assert list(names[:2]) == ["featureextractor0", "featureextractor1"]
    assert len(names) == 64
    frame = extractor.set_output(transform="pandas").transform(pixels)
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == list(names)
    assert frame.shape == (3, 64)


def test_transform_before_fit_is_an_error():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        FeatureExtractor("cifar_resnet20", pretrained=False).transform(random_pixels(1))


def long_tailed_images(directory, seed=0):
    """Images whose class sets their mean colour, with CIFAR-LT-like counts."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(40, 216, (5, 3))
    counts = [120, 60, 30, 15, 8]
    pixels, labels = [], []
    for label, (colour, count) in enumerate(zip(colours, counts, strict=True)):
        noise = rng.normal(0, 40, (count, 16, 16, 3))
        pixels.append(np.clip(colour + noise, 0, 255).astype(np.uint8))
        labels += [label] * count
    return write_images(directory, np.concatenate(pixels)), np.array(labels)


def test_pipeline_grid_search_over_tau_extracts_each_image_once(tmp_path, counting_net):
    os.makedirs(tmp_path / "images")
    paths, labels = long_tailed_images(tmp_path / "images")
    pipe = Pipeline(
        [
            (
                "features",
                FeatureExtractor(counting_net, memory=tmp_path / "cache", **CPU),
            ),
            ("clf", TauNormClassifier(device="cpu", random_state=0)),
        ]
    )
    search = GridSearchCV(
        pipe, {"clf__tau": np.linspace(0, 2, 5)}, scoring="balanced_accuracy", cv=3
    )
    CountingNet.images_seen = 0
    search.fit(paths, labels)

    # Each fit sizes its output with its first image, through the cache too.
    assert CountingNet.images_seen == len(paths)
    assert search.best_score_ > 0.8
    assert search.best_estimator_.score(paths, labels) > 0.8
    assert search.predict(paths[:3]).shape == (3,)


def test_timm_name_in_a_pipeline_from_files(tmp_path):
    os.makedirs(tmp_path / "images")
    paths, labels = long_tailed_images(tmp_path / "images")
    pipe = Pipeline(
        [
            ("features", FeatureExtractor("test_convnext", pretrained=False, **CPU)),
            ("clf", TauNormClassifier(device="cpu", random_state=0)),
        ]
    )
    pipe.fit(paths[::4], labels[::4])
    assert pipe.predict(paths[1::4]).shape == (len(paths[1::4]),)


@pytest.mark.parametrize("library", ["timm", "torchvision"])
def test_images_cross_to_the_device_as_uint8_and_are_normalised_there(library):
    from timm.data import create_transform
    from torchvision.models import ResNet18_Weights

    from skltr._images import split_at_to_tensor

    if library == "timm":
        transform = create_transform(224, crop_pct=0.9, interpolation="bicubic")
    else:
        # torchvision's own preset is one module, not a Compose: run whole.
        preset = ResNet18_Weights.IMAGENET1K_V1.transforms()
        assert split_at_to_tensor(preset) == (preset, None)
        transform = torchvision.transforms.Compose(
            [
                torchvision.transforms.Resize(232),
                torchvision.transforms.CenterCrop(224),
                torchvision.transforms.ToTensor(),
                torchvision.transforms.Normalize(preset.mean, preset.std),
            ]
        )
    host, device = split_at_to_tensor(transform)
    image = Image.fromarray(random_pixels(1, size=250)[0])
    pixels = host(image)
    assert pixels.dtype == torch.uint8 and pixels.shape == (3, 224, 224)
    # The same float32 arithmetic in the same order: identical values.
    torch.testing.assert_close(
        device(pixels[None])[0], transform(image), rtol=0, atol=0
    )
    # A grayscale step before ToTensor: one uint8 channel, scaled the same.
    gray = torchvision.transforms.Compose(
        [torchvision.transforms.Grayscale(), torchvision.transforms.ToTensor()]
    )
    gray_host, gray_device = split_at_to_tensor(gray)
    torch.testing.assert_close(
        gray_device(gray_host(image)[None])[0], gray(image), rtol=0, atol=0
    )
    if library != "timm":
        return
    # timm's MaybeToTensor passes float images in [0, 1] through: normalised.
    floats = torch.rand(3, 250, 250)
    torch.testing.assert_close(
        device(host(floats)[None])[0], transform(floats), rtol=0, atol=0
    )


def test_extraction_with_a_normalising_transform_matches_a_plain_loop(tmp_path):
    network = cifar_resnet20().eval()
    transform = torchvision.transforms.Compose(
        [
            torchvision.transforms.CenterCrop(28),
            torchvision.transforms.ToTensor(),
            torchvision.transforms.Normalize([0.5, 0.4, 0.3], [0.2, 0.25, 0.3]),
        ]
    )
    pixels = random_pixels(6)
    extractor = FeatureExtractor(network, preprocess=transform, **CPU)
    with torch.no_grad():
        expected = network(
            torch.stack([transform(Image.fromarray(p)) for p in pixels])
        ).numpy()
    for images in (pixels, write_images(tmp_path, pixels)):
        np.testing.assert_allclose(
            extractor.fit_transform(images), expected, rtol=1e-5, atol=1e-6
        )


@pytest.mark.parametrize(
    "name", ["vit_base_patch16_clip_224.openai", "vit_base_patch14_dinov2.lvd142m"]
)
def test_foundation_model_towers_give_their_pre_logit_features(name, tmp_path):
    # The foundation-model recipe's backbones, offline: random weights saved
    # to a file stand in for the published ones, and the feature is timm's
    # pooled pre-logits (CLIP's 768-d before its 512-d projection).
    from timm.data import create_transform, resolve_model_data_config

    network = timm.create_model(name, pretrained=False).eval()
    save_file(network.state_dict(), tmp_path / "tower.safetensors")
    images = [Image.fromarray(pixels) for pixels in random_pixels(2, size=48)]
    extractor = FeatureExtractor(name, weights=tmp_path / "tower.safetensors", **CPU)
    features = extractor.fit_transform(images)
    transform = create_transform(**resolve_model_data_config(network))
    with torch.no_grad():
        tokens = network.forward_features(torch.stack([transform(i) for i in images]))
        expected = network.forward_head(tokens, pre_logits=True)
    assert features.shape == (2, network.num_features) == (2, 768)
    np.testing.assert_allclose(features, expected.numpy(), rtol=1e-4, atol=1e-4)
