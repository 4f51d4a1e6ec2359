"""DisAlign: a gated per-class scale and bias on the frozen joint logits."""

import numpy as np
import pytest
import torch

from skltr import DisAlignClassifier, JointClassifier
from skltr._disalign import aligned_logits, generalised_reweighting

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
