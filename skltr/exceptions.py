"""The warnings skltr raises, as classes a user can filter by.

Every warning of skltr's own is a :class:`SkltrWarning`, a ``UserWarning``.
EM that stops at its iteration cap raises scikit-learn's
``sklearn.exceptions.ConvergenceWarning``, as scikit-learn's solvers do.

Examples
--------
Silence the warning that a re-balancer handed a fitted joint classifier
chose its knob on the training set, and only that one:

>>> import warnings
>>> from skltr import JointClassifier, TauNormClassifier
>>> from skltr.datasets import make_long_tailed_features
>>> from skltr.exceptions import KnobSelectionWarning
>>> X, _, y, _ = make_long_tailed_features(
...     300, 128, 10, imbalance_ratio=20, random_state=0
... )
>>> joint = JointClassifier(device="cpu", random_state=0).fit(X, y)
>>> with warnings.catch_warnings():  # the joint classifier fits X perfectly
...     warnings.simplefilter("error")
...     warnings.simplefilter("ignore", category=KnobSelectionWarning)
...     clf = TauNormClassifier(joint=joint, device="cpu").fit(X, y)
>>> clf.chosen_on_
'training data'
"""

__all__ = [
    "SkltrWarning",
    "KnobSelectionWarning",
    "FallbackWarning",
    "FeatureCacheWarning",
]


class SkltrWarning(UserWarning):
    """Base class of the warnings skltr raises itself."""


class KnobSelectionWarning(SkltrWarning):
    """A re-balancing knob was chosen where the data cannot tell the candidates apart.

    Raised when a re-balancer chooses its knob (tau, LORT's stopping epoch,
    LWS's scales, weight balancing's weight decay) on the training set that
    its joint classifier fit: with a fitted ``joint=`` and no validation
    data, or with ``cv=None``. The message says what to pass instead
    (validation data, or an unfitted joint classifier so that the knob is
    chosen by cross-fitting).
    """


class FallbackWarning(SkltrWarning):
    """A slower path was taken; the results are unaffected.

    Raised when CUDA ran out of memory during feature extraction and the
    batch was split, or when capturing the training step as a CUDA graph
    failed and training went on step by step.
    """


class FeatureCacheWarning(SkltrWarning):
    """A file of the feature cache could not be read and was skipped.

    Its images are extracted again; delete the file to silence the warning.
    """
