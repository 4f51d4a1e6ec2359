"""Backbones by name or as modules, behind one interface.

:func:`build_backbone` turns a ``model`` parameter into a :class:`Backbone`:
a network whose forward pass returns the pooled pre-logits feature, the
model's own evaluation transform, its training augmentation, and a name. timm
and torchvision models, skltr's CIFAR ResNets and a user's ``nn.Module`` all
come out the same way, so the extractor never asks where a model came from.

Reading weights and finding the published ones is ``_checkpoints``'s work; the
layer a user names is taken by ``_feature_network``.
"""

import copy
import difflib
from dataclasses import dataclass

import torchvision
import torchvision.transforms as T
from torch import nn

from ._checkpoints import load_weights, timm_pretrained_file, torch_hub_file
from ._images import ToFloatTensor
from .models import _cifar_resnet

_CIFAR_RELEASE = (
    "https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/pretrained_models/"
)
# skltr's own models: constructor and the file name of the published weights.
SKLTR_MODELS = {
    "cifar_resnet20": (_cifar_resnet.cifar_resnet20, "resnet20-12fca82f.th"),
    "cifar_resnet32": (_cifar_resnet.cifar_resnet32, "resnet32-d509ac18.th"),
    "cifar_resnet44": (_cifar_resnet.cifar_resnet44, "resnet44-014dd654.th"),
    "cifar_resnet56": (_cifar_resnet.cifar_resnet56, "resnet56-4bfd9763.th"),
}

SOURCES = ("timm", "torchvision", "skltr")


@dataclass
class Backbone:
    """A frozen network and the transforms that go with it.

    Attributes
    ----------
    network : nn.Module
        In eval mode, without gradients, on the CPU; maps a preprocessed batch
        to features.
    name : str
        ``"<source>/<name>"``, or the module's class name.
    eval_transform, train_transform : callable or None
        Image to tensor; ``train_transform`` is None where the model does not
        define one (a user's module).
    weights : str
        Where the weights came from, for messages.
    """

    network: nn.Module
    name: str
    eval_transform: object
    train_transform: object
    weights: str


def build_backbone(model, *, pretrained, weights):
    """Build the backbone a ``model`` parameter names, with its weights.

    Parameters
    ----------
    model : str or nn.Module
    pretrained : bool
        Load the model's published weights (from the cache, or downloaded).
    weights : str, path or None
        A local weights file; takes precedence over ``pretrained``.
    """
    if isinstance(model, nn.Module):
        network = copy.deepcopy(model)
        location = load_weights(
            network, weights, False, None, head_prefixes=(), name=type(model).__name__
        )
        return _frozen(
            Backbone(
                network,
                type(model).__name__,
                ToFloatTensor(),
                None,
                location or "module's own",
            )
        )
    source, name = parse_model_name(model)
    builder = {"timm": _timm, "torchvision": _torchvision, "skltr": _skltr}[source]
    return _frozen(builder(name, pretrained=pretrained, weights=weights))


def parse_model_name(model):
    """Split ``"source/name"``; a bare name is skltr's own if it has it, else timm's.

    Raises a ValueError that suggests close names when the model is unknown.
    """
    source, _, name = model.rpartition("/")
    if source and source not in SOURCES:
        # timm names never contain "/", so anything else is a typo of a source.
        raise ValueError(
            f"Unknown model source {source!r} in {model!r}; use one of "
            f"{', '.join(repr(s + '/') for s in SOURCES)} or a bare timm name."
        )
    if not source:
        source = "skltr" if name in SKLTR_MODELS else "timm"
    if _has_model(source, name):
        return source, name
    candidates = [*SKLTR_MODELS, *_timm_names()] + [
        f"torchvision/{n}" for n in _torchvision_names()
    ]
    close = difflib.get_close_matches(model, candidates, n=5, cutoff=0.6)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    raise ValueError(
        f"Unknown model {model!r}.{hint} Names are timm's (e.g. 'resnet50'), "
        "torchvision's with a prefix (e.g. 'torchvision/resnet50'), or skltr's "
        f"{', '.join(SKLTR_MODELS)}; or pass a torch.nn.Module."
    )


def _has_model(source, name):
    if source == "skltr":
        return name in SKLTR_MODELS
    if source == "timm":
        import timm

        return timm.is_model(name)
    return name in _torchvision_names()


def _timm_names():
    import timm

    return timm.list_models()


def _torchvision_names():
    return torchvision.models.list_models(module=torchvision.models)


def _frozen(backbone):
    backbone.network.eval().requires_grad_(False)
    return backbone


# -- timm --------------------------------------------------------------------


def _timm(name, *, pretrained, weights):
    import timm
    from timm.data import create_transform, resolve_model_data_config

    # num_classes=0 makes the head an identity: forward returns the pooled,
    # normalised pre-logits feature (timm's forward_head(pre_logits=True)).
    network = timm.create_model(name, pretrained=False, num_classes=0)
    cfg = network.pretrained_cfg
    classifier = cfg.get("classifier") or ()
    head = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    full_name = f"timm/{name}" if "." in name else f"timm/{name}.{cfg.get('tag')}"
    location = load_weights(
        network,
        weights,
        pretrained,
        lambda: timm_pretrained_file(name, cfg),
        head_prefixes=head,
        name=full_name,
    )
    data_config = resolve_model_data_config(network)
    eval_transform = create_transform(**data_config, is_training=False)
    train_transform = _random_resized_crop(
        data_config["input_size"][1:],
        data_config["interpolation"],
        data_config["mean"],
        data_config["std"],
    )
    return Backbone(
        network, full_name, eval_transform, train_transform, location or "random"
    )


# -- torchvision -------------------------------------------------------------


def _torchvision(name, *, pretrained, weights):
    network = torchvision.models.get_model(name, weights=None)
    try:
        published = torchvision.models.get_model_weights(name).DEFAULT
    except ValueError:
        published = None
    head = _replace_final_linear(network, f"torchvision/{name}")

    def published_file():
        if published is None:
            raise ValueError(
                f"torchvision publishes no weights for {name!r}; pass "
                "weights='path/to/file' or pretrained=False."
            )
        return torch_hub_file(published.url, model=f"torchvision/{name}")

    location = load_weights(
        network,
        weights,
        pretrained,
        published_file,
        head_prefixes=(head,),
        name=f"torchvision/{name}",
    )
    if published is not None:
        eval_transform = published.transforms()
        train_transform = _random_resized_crop(
            eval_transform.crop_size,
            eval_transform.interpolation,
            eval_transform.mean,
            eval_transform.std,
        )
    else:
        eval_transform, train_transform = ToFloatTensor(), None
    return Backbone(
        network,
        f"torchvision/{name}",
        eval_transform,
        train_transform,
        location or "random",
    )


def _replace_final_linear(network, name):
    """Make the last ``nn.Linear`` an identity; return its name.

    The input of a torchvision classifier's last linear layer is its
    pre-logits feature (after pooling, and after any hidden layer of the
    classifier, as in MobileNet).
    """
    linears = [n for n, m in network.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(
            f"{name} has no final linear classifier to take the features from; "
            "pass layer='<module name>' to choose the feature layer."
        )
    parent_name, _, child = linears[-1].rpartition(".")
    parent = network.get_submodule(parent_name) if parent_name else network
    setattr(parent, child, nn.Identity())
    return linears[-1]


# -- skltr's own -------------------------------------------------------------


def _skltr(name, *, pretrained, weights):
    constructor, filename = SKLTR_MODELS[name]
    network = constructor()
    network.linear = nn.Identity()
    location = load_weights(
        network,
        weights,
        pretrained,
        lambda: torch_hub_file(_CIFAR_RELEASE + filename, model=name),
        head_prefixes=("linear",),
        name=name,
    )
    mean, std = _cifar_resnet.IMAGENET_MEAN, _cifar_resnet.IMAGENET_STD
    eval_transform = T.Compose(
        [T.Resize(32), T.CenterCrop(32), ToFloatTensor(), T.Normalize(mean, std)]
    )
    # The augmentation these networks are trained with.
    train_transform = T.Compose(
        [
            T.Resize(32),
            T.RandomCrop(32, padding=4),
            T.RandomHorizontalFlip(),
            ToFloatTensor(),
            T.Normalize(mean, std),
        ]
    )
    return Backbone(
        network, f"skltr/{name}", eval_transform, train_transform, location or "random"
    )


def _random_resized_crop(size, interpolation, mean, std):
    """Random resized crop and horizontal flip: the reference stage-2 recipe."""
    if isinstance(interpolation, str):
        interpolation = T.InterpolationMode(interpolation)
    return T.Compose(
        [
            T.RandomResizedCrop(tuple(size), interpolation=interpolation),
            T.RandomHorizontalFlip(),
            ToFloatTensor(),
            T.Normalize(mean, std),
        ]
    )
