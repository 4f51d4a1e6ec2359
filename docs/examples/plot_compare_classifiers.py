"""
Every classifier on one long-tailed problem
===========================================

Fit every skltr classifier, with its defaults, on the same long-tailed
features, and compare their balanced accuracy per shot split with the
obvious alternative, a balanced ``LogisticRegression``.

The features are class-conditional Gaussians with a long tail
(:func:`skltr.datasets.make_long_tailed_features`): 30 classes, 225 down to
2 training samples each (ratio 100), and a balanced test set of 50 samples a
class. The shot splits are the papers': Many more than 100 training samples,
Few fewer than 20.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import skltr
from skltr.datasets import make_long_tailed_features
from skltr.metrics import shot_accuracy

X_train, X_test, y_train, y_test = make_long_tailed_features(
    n_samples=1500, n_features=64, n_classes=30, class_sep=5.0, random_state=0
)
print("training samples per class:", np.bincount(y_train))

# %%
# Fit each classifier with its defaults
# -------------------------------------
# The re-balancers choose their knob on held-out folds of the training set;
# nothing here looks at the test set before scoring.

classifiers = {
    "Joint": skltr.JointClassifier(random_state=0),
    "cRT": skltr.CRTClassifier(random_state=0),
    "NCM": skltr.NCMClassifier(),
    "tau-norm": skltr.TauNormClassifier(random_state=0),
    "LWS": skltr.LWSClassifier(random_state=0),
    "LORT": skltr.LORTClassifier(random_state=0),
    "logit adjustment": skltr.LogitAdjustedClassifier(random_state=0),
    "Balanced Softmax": skltr.BalancedSoftmaxClassifier(random_state=0),
    "DisAlign": skltr.DisAlignClassifier(random_state=0),
    "weight balancing": skltr.WeightBalancedClassifier(random_state=0),
    "LDAM-DRW": skltr.LDAMClassifier(random_state=0),
    "LogisticRegression (balanced)": make_pipeline(
        StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=1000)
    ),
}
class_counts = np.bincount(y_train)
scores = {}
for name, clf in classifiers.items():
    clf.fit(X_train, y_train)
    scores[name] = shot_accuracy(y_test, clf.predict(X_test), class_counts=class_counts)
    print(f"{name:30s}", {k: round(100 * float(v), 1) for k, v in scores[name].items()})

# %%
# Balanced accuracy per shot split
# --------------------------------

splits = ["many", "medium", "few", "all"]
fig, ax = plt.subplots(figsize=(10, 4.5))
width = 0.8 / len(scores)
colours = plt.get_cmap("tab20")(np.linspace(0, 1, len(scores)))
for i, (name, score) in enumerate(scores.items()):
    ax.bar(
        np.arange(len(splits)) + i * width,
        [100 * score[s] for s in splits],
        width,
        label=name,
        color=colours[i],
    )
ax.set_xticks(np.arange(len(splits)) + 0.4 - width / 2, [s.title() for s in splits])
ax.set_ylabel("balanced accuracy (%)")
ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
fig.tight_layout()
plt.show()
