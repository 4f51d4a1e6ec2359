"""Every classifier's defaults against the peer, on several long-tailed problems.

The promise of skltr: with default settings, every re-balancer is more
accurate on held-out data than ``make_pipeline(StandardScaler(),
LogisticRegression(class_weight="balanced"))``. This script checks it on
long-tailed Gaussians of several sizes and separations, on scikit-learn's
digits made long-tailed (``load_digits_lt``, the 64 pixels as features, at
ratios 10, 50 and 100) and on feature files (``run.py --save-features``):
one row per problem, the balanced test accuracy (%) of the peer and of each
classifier fit with its defaults, and the margin of the worst re-balancer
over the peer. Two columns are
diagnostics: "tau-norm, best tau on test" (how close tau-norm's held-out
choice comes to the best tau it could have had) and "Balanced Softmax, then
logit adjustment" (a balanced loss and a post-hoc correction stacked, which
corrects twice). No choice is ever made on the test set.

    python benchmarks/peer_check.py
    python benchmarks/peer_check.py --features r56.npz effnet.npz \
        --no-gaussians --no-digits
"""

import argparse
import sys
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import balanced_accuracy_score

from skltr import (
    BalancedSoftmaxClassifier,
    CRTClassifier,
    DisAlignClassifier,
    JointClassifier,
    LDAMClassifier,
    LogitAdjustedClassifier,
    LORTClassifier,
    LWSClassifier,
    NCMClassifier,
    TauNormClassifier,
    WeightBalancedClassifier,
)
from skltr.datasets import load_digits_lt, make_long_tailed_features
from skltr.metrics import tau_sweep

try:  # python -m benchmarks.<script>, from the repository root
    from ._data import _load_features
    from ._rows import logistic_regression_peer
except ImportError:  # python benchmarks/<script>.py
    from _data import _load_features
    from _rows import logistic_regression_peer

# (name, make_long_tailed_features keywords): sizes from a few thousand rows
# to CIFAR-100-LT's, 20 to 200 classes, ratios 50 and 100, easy to hard.
GAUSSIANS = [
    (
        "Gaussian 2,000 x 128, 20 classes",
        dict(n_samples=2000, n_features=128, n_classes=20),
    ),
    (
        "Gaussian 5,000 x 256, 50 classes, ratio 50",
        dict(n_samples=5000, n_features=256, n_classes=50, imbalance_ratio=50),
    ),
    (
        "Gaussian 10,847 x 64, 100 classes",
        dict(n_samples=10847, n_features=64, n_classes=100),
    ),
    (
        "Gaussian 10,847 x 512, 100 classes",
        dict(n_samples=10847, n_features=512, n_classes=100),
    ),
    (
        "Gaussian 10,847 x 512, 100 classes, separation 4",
        dict(n_samples=10847, n_features=512, n_classes=100, class_sep=4.0),
    ),
    (
        "Gaussian 20,000 x 256, 200 classes",
        dict(n_samples=20000, n_features=256, n_classes=200),
    ),
]
# (name, load_digits_lt keywords): scikit-learn's digits as 64 pixels, the
# training side long-tailed down to tails of a dozen, two and one images.
DIGITS = [
    (f"digits pixels, ratio {ratio}", dict(imbalance_ratio=ratio))
    for ratio in (10, 50, 100)
]
REBALANCERS = (
    "tau-norm",
    "LWS",
    "LORT",
    "logit adjustment",
    "DisAlign",
    "weight balancing",
    "Balanced Softmax",
    "LDAM-DRW",
)


def classifiers(seed):
    trained = {"device": "cpu", "random_state": seed}
    return {
        "Joint": JointClassifier(**trained),
        "cRT": CRTClassifier(**trained),
        "NCM": NCMClassifier(device="cpu"),
        "tau-norm": TauNormClassifier(**trained),
        "LWS": LWSClassifier(**trained),
        "LORT": LORTClassifier(**trained),
        "logit adjustment": LogitAdjustedClassifier(**trained),
        "DisAlign": DisAlignClassifier(**trained),
        "weight balancing": WeightBalancedClassifier(**trained),
        "Balanced Softmax": BalancedSoftmaxClassifier(**trained),
        "LDAM-DRW": LDAMClassifier(**trained),
        "Joint, class-balanced loss": JointClassifier(
            class_weight="effective", **trained
        ),
        "Joint, focal loss": JointClassifier(loss="focal", **trained),
    }


def check(X, y, X_test, y_test, seed):
    """Balanced test accuracies (%) of the peer and every classifier."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        peer = logistic_regression_peer().fit(X, y)
    scores = {"peer": balanced_accuracy_score(y_test, peer.predict(X_test))}
    fitted = classifiers(seed)
    for name, estimator in fitted.items():
        estimator.fit(X, y)
        scores[name] = balanced_accuracy_score(y_test, estimator.predict(X_test))
    # Diagnostic: the survey's warning that corrections stack. Balanced
    # Softmax has learnt the prior away; subtracting it again (post-hoc logit
    # adjustment at tau = 1) corrects twice.
    balanced = fitted["Balanced Softmax"]
    prior = balanced.class_counts_ / balanced.class_counts_.sum()
    twice = balanced.decision_function(X_test) - np.log(prior)
    scores["Balanced Softmax, then logit adjustment"] = balanced_accuracy_score(
        y_test, balanced.classes_[np.argmax(twice, axis=1)]
    )
    # Diagnostic only: the best tau the test set would have picked for
    # tau-norm's own joint classifier.
    sweep = tau_sweep(fitted["tau-norm"], X_test, y_test)
    scores["tau-norm, best tau on test"] = float(np.nanmax(sweep["all"]))
    return {name: 100 * value for name, value in scores.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", nargs="*", type=Path, default=[])
    parser.add_argument("--no-gaussians", action="store_true")
    parser.add_argument("--no-digits", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    # (name, a features file, or a loader of (X, X_test, y, y_test)).
    problems = []
    if not args.no_gaussians:
        problems += [(n, partial(make_long_tailed_features, **k)) for n, k in GAUSSIANS]
    if not args.no_digits:
        problems += [(n, partial(load_digits_lt, **k)) for n, k in DIGITS]
    problems += [(str(path.name), path) for path in args.features]
    columns = [
        "peer",
        *classifiers(0),
        "Balanced Softmax, then logit adjustment",
        "tau-norm, best tau on test",
    ]
    print("| problem | " + " | ".join(columns) + " | worst re-balancer - peer |")
    print("|---|" + "---:|" * (len(columns) + 1))
    margins = []
    for name, source in problems:
        start = time.perf_counter()
        if isinstance(source, Path):
            train, test, _ = _load_features(source)
            X, y, X_test, y_test = train.X, train.y, test.X, test.y
        else:
            X, X_test, y, y_test = source(random_state=args.seed)
        scores = check(X, y, X_test, y_test, args.seed)
        margin = min(scores[r] for r in REBALANCERS) - scores["peer"]
        margins.append(margin)
        cells = " | ".join(f"{scores[c]:.1f}" for c in columns)
        print(f"| {name} | {cells} | {margin:+.1f} |", flush=True)
        print(f"  ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    print(
        f"\nWorst re-balancer minus the peer: mean {np.mean(margins):+.1f}, "
        f"minimum {np.min(margins):+.1f} points over {len(margins)} problems."
    )


if __name__ == "__main__":
    main()
