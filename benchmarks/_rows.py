"""Every classifier on one set of frozen features: the rows of the table."""

import numpy as np
from _timing import timed
from sklearn.frozen import FrozenEstimator
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
from skltr.metrics import tau_sweep
from skltr.metrics._shot import class_count_table, per_class_accuracy, split_table


def logistic_regression_peer(class_weight="balanced", max_iter=1000):
    """What a user reaches for instead: scikit-learn's scaler + LogisticRegression."""
    return make_pipeline(
        StandardScaler(),
        LogisticRegression(class_weight=class_weight, max_iter=max_iter),
    )


class LogitAdjusted:
    """Post-hoc logit adjustment of a fitted classifier: logits - tau log prior."""

    def __init__(self, joint, tau=1.0):
        self.joint, self.tau = joint, tau

    def fit(self, X, y):
        prior = self.joint.class_counts_ / self.joint.class_counts_.sum()
        self.log_prior_ = np.log(prior)
        return self

    def predict(self, X):
        logits = self.joint.decision_function(X) - self.tau * self.log_prior_
        return self.joint.classes_[logits.argmax(axis=1)]


def fit_rows(train, test, val, *, many, few, device, seed, log):
    """Fit every row on ``train`` and score it on ``test``.

    Returns ``(rows, fitted, per_class)``: the split scores and fit time of
    each row, the fitted classifiers, and each row's per-class test accuracy,
    by row name. tau-norm, LWS, LORT and the logit
    adjustment re-balance the Joint row's classifier (decoupled training):
    their fit times exclude the joint fit.
    """
    trained = {"device": device, "random_state": seed}
    counts = np.bincount(train.y)
    labels, counts = class_count_table(test.y, counts, np.arange(len(counts)))
    fitted, rows, per_class = {}, {}, {}

    def run(name, estimator):
        _, seconds = timed(estimator.fit, train.X, train.y)
        accuracy, support = per_class_accuracy(
            test.y, estimator.predict(test.X), labels
        )
        table = split_table(accuracy, support, counts, many=many, few=few)
        rows[name] = {split: 100 * value["accuracy"] for split, value in table.items()}
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
    run("tau-norm (tau on train)", TauNormClassifier(joint=joint, **trained))
    rows["tau-norm (tau on train)"]["tau"] = fitted["tau-norm (tau on train)"].tau_
    if val is not None:
        sweep = tau_sweep(fitted["Joint"], val.X, val.y, many=many, few=few)
        tau = float(sweep["tau"][np.nanargmax(sweep["all"])])
        run("tau-norm (tau on val)", TauNormClassifier(tau=tau, joint=joint, **trained))
        rows["tau-norm (tau on val)"]["tau"] = tau
    run("LWS", LWSClassifier(joint=joint, **trained))
    run("LORT", LORTClassifier(joint=joint, **trained))
    rows["LORT"]["best_epoch"] = fitted["LORT"].best_epoch_
    run("logit adjustment (post-hoc)", LogitAdjusted(fitted["Joint"]))
    run("LogisticRegression (balanced)", logistic_regression_peer())
    return rows, fitted, per_class
