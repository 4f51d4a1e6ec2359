"""The test-agnostic protocol: test sets re-sampled to other class priors.

SADE's protocol (Zhang et al., NeurIPS 2022; user guide:
docs/guide/prior_shift.md): the balanced test set is cut, without replacement,
to a forward long-tailed prior (the training set's order of classes,
imbalance ``ratio``), kept uniform, or cut to a backward long-tailed prior
(the order reversed). Each fitted classifier is scored by plain accuracy
there as it is, adjusted to the known prior, and adjusted to the prior EM
estimates from the test features themselves (``PriorAdjustedClassifier``).
Its calibration per shot split is measured on the balanced test set.
"""

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.frozen import FrozenEstimator

from skltr import PriorAdjustedClassifier
from skltr.metrics import shot_calibration_error

PRIORS = ("forward", "uniform", "backward")
ADJUSTMENTS = ("plain", "known", "em")


def shifted_test_sets(y_test, class_counts, *, ratio=50, seed=0):
    """Row indices and class prior of each re-sampled test set, by name."""
    n_classes = len(class_counts)
    # Rank 0 is the class with the most training samples.
    rank = np.empty(n_classes, dtype=int)
    rank[np.argsort(-np.asarray(class_counts), kind="stable")] = np.arange(n_classes)
    per_class = np.bincount(y_test, minlength=n_classes)
    rng = np.random.default_rng(seed)
    sets = {}
    for name in PRIORS:
        if name == "uniform":
            keep = per_class.copy()
        else:
            order = rank if name == "forward" else n_classes - 1 - rank
            keep = np.maximum(
                1, np.floor(per_class.min() * ratio ** (-order / max(1, n_classes - 1)))
            ).astype(int)
        rows = np.concatenate(
            [
                rng.choice(np.flatnonzero(y_test == j), keep[j], replace=False)
                for j in range(n_classes)
            ]
        )
        sets[name] = (np.sort(rows), keep / keep.sum())
    return sets


def prior_shift_rows(fitted, train, test, *, many, few, ratio=50, seed=0):
    """Per classifier: accuracy under each prior and adjustment, and ECE per split."""
    counts = np.bincount(train.y)
    sets = shifted_test_sets(test.y, counts, ratio=ratio, seed=seed)
    rows = {}
    for name, estimator in fitted.items():
        if not hasattr(estimator, "predict_proba"):
            continue
        row = {}
        for prior_name, (indices, prior) in sets.items():
            # Features: run.py extracts them before any classifier is fit.
            X, y = test.X[indices], test.y[indices]
            for adjustment in ADJUSTMENTS:
                if adjustment == "plain":
                    predicted = estimator.predict(X)
                else:
                    adjusted = PriorAdjustedClassifier(
                        FrozenEstimator(estimator),
                        target_prior=prior if adjustment == "known" else "em",
                    ).fit(train.X, train.y)
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", ConvergenceWarning)
                        predicted = adjusted.predict(X)
                row[f"{prior_name} {adjustment}"] = 100 * np.mean(predicted == y)
        proba = estimator.predict_proba(test.X)
        ece = shot_calibration_error(
            test.y,
            proba,
            class_counts=counts,
            labels=estimator.classes_,
            many=many,
            few=few,
        )
        row.update({f"ECE {split}": 100 * value for split, value in ece.items()})
        rows[name] = row
    return rows, {name: prior.tolist() for name, (_, prior) in sets.items()}


def markdown(rows, ratio):
    """The two tables: accuracy under prior shift, and ECE per split."""

    def cell(value):
        return "-" if np.isnan(value) else f"{value:.1f}"

    lines = [
        f"Accuracy (%) on the test set re-sampled to a forward long-tailed, "
        f"uniform and backward long-tailed prior (ratio {ratio}): as it is, "
        "adjusted to the known prior, adjusted to the prior EM estimates from "
        "the test features (PriorAdjustedClassifier).",
        "",
        "| classifier | "
        + " | ".join(f"{p} {a}" for p in PRIORS for a in ADJUSTMENTS)
        + " |",
        "|---|" + "---:|" * (len(PRIORS) * len(ADJUSTMENTS)),
    ]
    for name, row in rows.items():
        cells = " | ".join(cell(row[f"{p} {a}"]) for p in PRIORS for a in ADJUSTMENTS)
        lines.append(f"| {name} | {cells} |")
    lines += [
        "",
        "Expected calibration error (%, 15 bins) of predict_proba on the "
        "balanced test set, per shot split.",
        "",
        "| classifier | Many | Medium | Few | All |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, row in rows.items():
        cells = " | ".join(
            cell(row[f"ECE {split}"]) for split in ("many", "medium", "few", "all")
        )
        lines.append(f"| {name} | {cells} |")
    return "\n".join(lines)
