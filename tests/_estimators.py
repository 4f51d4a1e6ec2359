"""The public estimators the tests run over, discovered from ``skltr.__all__``.

A classifier added to ``__all__`` joins every test that uses these lists
without editing the tests.
"""

from sklearn.base import ClassifierMixin

import skltr
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
