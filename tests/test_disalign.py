"""DisAlign: a gated per-class scale and bias on the frozen joint logits."""

import numpy as np
import pytest
import torch

from skltr import DisAlignClassifier, JointClassifier
from skltr._backend import AutogradSGD
from skltr._disalign import (
    GatedAlignmentSGD,
    aligned_logits,
    generalised_reweighting,
)

CPU = {"device": "cpu", "random_state": 0}


def test_generalised_reweighting_follows_the_formula():
    counts = np.array([100, 10, 1])
    inverse = 1 / counts
    np.testing.assert_allclose(
        generalised_reweighting(counts, 1.0), inverse * 111 / (inverse @ counts)
    )
    np.testing.assert_allclose(generalised_reweighting(counts, 0.0), 1.0)
    # Mean 1 over the samples, whatever rho.
    weights = generalised_reweighting(counts, 1.2)
    assert weights @ counts == pytest.approx(counts.sum())
    assert weights[2] / weights[1] == pytest.approx(10**1.2)


def test_aligned_logits_formula():
    logits = torch.tensor([[1.0, -2.0, 0.5]])
    scale, bias = torch.tensor([2.0, 1.0, 0.5]), torch.tensor([0.1, 0.2, -0.3])
    gate_logit = torch.tensor([[0.4]])
    sigma = torch.sigmoid(gate_logit)
    expected = sigma * (scale * logits + bias) + (1 - sigma) * logits
    torch.testing.assert_close(
        aligned_logits(logits, gate_logit, scale, bias), expected
    )


def test_closed_gate_or_identity_alignment_gives_the_joint_logits(small_problem):
    X, y = small_problem
    clf = DisAlignClassifier(refit="full", **CPU).fit(X, y)
    joint = JointClassifier(**CPU).fit(X, y)
    np.testing.assert_array_equal(clf.joint_coef_, joint.coef_)
    assert not np.allclose(clf.decision_function(X), joint.decision_function(X))
    closed = DisAlignClassifier(refit="full", **CPU).fit(X, y)
    closed.gate_coef_[:] = 0.0
    closed.gate_intercept_ = -200.0  # sigma = 0
    np.testing.assert_allclose(
        closed.decision_function(X), joint.decision_function(X), rtol=1e-6
    )
    identity = DisAlignClassifier(refit="full", **CPU).fit(X, y)
    identity.scale_[:], identity.bias_[:] = 1.0, 0.0
    np.testing.assert_allclose(
        identity.decision_function(X), joint.decision_function(X), rtol=1e-6
    )


def test_rho_must_not_be_negative(small_problem):
    X, y = small_problem
    with pytest.raises(ValueError, match="'rho' parameter"):
        DisAlignClassifier(rho=-1.0, **CPU).fit(X, y)


def test_the_closed_form_step_is_the_autograd_step():
    # The alignment's gradient written out takes the steps autograd takes on
    # the cross-entropy of aligned_logits, weights and weight decay included.
    generator = torch.Generator().manual_seed(0)
    n, n_classes, n_features = 64, 5, 7
    logits = 3.0 * torch.randn(n, n_classes, generator=generator)
    rows = torch.randn(n, n_features, generator=generator)
    labels = torch.randint(0, n_classes, (n,), generator=generator)
    weights = torch.rand(n, generator=generator) + 0.5

    def parameters():
        return (
            torch.ones(n_classes),
            torch.zeros(n_classes),
            torch.zeros(n_features),
            torch.zeros(()),
        )

    lrs = {"lr_scale": 0.05, "lr_bias": 0.5, "lr_gate": 0.2}
    settings = {"momentum": 0.9, "weight_decay": 5e-4}
    closed_step = GatedAlignmentSGD(
        n_classes, n_features, torch.device("cpu"), **lrs, **settings
    )
    closed = (
        closed_step.scale,
        closed_step.bias,
        closed_step.gate_coef,
        closed_step.gate_intercept,
    )
    for got, start in zip(closed, parameters(), strict=True):
        assert torch.equal(got, start)  # the alignment starts as the joint logits
    autograd = tuple(p.requires_grad_() for p in parameters())
    scale, bias, gate_coef, gate_intercept = autograd

    def losses(batch, batch_labels):
        gate_logit = batch[:, n_classes:] @ gate_coef + gate_intercept
        aligned = aligned_logits(batch[:, :n_classes], gate_logit[:, None], scale, bias)
        return torch.nn.functional.cross_entropy(
            aligned, batch_labels, reduction="none"
        )

    autograd_step = AutogradSGD(
        [
            {"params": [scale], "lr": lrs["lr_scale"]},
            {"params": [bias, gate_intercept], "lr": lrs["lr_bias"]},
            {"params": [gate_coef], "lr": lrs["lr_gate"]},
        ],
        losses,
        **settings,
    )
    features = torch.cat([logits, rows], dim=1)
    for lr_factor in (1.0, 0.8, 0.5, 0.2):
        loss = closed_step(features, labels, weights, lr_factor=lr_factor)
        expected = autograd_step(features, labels, weights, lr_factor=lr_factor)
        torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    for got, want, start in zip(closed, autograd, parameters(), strict=True):
        assert not torch.allclose(got, start)  # every parameter moved
        torch.testing.assert_close(got, want.detach(), rtol=1e-5, atol=1e-6)
