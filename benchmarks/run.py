"""The main job: fit every classifier on a long-tailed data set, print a table.

For now the data set is scikit-learn's digits made long-tailed (it ships with
scikit-learn, so this runs anywhere offline), on its 64 pixel features. Each
row is one classifier; the columns are the Many / Medium / Few / All balanced
test accuracies of METHODS.md's protocol, with shot thresholds scaled to the
data set, and the fit time.

    python benchmarks/run.py --help
"""

import argparse
import json
import time

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skltr import (
    CRTClassifier,
    JointClassifier,
    LORTClassifier,
    LWSClassifier,
    NCMClassifier,
    TauNormClassifier,
)
from skltr.datasets import load_digits_lt
from skltr.metrics import shot_accuracy


def classifiers(device, seed):
    trained = {"device": device, "random_state": seed}
    return {
        "Joint": JointClassifier(**trained),
        "NCM": NCMClassifier(),
        "cRT": CRTClassifier(**trained),
        "tau-norm (tau on train)": TauNormClassifier(**trained),
        "LWS": LWSClassifier(**trained),
        "LORT": LORTClassifier(**trained),
        "LogisticRegression (balanced)": make_pipeline(
            StandardScaler(),
            LogisticRegression(class_weight="balanced", max_iter=2000),
        ),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--imbalance-ratio", type=float, default=20.0)
    parser.add_argument("--many", type=int, default=60, help="Many: n_j > MANY")
    parser.add_argument("--few", type=int, default=20, help="Few: n_j < FEW")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write every number to this file")
    args = parser.parse_args(argv)

    X_train, X_test, y_train, y_test = load_digits_lt(
        imbalance_ratio=args.imbalance_ratio, random_state=args.seed
    )
    counts = np.bincount(y_train)
    print(
        f"digits-LT, imbalance ratio {args.imbalance_ratio:g}: "
        f"{len(y_train)} training images ({counts.max()} down to {counts.min()} "
        f"per class), balanced test set of {len(y_test)}.\n"
        f"Shot splits by training count: Many n > {args.many}, "
        f"Medium {args.few} <= n <= {args.many}, Few n < {args.few}.\n"
    )
    rows = {}
    for name, clf in classifiers(args.device, args.seed).items():
        start = time.perf_counter()
        clf.fit(X_train, y_train)
        seconds = time.perf_counter() - start
        scores = shot_accuracy(
            y_test,
            clf.predict(X_test),
            class_counts=counts,
            labels=np.arange(10),
            many=args.many,
            few=args.few,
        )
        rows[name] = {**{k: 100 * v for k, v in scores.items()}, "fit_seconds": seconds}

    print("| classifier | Many | Medium | Few | All | fit (s) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, row in rows.items():
        print(
            f"| {name} | {row['many']:.1f} | {row['medium']:.1f} | {row['few']:.1f} "
            f"| {row['all']:.1f} | {row['fit_seconds']:.2f} |"
        )
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"arguments": vars(args), "rows": rows}, out, indent=2)
    return rows


if __name__ == "__main__":
    main()
