"""EM's estimate of a test-time prior: how strongly to hold it to the source prior.

For a features file (``run.py --save-features``), or a synthetic long-tailed
problem: the balanced test set re-sampled to forward long-tailed, uniform
and backward long-tailed priors (ratio 50, as ``run.py``'s test-agnostic
protocol, over several re-sampling seeds), and each classifier's plain
accuracy there as it is, adjusted to the known prior, and adjusted to the
prior that EM estimates with each ``--strengths`` value of
``PriorAdjustedClassifier(em_prior_strength=...)`` (pseudo-samples per
class; 0 is maximum-likelihood EM). Each cell is the mean over the
classifiers and the seeds.

    python benchmarks/prior_shift.py --features caltech101_lite0.npz
    python benchmarks/prior_shift.py --features r56.npz
    python benchmarks/prior_shift.py --synthetic 4000,128,100 --class-sep 4
"""

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.frozen import FrozenEstimator

from skltr import (
    CRTClassifier,
    JointClassifier,
    LogitAdjustedClassifier,
    NCMClassifier,
    PriorAdjustedClassifier,
    TauNormClassifier,
)
from skltr.datasets import make_long_tailed_features

try:  # python -m benchmarks.<script>, from the repository root
    from ._data import _load_features
    from ._shift import PRIORS, shifted_test_sets
except ImportError:  # python benchmarks/<script>.py
    from _data import _load_features
    from _shift import PRIORS, shifted_test_sets


def classifiers(seed):
    trained = {"device": "cpu", "random_state": seed}
    return {
        "Joint": JointClassifier(**trained),
        "NCM": NCMClassifier(device="cpu"),
        "cRT": CRTClassifier(**trained),
        "tau-norm": TauNormClassifier(**trained),
        "logit adjustment": LogitAdjustedClassifier(**trained),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--features", type=Path)
    source.add_argument(
        "--synthetic",
        metavar="N,D,C",
        help="make_long_tailed_features(N, D, C), 20 test samples a class",
    )
    parser.add_argument("--class-sep", type=float, default=6.0)
    parser.add_argument("--strengths", default="0,1,3")
    parser.add_argument("--seeds", type=int, default=5, help="re-sampling seeds")
    parser.add_argument("--seed", type=int, default=0, help="fit and data seed")
    args = parser.parse_args(argv)
    if args.features is not None:
        train, test, _ = _load_features(args.features)
        X, y, X_test, y_test = np.asarray(train.X), train.y, np.asarray(test.X), test.y
    else:
        n, d, c = (int(v) for v in args.synthetic.split(","))
        X, X_test, y, y_test = make_long_tailed_features(
            n, d, c, n_test_per_class=20, class_sep=args.class_sep,
            random_state=args.seed,
        )  # fmt: skip
    strengths = [float(s) for s in args.strengths.split(",")]
    columns = ["plain", "known", *(f"EM, strength {s:g}" for s in strengths)]
    cells = {(prior, column): [] for prior in PRIORS for column in columns}
    counts = np.bincount(y)
    for name, estimator in classifiers(args.seed).items():
        frozen = FrozenEstimator(estimator.fit(X, y))
        # EM's adjustments do not depend on the test set: fit once each.
        em = {
            f"EM, strength {s:g}": PriorAdjustedClassifier(
                frozen, em_prior_strength=s
            ).fit(X, y)
            for s in strengths
        }
        for seed in range(args.seeds):
            sets = shifted_test_sets(y_test, counts, ratio=50, seed=seed)
            for prior_name, (rows, prior) in sets.items():
                X_set, y_set = X_test[rows], y_test[rows]
                cells[prior_name, "plain"].append(
                    np.mean(estimator.predict(X_set) == y_set)
                )
                known = PriorAdjustedClassifier(frozen, target_prior=prior)
                adjusted = {"known": known.fit(X, y), **em}
                for column, classifier in adjusted.items():
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", ConvergenceWarning)
                        predicted = classifier.predict(X_set)
                    cells[prior_name, column].append(np.mean(predicted == y_set))
        print(f"fitted and scored {name}", file=sys.stderr, flush=True)
    print("| test prior | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for prior_name in PRIORS:
        row = " | ".join(
            f"{100 * np.mean(cells[prior_name, column]):.1f}" for column in columns
        )
        print(f"| {prior_name} | {row} |")


if __name__ == "__main__":
    main()
