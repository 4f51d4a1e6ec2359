"""FeatureExtractor: a frozen backbone as a scikit-learn transformer."""

import hashlib
import os
from numbers import Integral

import joblib
import numpy as np
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._backbones import build_backbone
from ._backend import DEVICE_CONSTRAINT, resolve_device
from ._checkpoints import network_digest
from ._feature_cache import FeatureCache, configuration_namespace
from ._feature_network import FeatureNetwork
from ._images import ImageSource
from ._inference import AUTOCAST_DTYPES, iter_batch_features


class FeatureExtractor(
    ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator
):
    """Features of images from a frozen timm, torchvision or PyTorch backbone.

    The first step of a long-tail pipeline: images in, one feature vector per
    image out (the backbone's pooled pre-logits feature), ready for any skltr
    classifier. The network is frozen (eval mode, no gradients) and runs batched
    under ``torch.inference_mode``, on the GPU when there is one.

    Read more in the :ref:`User Guide <from-images>`.

    Parameters
    ----------
    model : str or torch.nn.Module, default="resnet50"
        The backbone. A name is timm's (``"resnet50"``,
        ``"vit_base_patch16_224"``, ``"convnext_tiny.fb_in22k"``: any name of
        ``timm.list_models()``, optionally with its pretrained tag), or
        torchvision's with the prefix ``"torchvision/"``
        (``"torchvision/resnet50"``), or one of skltr's CIFAR ResNets
        (``"cifar_resnet20"``, ``"cifar_resnet32"``, ``"cifar_resnet44"``,
        ``"cifar_resnet56"``; see :mod:`skltr.models`). ``"timm/"`` and
        ``"skltr/"`` prefixes are accepted too. A module is used as it is: its
        output is the feature (copied, never modified).

        The default, timm's ResNet-50 (``resnet50.a1_in1k``, 80.4% ImageNet
        top-1, 2,048-d features), is the backbone of the decoupling paper's
        ImageNet-LT and iNaturalist tables, the most widely used transfer
        backbone, and fast enough to extract on a CPU when there is no GPU.

    pretrained : bool, default=True
        Load the model's published weights. They are read from the library's
        usual cache (Hugging Face's for timm, ``torch.hub``'s for torchvision
        and skltr), and downloaded there when the network allows. When neither
        is possible the error says where to put a local file. ``False`` gives
        random weights. Ignored for a module.

    weights : str or path, default=None
        A local weights file for the model: safetensors, or a PyTorch state
        dict (read with ``torch.load(weights_only=True)``, which never
        unpickles arbitrary objects). A nested checkpoint (``{"state_dict":
        ...}``) is unwrapped and ``module.`` prefixes are stripped. Every
        parameter except the classifier head must match. Takes precedence over
        ``pretrained``.

    layer : str, default=None
        Take the feature from this module (a name of
        ``network.named_modules()``) instead of the pre-logits. A 4-d output
        is averaged over its spatial positions; any other is flattened.

    preprocess : callable, default=None
        Image to (C, H, W) tensor. ``None`` uses the model's own evaluation
        transform (timm's data config, torchvision's ``weights.transforms()``,
        the CIFAR normalisation); for a module, pixels scaled to [0, 1] only.
        It receives an RGB PIL image, or a float (3, H, W) tensor for float
        inputs. ``torch.nn.Identity()`` takes float tensors as already
        preprocessed.

    n_views : int, default=1
        Feature rows per image in :meth:`transform_views`: the plain view and
        ``n_views - 1`` augmented views. This is the cheap stand-in for the
        image augmentation of the reference stage-2 training. ``transform``
        always returns one plain row per image.

    augmentation : callable, default=None
        Image to (C, H, W) tensor, random, for the augmented views. ``None``
        uses a random resized crop and horizontal flip at the model's input
        size and normalisation (random 32-pixel crop with 4-pixel padding and
        flip for the CIFAR ResNets). Required for a module when
        ``n_views > 1``.

    batch_size : int, default=64
        Images per forward pass. On CUDA out-of-memory the batch is halved
        (with a warning) and extraction goes on.

    precision : {"float32", "bfloat16", "float16"}, default="float32"
        Autocast dtype of the forward pass. The features are returned as
        float32 whatever it is.

    device : {"auto", "cpu", "cuda", "cuda:N", "mps"} or torch.device, default="auto"
        Where the network runs; ``"auto"`` takes CUDA when PyTorch sees a GPU.
        ``"mps"`` (Apple silicon) is used only when named, and is not covered
        by the project's tests.

    num_workers : int or "auto", default="auto"
        Processes reading and preprocessing images for the ``DataLoader``.
        ``"auto"`` uses up to 8 (one less than the CPUs) when there is more
        than one batch, else reads in the main process.

    memory : str, path or joblib.Memory, default=None
        Directory where features are cached, keyed by the backbone, its
        weights, the layer, the preprocessing, the precision and each image's
        content (for a file: its path, size and modification time). The same
        image through the same configuration is computed once, across calls,
        folds of a grid search and processes. Entries are written atomically.
        A custom ``preprocess`` function is identified by its name: change the
        directory when you change its code.

    verbose : int, default=1
        Show a progress bar on extractions that take more than two seconds.

    random_state : int, RandomState instance or None, default=None
        Seeds the augmented views. Each view of an image draws from its own
        seed, derived from this and the image's content, so the views do not
        depend on batch size, workers or order. With ``None`` the views differ
        on every call and are not cached.

    Attributes
    ----------
    n_features_out_ : int
        Length of a feature vector.

    backbone_name_ : str
        The backbone that was built, ``"<source>/<name>"`` (timm names carry
        their pretrained tag) or the module's class name.

    weights_ : str
        Where the weights came from: a file path, ``"random"`` or ``"module's
        own"``.

    weights_digest_ : str
        Digest of the network's parameters and buffers. An unpickled extractor
        rebuilds its network on first use and checks this digest.

    preprocess_ : callable
        The evaluation transform in use.

    augmentation_ : callable or None
        The transform of the augmented views.

    device_ : str
        The device the network runs on.

    See Also
    --------
    skltr.TauNormClassifier : a classifier for the features.
    skltr.models : skltr's own backbones.

    Notes
    -----
    Pickling a fitted extractor does not pickle the network of a named model
    whose weights can be found again: it is rebuilt from ``model``,
    ``pretrained`` and ``weights`` on first use, so a pickle is a few
    kilobytes and loads on a machine without a GPU. A named model with random
    weights (``pretrained=False`` and no ``weights``) would be drawn anew at
    every build, so its pickle carries the weights (as safetensors bytes; the
    size of the network) and gives the same features. A module given as
    ``model`` is a parameter, and is pickled with it.

    In a scikit-learn ``Pipeline`` a step cannot change the number of rows, so
    augmented views do not fit there: call :meth:`fit_transform_views` for the
    training features, fit the classifier on them, and put the fitted
    extractor and classifier together for prediction (``fit_transform`` with
    ``n_views > 1`` raises rather than silently drop the views).

    Examples
    --------
    >>> import numpy as np
    >>> from skltr import FeatureExtractor
    >>> images = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3),
    ...                                            dtype=np.uint8)
    >>> extractor = FeatureExtractor("cifar_resnet20", pretrained=False,
    ...                              device="cpu", verbose=0)
    >>> extractor.fit_transform(images).shape
    (8, 64)
    >>> extractor.set_params(n_views=3, random_state=0)
    FeatureExtractor(...)
    >>> X_views, y_views = extractor.transform_views(images, np.arange(8))
    >>> X_views.shape, y_views[:6]
    ((24, 64), array([0, 0, 0, 1, 1, 1]))
    """

    _parameter_constraints: dict = {
        "model": [str, torch.nn.Module],
        "pretrained": ["boolean"],
        "weights": [str, os.PathLike, None],
        "layer": [str, None],
        "preprocess": [callable, None],
        "n_views": [Interval(Integral, 1, None, closed="left")],
        "augmentation": [callable, None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "precision": [StrOptions(set(AUTOCAST_DTYPES))],
        "device": DEVICE_CONSTRAINT,
        "num_workers": [
            Interval(Integral, 0, None, closed="left"),
            StrOptions({"auto"}),
        ],
        "memory": [str, os.PathLike, joblib.Memory, None],
        "verbose": ["verbose"],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        model="resnet50",
        *,
        pretrained=True,
        weights=None,
        layer=None,
        preprocess=None,
        n_views=1,
        augmentation=None,
        batch_size=64,
        precision="float32",
        device="auto",
        num_workers="auto",
        memory=None,
        verbose=1,
        random_state=None,
    ):
        self.model = model
        self.pretrained = pretrained
        self.weights = weights
        self.layer = layer
        self.preprocess = preprocess
        self.n_views = n_views
        self.augmentation = augmentation
        self.batch_size = batch_size
        self.precision = precision
        self.device = device
        self.num_workers = num_workers
        self.memory = memory
        self.verbose = verbose
        self.random_state = random_state

    # -- fitting -------------------------------------------------------------

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Build the backbone and check that it takes these images.

        Nothing is learned from ``X``: the network is loaded with its weights
        and the first image is passed through it to size the output. With
        ``memory``, that image's features are looked up in and stored to the
        cache, so repeated fits on overlapping images (a grid search) pass each
        distinct image through the backbone once.

        Parameters
        ----------
        X : sequence of paths or PIL images, array, tensor or Dataset
            Images, in any form :meth:`transform` takes.
        y : ignored

        Returns
        -------
        self : FeatureExtractor
        """
        backbone, network = self._build()
        self.backbone_name_ = backbone.name
        self.weights_ = backbone.weights
        self.weights_digest_ = network_digest(network)
        self.preprocess_ = (
            self.preprocess if self.preprocess is not None else backbone.eval_transform
        )
        self.augmentation_ = (
            self.augmentation
            if self.augmentation is not None
            else backbone.train_transform
        )
        self._place(network)
        self.n_features_out_ = self._feature_width(self._image_source(X))
        return self

    def _feature_width(self, source):
        """The width of the first image's features, from the cache if it has them."""
        cache = self._cache(self.preprocess_)
        if cache is not None:
            key = self._entry_key(source.key(0), 0)
            found = cache.lookup([key])
            if found:
                return len(found[0])
        _, rows = next(
            self._compute(source, [0], self.preprocess_, None, progress=False)
        )
        if cache is not None:
            cache.store([key], rows)
        return rows.shape[1]

    @property
    def _n_features_out(self):
        return self.n_features_out_

    def fit_transform(self, X, y=None):
        """Fit, then return one feature row per image.

        Parameters
        ----------
        X : sequence of paths or PIL images, array, tensor or Dataset
        y : ignored

        Returns
        -------
        features : ndarray of shape (n_samples, ``n_features_out_``), float32
        """
        # n_views is read before fit would validate it.
        self._validate_params()
        if self.n_views > 1:
            raise ValueError(
                f"n_views={self.n_views}: fit_transform returns one row per "
                "image, because a scikit-learn Pipeline cannot repeat the labels "
                "for extra rows. Use fit_transform_views(X, y) for the training "
                "features with their labels, or n_views=1 in a Pipeline."
            )
        return self.fit(X, y).transform(X)

    def fit_transform_views(self, X, y=None):
        """Fit, then return ``n_views`` feature rows per image and their labels.

        See :meth:`transform_views`.
        """
        return self.fit(X, y).transform_views(X, y)

    # -- transforming --------------------------------------------------------

    def transform(self, X):
        """One feature row per image, from the plain (evaluation) view.

        Parameters
        ----------
        X : sequence of paths or PIL images, array, tensor or Dataset
            File paths (any format PIL reads) or PIL images; a uint8 array
            (n_samples, height, width, channels) or (n_samples, height, width);
            a float array or tensor (n_samples, channels, height, width) in
            [0, 1]; or a map-style ``torch.utils.data.Dataset`` yielding any of
            those per item, or (image, label) pairs. Grayscale and RGBA images
            become RGB.

        Returns
        -------
        features : ndarray of shape (n_samples, ``n_features_out_``), float32
        """
        check_is_fitted(self)
        return self._extract(self._image_source(X), view=0)

    def transform_views(self, X, y=None):
        """``n_views`` feature rows per image: the plain view, then augmented ones.

        Rows ``i * n_views`` to ``i * n_views + n_views - 1`` belong to image
        ``i``; the first of them is ``transform``'s row. Keep an image's views
        in one fold when cross-validating on them:
        ``groups = np.repeat(np.arange(n_samples), n_views)``.

        Parameters
        ----------
        X : sequence of paths or PIL images, array, tensor or Dataset
        y : array-like of shape (n_samples,), default=None
            Labels, repeated to match the rows.

        Returns
        -------
        features : ndarray of shape (n_samples * n_views, ``n_features_out_``)
        y_views : ndarray of shape (n_samples * n_views,) or None
        """
        check_is_fitted(self)
        source = self._image_source(X)
        if y is not None:
            y = np.asarray(y)
            if len(y) != len(source):
                raise ValueError(
                    f"Got {len(source)} images and {len(y)} labels; they must match."
                )
        if self.n_views > 1 and self.augmentation_ is None:
            raise ValueError(
                f"n_views={self.n_views} needs an augmentation, and a module has "
                "no default one: pass augmentation=<image -> tensor callable>."
            )
        views = [self._extract(source, view=v) for v in range(self.n_views)]
        features = np.stack(views, axis=1).reshape(-1, self.n_features_out_)
        y_views = None if y is None else np.repeat(y, self.n_views, axis=0)
        return features, y_views

    def _image_source(self, X):
        return ImageSource(X, check_range=self.preprocess is None)

    # -- the network ---------------------------------------------------------

    def __getstate__(self):
        # A copy: on Python 3.11+ object.__getstate__ returns __dict__ itself.
        state = dict(super().__getstate__())
        network = state.pop("_network", None)
        if network is not None and not self._weights_rebuildable():
            # Random weights are drawn anew at every build: the pickle carries
            # them, as safetensors bytes (never a pickled tensor). Cloned, as
            # safetensors refuses tensors that share memory (tied weights).
            state["_network_weights"] = save_safetensors(
                {
                    name: tensor.detach().cpu().clone()
                    for name, tensor in network.state_dict().items()
                }
            )
        return state

    def _weights_rebuildable(self):
        """Whether a build from the parameters gives the fitted weights again.

        A named model's pretrained weights and a weights file do; a named
        model's random initialisation (``pretrained=False``, no ``weights``)
        does not. A module given as ``model`` is pickled with the parameters.
        """
        return not isinstance(self.model, str) or (
            self.pretrained or self.weights is not None
        )

    def _loaded_network(self):
        """The network, rebuilt on first use after unpickling."""
        network = getattr(self, "_network", None)
        if network is not None:
            return network
        backbone, network = self._build()
        carried = getattr(self, "_network_weights", None)
        if carried is not None:
            network.load_state_dict(load_safetensors(carried))
        if network_digest(network) != self.weights_digest_:
            raise ValueError(
                f"The weights of {self.backbone_name_} ({backbone.weights}) differ "
                "from those this extractor was fitted with; features would not "
                "match the ones a downstream model was trained on. Restore the "
                "original weights file, or refit."
            )
        return self._place(network)

    def _build(self):
        """The backbone these parameters name, and its feature network (CPU)."""
        backbone = build_backbone(
            self.model, pretrained=self.pretrained, weights=self.weights
        )
        return backbone, FeatureNetwork(backbone.network, self.layer)

    def _place(self, network):
        """Move the network to the device; it stays there until pickled."""
        device = resolve_device(self.device)
        self._network = network.to(device)
        self.device_ = str(device)
        return self._network

    # -- extraction ----------------------------------------------------------

    def _extract(self, source, *, view):
        """Features of every image in ``source`` for one view, through the cache."""
        transform = self.preprocess_ if view == 0 else self.augmentation_
        # The plain view is deterministic; augmented ones only with an int seed.
        reproducible = view == 0 or isinstance(self.random_state, Integral)
        cache = self._cache(transform) if reproducible else None
        n_images = len(source)
        image_keys = (
            [source.key(i) for i in range(n_images)]
            if reproducible and (cache is not None or view > 0)
            else None
        )
        seeds = self._view_seeds(image_keys, n_images, view)
        if cache is None:
            return np.concatenate(
                [
                    rows
                    for _, rows in self._compute(
                        source, range(n_images), transform, seeds
                    )
                ]
            )
        keys = [self._entry_key(key, view) for key in image_keys]
        found = cache.lookup(keys)
        features = np.empty((n_images, self.n_features_out_), dtype=np.float32)
        for position, row in found.items():
            features[position] = row
        missing = [i for i in range(n_images) if i not in found]
        with cache.writer() as store:
            for positions, rows in self._compute(source, missing, transform, seeds):
                features[positions] = rows
                store([keys[p] for p in positions], rows)
        return features

    def _view_seeds(self, image_keys, n_images, view):
        """One seed per image for an augmented view; None for the plain view.

        With an int ``random_state`` an image's seed depends only on it, the
        view and the image's content, so views are reproducible and cacheable.
        """
        if view == 0:
            return None
        if not isinstance(self.random_state, Integral):
            return check_random_state(self.random_state).randint(2**31, size=n_images)
        return np.array(
            [
                int.from_bytes(self._entry_key(key, view)[:4], "little")
                for key in image_keys
            ]
        )

    def _cache(self, transform):
        """The cache of this configuration with ``transform``, or None."""
        memory = self.memory
        if isinstance(memory, joblib.Memory):
            memory = memory.location
        if memory is None:
            return None
        return FeatureCache(
            memory,
            configuration_namespace(
                backbone=self.backbone_name_,
                weights_digest=self.weights_digest_,
                layer=self.layer,
                precision=self.precision,
                transform=transform,
            ),
        )

    def _entry_key(self, image_key, view):
        """The cache key of one view of one image."""
        if view == 0:
            return image_key
        return hashlib.blake2b(
            image_key + f"view{view}:seed{self.random_state}".encode(), digest_size=16
        ).digest()

    def _compute(self, source, indices, transform, seeds, *, progress=True):
        """Yield (positions, features) per batch for the images at ``indices``."""
        indices = list(indices)
        if not indices:
            return
        yield from iter_batch_features(
            self._loaded_network(),
            source,
            indices,
            transform,
            seeds,
            device=torch.device(self.device_),
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            precision=self.precision,
            progress=bool(self.verbose and progress),
            desc=type(self).__name__,
        )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # Images, not a 2-d feature matrix: file paths, PIL images, 4-d arrays.
        tags.input_tags.two_d_array = False
        tags.input_tags.string = True
        tags.transformer_tags.preserves_dtype = []
        tags.non_deterministic = True
        return tags
