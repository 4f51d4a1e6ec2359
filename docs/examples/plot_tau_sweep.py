"""
Choosing tau: cross-fitting, GridSearchCV, and the sweep on test data
=====================================================================

tau-norm divides each weight row of the joint classifier by its norm to the
power tau. This example compares three ways of setting tau:

- the default, ``tau="auto"``: chosen on held-out folds of the training set;
- ``GridSearchCV`` over tau, scored by balanced accuracy on its own folds,
  with the joint fits cached (``memory=``) so that each is made once;
- the sweep on the test set (:func:`skltr.metrics.tau_sweep`), a diagnostic
  of how close the first two came, never a way to choose.
"""

import tempfile

import matplotlib.pyplot as plt
import numpy as np
from sklearn.model_selection import GridSearchCV

from skltr import TauNormClassifier
from skltr.datasets import make_long_tailed_features
from skltr.plotting import plot_tau_sweep

X_train, X_test, y_train, y_test = make_long_tailed_features(
    n_samples=2000, n_features=128, n_classes=20, class_sep=5.0, random_state=0
)

# %%
# The default: tau chosen by cross-fitting
# ----------------------------------------

clf = TauNormClassifier(random_state=0).fit(X_train, y_train)
print(f"tau chosen on held-out folds: {clf.tau_:.1f}")

# %%
# GridSearchCV over tau
# ---------------------
# A fixed tau fits no folds of its own; the search's folds do the holding
# out. ``memory=`` caches the joint classifier of each search fold, so the
# 21 candidates share it.

with tempfile.TemporaryDirectory() as cache:
    search = GridSearchCV(
        TauNormClassifier(memory=cache, random_state=0),
        {"tau": np.round(np.linspace(0, 2, 21), 1)},
        scoring="balanced_accuracy",
        cv=3,
    ).fit(X_train, y_train)
print(f"tau chosen by GridSearchCV: {search.best_params_['tau']:.1f}")

# %%
# The sweep on the test set, for diagnosis
# ----------------------------------------
# Mean per-class accuracy on the test set for every tau, on the fitted
# classifier's own joint weights; the plot marks the tau chosen by
# cross-fitting, and the line in grey the one GridSearchCV chose.

ax = plot_tau_sweep(clf, X_test, y_test)
ax.axvline(search.best_params_["tau"], color="grey", label="GridSearchCV's tau")
ax.legend(fontsize=8)
plt.show()
