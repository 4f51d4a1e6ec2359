"""Every classifier on one set of frozen features: the rows of the table."""

import numpy as np
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import recall_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

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
from skltr.metrics import shot_accuracy

try:  # python -m benchmarks.<script>, from the repository root
    from ._timing import timed
except ImportError:  # python benchmarks/<script>.py
    from _timing import timed


def logistic_regression_peer(class_weight="balanced", max_iter=1000):
    """What a user reaches for instead: scikit-learn's scaler + LogisticRegression."""
    return make_pipeline(
        StandardScaler(),
        LogisticRegression(class_weight=class_weight, max_iter=max_iter),
    )


def fit_rows(train, test, val, *, many, few, device, seed, log):
    """Fit every row on ``train`` and score it on ``test``.

    Returns ``(rows, fitted, per_class)``: the split scores and fit time of
    each row, the fitted classifiers, and each row's per-class test accuracy,
    by row name. The re-balancers (tau-norm, LWS, LORT, logit adjustment,
    DisAlign, weight balancing) run with their defaults: each fits its own
    joint classifier and chooses its knob by cross-fitting it on the
    training set, and their fit times include all of that. With a
    validation split, tau-norm also chooses tau on it (``fit(X, y,
    X_val=X_val, y_val=y_val)``) for the Joint row's classifier.
    """
    trained = {"device": device, "random_state": seed}
    counts = np.bincount(train.y)
    classes = np.arange(len(counts))
    fitted, rows, per_class = {}, {}, {}

    def run(name, estimator, **fit_params):
        _, seconds = timed(estimator.fit, train.X, train.y, **fit_params)
        predicted = estimator.predict(test.X)
        splits = shot_accuracy(
            test.y, predicted, class_counts=counts, labels=classes, many=many, few=few
        )
        # A class's accuracy is its recall; NaN where it has no test sample.
        accuracy = recall_score(
            test.y, predicted, labels=classes, average=None, zero_division=np.nan
        )
        rows[name] = {split: 100 * value for split, value in splits.items()}
        rows[name]["fit_seconds"] = seconds
        fitted[name], per_class[name] = estimator, accuracy
        log(
            f"{name}: All {rows[name]['all']:.1f}, Few {rows[name]['few']:.1f}, "
            f"fit {seconds:.2f} s"
        )

    run("Joint", JointClassifier(**trained))
    joint = FrozenEstimator(fitted["Joint"])
    run("NCM", NCMClassifier(device=device))
    run("cRT", CRTClassifier(**trained))
    run("tau-norm", TauNormClassifier(**trained))
    rows["tau-norm"]["tau"] = fitted["tau-norm"].tau_
    if val is not None:
        name = "tau-norm (tau on val)"
        run(name, TauNormClassifier(joint=joint, **trained), X_val=val.X, y_val=val.y)
        rows[name]["tau"] = fitted[name].tau_
    run("LWS", LWSClassifier(**trained))
    run("LORT", LORTClassifier(**trained))
    rows["LORT"]["best_epoch"] = fitted["LORT"].best_epoch_
    run("logit adjustment", LogitAdjustedClassifier(**trained))
    rows["logit adjustment"]["tau"] = fitted["logit adjustment"].tau_
    run("DisAlign", DisAlignClassifier(**trained))
    run("weight balancing", WeightBalancedClassifier(**trained))
    rows["weight balancing"]["weight_decay"] = fitted["weight balancing"].weight_decay_
    run("Balanced Softmax", BalancedSoftmaxClassifier(**trained))
    run("LDAM-DRW", LDAMClassifier(**trained))
    run(
        "Joint, class-balanced loss",
        JointClassifier(class_weight="effective", **trained),
    )
    run("Joint, focal loss", JointClassifier(loss="focal", **trained))
    run("LogisticRegression (balanced)", logistic_regression_peer())
    return rows, fitted, per_class
