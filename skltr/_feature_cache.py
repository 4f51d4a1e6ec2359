"""A directory of computed features, keyed by image content.

Each entry is one image (or one augmented view of it) through one backbone
configuration, so features are shared between calls that overlap: the
training folds of a cross-validation, the final refit, the test set. Entries
are stored in shards (``.npz`` files holding keys and features), each written
to a temporary file and renamed into place, so a run that is interrupted never
leaves a partial shard behind; a shard that cannot be read is skipped with a
warning and its images are computed again. Each backbone configuration has
its own directory, named by :func:`configuration_namespace`.
"""

import hashlib
import os
import uuid
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ._warnings import warn
from .exceptions import FeatureCacheWarning

# Rows held before a shard is written: an interrupted run loses at most this
# many images' work, and a shard of 2048-d float32 features stays near 32 MB.
SHARD_ROWS = 4096

# Bumped when a change in skltr would change the features of a cached
# configuration, so old cache entries are not reused.
CACHE_FORMAT = 1


def configuration_namespace(*, backbone, weights_digest, layer, precision, transform):
    """The cache directory name of one backbone configuration.

    Everything that changes an image's features is in it: skltr's cache
    format, the backbone's name and weights (their digest), the feature
    layer, the precision and the transform.
    """
    identity = "|".join(
        [
            str(CACHE_FORMAT),
            backbone,
            weights_digest,
            str(layer),
            precision,
            _transform_identity(transform),
        ]
    )
    return hashlib.blake2b(identity.encode(), digest_size=16).hexdigest()


def _transform_identity(transform):
    """A stable description of a transform for the cache key.

    The repr of torchvision and timm transforms lists every setting; objects
    whose repr is only an address are identified by class or function name.
    """
    text = repr(transform)
    if " at 0x" in text:
        kind = type(transform)
        text = (
            f"{kind.__module__}.{getattr(transform, '__qualname__', kind.__qualname__)}"
        )
    return text


class FeatureCache:
    """Features of one backbone configuration under ``root / namespace``."""

    def __init__(self, root, namespace):
        self.directory = Path(root) / "skltr-features" / namespace

    def lookup(self, keys):
        """Features of the cached ``keys``.

        Returns
        -------
        found : dict
            Position in ``keys`` -> feature row, for every key in the cache.
        """
        wanted = {key: position for position, key in enumerate(keys)}
        found = {}
        if not self.directory.is_dir():
            return found
        for shard in sorted(self.directory.glob("*.npz")):
            try:
                with np.load(shard) as data:
                    shard_keys = data["keys"]
                    rows = [
                        (row, wanted[key.tobytes()])
                        for row, key in enumerate(shard_keys)
                        if key.tobytes() in wanted
                    ]
                    if not rows:
                        continue
                    features = data["features"]
            except Exception as exc:  # a damaged file of any kind
                warn(
                    f"Skipping unreadable feature cache file {shard} ({exc}); its "
                    "images are computed again. Delete the file to silence this.",
                    FeatureCacheWarning,
                )
                continue
            for row, position in rows:
                found[position] = features[row]
        return found

    @contextmanager
    def writer(self):
        """Collect computed rows and store them a shard of SHARD_ROWS at a time.

        Yields ``add(keys, features)``. Rows still pending are stored when the
        block ends normally; an exception leaves them unwritten.
        """
        pending_keys, pending_rows = [], []

        def flush():
            self.store(pending_keys, np.concatenate(pending_rows))
            pending_keys.clear()
            pending_rows.clear()

        def add(keys, features):
            pending_keys.extend(keys)
            pending_rows.append(features)
            if len(pending_keys) >= SHARD_ROWS:
                flush()

        yield add
        if pending_keys:
            flush()

    def store(self, keys, features):
        """Write one shard atomically: a temporary file, then a rename."""
        self.directory.mkdir(parents=True, exist_ok=True)
        name = uuid.uuid4().hex
        temporary = self.directory / f"{name}.tmp"
        try:
            with open(temporary, "wb") as file:
                np.savez(
                    file,
                    keys=np.frombuffer(b"".join(keys), np.uint8).reshape(len(keys), -1),
                    features=np.asarray(features, dtype=np.float32),
                )
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.directory / f"{name}.npz")
        finally:
            if temporary.exists():
                temporary.unlink()
