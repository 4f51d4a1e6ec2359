"""The SGD steps: autograd's, and the closed forms of a linear layer's and of
LWS's cross-entropy (capturable as a CUDA graph), with the rule that sets
their step sizes from the curvature.
"""

import torch

from .._warnings import warn
from ..exceptions import FallbackWarning

# Float32 lanes of the SIMD vectors torch's CPU kernels use (measured on
# AVX-512, and on AVX2 through ATEN_CPU_CAPABILITY=avx2): see log_softmax_rows.
_CPU_FLOAT32_LANES = {"AVX512": 16, "AVX2": 8}.get(
    torch.backends.cpu.get_cpu_capability(), 0
)


def feature_scaled_lr(lr, curvature):
    """The SGD step size for parameters whose loss has curvature ``curvature``.

    For the weights W of a linear layer, ``curvature`` is the largest
    eigenvalue of the second moment E[x x^T] of the features it sees
    (:meth:`DeviceFeatures.top_eigenvalue`): the Hessian of the mean
    cross-entropy in W is at most half of it. Dividing ``lr`` by it makes one
    default mean the same thing for a 64-d ResNet feature and a 2048-d ViT
    token, whitened or not, and keeps heavy-ball SGD with momentum 0.9 stable
    for any ``lr`` below about 7. The objective, and so the weight decay in
    it, is unchanged.
    """
    curvature = float(curvature)
    # Zero curvature: the features are all zero (every column constant, once
    # centred), the weights get no gradient and any finite step will do.
    return lr / curvature if curvature > 0 else lr


def logit_scaled_lr(lr, squared_logit):
    """The SGD step size for per-class scales that multiply logits.

    ``lr`` divided by the mean squared logit, as :func:`feature_scaled_lr`
    divides by the features' curvature, but never more than ``lr`` itself.
    Logits smaller than 1 say almost nothing (a joint classifier that
    predicts the prior), so there is nothing to scale, while dividing by
    their square would make the steps as large as the logits are small: on
    identical rows of balanced classes, DisAlign's scales went to 1e8 in a
    few hundred steps, and then to NaN.
    """
    return lr / max(float(squared_logit), 1.0)


class AutogradSGD:
    """One SGD-with-momentum step on a loss that autograd differentiates.

    Parameters
    ----------
    param_groups : list of dict
        As for :class:`torch.optim.SGD`; every group names its own ``lr``.
    loss_fn : callable
        ``loss_fn(features, labels)`` returns each row's loss, a tensor of
        shape (n,). The step descends their mean; when the batches carry row
        weights, each row's loss is multiplied by its weight first, as the
        closed-form steps weigh their rows.
    momentum, weight_decay : float
    """

    def __init__(self, param_groups, loss_fn, *, momentum, weight_decay):
        self.optimizer = torch.optim.SGD(
            param_groups, momentum=momentum, weight_decay=weight_decay
        )
        self.base_lrs = [group["lr"] for group in self.optimizer.param_groups]
        self.loss_fn = loss_fn

    def __call__(self, features, labels, weights=None, *, lr_factor):
        for group, lr in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = lr * lr_factor
        losses = self.loss_fn(features, labels)
        loss = (losses if weights is None else losses * weights).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()


def log_softmax_rows(logits):
    """``torch.log_softmax(logits, 1)``, by the faster of torch's CPU kernels.

    On the CPU, torch's log-softmax over a last dimension shorter than one
    SIMD vector (16 float32 lanes with AVX-512, 8 with AVX2) runs a scalar
    loop, several times slower than over the first dimension of the
    transposed view, whose kernel is vectorised across the rows and gives
    the same values. From one vector up the last dimension is the faster
    one.
    """
    if logits.device.type == "cpu" and logits.shape[1] < _CPU_FLOAT32_LANES:
        return torch.log_softmax(logits.T, 0).T
    return torch.log_softmax(logits, 1)


def focal_terms(log_p_true, gamma):
    """The focal loss's per-row gradient factor and its per-row loss.

    The focal loss -(1 - p)^gamma log p of a row whose true class has
    probability p has, in the logits, the cross-entropy's gradient
    (softmax - one-hot) times ``(1 - p)^gamma (1 - gamma p log(p) / (1 - p))``:
    the factor returned, so that the closed-form step only multiplies its
    rows. The second term's ratio tends to -1 as p tends to 1; it is taken as
    its limit where 1 - p is too small for float32.

    Returns
    -------
    factor : torch.Tensor of shape (n,)
        Multiplies each row's cross-entropy gradient.
    loss : torch.Tensor of shape (n,)
        Each row's focal loss.
    """
    p_true = log_p_true.exp()
    q = -torch.expm1(log_p_true)  # 1 - p, exact for p near 1
    ratio = torch.where(q < 1e-6, -1.0, p_true * log_p_true / q.clamp_min(1e-6))
    modulation = q.pow(gamma)
    return modulation * (1.0 - gamma * ratio), -modulation * log_p_true


def linear_logits(features, coef, intercept):
    """``features @ coef.T + intercept``, in one fused product."""
    return torch.addmm(intercept, features, coef.T)


class ClosedFormSGD:
    """A training step whose gradient is written out, capturable in a CUDA graph.

    Subclasses are SGD with momentum (the heavy ball of
    :class:`torch.optim.SGD`) on a cross-entropy, from its gradient in closed
    form: about half the kernel launches of autograd and the optimizer, and
    all of them capturable (:class:`CapturedStep`). They implement
    ``set_lr_factor(lr_factor)`` and ``update(features, labels)``, which
    returns the batch loss, and hold their step sizes, negated, in
    ``_steps``: a float32 tensor on the device, which a captured graph reads.
    """

    capturable = True
    label_smoothing = 0.0
    focal_gamma = 0.0
    n_heads = 1  # rows of logits per row of features
    _true_class_step = None  # allocated at the first step, by true_class_term

    def __call__(self, features, labels, weights=None, *, lr_factor):
        self.set_lr_factor(lr_factor)
        return self.update(features, labels, weights)

    def momentum_step(self, param, velocity, grad, step):
        """The heavy ball of :class:`torch.optim.SGD`, in place: ``velocity``
        becomes ``momentum * velocity + grad``, and ``param`` moves by
        ``step`` (negative) times it."""
        velocity.mul_(self.momentum).add_(grad)
        param.addcmul_(velocity, step)

    def cross_entropy_gradient(self, logits, labels, weights=None):
        """The batch's mean cross-entropy, and its gradient in ``logits`` times n.

        The gradient is the softmax minus the (smoothed) targets; with
        ``weights``, each row's loss and gradient are multiplied by its
        weight (the mean is still over the rows, so weights of mean 1 keep
        the step's scale). With ``focal_gamma`` set, the loss is the focal
        loss and each row's gradient is multiplied by its factor
        (:func:`focal_terms`). The
        log-probabilities are raised to -87 before their exponential: on the
        CPU, exp is ten times slower where its result is denormal (below
        exp(-87.3), as LWS's scaled joint logits can give), and a
        probability that small is zero to float32's precision beside the
        targets.
        """
        n, n_classes, smoothing = len(labels), logits.shape[1], self.label_smoothing
        log_p = log_softmax_rows(logits)
        log_p_true = log_p.gather(1, labels[:, None])[:, 0]
        row_loss = -(1.0 - smoothing) * log_p_true
        if smoothing:
            row_loss -= smoothing / n_classes * log_p.sum(dim=1)
        row_factor = weights
        if self.focal_gamma:
            focal_factor, row_loss = focal_terms(log_p_true, self.focal_gamma)
            row_factor = focal_factor if weights is None else focal_factor * weights
        loss = (row_loss if weights is None else row_loss * weights).mean()
        grad = log_p.clamp_min_(-87.0).exp_()
        if smoothing:
            grad -= smoothing / n_classes
        grad.scatter_add_(1, labels[:, None], self.true_class_term(n, grad))
        if row_factor is not None:
            grad.mul_(row_factor[:, None])
        return loss, grad

    def true_class_term(self, n, like):
        """-(1 - smoothing) for each of ``n`` rows' true class; kept between steps.

        Added to the softmax at each row's true class, it gives the gradient
        of the cross-entropy in the logits (times the batch size).
        """
        if self._true_class_step is None or len(self._true_class_step) < n:
            self._true_class_step = torch.full(
                (n, 1),
                -(1.0 - self.label_smoothing),
                dtype=like.dtype,
                device=like.device,
            )
        return self._true_class_step[:n]

    def prepare_capture(self, batch_size):
        """Allocate before a capture what :meth:`update` would allocate in it.

        Returns what the graph reads, for the caller to hold: a larger batch
        later makes the step allocate anew, and the graph keeps reading the
        old addresses.
        """
        return self.true_class_term(batch_size * self.n_heads, self._steps)


class SoftmaxRegressionSGD(ClosedFormSGD):
    """SGD with momentum on a linear layer's cross-entropy, gradient in closed form.

    The updates of :class:`AutogradSGD` on
    ``cross_entropy(layer(x), y, label_smoothing=label_smoothing)`` (the
    heavy ball of :class:`torch.optim.SGD`, weight decay on weight and bias),
    from the gradient ``(softmax(z) - targets)^T x / n``: half the kernel
    launches of autograd and the optimizer, all of them capturable in a CUDA
    graph (:class:`CapturedStep`).

    Parameters
    ----------
    layer : torch.nn.Linear
        Updated in place.
    lr_weight, lr_bias : float
    momentum : float
    weight_decay : float or torch.Tensor of shape (n_heads * n_classes,)
        One penalty for the layer, or one per output row (and its bias).
    label_smoothing : float
        Weight of the uniform distribution in the targets.
    logit_offset : torch.Tensor of shape (n_classes,) or None
        Added to the logits in the loss only (the logit-adjusted loss):
        the layer learns to predict without it.
    focal_gamma : float
        The focal loss's gamma; 0 is the cross-entropy.
    n_heads : int
        Heads trained side by side on the same batches: the layer's output
        rows are ``n_heads`` blocks of ``n_classes``, and each block takes
        the step of the loss above on its own logits (the loss returned is
        the heads' mean). With a ``weight_decay`` per output row, candidates
        that differ only in their penalty train in one pass over the data.
    """

    def __init__(
        self,
        layer,
        *,
        lr_weight,
        lr_bias,
        momentum,
        weight_decay,
        label_smoothing=0.0,
        logit_offset=None,
        focal_gamma=0.0,
        n_heads=1,
    ):
        self.weight, self.bias = layer.weight, layer.bias
        self.lr_weight, self.lr_bias = lr_weight, lr_bias
        self.momentum, self.weight_decay = momentum, weight_decay
        self.n_heads = n_heads
        self.label_smoothing = label_smoothing
        self.logit_offset = logit_offset
        self.focal_gamma = focal_gamma
        self.velocity_weight = torch.zeros_like(self.weight, requires_grad=False)
        self.velocity_bias = torch.zeros_like(self.bias, requires_grad=False)
        # Minus the step sizes, as tensors so that a captured graph reads them.
        self._steps = torch.zeros(2, device=self.weight.device)

    def set_lr_factor(self, lr_factor):
        # fill_ passes the value with the kernel launch; a copy from host memory
        # would wait for the device at every step.
        self._steps[0].fill_(-self.lr_weight * lr_factor)
        self._steps[1].fill_(-self.lr_bias * lr_factor)

    @torch.no_grad()
    def update(self, features, labels, weights=None):
        """One step at the current step sizes; returns the batch loss."""
        n = len(labels)
        logits = linear_logits(features, self.weight, self.bias)
        if self.n_heads > 1:
            # Each head's logits of a row are a row of their own.
            logits = logits.view(n * self.n_heads, -1)
            labels = labels.repeat_interleave(self.n_heads)
            if weights is not None:
                weights = weights.repeat_interleave(self.n_heads)
        if self.logit_offset is not None:
            logits += self.logit_offset
        loss, grad = self.cross_entropy_gradient(logits, labels, weights)
        grad = grad.reshape(n, -1)
        if isinstance(self.weight_decay, torch.Tensor):
            decay = self.weight_decay
            grad_weight = torch.addmm(
                self.weight * decay[:, None], grad.T, features, alpha=1.0 / n
            )
            grad_bias = grad.sum(dim=0).div_(n).addcmul_(decay, self.bias)
        else:
            grad_weight = torch.addmm(
                self.weight, grad.T, features, beta=self.weight_decay, alpha=1.0 / n
            )
            grad_bias = grad.sum(dim=0).div_(n).add_(self.bias, alpha=self.weight_decay)
        for param, velocity, grad_param, step in (
            (self.weight, self.velocity_weight, grad_weight, self._steps[0]),
            (self.bias, self.velocity_bias, grad_bias, self._steps[1]),
        ):
            self.momentum_step(param, velocity, grad_param, step)
        return loss


class ClassScaleSGD(ClosedFormSGD):
    """SGD with momentum on one scale per class of fixed logits (LWS).

    The updates of :class:`AutogradSGD` on
    ``cross_entropy(scales * (features @ coef.T + intercept), labels)``, with
    weight decay on the scales, from the gradient in closed form: the mean
    over the batch of ``(softmax - targets) * joint logits``.

    Parameters
    ----------
    scales : torch.Tensor of shape (n_classes,)
        Updated in place.
    coef : torch.Tensor of shape (n_classes, n_features) or None
    intercept : torch.Tensor of shape (n_classes,) or None
        The fixed joint classifier; None when the features served are its
        logits already (scales learned on held-out logits).
    lr, momentum, weight_decay : float
    """

    def __init__(self, scales, coef, intercept, *, lr, momentum, weight_decay):
        self.scales, self.coef, self.intercept = scales, coef, intercept
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.velocity = torch.zeros_like(scales)
        # Minus the step size, as a tensor so that a captured graph reads it.
        self._steps = torch.zeros((), device=scales.device)

    def set_lr_factor(self, lr_factor):
        self._steps.fill_(-self.lr * lr_factor)

    @torch.no_grad()
    def update(self, features, labels, weights=None):
        """One step at the current step size; returns the batch loss."""
        n = len(labels)
        if self.coef is None:
            joint_logits = features
        else:
            joint_logits = linear_logits(features, self.coef, self.intercept)
        loss, grad = self.cross_entropy_gradient(
            joint_logits * self.scales, labels, weights
        )
        grad_scales = (
            grad.mul_(joint_logits)
            .sum(dim=0)
            .div_(n)
            .add_(self.scales, alpha=self.weight_decay)
        )
        self.momentum_step(self.scales, self.velocity, grad_scales, self._steps)
        return loss


class CapturedStep:
    """A batch's gather and a step on it, captured once as a CUDA graph.

    Launching a step's kernels one by one from Python takes longer than the
    device takes to run them; a replay is one launch. Batches of another
    size (an epoch's last) run eagerly.

    Parameters
    ----------
    step : ClosedFormSGD
    data : DeviceFeatures
        Resident on a CUDA device.
    batch_size : int
        The size of the batches the graph is captured for.
    """

    # Steps run eagerly before the capture (lazy library initialisation).
    EAGER_STEPS = 3

    def __init__(self, step, data, batch_size):
        self.step, self.data, self.batch_size = step, data, batch_size
        self.graph = None
        self.failed = False
        self._eager_steps = 0

    @torch.no_grad()
    def __call__(self, indices, lr_factor):
        self.step.set_lr_factor(lr_factor)
        if self.graph is not None and len(indices) == self.batch_size:
            self._indices.copy_(indices)
            self.graph.replay()
            return self._loss
        if (
            len(indices) == self.batch_size
            and not self.failed
            and self._eager_steps >= self.EAGER_STEPS
        ):
            return self._capture(indices)
        self._eager_steps += 1
        return self.step.update(*self.data.gather(indices))

    def _capture(self, indices):
        self._indices = indices.clone()
        self._held = self.step.prepare_capture(self.batch_size)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self._loss = self.step.update(*self.data.gather(self._indices))
        except RuntimeError as exc:  # pragma: no cover - needs a failing CUDA
            warn(
                f"Capturing the training step as a CUDA graph failed ({exc}); "
                "training goes on step by step.",
                FallbackWarning,
            )
            self.failed = True
            return self.step.update(*self.data.gather(indices))
        self.graph = graph
        graph.replay()
        return self._loss
