"""Backbones by name or as modules, behind one interface.

:func:`build_backbone` turns a ``model`` parameter into a :class:`Backbone`:
a network whose forward pass returns the pooled pre-logits feature, the
model's own evaluation transform, its training augmentation, and a name. timm
and torchvision models, skltr's CIFAR ResNets and a user's ``nn.Module`` all
come out the same way, so the extractor never asks where a model came from.

Weights are only ever read from safetensors files or with
``torch.load(weights_only=True)``. Pretrained weights come from the library's
usual cache, and are downloaded only after a single quick request shows the
server is reachable: an offline machine gets a clear error at once instead of a
minute of retries.
"""

import copy
import difflib
import os
import pickle
import threading
import urllib.request
from dataclasses import dataclass

import torch
import torchvision
import torchvision.transforms as T
from torch import nn

from ._images import ToFloatTensor
from .models import _cifar_resnet

# Keys under which training scripts nest the state dict in a checkpoint, the
# first found taken. The Decoupling release (Kang et al., ICLR 2020) saves
# {"state_dict_best": {"feat_model": ..., "classifier": ...}, ...}: the best
# epoch's backbone is two levels down, and comes before a "state_dict" of
# the last epoch that some of its forks save beside it.
_NESTED_STATE_KEYS = (
    "state_dict_best",
    "state_dict",
    "model",
    "state_dict_ema",
    "model_state_dict",
    "feat_model",
)
# Prefixes added by DataParallel / DistributedDataParallel and torch.compile.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")

_PROBE_TIMEOUT_S = 5

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
        location = _load_weights(
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
    location = _load_weights(
        network,
        weights,
        pretrained,
        lambda: _timm_pretrained_file(name, cfg),
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


def _timm_pretrained_file(name, cfg):
    """The local file of a timm model's pretrained weights, downloading it if
    the Hugging Face Hub is reachable."""
    repo = cfg.get("hf_hub_id")
    if not repo:
        url = cfg.get("url")
        if not url:
            raise ValueError(
                f"timm publishes no pretrained weights for {name!r}; pass "
                "weights='path/to/file' or pretrained=False."
            )
        return _torch_hub_file(url, model=f"timm/{name}")
    import huggingface_hub
    from huggingface_hub import constants

    filenames = (
        [cfg["hf_hub_filename"]]
        if cfg.get("hf_hub_filename")
        else [
            "model.safetensors",
            "pytorch_model.bin",
        ]
    )
    for filename in filenames:
        cached = huggingface_hub.try_to_load_from_cache(repo, filename)
        if isinstance(cached, str):
            return cached
    url = huggingface_hub.hf_hub_url(repo, filenames[0])
    if constants.HF_HUB_OFFLINE:
        reason = "HF_HUB_OFFLINE is set"
    else:
        try:
            huggingface_hub.get_hf_file_metadata(url, timeout=_PROBE_TIMEOUT_S)
            return huggingface_hub.hf_hub_download(repo, filenames[0])
        except Exception as exc:  # any failure to reach the Hub means the same
            reason = f"the Hugging Face Hub is unreachable: {exc}"
    raise _missing_weights_error(
        f"timm/{name}",
        url,
        reason,
        cache=f"the Hugging Face cache ({constants.HF_HUB_CACHE}, repository {repo})",
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
        return _torch_hub_file(published.url, model=f"torchvision/{name}")

    location = _load_weights(
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
    location = _load_weights(
        network,
        weights,
        pretrained,
        lambda: _torch_hub_file(_CIFAR_RELEASE + filename, model=name),
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


# -- weights -----------------------------------------------------------------


def _load_weights(
    network, weights, pretrained, pretrained_file, *, head_prefixes, name
):
    """Load a weights file, or the published weights, into ``network``.

    Returns where the weights came from, or None for random weights.
    """
    if weights is not None:
        location = os.fspath(weights)
    elif pretrained:
        location = pretrained_file()
    else:
        return None
    load_into(
        network,
        read_state_dict(location),
        head_prefixes=head_prefixes,
        name=name,
        source=location,
    )
    return location


def _torch_hub_file(url, *, model):
    """A file published at ``url``, from torch.hub's checkpoint cache."""
    directory = os.path.join(torch.hub.get_dir(), "checkpoints")
    path = os.path.join(directory, os.path.basename(url))
    if os.path.exists(path):
        return path
    try:
        urllib.request.urlopen(
            urllib.request.Request(url, method="HEAD"), timeout=_PROBE_TIMEOUT_S
        ).close()
    except Exception as exc:  # any failure to reach the server means the same
        raise _missing_weights_error(
            model,
            url,
            f"the server is unreachable: {exc}",
            cache=f"torch.hub's cache ({path})",
        ) from None
    os.makedirs(directory, exist_ok=True)
    torch.hub.download_url_to_file(url, path)
    return path


def _missing_weights_error(model, url, reason, *, cache):
    return ValueError(
        f"The pretrained weights of {model} are not on this machine and cannot be "
        f"downloaded ({reason}). Looked in {cache}. To supply them, download "
        f"{url} on a machine with network access and pass "
        "weights='path/to/that/file' (safetensors or a PyTorch state dict), or "
        "put it in that cache. pretrained=False gives random weights."
    )


def read_state_dict(path):
    """Read a state dict from a safetensors file or a PyTorch checkpoint.

    PyTorch files are read with ``weights_only=True``: tensors and plain
    containers only, never arbitrary pickled objects. A checkpoint that nests
    the state dict (``{"state_dict": ...}``, ``{"model": ...}``, the
    Decoupling release's ``{"state_dict_best": {"feat_model": ...}}``) is
    unwrapped, and ``module.`` / ``_orig_mod.`` prefixes are stripped.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"Weights file {path!r} does not exist.")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(path, device="cpu")
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise ValueError(
                f"{path!r} holds more than tensors, and skltr never unpickles "
                "arbitrary objects. Save model.state_dict() with torch.save, or "
                "convert the file to safetensors."
            ) from exc
    while isinstance(state, dict) and not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        nested = next(
            (key for key in _NESTED_STATE_KEYS if isinstance(state.get(key), dict)),
            None,
        )
        if nested is None:
            break
        state = state[nested]
    if not isinstance(state, dict) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise ValueError(
            f"{path!r} is not a state dict (a mapping of names to tensors) and has "
            f"none under the keys {', '.join(_NESTED_STATE_KEYS)}."
        )
    return {_strip_prefixes(k): v for k, v in state.items()}


def _strip_prefixes(key):
    for prefix in _WRAPPER_PREFIXES:
        while key.startswith(prefix):
            key = key[len(prefix) :]
    return key


def load_into(network, state, *, head_prefixes, name, source=None):
    """Load ``state`` into ``network`` strictly, except for the classifier head.

    The network's head is an identity, so the checkpoint's head weights (of
    whatever number of classes) have nowhere to go and are not needed: every
    other parameter and buffer must match by name and shape.
    """

    def in_head(key):
        return any(key == p or key.startswith(p + ".") for p in head_prefixes)

    body = {k: v for k, v in state.items() if not in_head(k)}
    expected = network.state_dict()
    mismatched = sorted(
        f"{k} {tuple(body[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in body and body[k].shape != v.shape
    )
    if not mismatched:
        # load_state_dict knows which keys may be absent (the batch counters
        # of BatchNorm layers saved by old PyTorch versions).
        result = network.load_state_dict(body, strict=False)
        missing, unexpected = (
            sorted(result.missing_keys),
            sorted(result.unexpected_keys),
        )
    else:
        missing = sorted(expected.keys() - body.keys())
        unexpected = sorted(body.keys() - expected.keys())
    problems = [
        f"{label}: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}"
        for label, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("wrong shape (file vs model)", mismatched),
        )
        if keys
    ]
    if problems:
        raise ValueError(
            f"The weights{'' if source is None else f' in {source}'} do not "
            f"fit {name}; {'; '.join(problems)}. Check that the file belongs to "
            "this architecture."
        )


# Which FeatureNetworks are inside forward, per thread: a flag on the module
# would let one thread's forward end another's capture, and a thread-local
# attribute would not pickle.
_THREAD_STATE = threading.local()


def _capturing_in_this_thread():
    if not hasattr(_THREAD_STATE, "networks"):
        _THREAD_STATE.networks = set()
    return _THREAD_STATE.networks


class _LayerReached(Exception):
    """Raised by the hook on the feature layer to skip the rest of the network."""


class FeatureNetwork(nn.Module):
    """A backbone's output, or a named layer's, as (batch, n_features).

    A 4-d output (batch, channels, height, width) is averaged over its spatial
    positions; any other output is flattened per sample.
    """

    def __init__(self, network, layer=None):
        super().__init__()
        self.network = network
        self.layer = layer
        if layer is not None:
            modules = dict(network.named_modules())
            if layer not in modules or layer == "":
                close = difflib.get_close_matches(layer, list(modules), n=5)
                hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
                raise ValueError(
                    f"The network has no layer {layer!r}.{hint} Layer names are "
                    "those of network.named_modules()."
                )
            modules[layer].register_forward_hook(self._capture)

    def _capture(self, module, inputs, output):
        # Only inside this thread's forward: the wrapped network still runs
        # whole on its own, and in other threads.
        if id(self) in _capturing_in_this_thread():
            raise _LayerReached(output)

    def forward(self, x):
        if self.layer is None:
            output = self.network(x)
        else:
            capturing = _capturing_in_this_thread()
            capturing.add(id(self))
            try:
                self.network(x)
            except _LayerReached as reached:
                output = reached.args[0]
            else:  # pragma: no cover - the hooked layer always runs
                raise RuntimeError(f"Layer {self.layer!r} did not run.")
            finally:
                capturing.discard(id(self))
        if isinstance(output, tuple | list):
            output = output[0]
        if output.ndim == 4:
            return output.mean(dim=(2, 3))
        return output.flatten(1)
