"""
Shot-split scores in cross_validate
===================================

:func:`skltr.metrics.make_shot_scorer` makes scikit-learn scorers for the
balanced accuracy over all classes and over the Many / Medium / Few splits.
Inside a cross-validation the splits follow each training fold's class
counts, read from the fitted classifier's ``class_counts_``, so a scorer
needs no counts of its own.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import StratifiedKFold, cross_validate

from skltr import CRTClassifier, JointClassifier, NCMClassifier, TauNormClassifier
from skltr.datasets import make_long_tailed_features
from skltr.metrics import make_shot_scorer

X, _, y, _ = make_long_tailed_features(
    n_samples=2000, n_features=64, n_classes=20, class_sep=5.0, random_state=0
)
print("samples per class:", np.bincount(y))

# %%
# One scorer per split
# --------------------
# The classes with more than 100 training samples of their fold are Many,
# those with fewer than 20 are Few.

scoring = {split: make_shot_scorer(split) for split in ("many", "medium", "few", "all")}
cv = StratifiedKFold(3, shuffle=True, random_state=0)
results = {}
for clf in (
    JointClassifier(random_state=0),
    CRTClassifier(random_state=0),
    NCMClassifier(),
    TauNormClassifier(random_state=0),
):
    scores = cross_validate(clf, X, y, scoring=scoring, cv=cv)
    name = type(clf).__name__
    results[name] = {split: scores[f"test_{split}"].mean() for split in scoring}
    print(
        f"{name:18s}", {k: round(100 * float(v), 1) for k, v in results[name].items()}
    )

# %%
# Mean over the folds
# -------------------

fig, ax = plt.subplots()
for name, row in results.items():
    ax.plot(list(row), [100 * v for v in row.values()], marker="o", label=name)
ax.set_ylabel("balanced accuracy (%), 3-fold mean")
ax.legend()
plt.show()
