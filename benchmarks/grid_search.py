"""What a grid search costs: the tau grid against one fit, and backbone passes.

1. ``GridSearchCV`` over 21 tau values with 5 folds, against a plain 5-fold
   ``cross_validate`` of one ``TauNormClassifier``, on the same synthetic
   long-tailed features and folds. With ``memory=`` the joint classifier is
   fit once per fold and reused by every tau, so the search should cost
   little more than the cross-validation (target: at most 2x). The same
   search without ``memory=`` is timed beside it.
2. ``Pipeline([FeatureExtractor(memory=...), TauNormClassifier()])`` inside
   ``GridSearchCV``: a backbone that counts the images it is given shows how
   many forward passes the search makes, against the number of distinct
   images (target: each image once).

    python benchmarks/grid_search.py
"""

import argparse
import os
import tempfile

import numpy as np
import torch
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_validate
from sklearn.pipeline import Pipeline

from skltr import FeatureExtractor, TauNormClassifier
from skltr.datasets import make_long_tailed_features

try:  # python -m benchmarks.<script>, from the repository root
    from ._timing import timed
except ImportError:  # python benchmarks/<script>.py
    from _timing import timed

TAUS = np.round(np.linspace(0.0, 2.0, 21), 10)


class CountingNet(torch.nn.Module):
    """A small CNN that counts the images it sees (class-wide, across copies)."""

    images_seen = 0

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 16, 3, padding=1)

    def forward(self, x):
        type(self).images_seen += len(x)
        return torch.relu(self.conv(x)).mean(dim=(2, 3))


def tau_grid(n_samples, n_features, n_classes, seed):
    X, _, y, _ = make_long_tailed_features(
        n_samples, n_features, n_classes, n_test_per_class=0, random_state=seed
    )
    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    # The tail classes of a ratio-100 profile have 5 samples: one per fold.
    with tempfile.TemporaryDirectory() as cache:
        cached = TauNormClassifier(memory=cache, device="cpu", random_state=seed)
        _, cv_seconds = timed(
            cross_validate, TauNormClassifier(device="cpu", random_state=seed),
            X, y, cv=folds, scoring="balanced_accuracy",
        )  # fmt: skip
        search, search_seconds = timed(
            GridSearchCV(cached, {"tau": TAUS}, cv=folds,
                         scoring="balanced_accuracy").fit, X, y,
        )  # fmt: skip
    uncached = TauNormClassifier(device="cpu", random_state=seed)
    _, uncached_seconds = timed(
        GridSearchCV(uncached, {"tau": TAUS[::5]}, cv=folds,
                     scoring="balanced_accuracy").fit, X, y,
    )  # fmt: skip
    uncached_seconds *= len(TAUS) / len(TAUS[::5])
    print(
        f"N = {n_samples}, d = {n_features}, C = {n_classes}; 5 folds, "
        f"{len(TAUS)} taus.\n"
    )
    print("| run | fits | seconds | / cross_validate |")
    print("|---|---:|---:|---:|")
    print(f"| cross_validate(TauNormClassifier) | 5 | {cv_seconds:.1f} | 1.00 |")
    print(
        f"| GridSearchCV, memory= | {5 * len(TAUS)} + refit | {search_seconds:.1f} "
        f"| {search_seconds / cv_seconds:.2f} |"
    )
    print(
        f"| GridSearchCV, no memory (5 of the 21 taus run, scaled to 21) "
        f"| {5 * len(TAUS)} + refit | {uncached_seconds:.1f} "
        f"| {uncached_seconds / cv_seconds:.2f} |"
    )
    print(f"\nChosen tau: {search.best_params_['tau']}.\n")


def forward_passes(n_images, seed):
    rng = np.random.default_rng(seed)
    counts = np.repeat(np.arange(4), [n_images // 2, n_images // 4, n_images // 8,
                                      n_images - n_images // 2 - n_images // 4
                                      - n_images // 8])  # fmt: skip
    images = rng.integers(0, 256, (n_images, 32, 32, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as cache:
        pipe = Pipeline([
            ("features", FeatureExtractor(
                CountingNet(), memory=os.path.join(cache, "features"),
                device="cpu", num_workers=0)),
            ("clf", TauNormClassifier(memory=os.path.join(cache, "joint"),
                                      device="cpu", random_state=seed)),
        ])  # fmt: skip
        search = GridSearchCV(pipe, {"clf__tau": TAUS}, cv=3)
        CountingNet.images_seen = 0
        search.fit(images, counts)
    fits = 3 * len(TAUS) + 1
    print(
        f"Pipeline([FeatureExtractor, TauNormClassifier]) in GridSearchCV, "
        f"{len(TAUS)} taus x 3 folds + refit = {fits} fits on {n_images} images:\n"
        f"forward passes {CountingNet.images_seen}, distinct images {n_images}."
        f"\nWithout the feature cache, each of the "
        f"{fits - 1} candidate-folds would pass every image (2/3 to fit, 1/3 to "
        f"score) and the refit all of them again, and each fit one more to size "
        f"its output: {fits * (n_images + 1)} passes.\n"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-samples", type=int, default=10_847)
    parser.add_argument("--n-features", type=int, default=512)
    parser.add_argument("--n-classes", type=int, default=100)
    parser.add_argument("--n-images", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    tau_grid(args.n_samples, args.n_features, args.n_classes, args.seed)
    forward_passes(args.n_images, args.seed)


if __name__ == "__main__":
    main()
