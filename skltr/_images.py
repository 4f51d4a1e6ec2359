"""Images in every form a user hands them to :class:`skltr.FeatureExtractor`.

One place turns paths, PIL images, arrays, tensors and datasets into what a
preprocessing transform takes: an RGB PIL image (files, PIL images and uint8
pixels) or a float tensor of shape (3, H, W) with values in [0, 1]. Checks on
shape, dtype and values happen here, with errors that say what was expected.
"""

import hashlib
import os
import random

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image, ImageOps

_CHANNELS = (1, 3, 4)

_EXPECTED = (
    "Expected a sequence of image file paths or PIL images, a uint8 array of "
    "shape (n_samples, height, width, channels) or (n_samples, height, width), "
    "a float array or tensor of shape (n_samples, channels, height, width) with "
    "values in [0, 1], or a torch.utils.data.Dataset yielding images or "
    "(image, label) pairs; channels is 1, 3 or 4."
)


class ToFloatTensor:
    """PIL image to a float (C, H, W) tensor in [0, 1]; tensors pass through.

    The tail of every default preprocessing, so that a transform takes PIL
    images and float tensors alike (torchvision's ``ToTensor`` refuses tensors).
    """

    def __call__(self, image):
        if isinstance(image, torch.Tensor):
            if image.dtype == torch.uint8:
                return image.float().div_(255)
            return image
        return TF.to_tensor(image)

    def __repr__(self):
        return f"{type(self).__name__}()"


def is_dataset(X):
    return isinstance(X, torch.utils.data.Dataset)


class ImageSource:
    """Indexable view of the user's images: ``load(i)`` and ``key(i)``.

    Parameters
    ----------
    X : see the module docstring
    check_range : bool
        Whether float pixels must lie in [0, 1] (the default preprocessing
        assumes it; a user's own preprocessing may not).
    """

    def __init__(self, X, *, check_range=True):
        self.check_range = check_range
        self._items, self._kind = _as_items(X, check_range)

    def __len__(self):
        return len(self._items)

    def raw(self, index):
        item = self._items[index]
        if self._kind == "dataset" and isinstance(item, tuple | list):
            item = item[0]
        return item

    def load(self, index):
        """Image ``index`` as an RGB PIL image or a float (3, H, W) tensor."""
        return to_model_input(
            self.raw(index),
            index,
            check_range=self.check_range,
            # A whole array's values were checked once, up front.
            check_values=self._kind != "pixels",
        )

    def key(self, index):
        """A digest of image ``index``'s content, for the feature cache.

        Files are identified by absolute path, size and modification time, not
        by reading them, so a cache hit costs a ``stat``.
        """
        item = self.raw(index)
        digest = hashlib.blake2b(digest_size=16)
        if isinstance(item, str | os.PathLike):
            path = os.path.abspath(os.fspath(item))
            try:
                stat = os.stat(path)
            except OSError as exc:
                raise ValueError(
                    f"Cannot read image {index} ({os.fspath(item)!r}): {exc}"
                ) from exc
            digest.update(f"file:{path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
            return digest.digest()
        image = self.load(index)
        if isinstance(image, Image.Image):
            digest.update(f"pil:{image.mode}:{image.size}".encode())
            digest.update(image.tobytes())
        else:
            array = image.numpy()
            digest.update(f"tensor:{array.dtype}:{array.shape}".encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.digest()


def _as_items(X, check_range):
    if isinstance(X, str | bytes | os.PathLike | Image.Image):
        raise ValueError(
            f"Got a single {type(X).__name__}; pass a list of images, even for "
            f"one image: [{X!r}]. {_EXPECTED}"
        )
    if is_dataset(X):
        if isinstance(X, torch.utils.data.IterableDataset) or not hasattr(X, "__len__"):
            raise ValueError(
                "Only map-style datasets (with __len__ and __getitem__) can be "
                f"transformed; got {type(X).__name__}."
            )
        items, kind = X, "dataset"
    elif hasattr(X, "to_numpy") and hasattr(X, "columns"):  # a pandas DataFrame
        if X.shape[1] != 1:
            raise ValueError(
                f"A DataFrame of images must have one column (of paths); got "
                f"{X.shape[1]} columns."
            )
        items, kind = X.to_numpy().ravel(), "sequence"
    elif hasattr(X, "to_numpy"):  # a pandas Series
        items, kind = X.to_numpy(), "sequence"
    elif isinstance(X, torch.Tensor):
        items, kind = _check_pixel_tensor(X, check_range), "pixels"
    elif isinstance(X, np.ndarray) and X.dtype != object and X.dtype.kind not in "US":
        items, kind = _check_pixel_array(X, check_range), "pixels"
    elif isinstance(X, np.ndarray):
        if X.ndim == 2 and X.shape[1] == 1:
            X = X.ravel()
        if X.ndim != 1:
            raise ValueError(
                f"An array of paths must be 1-d; got shape {X.shape}. {_EXPECTED}"
            )
        items, kind = X, "sequence"
    elif isinstance(X, list | tuple):
        items, kind = X, "sequence"
    else:
        raise ValueError(f"Cannot read images from a {type(X).__name__}. {_EXPECTED}")
    if len(items) == 0:
        raise ValueError("Got no images (0 samples).")
    return items, kind


def _check_pixel_array(X, check_range):
    if X.dtype == np.uint8:
        if X.ndim == 3 or (X.ndim == 4 and X.shape[-1] in _CHANNELS):
            return X
        raise ValueError(
            f"A uint8 image array must have shape (n_samples, height, width, "
            f"channels) with 1, 3 or 4 channels, or (n_samples, height, width); "
            f"got shape {X.shape}."
        )
    if X.dtype.kind == "f":
        _check_float_layout(X.shape, transpose="np.transpose(X, (0, 3, 1, 2))")
        tensor = torch.from_numpy(np.ascontiguousarray(X))
        _check_float_values(tensor, check_range)
        return tensor
    raise ValueError(
        f"Image arrays must be uint8 (0..255) or floating point (0..1); got dtype "
        f"{X.dtype}. Convert with X.astype(np.uint8) or X.astype(np.float32) / 255."
    )


def _check_pixel_tensor(X, check_range):
    if X.dtype == torch.uint8:
        if X.ndim == 4 and X.shape[1] in _CHANNELS:
            return X
        raise ValueError(
            f"A uint8 image tensor must have shape (n_samples, channels, height, "
            f"width) with 1, 3 or 4 channels; got shape {tuple(X.shape)}."
        )
    if X.is_floating_point():
        _check_float_layout(tuple(X.shape), transpose="X.permute(0, 3, 1, 2)")
        _check_float_values(X, check_range)
        return X.detach().cpu()
    raise ValueError(
        f"Image tensors must be uint8 or floating point; got dtype {X.dtype}."
    )


def _check_float_layout(shape, *, transpose):
    if len(shape) == 4 and shape[1] in _CHANNELS:
        return
    hint = ""
    if len(shape) == 4 and shape[-1] in _CHANNELS:
        hint = f" It looks channels-last; reorder it with {transpose}."
    raise ValueError(
        f"Float images must have shape (n_samples, channels, height, width) with "
        f"1, 3 or 4 channels; got shape {tuple(shape)}.{hint}"
    )


def _check_float_values(tensor, check_range, index=None):
    where = "Float images" if index is None else f"Image {index}"
    finite = torch.isfinite(tensor)
    if not finite.all():
        if index is None:
            # A batch of images: name the first that is not finite.
            bad = int(torch.nonzero(~finite.flatten(1).all(dim=1))[0, 0])
            where = f"Image {bad} of the float images"
        raise ValueError(f"{where} contains NaN or infinite values.")
    if check_range and tensor.numel() and (tensor.min() < 0 or tensor.max() > 1):
        raise ValueError(
            f"{where} must have values in [0, 1] for the default preprocessing; "
            f"got values in [{float(tensor.min()):.3g}, {float(tensor.max()):.3g}]. "
            "Divide 0..255 pixels by 255; for tensors that are already "
            "preprocessed pass preprocess=torch.nn.Identity()."
        )


def to_model_input(item, index, *, check_range=True, check_values=True):
    """One image as an RGB PIL image or a float (3, H, W) tensor.

    ``check_values=False`` skips the NaN and range checks of float pixels, for
    rows of an array that was checked whole.
    """
    if isinstance(item, str | os.PathLike):
        return read_image(item, index)
    if isinstance(item, Image.Image):
        return as_rgb(item, index)
    if isinstance(item, np.ndarray):
        if item.dtype == np.uint8 and (
            item.ndim == 2 or (item.ndim == 3 and item.shape[-1] in _CHANNELS)
        ):
            return _pil_from_pixels(item)
        if item.dtype.kind == "f" and item.ndim == 3 and item.shape[0] in _CHANNELS:
            item = torch.from_numpy(np.ascontiguousarray(item))
        else:
            raise ValueError(
                f"Image {index} is an array of shape {item.shape} and dtype "
                f"{item.dtype}; expected uint8 (height, width, channels) or float "
                "(channels, height, width)."
            )
    if isinstance(item, torch.Tensor):
        if item.dtype == torch.uint8 and item.ndim == 3 and item.shape[0] in _CHANNELS:
            return _pil_from_pixels(item.permute(1, 2, 0).numpy())
        if item.is_floating_point() and item.ndim == 3 and item.shape[0] in _CHANNELS:
            if check_values:
                _check_float_values(item, check_range, index)
            return _rgb_channels(item.float())
        raise ValueError(
            f"Image {index} is a tensor of shape {tuple(item.shape)} and dtype "
            f"{item.dtype}; expected (channels, height, width), uint8 or float."
        )
    raise ValueError(
        f"Image {index} is a {type(item).__name__}; expected a file path, a PIL "
        "image, a uint8 (height, width, channels) array or a float (channels, "
        "height, width) tensor."
    )


def read_image(path, index):
    """Open an image file as RGB, upright, naming the file and its index on failure.

    A photograph whose EXIF orientation says it was taken sideways is turned
    the way it is displayed; an animated image gives its first frame.
    """
    return open_image(path, index, os.fspath(path))


def open_image(source, index, where):
    """:func:`read_image` of a path or a file object; ``index`` and ``where``
    (the file, or the archive holding it) name it on failure."""
    try:
        with Image.open(source) as image:
            image.load()
            return as_rgb(ImageOps.exif_transpose(image), index)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(f"Cannot read image {index} ({where!r}): {exc}") from exc


#: PIL's modes of 16-bit integer pixels ("I" is how PIL opens 16-bit PNGs).
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def as_rgb(image, index):
    """A PIL image as RGB; 16-bit grey levels are scaled to 8 bits, not clipped.

    PIL's own conversion clips 16-bit values at 255, which turns a 16-bit
    image (microscopy, medical, depth) white wherever it is brighter than
    255 / 65,535 of its range.
    """
    if image.mode == "RGB":
        return image
    if image.mode in _SIXTEEN_BIT_MODES:
        pixels = np.asarray(image, dtype=np.float64) / 257.0
        image = Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8))
    try:
        return image.convert("RGB")
    except ValueError as exc:
        raise ValueError(
            f"Cannot convert image {index} (PIL mode {image.mode!r}) to RGB: {exc}. "
            "Convert it to RGB or L first, for example image.convert('RGBA')."
        ) from exc


def _pil_from_pixels(pixels):
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    return Image.fromarray(np.ascontiguousarray(pixels)).convert("RGB")


def _rgb_channels(tensor):
    if tensor.shape[0] == 1:
        return tensor.expand(3, -1, -1)
    return tensor[:3]


class PreprocessedImages(torch.utils.data.Dataset):
    """The images at ``indices``, preprocessed, for a ``DataLoader``.

    With ``seeds``, item ``i`` is transformed under its own seed, so a random
    augmentation draws the same view whatever the batch size, the number of
    workers or the order, and leaves the caller's random state untouched.
    """

    def __init__(self, source, indices, transform, seeds=None):
        self.source = source
        self.indices = indices
        self.transform = transform
        self.seeds = seeds

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, position):
        image = self.source.load(self.indices[position])
        if self.seeds is None:
            return self.transform(image)
        # Seeds Python's random module too: some augmentations (timm's) draw
        # from it rather than from torch.
        python_state = random.getstate()
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(self.seeds[position]))
                random.seed(int(self.seeds[position]))
                return self.transform(image)
        finally:
            random.setstate(python_state)


def split_at_to_tensor(transform):
    """Split a preprocessing transform into a host part and a device part.

    A ``Compose`` that ends in ``ToTensor`` and optionally ``Normalize`` (the
    evaluation transforms of timm and torchvision) becomes its steps before
    ``ToTensor`` followed by a uint8 conversion, run per image on the host,
    and ``ToTensor``'s scaling and the normalisation, run per batch where the
    batch lands. Images then cross from the loader workers to the device as
    uint8, a quarter of the bytes of float32, and the arithmetic is the same
    float32 operations in the same order, so the features do not change. Any
    other transform runs whole on the host, and the device part is None.

    Returns
    -------
    host : callable
    device : callable or None
        Takes a batch (uint8, or float in [0, 1]) and returns it normalised.
    """
    from torchvision import transforms

    steps = list(getattr(transform, "transforms", []))
    if not isinstance(transform, transforms.Compose) or not steps:
        return transform, None
    normalize = None
    if isinstance(steps[-1], transforms.Normalize) and not steps[-1].inplace:
        normalize = steps.pop()
    if not steps or type(steps[-1]).__name__ not in {"ToTensor", "MaybeToTensor"}:
        return transform, None
    steps.pop()
    return transforms.Compose([*steps, PixelsToTensor()]), BatchNormalize(normalize)


class PixelsToTensor:
    """An 8-bit PIL image as a uint8 (channels, H, W) tensor.

    Tensors pass through; other image modes (16-bit, float) get ``ToTensor``'s
    own conversion, which does not divide them by 255.
    """

    def __call__(self, image):
        if isinstance(image, torch.Tensor):
            return image
        if image.mode not in ("RGB", "L"):
            return TF.to_tensor(image)
        pixels = np.array(image, dtype=np.uint8)
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        return torch.from_numpy(pixels).permute(2, 0, 1)

    def __repr__(self):
        return f"{type(self).__name__}()"


class BatchNormalize:
    """``ToTensor``'s scaling of uint8 pixels, then ``Normalize``, on a batch."""

    def __init__(self, normalize=None):
        self.mean = None if normalize is None else torch.as_tensor(normalize.mean)
        self.std = None if normalize is None else torch.as_tensor(normalize.std)

    def __call__(self, batch):
        if batch.dtype == torch.uint8:
            batch = batch.float().div_(255)
        if self.mean is None:
            return batch
        mean = self.mean.to(batch.device, batch.dtype)[:, None, None]
        std = self.std.to(batch.device, batch.dtype)[:, None, None]
        return batch.sub(mean).div_(std)
