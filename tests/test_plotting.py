import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from skltr import (  # noqa: E402
    CRTClassifier,
    JointClassifier,
    NCMClassifier,
    TauNormClassifier,
)
from skltr.metrics import shot_accuracy, tau_sweep  # noqa: E402
from skltr.plotting import (  # noqa: E402
    plot_per_class_accuracy,
    plot_tau_sweep,
    plot_weight_norms,
)


@pytest.fixture(scope="module")
def fitted(long_tailed):
    X, y, X_test, y_test = long_tailed
    joint = JointClassifier(device="cpu", random_state=0).fit(X, y)
    crt = CRTClassifier(device="cpu", random_state=0).fit(X, y)
    tau = TauNormClassifier(joint=joint).fit(X, y)
    return {"Joint": joint, "cRT": crt, "tau-norm": tau}, X_test, y_test


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _saved(ax, path):
    ax.figure.savefig(path)
    assert path.stat().st_size > 1000
    return path


def test_weight_norms_sorted_by_training_count(fitted, tmp_path):
    classifiers, _, _ = fitted
    ax = plot_weight_norms(classifiers)
    _saved(ax, tmp_path / "norms.png")
    lines = {line.get_label(): line.get_ydata() for line in ax.get_lines()}
    assert set(lines) == set(classifiers)
    joint = classifiers["Joint"]
    order = np.argsort(-joint.class_counts_, kind="stable")
    np.testing.assert_allclose(
        lines["Joint"], np.linalg.norm(joint.coef_, axis=1)[order]
    )
    # The joint classifier's norms follow its class counts; cRT's are flatter.
    assert lines["Joint"][0] > lines["Joint"][-1]
    spread = {name: norms.max() / norms.min() for name, norms in lines.items()}
    assert spread["cRT"] < spread["Joint"]


def test_weight_norms_of_arrays_and_bad_input(fitted):
    classifiers, _, _ = fitted
    coef = classifiers["Joint"].coef_
    ax = plot_weight_norms(coef[::-1], class_counts=np.arange(len(coef)))
    np.testing.assert_allclose(
        ax.get_lines()[0].get_ydata(), np.linalg.norm(coef, axis=1)
    )
    with pytest.raises(ValueError, match="Pass class_counts"):
        plot_weight_norms({"w": coef})
    with pytest.raises(ValueError, match="has no per-class weights"):
        plot_weight_norms(
            {"ncm": NCMClassifier().fit(np.eye(3), [0, 1, 2])},
        )
    with pytest.raises(ValueError, match="10 weight rows but class_counts has 3"):
        plot_weight_norms(coef, class_counts=[1, 2, 3])


def test_tau_sweep_plot_draws_the_sweep(fitted, tmp_path):
    classifiers, X_test, y_test = fitted
    tau = classifiers["tau-norm"]
    fig, ax = plt.subplots()
    returned = plot_tau_sweep(tau, X_test, y_test, many=200, few=30, ax=ax)
    assert returned is ax
    _saved(ax, tmp_path / "tau.png")
    sweep = tau_sweep(tau, X_test, y_test, many=200, few=30)
    lines = {line.get_label(): line for line in ax.get_lines()}
    np.testing.assert_allclose(lines["Few (n < 30)"].get_ydata(), sweep["few"])
    np.testing.assert_allclose(lines["All"].get_xdata(), sweep["tau"])
    assert f"chosen tau = {tau.tau_:g}" in lines


def test_per_class_accuracy_plot(fitted, tmp_path):
    classifiers, X_test, y_test = fitted
    ax = plot_per_class_accuracy(
        {"Joint": classifiers["Joint"], "cRT": classifiers["cRT"]},
        X_test,
        y_test,
        many=200,
        few=30,
    )
    _saved(ax, tmp_path / "per_class.png")
    joint = classifiers["Joint"]
    points = ax.collections[0].get_offsets()
    np.testing.assert_array_equal(points[:, 0], joint.class_counts_)
    accuracy = points[:, 1]
    expected_all = shot_accuracy(
        y_test, joint.predict(X_test), class_counts=joint.class_counts_
    )["all"]
    assert accuracy.mean() == pytest.approx(expected_all)
    assert ax.get_xscale() == "log" and len(ax.collections) == 2


def test_plotting_without_matplotlib_says_what_to_install(fitted, monkeypatch):
    classifiers, _, _ = fitted
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"pip install 'skltr\[plot\]'"):
        plot_weight_norms(classifiers)


def test_reliability_diagram_draws_each_filled_bin_and_the_ece():
    from skltr.metrics import expected_calibration_error
    from skltr.plotting import plot_reliability_diagram

    rng = np.random.default_rng(0)
    y_prob = rng.dirichlet([1.0, 1.0, 1.0], size=400)
    y_true = rng.integers(0, 3, 400)
    fig, ax = plt.subplots()
    assert plot_reliability_diagram(y_true, y_prob, n_bins=10, ax=ax) is ax
    top = y_prob.max(axis=1)
    filled = len(np.unique(np.minimum((top * 10 - 1e-12).astype(int), 9)))
    assert len(ax.patches) == filled
    ece = expected_calibration_error(y_true, y_prob, n_bins=10)
    assert ax.get_title() == f"ECE = {ece:.3f} (10 bins)"
    plt.close(fig)
