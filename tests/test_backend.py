"""The training backend: the closed-form step, the step-size rule, batches."""

import numpy as np
import pytest
import torch

import skltr._backend
from skltr import JointClassifier
from skltr._backend import (
    AutogradSGD,
    CapturedStep,
    ClassScaleSGD,
    DeviceFeatures,
    SoftmaxRegressionSGD,
    log_softmax_rows,
)
from skltr.datasets import make_long_tailed_features

CPU = torch.device("cpu")


def _problem(n=300, d=7, c=5, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(c, size=n)
    X = rng.normal(size=(n, d)) + 3 * rng.normal(size=(c, d))[y]
    return X.astype(np.float32), y


@pytest.mark.parametrize("smoothing", [0.0, 0.9])
def test_closed_form_step_takes_the_steps_of_autograd_sgd(smoothing):
    X, y = _problem()
    features, labels = torch.from_numpy(X), torch.from_numpy(y)
    torch.manual_seed(0)
    reference = torch.nn.Linear(X.shape[1], 5)
    closed = torch.nn.Linear(X.shape[1], 5).requires_grad_(False)
    closed.load_state_dict(reference.state_dict())
    settings = dict(momentum=0.9, weight_decay=0.01)
    autograd = AutogradSGD(
        [
            {"params": [reference.weight], "lr": 0.05},
            {"params": [reference.bias], "lr": 0.2},
        ],
        lambda x, t: torch.nn.functional.cross_entropy(
            reference(x), t, label_smoothing=smoothing, reduction="none"
        ),
        **settings,
    )
    step = SoftmaxRegressionSGD(
        closed, lr_weight=0.05, lr_bias=0.2, label_smoothing=smoothing, **settings
    )
    for k, rows in enumerate([slice(0, 64), slice(64, 128), slice(128, 150)] * 3):
        factor = 1.0 - k / 10
        expected = autograd(features[rows], labels[rows], lr_factor=factor)
        loss = step(features[rows], labels[rows], lr_factor=factor)
        torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(closed.weight, reference.weight)
    torch.testing.assert_close(closed.bias, reference.bias)


@pytest.mark.parametrize("smoothing", [0.0, 0.9])
def test_heads_side_by_side_take_the_steps_each_takes_alone(smoothing):
    # Weight balancing's candidates: one head per weight decay in one layer.
    X, y = _problem()
    features, labels = torch.from_numpy(X), torch.from_numpy(y)
    row_weights = torch.from_numpy(np.random.default_rng(1).uniform(0.5, 2, len(y)))
    row_weights = row_weights.float()
    decays = [0.0, 0.01, 0.3]
    torch.manual_seed(0)
    start = torch.nn.Linear(X.shape[1], 5).requires_grad_(False)
    settings = dict(lr_weight=0.05, lr_bias=0.2, momentum=0.9)
    settings["label_smoothing"] = smoothing
    alone = []
    for decay in decays:
        layer = torch.nn.Linear(X.shape[1], 5).requires_grad_(False)
        layer.load_state_dict(start.state_dict())
        step = SoftmaxRegressionSGD(layer, weight_decay=decay, **settings)
        alone.append((layer, step))
    stacked = torch.nn.Linear(X.shape[1], 15).requires_grad_(False)
    stacked.weight.copy_(start.weight.repeat(3, 1))
    stacked.bias.copy_(start.bias.repeat(3))
    step = SoftmaxRegressionSGD(
        stacked,
        weight_decay=torch.tensor(decays).repeat_interleave(5),
        n_heads=3,
        **settings,
    )
    for k, rows in enumerate([slice(0, 64), slice(64, 128), slice(128, 150)] * 3):
        batch = features[rows], labels[rows], row_weights[rows]
        losses = [head_step(*batch, lr_factor=1.0 - k / 10) for _, head_step in alone]
        loss = step(*batch, lr_factor=1.0 - k / 10)
        torch.testing.assert_close(loss, torch.stack(losses).mean())
    for k, (layer, _) in enumerate(alone):
        torch.testing.assert_close(stacked.weight[5 * k : 5 * k + 5], layer.weight)
        torch.testing.assert_close(stacked.bias[5 * k : 5 * k + 5], layer.bias)
    # A CUDA graph captures a step that must not allocate: what it reads is
    # allocated beforehand, for every head's rows.
    assert len(step.prepare_capture(64)) == 64 * 3


@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_cross_entropy_gradient_is_autograds_for_logits_far_apart(smoothing):
    # Log-probabilities far below -87 (denormal probabilities) are raised
    # before their exponential; the gradient must not move.
    logits = torch.randn(64, 50, generator=torch.Generator().manual_seed(0)) * 200
    labels = torch.arange(64) % 50
    step = SoftmaxRegressionSGD(
        torch.nn.Linear(1, 50),
        lr_weight=0.1,
        lr_bias=0.1,
        momentum=0.0,
        weight_decay=0.0,
        label_smoothing=smoothing,
    )
    loss, grad = step.cross_entropy_gradient(logits, labels)
    reference = logits.clone().requires_grad_(True)
    expected = torch.nn.functional.cross_entropy(
        reference, labels, label_smoothing=smoothing
    )
    expected.backward()
    torch.testing.assert_close(loss, expected.detach())
    torch.testing.assert_close(
        grad / len(labels), reference.grad, rtol=1e-6, atol=1e-12
    )


def test_class_scale_step_takes_the_steps_of_autograd_sgd():
    # LWS: one scale per class on the fixed logits of a joint classifier.
    X, y = _problem()
    features, labels = torch.from_numpy(X), torch.from_numpy(y)
    torch.manual_seed(0)
    coef, intercept = torch.randn(5, X.shape[1]), torch.randn(5)
    reference = torch.ones(5, requires_grad=True)
    scales = torch.ones(5)
    settings = dict(momentum=0.9, weight_decay=0.01)
    autograd = AutogradSGD(
        [{"params": [reference], "lr": 0.05}],
        lambda x, t: torch.nn.functional.cross_entropy(
            reference * (x @ coef.T + intercept), t, reduction="none"
        ),
        **settings,
    )
    step = ClassScaleSGD(scales, coef, intercept, lr=0.05, **settings)
    for k, rows in enumerate([slice(0, 64), slice(64, 128), slice(128, 150)] * 3):
        factor = 1.0 - k / 10
        expected = autograd(features[rows], labels[rows], lr_factor=factor)
        torch.testing.assert_close(
            step(features[rows], labels[rows], lr_factor=factor), expected
        )
    assert not torch.equal(scales, torch.ones(5))
    torch.testing.assert_close(scales, reference.detach())


@pytest.mark.parametrize("lanes", [0, 16])
def test_log_softmax_rows_is_torchs_whichever_kernel_runs(monkeypatch, lanes):
    # With 16 lanes, fewer than 16 classes go through the transposed view.
    monkeypatch.setattr(skltr._backend._steps, "_CPU_FLOAT32_LANES", lanes)
    generator = torch.Generator().manual_seed(0)
    for n_classes in (2, 10, 16, 40):
        logits = 5 * torch.randn(300, n_classes, generator=generator)
        log_p = log_softmax_rows(logits)
        assert log_p.shape == (300, n_classes)
        torch.testing.assert_close(log_p, torch.log_softmax(logits, 1))


def test_top_eigenvalue_is_that_of_the_second_moment():
    rng = np.random.default_rng(0)
    # Correlated features: the largest eigenvalue is far below the trace.
    X = (rng.normal(size=(2000, 20)) @ rng.normal(size=(20, 20))).astype(np.float32)
    exact = np.linalg.eigvalsh(X.T.astype(np.float64) @ X / len(X))[-1]
    data = DeviceFeatures(X, np.zeros(len(X), int), CPU)
    assert data.top_eigenvalue(rng) == pytest.approx(exact, rel=1e-3)
    # Served standardised, it is that of the standardised rows.
    mean, var = data.moments()
    data.standardise(mean, np.sqrt(var))
    Z = (X - mean) / np.sqrt(var)
    exact = np.linalg.eigvalsh(Z.T @ Z / len(Z))[-1]
    assert data.top_eigenvalue(rng) == pytest.approx(exact, rel=1e-3)
    # A subset of the rows when there are many: an estimate, near the value.
    subset = data.top_eigenvalue(rng, max_values=500 * 20)
    assert subset == pytest.approx(exact, rel=0.2)


def test_top_eigenvalue_subset_has_enough_rows_per_feature():
    # Isotropic rows: a subset of n rows in d dimensions puts the top
    # eigenvalue near (1 + sqrt(d / n))^2 instead of 1, so the subset is
    # sized by rows per feature, whatever max_values allows.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20_000, 64)).astype(np.float32)
    data = DeviceFeatures(X, np.zeros(len(X), int), CPU)
    floored = data.top_eigenvalue(rng, max_values=64 * 16)
    assert 1.0 < floored < (1 + 0.25) ** 2
    too_few = data.top_eigenvalue(rng, max_values=64 * 16, rows_per_feature=1)
    assert too_few > 2.5


def test_top_eigenvalue_when_the_top_of_the_spectrum_is_crowded(monkeypatch, chunks_of):
    # Isotropic noise in 256-d: the largest eigenvalues lie close together,
    # where power iteration stalls short of the top.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 256)).astype(np.float32)
    exact = np.linalg.eigvalsh(X.T.astype(np.float64) @ X / len(X))[-1]
    data = DeviceFeatures(X, np.zeros(len(X), int), CPU)
    assert data.top_eigenvalue(rng) == pytest.approx(exact, rel=1e-3)
    # E[x x^T] is summed a chunk of rows at a time: small chunks, same value.
    with monkeypatch.context() as patch:
        passes = chunks_of(70, skltr._backend._features, patch)
        assert data.top_eigenvalue(rng) == pytest.approx(exact, rel=1e-3)
        assert passes  # the small chunks were taken
    # Rows spanning fewer directions than the features end the iteration early.
    low_rank = X[:, :3] @ rng.normal(size=(3, 256)).astype(np.float32)
    exact = np.linalg.eigvalsh(low_rank.T.astype(np.float64) @ low_rank / 3000)[-1]
    data = DeviceFeatures(low_rank, np.zeros(len(X), int), CPU)
    assert data.top_eigenvalue(rng) == pytest.approx(exact, rel=1e-3)
    assert DeviceFeatures(np.zeros_like(X), np.zeros(3000, int), CPU).top_eigenvalue(
        rng
    ) == pytest.approx(0.0)


def test_moments_merge_chunks_exactly_enough(chunks_of, tmp_path):
    # Far from zero and narrow, in chunks of unequal size, resident and
    # memory-mapped: the merged float64 moments match NumPy's on all rows.
    rng = np.random.default_rng(0)
    X = (1000.0 + 0.1 * rng.normal(size=(1030, 6))).astype(np.float32)
    expected_mean = X.mean(axis=0, dtype=np.float64)
    expected_var = X.astype(np.float64).var(axis=0)
    passes = chunks_of(100, skltr._backend._features)
    mapped = np.lib.format.open_memmap(
        tmp_path / "X.npy", mode="w+", dtype=X.dtype, shape=X.shape
    )
    mapped[:] = X
    for features in (X, mapped, X.astype(np.float64), torch.from_numpy(X)):
        given = np.asarray(features).copy()
        data = DeviceFeatures(features, np.zeros(len(X), int), CPU)
        mean, var = data.moments()
        np.testing.assert_allclose(mean, expected_mean, rtol=1e-7)
        np.testing.assert_allclose(var, expected_var, rtol=1e-4)
        # The rows are centred in a copy, never in the caller's memory.
        np.testing.assert_array_equal(np.asarray(features), given)
    assert passes  # the small chunks were taken


def test_standardised_rows_are_served_as_x_minus_mean_over_scale():
    X, y = _problem()
    data = DeviceFeatures(X, y, CPU)
    mean, var = data.moments()
    np.testing.assert_allclose(mean, X.mean(axis=0, dtype=np.float64), rtol=1e-6)
    np.testing.assert_allclose(var, X.var(axis=0, dtype=np.float64), rtol=1e-5)
    data.standardise(mean, np.sqrt(var))
    order = np.random.default_rng(0).permutation(len(y))
    rows, labels = next(data.epoch_batches(order, 50))
    first = np.sort(order[:50])
    np.testing.assert_allclose(
        rows.numpy(), (X[first] - mean) / np.sqrt(var), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_array_equal(labels.numpy(), y[first])


def test_an_epoch_serves_every_row_once_in_batches():
    X, y = _problem(n=130)
    data = DeviceFeatures(X, y, CPU)
    order = np.random.default_rng(1).permutation(130)
    batches = list(data.epoch_batches(order, 32))
    assert [len(labels) for _, labels in batches] == [32, 32, 32, 32, 2]
    served = np.concatenate([rows.numpy() for rows, _ in batches])
    np.testing.assert_array_equal(np.sort(served, axis=0), np.sort(X, axis=0))


def test_the_joint_classifier_converges_within_its_default_epochs():
    # Isotropic noise in 256-d: the mean squared norm (the trace, which the
    # step rule used to divide by) is about 100 times the largest eigenvalue,
    # and the default 30 epochs stopped at 3.4 times the optimum's loss.
    X, _, y, _ = make_long_tailed_features(
        4000, 256, 40, imbalance_ratio=20, random_state=0
    )

    def objective(clf):
        Z = (X - clf.feature_mean_) / clf.feature_scale_
        logits = torch.from_numpy(Z @ clf.coef_.T + clf.intercept_)
        penalty = np.sum(clf.coef_**2) + np.sum(clf.intercept_**2)
        return float(
            torch.nn.functional.cross_entropy(logits, torch.from_numpy(y))
            + 0.5 * clf.weight_decay_ * penalty
        )

    default = JointClassifier(device="cpu", random_state=0).fit(X, y)
    longer = JointClassifier(epochs=300, device="cpu", random_state=0).fit(X, y)
    assert objective(default) <= 1.05 * objective(longer)


def _assert_captured_steps_match_eager(step, eager_twin, data):
    """Three epochs of ``step`` captured in a CUDA graph and of its twin run eagerly."""
    captured = CapturedStep(step, data, 256)
    rng = np.random.default_rng(0)
    for epoch in range(3):  # each epoch ends with a partial batch: eager
        for indices in data.epoch_index_batches(rng.permutation(data.n_samples), 256):
            factor = 1.0 / (epoch + 1)
            loss = captured(indices, factor)
            torch.testing.assert_close(loss, eager_twin(*data.gather(indices), factor))
    assert captured.graph is not None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("smoothing, n_heads", [(0.0, 1), (0.5, 1), (0.0, 3)])
def test_captured_cuda_graph_takes_the_eager_steps(smoothing, n_heads):
    X, y = _problem(n=1100, d=32, c=10)
    data = DeviceFeatures(X, y, torch.device("cuda"))
    mean, var = data.moments()
    data.standardise(mean, np.sqrt(var))
    weight_decay = 1e-3
    if n_heads > 1:  # weight balancing's candidates, side by side
        decays = torch.tensor([1e-3, 1e-2, 1e-1], device="cuda")
        weight_decay = decays.repeat_interleave(10)
    layers, steps = [], []
    for _ in range(2):
        layer = torch.nn.Linear(32, 10 * n_heads, device="cuda")
        layer.requires_grad_(False)
        layer.weight.zero_(), layer.bias.zero_()
        layers.append(layer)
        steps.append(
            SoftmaxRegressionSGD(
                layer,
                lr_weight=0.01,
                lr_bias=0.1,
                momentum=0.9,
                weight_decay=weight_decay,
                label_smoothing=smoothing,
                n_heads=n_heads,
            )
        )
    _assert_captured_steps_match_eager(*steps, data)
    torch.testing.assert_close(layers[0].weight, layers[1].weight)
    torch.testing.assert_close(layers[0].bias, layers[1].bias)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_captured_cuda_graph_takes_the_eager_class_scale_steps():
    X, y = _problem(n=1100, d=32, c=10)
    data = DeviceFeatures(X, y, torch.device("cuda"))
    torch.manual_seed(0)
    coef = torch.randn(10, 32, device="cuda")
    intercept = torch.randn(10, device="cuda")
    scales = [torch.ones(10, device="cuda") for _ in range(2)]
    steps = [
        ClassScaleSGD(s, coef, intercept, lr=0.05, momentum=0.9, weight_decay=1e-3)
        for s in scales
    ]
    _assert_captured_steps_match_eager(*steps, data)
    torch.testing.assert_close(scales[0], scales[1])
