"""Where the computation runs: a ``device`` parameter made a ``torch.device``,
and the device each kind of work (float64 scoring, counting) falls back to.
"""

import torch

#: The parameter constraint of every estimator's ``device``, which
#: :func:`resolve_device` then reads.
DEVICE_CONSTRAINT = [str, torch.device]


def resolve_device(device):
    """Turn a ``device`` parameter into a usable :class:`torch.device`.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda", "cuda:N", "mps"} or torch.device
        ``"auto"`` picks CUDA when it is available, else the CPU; it never
        picks MPS.

    Returns
    -------
    torch.device

    Raises
    ------
    ValueError
        If the string is not a device, or names an accelerator that this
        machine does not have.
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(device, torch.device):
        resolved = device
    elif isinstance(device, str):
        try:
            resolved = torch.device(device)
        except RuntimeError as exc:
            raise ValueError(
                f"device={device!r} is not a device; use 'auto', 'cpu', 'cuda', "
                "'cuda:N' or 'mps'."
            ) from exc
    else:
        raise ValueError(
            "device must be 'auto', 'cpu', 'cuda', 'cuda:N', 'mps' or a "
            f"torch.device; got {device!r}."
        )
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={str(device)!r} asks for CUDA, but this PyTorch "
                f"({torch.__version__}, CUDA build: {torch.version.cuda or 'none'}) "
                "sees no CUDA device. Use device='auto' or device='cpu', or run "
                "on a machine with a GPU and a CUDA build of PyTorch."
            )
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise ValueError(
                f"device={str(device)!r} asks for CUDA device {resolved.index}, "
                f"but only {count} CUDA device(s) are visible (0 to {count - 1})."
            )
    elif resolved.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(
                f"device={str(device)!r} asks for Apple MPS, which is not "
                "available here. Use device='auto' or device='cpu'."
            )
    elif resolved.type != "cpu":
        raise ValueError(
            f"device={str(device)!r} is not supported; use 'auto', 'cpu', 'cuda', "
            "'cuda:N' or 'mps'."
        )
    return resolved


def float64_device(device):
    """``device``, or the host where ``device`` has no float64 (Apple's MPS)."""
    return torch.device("cpu") if device.type == "mps" else device


def scoring_device(X):
    """Where rows of features ``X`` are scored in float64: where they are.

    That is a tensor's own device (so features on a GPU are not copied to
    the host) and the host for arrays; and the host for MPS tensors.
    """
    where = X.device if isinstance(X, torch.Tensor) else torch.device("cpu")
    return float64_device(where)


def _with_index(device):
    """``device`` with its index: "cuda" is the current CUDA device."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device
