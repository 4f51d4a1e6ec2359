"""Docstring fragments shared by the classifiers and the metrics.

A class docstring names a fragment as ``%(name)s``; :func:`fill_doc` fills them
in, so a parameter that several classifiers share is documented once.
"""

import textwrap

_DEVICE = """
device : {"auto", "cpu", "cuda", "cuda:N", "mps"} or torch.device, default="auto"
    Where the fit runs. ``"auto"`` takes CUDA when PyTorch sees a GPU, else
    the CPU. Asking for a device this machine does not have raises a
    ``ValueError``. ``"mps"`` (Apple silicon) is used only when named; the
    float64 sums and scores run on the CPU there, as MPS has no float64.
    The project's tests do not run on MPS.
    The fitted model holds numpy arrays only, so it predicts, pickles and
    unpickles on any machine.
"""

_FRAGMENTS = {
    "training_parameters": """
epochs : int, default=%(epochs)s
    Passes over the training data. An epoch is ``ceil(n_samples /
    batch_size)`` SGD steps whatever the sampling strategy.

batch_size : int, default=%(batch_size)s
    Samples per SGD step. On small training sets the batch shrinks to
    ``ceil(n_samples / 16)`` so that an epoch still has 16 steps.

lr : %(lr_type)s, default=%(lr)s
    Initial learning rate, decayed to 0 along a cosine schedule.
    %(lr_scaling)s

momentum : float, default=0.9
    SGD momentum.

weight_decay : %(weight_decay_type)s, default=%(weight_decay)s
    L2 penalty, applied by SGD at every step.%(weight_decay_auto)s
""",
    "class_weight_parameters": """
class_weight : dict, "balanced", "effective" or None, default=None
    Weight of each class in the loss, as scikit-learn spells it: None weighs
    every sample alike; ``"balanced"`` weighs class j by
    ``n_samples / (n_classes * n_j)``; a dict maps every class label to its
    weight; ``"effective"`` is the class-balanced loss (Cui et al., 2019),
    ``(1 - beta) / (1 - beta^n_j)``. Multiplied by ``sample_weight`` when
    both are given. The weights are rescaled to mean 1 over the training
    samples, so that ``lr`` keeps its meaning: only their ratios matter.
    With class-balanced sampling the classes are already balanced and a
    re-weighting on top corrects twice.

beta : float in [0, 1), default=%(beta)s
    The class-balanced loss's beta, for ``class_weight="effective"``: 0 weighs
    every class alike, and the weights tend to inverse frequency as beta
    tends to 1 (0.9999, the default, for CIFAR-LT and ImageNet-LT).
""",
    "fit_data_parameters": """
X : array-like or torch.Tensor of shape (n_samples, n_features)
    Training features; a memory-mapped array is read a chunk at a
    time. A tensor is trained on where it is: float32 or float16
    features already on the estimator's device are used in place,
    with no copy.
y : array-like or torch.Tensor of shape (n_samples,)
    Class labels of any type scikit-learn accepts (ints, strings).
""",
    "device_parameter": _DEVICE,
    "device_parameters": _DEVICE
    + """
random_state : int, RandomState instance or None, default=None
    Seeds the sampler and the initialisation. An int gives the same fitted
    model on every CPU run.

verbose : int, default=0
    Shows a progress bar over the epochs when positive.
""",
    "joint_parameters": """
joint : None, JointClassifier, torch.nn.Linear or (coef, intercept), default=None
    The stage-1 classifier to re-balance. ``None`` fits a
    :class:`JointClassifier` with this estimator's ``device`` and
    ``random_state``; an unfitted :class:`JointClassifier` is cloned and fit
    with its own parameters. A fitted :class:`JointClassifier` (or one wrapped
    in :class:`sklearn.frozen.FrozenEstimator`), a ``torch.nn.Linear`` with
    ``n_classes`` outputs, or a ``(coef, intercept)`` pair of arrays of shapes
    ``(n_classes, n_features)`` and ``(n_classes,)`` is used as it is; its rows
    follow the sorted class labels. Model selection clones parameters, and a
    clone of a fitted estimator is unfitted: wrap a fitted
    :class:`JointClassifier` in :class:`~sklearn.frozen.FrozenEstimator` to
    keep it inside ``GridSearchCV``.

memory : str, joblib.Memory or None, default=None
    Caches the joint fit (as :class:`sklearn.pipeline.Pipeline` caches
    transformers): with a cache, a grid search over this estimator's own
    parameters fits the joint classifier once per training fold instead of
    once per candidate. A string is a cache directory.
""",
    "cv_parameters": """
cv : int, cross-validation splitter, iterable or None, default=%(cv)s
    How the re-balancing knob is chosen when this estimator fits its own
    joint classifier (``joint`` None or an unfitted
    :class:`JointClassifier`): on held-out predictions, by cross-fitting.
    An int is the number of stratified folds; a splitter (``KFold``,
    ``StratifiedKFold``, ...) or an iterable of (train, held-out) index
    arrays is used as it is. Each fold's joint classifier
    is fit on the other folds and scores its held-out rows; the candidates'
    correct predictions are pooled over the folds and the best mean
    per-class accuracy wins; the joint classifier fit on all the data gets
    the knob chosen. A held-out sample whose class has no sample in its
    fold's training part is moved to the training part, so a class with
    fewer samples than folds is held out where it can be, and a class with a
    single sample is always trained on and never scored (what is learned on
    held-out logits, LWS's scales and DisAlign's alignment, learns such a
    class, and a class that every fold's joint classifier saw at most once,
    on its training samples scored by the joint classifier fit on all the
    data). ``None`` chooses on
    the training set itself (the Decoupling paper's appendix B.5), as does a
    joint classifier handed in fitted. Validation data given to ``fit``
    (``X_val``, ``y_val``) takes precedence over both. Each fold's rows are
    copied where the features are (a memory-mapped array's into memory):
    with ``cv=2``, half the training set at a time, and for LORT, whose
    folds advance together, all of it. Two folds cost about one joint fit
    more; one split, ``cv=ShuffleSplit(n_splits=1, test_size=0.5)``, costs
    half of one, at a small cost in accuracy (``docs/performance.md``).

refit : {"warm", "full"}, default="warm"
    How the joint classifier is fit on all the data after cross-fitting.
    ``"warm"`` starts it from the mean of the fold heads, as
    ``LogisticRegressionCV`` starts its refit from the mean of its folds'
    coefficients, and trains it for a third of its epochs at a quarter of
    its ``lr``: a third of the cost of a fit from zero, as accurate on the
    problems measured (``docs/performance.md``). ``"full"`` fits it from
    zero, exactly as :class:`JointClassifier` alone with the same settings
    (the Decoupling paper's protocol: the re-balancing applied to the very
    joint classifier it is compared with). Without cross-fitting (``cv``
    None, validation data, a fitted ``joint``, or a knob fixed by hand) the
    joint classifier is always fit from zero.
""",
    "tau_choice_attributes": """
tau_ : float
    The tau in use.

tau_grid_ : ndarray of shape (n_taus,)
    With ``tau="auto"``, the candidates.

tau_scores_ : ndarray of shape (n_taus,)
    With ``tau="auto"``, the held-out mean per-class accuracy of each
    candidate (see ``chosen_on_``).

chosen_on_ : {"cross-fitting", "validation data", "training data"}
    With ``tau="auto"``, where tau was chosen (see ``cv``).
""",
    "selection_attributes": """
chosen_on_ : {"cross-fitting", "validation data", "training data"}
    Where the re-balancing knob was chosen (see ``cv``); not set when no
    knob was chosen.
""",
    "fitted_linear_attributes": """
coef_ : ndarray of shape (n_classes, n_features)
    Classifier weights, applied to the standardised features (see
    ``feature_mean_`` and ``feature_scale_``).

intercept_ : ndarray of shape (n_classes,)
    Classifier bias.

feature_mean_ : ndarray of shape (n_features,) or None
    Subtracted from the features before ``coef_`` applies; None when the
    features are used as they are.

feature_scale_ : ndarray of shape (n_features,) or None
    Divides the centred features before ``coef_`` applies; None when the
    features are used as they are.
""",
    "common_attributes": """
classes_ : ndarray of shape (n_classes,)
    The class labels, sorted.

class_counts_ : ndarray of shape (n_classes,)
    Training samples of each class, in the order of ``classes_``: what the
    long-tail metrics split classes by.

n_features_in_ : int
    Number of features seen during fit.

feature_names_in_ : ndarray of shape (``n_features_in_``,)
    Names of the features seen during fit, when ``X`` has string column
    names (a pandas DataFrame).
""",
    "joint_attributes": """
joint_coef_ : ndarray of shape (n_classes, n_features)
    The weights of the joint classifier that was re-balanced.

joint_intercept_ : ndarray of shape (n_classes,)
    Its bias.
""",
    "training_attributes": """
device_ : str
    The device the training ran on.

loss_curve_ : list of float
    Mean training loss of each epoch.
""",
    "weight_decay_attribute": """
weight_decay_ : float
    The L2 penalty the layer was trained with: ``weight_decay``, or what
    ``"auto"`` made of it for this training set.
""",
    "shot_parameters": """
y_true, y_pred : array-like of shape (n_samples,)
    True and predicted labels of a (balanced) test set.

class_counts : array-like of shape (n_classes,) or dict
    Training samples per class: aligned with ``labels``, or a mapping from
    label to count. A fitted classifier's ``class_counts_`` (with
    ``labels=clf.classes_``) is what this expects.

labels : array-like of shape (n_classes,), default=None
    The classes ``class_counts`` counts; None means the sorted labels of
    ``y_true``.

many, few : int, default=100, 20
    Many-shot classes have more than ``many`` training samples, few-shot
    classes fewer than ``few``; the reference thresholds are 100 and 20.
    Small data sets need smaller ones.
""",
    "logits_parameters": """
logits : array-like of shape (n_samples, n_classes)
    Class scores, e.g. a classifier's ``decision_function``; column j scores
    ``labels[j]``.

y : array-like of shape (n_samples,)
    The true labels.

labels : array-like of shape (n_classes,), default=None
    The label of each column (a classifier's ``classes_``); None means the
    columns are the labels 0 to n_classes - 1.
""",
    "decoupling_reference": """
.. [1] B. Kang, S. Xie, M. Rohrbach, Z. Yan, A. Gordo, J. Feng and
   Y. Kalantidis, "Decoupling Representation and Classifier for Long-Tailed
   Recognition", ICLR 2020.
""",
    "lr_notes": """
The learning rate is relative to the curvature of the loss. The step on the
weights W is ``lr / lambda``, where ``lambda`` is the largest eigenvalue of
the second moment E[x x^T] of the (standardised) training features,
estimated by Lanczos iteration before training; the bias takes ``lr`` itself.
The Hessian of the mean cross-entropy in W is at most ``lambda / 2``, so SGD
with momentum 0.9 stays stable for any ``lr`` below about 7, and one default
fits features of any scale, dimension and correlation (ResNet features
after ReLU and pooling, ViT tokens). The objective, weight decay included,
does not depend on the step.
""",
}


#: What ``lr`` is relative to, for the classifiers that train the weights of
#: a linear layer on the features; a classifier whose steps scale otherwise
#: gives its own ``lr_scaling`` to :func:`fill_doc`.
CURVATURE_LR_SCALING = (
    "It is relative to the curvature of the loss: the step on the weights is "
    "divided by the largest eigenvalue of E[x x^T] over the training features "
    "(see Notes), so one value suits backbones of any feature scale and "
    "dimension."
)


#: The ``fill_doc`` values of ``weight_decay="auto"`` for the classifiers
#: that train a linear layer on the features from zero
#: (:func:`resolve_weight_decay`): its default, type and meaning.
AUTO_WEIGHT_DECAY = {
    "weight_decay": '"auto"',
    "weight_decay_type": 'float or "auto"',
    "weight_decay_auto": (
        '``"auto"`` is ``max(5e-4, 1 / n_samples)``: the penalty that '
        "``LogisticRegression(C=1)`` puts on the mean loss, but never below the "
        "Decoupling paper's 5e-4. It differs from 5e-4 only below 2,000 training "
        "samples, where a weaker penalty lets the layer fit its few tail samples "
        "too closely for any re-balancing to correct."
    ),
}


def fill_doc(*, indent=4, **values):
    """Decorator filling ``%(fragment)s`` names in a class or function docstring.

    Keyword arguments fill the defaults that a fragment itself names
    (``%(epochs)s`` in ``training_parameters``, say). ``indent`` is the
    indentation of the docstring's sections: 4 for a class, 8 for a method.
    ``lr_scaling``, the sentences that say what ``lr`` is relative to, is
    :data:`CURVATURE_LR_SCALING` unless given (it is re-wrapped to fit), and
    ``lr_type`` is ``float`` unless given. ``weight_decay_auto``, what
    ``weight_decay="auto"`` means, follows the ``weight_decay`` entry when
    given (with ``weight_decay_type``, ``float`` unless given).
    """
    lr_scaling = values.get("lr_scaling", CURVATURE_LR_SCALING)
    # Its continuation lines sit under the lr entry of the fragment.
    values["lr_scaling"] = textwrap.fill(lr_scaling, width=70).replace("\n", "\n    ")
    values.setdefault("lr_type", "float")
    values.setdefault("weight_decay_type", "float")
    auto = values.get("weight_decay_auto")
    # Its lines continue the weight_decay entry of the fragment.
    values["weight_decay_auto"] = (
        ""
        if auto is None
        else "\n    " + textwrap.fill(auto, width=70).replace("\n", "\n    ")
    )

    def decorate(cls):
        if cls.__doc__ is None:  # python -OO strips docstrings
            return cls
        fragments = {}
        for name, text in _FRAGMENTS.items():
            text = textwrap.dedent(text).strip("\n")
            if "%(" in text:
                text = text % _Lookup(values)
            fragments[name] = textwrap.indent(text, " " * indent).lstrip()
        cls.__doc__ = cls.__doc__ % {**values, **fragments}
        return cls

    return decorate


class _Lookup(dict):
    """Leave fragments that need a value the class did not give as they are."""

    def __missing__(self, key):
        return f"%({key})s"
