"""skltr: long-tailed recognition on frozen features, as scikit-learn estimators.

The classifiers re-balance a linear classifier trained on features from a
frozen backbone (Kang et al., "Decoupling Representation and Classifier for
Long-Tailed Recognition", ICLR 2020; Lu et al., "Logits Retargeting", ICLR 2024).
"""

from ._balanced_softmax import BalancedSoftmaxClassifier
from ._crt import CRTClassifier
from ._disalign import DisAlignClassifier
from ._extractor import FeatureExtractor
from ._joint import JointClassifier
from ._ldam import LDAMClassifier
from ._logit_adjustment import LogitAdjustedClassifier
from ._lort import LORTClassifier
from ._lws import LWSClassifier
from ._ncm import NCMClassifier
from ._prior_shift import PriorAdjustedClassifier
from ._tau_norm import TauNormClassifier
from ._weight_balancing import WeightBalancedClassifier

__version__ = "0.1.0.dev0"

__all__ = [
    "BalancedSoftmaxClassifier",
    "CRTClassifier",
    "DisAlignClassifier",
    "FeatureExtractor",
    "JointClassifier",
    "LDAMClassifier",
    "LORTClassifier",
    "LogitAdjustedClassifier",
    "LWSClassifier",
    "NCMClassifier",
    "PriorAdjustedClassifier",
    "TauNormClassifier",
    "WeightBalancedClassifier",
    "__version__",
]
