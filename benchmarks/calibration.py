"""Calibration per shot split, and what CalibratedClassifierCV does to it.

For a features file (``run.py --save-features``): the expected calibration
error (15 bins) of each classifier's ``predict_proba`` on the balanced test
set, per shot split and over all classes, with no calibration and wrapped
in scikit-learn's ``CalibratedClassifierCV`` (3 folds) with each of its
methods; and the balanced accuracy, which a calibration map that is not
monotone, or that is fit per class, can change.

    python benchmarks/calibration.py --features r56.npz --many 1499 --few 200
    python benchmarks/calibration.py --features caltech101_lite0.npz
"""

import argparse
import warnings
from pathlib import Path

import numpy as np
from sklearn.calibration import CalibratedClassifierCV

from skltr import (
    BalancedSoftmaxClassifier,
    JointClassifier,
    LogitAdjustedClassifier,
    WeightBalancedClassifier,
)
from skltr.metrics import shot_accuracy, shot_calibration_error

try:  # python -m benchmarks.<script>, from the repository root
    from ._data import _load_features
except ImportError:  # python benchmarks/<script>.py
    from _data import _load_features

METHODS = (None, "temperature", "sigmoid", "isotonic")
SPLITS = ("many", "medium", "few", "all")


def classifiers(seed):
    trained = {"device": "cpu", "random_state": seed}
    return {
        "Joint": JointClassifier(**trained),
        "logit adjustment": LogitAdjustedClassifier(**trained),
        "Balanced Softmax": BalancedSoftmaxClassifier(**trained),
        "weight balancing": WeightBalancedClassifier(**trained),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--many", type=int, default=100)
    parser.add_argument("--few", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    train, test, _ = _load_features(args.features)
    X, y = np.asarray(train.X), train.y
    X_test, y_test = np.asarray(test.X), test.y
    counts = np.bincount(y)
    thresholds = {"many": args.many, "few": args.few}
    print(
        "| classifier | calibration | ECE Many | ECE Medium | ECE Few | ECE All "
        "| balanced acc. |"
    )
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, estimator in classifiers(args.seed).items():
        for method in METHODS:
            clf = (
                estimator
                if method is None
                else CalibratedClassifierCV(estimator, method=method, cv=3)
            )
            with warnings.catch_warnings():
                # A joint classifier's training set may not be able to choose
                # its knob inside a calibration fold; that is not measured.
                warnings.simplefilter("ignore", UserWarning)
                clf.fit(X, y)
            proba = clf.predict_proba(X_test)
            labels = clf.classes_
            ece = shot_calibration_error(
                y_test, proba, class_counts=counts, labels=labels, **thresholds
            )
            accuracy = shot_accuracy(
                y_test,
                labels[proba.argmax(axis=1)],
                class_counts=counts,
                labels=labels,
                **thresholds,
            )["all"]
            cells = " | ".join(f"{100 * ece[split]:.1f}" for split in SPLITS)
            print(
                f"| {name} | {method or 'none'} | {cells} | {100 * accuracy:.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
