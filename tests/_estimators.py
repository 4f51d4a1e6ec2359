"""The public estimators the tests run over, discovered from ``skltr.__all__``.

A classifier added to ``__all__`` joins every test that uses these lists
without editing the tests.
"""

from sklearn.base import ClassifierMixin

import skltr
from skltr import JointClassifier, PriorAdjustedClassifier
from skltr._rebalance import BaseRebalancer


def _public(base):
    found = (getattr(skltr, name) for name in skltr.__all__)
    return sorted(
        (cls for cls in found if isinstance(cls, type) and issubclass(cls, base)),
        key=lambda cls: cls.__name__,
    )


#: Every public classifier.
CLASSIFIERS = _public(ClassifierMixin)
#: The classifiers that re-balance a joint classifier and choose a knob on
#: held-out data.
REBALANCERS = _public(BaseRebalancer)


def instance(cls, *, device="cpu", **params):
    """An instance of ``cls`` on ``device``, with those of ``params`` it takes.

    A setting that only some classes have (``epochs``, ``joint``,
    ``random_state``) can be given for all: each class takes its own.
    """
    own = cls().get_params()
    if cls is PriorAdjustedClassifier:
        # A meta-estimator: it adjusts the probabilities of a classifier.
        params = {
            "estimator": JointClassifier(
                device=device,
                random_state=0,
                **{k: v for k, v in params.items() if k == "epochs"},
            ),
            **params,
        }
    params = {"device": device, **params}
    return cls(**{name: value for name, value in params.items() if name in own})


#: The epochs of every SGD stage in the estimator checks: enough for
#: scikit-learn's accuracy check on its small problems, a third of the
#: joint classifier's default.
CHECK_EPOCHS = 10


def cheap(cls):
    """``cls`` as scikit-learn's estimator checks run it: on the CPU, with
    ``CHECK_EPOCHS`` for its own training and its joint classifier's."""
    return instance(
        cls,
        epochs=CHECK_EPOCHS,
        # Seeded: the checks seed the outer estimator only.
        joint=JointClassifier(device="cpu", epochs=CHECK_EPOCHS, random_state=0),
    )
