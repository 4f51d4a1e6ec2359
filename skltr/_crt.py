"""cRT: classifier re-training (user guide: docs/guide/decoupling.md).

Re-initialise a linear layer (with bias) and train it with class-balanced
sampling and cross-entropy, the representation frozen. On frozen features the
re-initialised layer does not depend on the joint classifier at all: cRT is
the joint classifier's training with another sampler.
"""

from numbers import Real

from ._docstrings import AUTO_WEIGHT_DECAY, fill_doc
from ._sampling import check_sampling
from ._softmax_regression import SoftmaxRegression
from ._weights import DEFAULT_BETA

# The reference schedule (10 epochs, batch 512); class-balanced sampling visits
# every class at every step, so it converges within it.
DEFAULT_EPOCHS = 10
DEFAULT_BATCH_SIZE = 512
DEFAULT_LR = 1.0


@fill_doc(
    epochs=DEFAULT_EPOCHS,
    batch_size=DEFAULT_BATCH_SIZE,
    lr=DEFAULT_LR,
    **AUTO_WEIGHT_DECAY,
    beta=DEFAULT_BETA,
)
class CRTClassifier(SoftmaxRegression):
    """Classifier re-training: a fresh linear layer, class-balanced sampling.

    Read more in the :ref:`User Guide <decoupling-classifiers>`.

    Parameters
    ----------
    sampling : {"class", "instance", "sqrt", "progressive"} or float, \
default="class"
        How training samples are drawn; class j with probability
        p_j proportional to n_j^q. ``"class"`` (q = 0) is the reference
        class-aware sampler: classes in a shuffled cyclic order, 4 consecutive
        samples of a class per visit. ``"instance"`` is q = 1, ``"sqrt"``
        q = 1/2, ``"progressive"`` slides from q = 1 to q = 0 over the epochs,
        and a float is q itself.

    standardize : bool, default=True
        Centre each feature and scale it to unit variance before the layer.

    %(class_weight_parameters)s

    %(training_parameters)s

    %(device_parameters)s

    Attributes
    ----------
    %(fitted_linear_attributes)s

    %(weight_decay_attribute)s

    %(common_attributes)s

    %(training_attributes)s

    See Also
    --------
    JointClassifier : The same layer with instance-balanced sampling.
    LWSClassifier : Re-balances the joint classifier with one scale per class.

    Notes
    -----
    Reference (Kang et al., ICLR 2020): SGD with momentum 0.9, cosine schedule,
    10 epochs, weight decay 5e-4, batch 512.

    %(lr_notes)s

    References
    ----------
    %(decoupling_reference)s

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> from skltr import CRTClassifier
    >>> X, y = make_classification(n_samples=300, n_informative=4, n_classes=3,
    ...                            weights=[0.8, 0.15, 0.05], random_state=0)
    >>> clf = CRTClassifier(device="cpu", random_state=0).fit(X, y)
    >>> clf.class_counts_.tolist()
    [240, 45, 15]
    """

    _parameter_constraints: dict = {
        **SoftmaxRegression._parameter_constraints,
        "sampling": [str, Real],
    }

    def __init__(
        self,
        *,
        sampling="class",
        standardize=True,
        class_weight=None,
        beta=DEFAULT_BETA,
        epochs=DEFAULT_EPOCHS,
        batch_size=DEFAULT_BATCH_SIZE,
        lr=DEFAULT_LR,
        momentum=0.9,
        weight_decay="auto",
        device="auto",
        random_state=None,
        verbose=0,
    ):
        self.sampling = sampling
        self.standardize = standardize
        self.class_weight = class_weight
        self.beta = beta
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _sampling(self):
        return check_sampling(self.sampling)
