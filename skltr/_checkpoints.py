"""Network weights: read safely, loaded strictly, found in the usual caches.

Weights are only ever read from safetensors files or with
``torch.load(weights_only=True)``. Pretrained weights come from the library's
usual cache (the Hugging Face cache for timm, torch.hub's for torchvision and
skltr's models), and are downloaded only after a single quick request shows
the server is reachable: an offline machine gets a clear error at once
instead of a minute of retries. A digest of a network's weights
(:func:`network_digest`) identifies them in the feature cache and when a
pickled extractor rebuilds its network.
"""

import hashlib
import os
import pickle
import urllib.request

import torch

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


def load_weights(network, weights, pretrained, pretrained_file, *, head_prefixes, name):
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


def torch_hub_file(url, *, model):
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


def timm_pretrained_file(name, cfg):
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
        return torch_hub_file(url, model=f"timm/{name}")
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


def network_digest(network):
    """Digest of a network's parameters and buffers (names, dtypes, values)."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(network.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{tensor.dtype}:{tensor.numel()}".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
