"""Running a frozen network over images, a batch at a time.

A map-style dataset of preprocessed images (``_images``) is batched by a
``DataLoader`` (in worker processes where that pays), moved to the device,
finished there when the transform's last steps are tensor operations, and
passed through the network under ``torch.inference_mode`` in the chosen
precision; on CUDA out-of-memory a batch is split and tried again.
"""

import os
from contextlib import nullcontext

import numpy as np
import torch
from tqdm.auto import tqdm

from ._images import PreprocessedImages, split_at_to_tensor
from ._warnings import warn
from .exceptions import FallbackWarning

#: The autocast dtype of each ``precision``; None runs in float32.
AUTOCAST_DTYPES = {
    "float32": None,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def iter_batch_features(
    network,
    source,
    indices,
    transform,
    seeds,
    *,
    device,
    batch_size,
    num_workers,
    precision,
    progress,
    desc,
):
    """Yield (positions, features) per batch for the images at ``indices``.

    Parameters
    ----------
    network : torch.nn.Module
        On ``device``; maps a batch to (batch, n_features).
    source : ImageSource
    indices : list of int
        Positions in ``source``, not empty.
    transform : callable
        Image to tensor; its tensor-only tail runs on the device.
    seeds : ndarray or None
        A seed per image of ``source`` for a random transform.
    device : torch.device
    batch_size : int
    num_workers : int or "auto"
        "auto": none for a single batch (starting processes would cost more),
        else one per core but one, at most 8.
    precision : {"float32", "bfloat16", "float16"}
    progress : bool
        Show a progress bar (after two seconds).
    desc : str
        The progress bar's label.
    """
    host_transform, on_device = split_at_to_tensor(transform)
    dataset = PreprocessedImages(
        source, indices, host_transform, None if seeds is None else seeds[indices]
    )
    if num_workers == "auto":
        num_workers = (
            0 if len(indices) <= batch_size else min(8, (os.cpu_count() or 1) - 1)
        )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        collate_fn=_stack_images,
    )
    autocast_dtype = AUTOCAST_DTYPES[precision]
    chunk = batch_size
    start = 0
    with tqdm(
        total=len(indices),
        disable=not progress,
        delay=2,
        leave=False,
        unit="image",
        desc=desc,
    ) as bar:
        for batch in loader:
            batch = batch.to(device, non_blocking=True)
            if on_device is not None:
                batch = on_device(batch)
            rows, chunk = forward_in_chunks(network, batch, chunk, autocast_dtype)
            yield indices[start : start + len(batch)], rows
            start += len(batch)
            bar.update(len(batch))


def forward_in_chunks(network, batch, chunk, autocast_dtype):
    """Run ``batch`` through the network ``chunk`` images at a time.

    On CUDA out-of-memory the chunk is halved and the same images are tried
    again. Returns the float32 features and the chunk size that worked.
    """
    outputs = []
    start = 0
    while start < len(batch):
        try:
            with (
                torch.inference_mode(),
                (
                    torch.autocast(batch.device.type, dtype=autocast_dtype)
                    if autocast_dtype is not None
                    else nullcontext()
                ),
            ):
                output = network(batch[start : start + chunk])
        except torch.cuda.OutOfMemoryError:
            if chunk == 1:
                raise
            chunk //= 2
            torch.cuda.empty_cache()
            warn(
                f"CUDA ran out of memory; going on with batches of {chunk} images.",
                FallbackWarning,
            )
            continue
        outputs.append(output.float().cpu().numpy())
        start += chunk
    return np.concatenate(outputs), chunk


def _stack_images(images):
    for image in images:
        if not isinstance(image, torch.Tensor) or image.ndim != 3:
            raise ValueError(
                "preprocess must turn an image into a (channels, height, width) "
                f"tensor; it returned {type(image).__name__}"
                f"{tuple(image.shape) if hasattr(image, 'shape') else ''}."
            )
    shapes = {tuple(image.shape) for image in images}
    if len(shapes) > 1:
        raise ValueError(
            f"Preprocessed images have different shapes {sorted(shapes)[:3]}; a "
            "batch needs one shape. Pass a preprocess that resizes and crops "
            "them to one size."
        )
    if len({image.dtype for image in images}) > 1:
        # uint8 pixels beside float images (a mixed list): scaled as ToTensor does.
        images = [
            image.float().div(255) if image.dtype == torch.uint8 else image
            for image in images
        ]
    return torch.stack(images)
