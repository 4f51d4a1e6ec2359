"""The PyTorch backend shared by every trained classifier, in four parts.

- ``_device``: a ``device`` parameter made a ``torch.device``.
- ``_features``: training features on that device, whole when they fit, a
  batch at a time when they do not.
- ``_steps``: the SGD steps (autograd's, and the closed forms of a linear
  layer's and of LWS's cross-entropy) and the rule of their step sizes.
- ``_training``: the minibatch loop with its cosine schedule.

The classifiers import from here.
"""

from ._device import (
    DEVICE_CONSTRAINT,
    float64_device,
    resolve_device,
    scoring_device,
)
from ._features import (
    DeviceFeatures,
    Float64Rows,
    feature_rows,
    host_rows,
    iter_row_chunks,
)
from ._steps import (
    AutogradSGD,
    CapturedStep,
    ClassScaleSGD,
    ClosedFormSGD,
    SoftmaxRegressionSGD,
    feature_scaled_lr,
    focal_terms,
    linear_logits,
    log_softmax_rows,
    logit_scaled_lr,
)
from ._training import (
    effective_batch_size,
    iter_training,
    steps_per_epoch,
    train_minibatch,
)

__all__ = [
    "AutogradSGD",
    "CapturedStep",
    "ClassScaleSGD",
    "ClosedFormSGD",
    "DEVICE_CONSTRAINT",
    "DeviceFeatures",
    "effective_batch_size",
    "feature_rows",
    "feature_scaled_lr",
    "float64_device",
    "Float64Rows",
    "focal_terms",
    "host_rows",
    "iter_row_chunks",
    "iter_training",
    "linear_logits",
    "log_softmax_rows",
    "logit_scaled_lr",
    "resolve_device",
    "scoring_device",
    "SoftmaxRegressionSGD",
    "steps_per_epoch",
    "train_minibatch",
]
