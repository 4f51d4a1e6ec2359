"""The GPU against the CPU: the same fits, features and statistics.

These run only where PyTorch sees a CUDA device (skipped elsewhere), so that a
machine with a GPU checks every CUDA path with one command:

    python -m pytest tests/test_devices.py

Each test fits or computes the same thing on the CPU and on the GPU and
compares. Fits agree closely but not bit for bit: float32 products sum in
another order on the GPU.
"""

import pickle

import numpy as np
import pytest
import torch
from _estimators import CLASSIFIERS, instance
from safetensors.torch import save_file
from sklearn.base import clone

from skltr import (
    CRTClassifier,
    FeatureExtractor,
    JointClassifier,
    LORTClassifier,
    LWSClassifier,
    NCMClassifier,
    TauNormClassifier,
)
from skltr._backend import DeviceFeatures
from skltr.models import cifar_resnet20

pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"
)
GPU = "cuda"
TRAINED = [
    JointClassifier(random_state=0),
    CRTClassifier(random_state=0),
    TauNormClassifier(random_state=0),
    LWSClassifier(random_state=0),
    LORTClassifier(random_state=0),
]


def _ids(estimator):
    return type(estimator).__name__


def _fit_on(device, estimator, X, y):
    return clone(estimator).set_params(device=device).fit(X, y)


@pytest.mark.parametrize("clf", TRAINED, ids=_ids)
def test_a_fit_on_the_gpu_is_the_fit_on_the_cpu(long_tailed, clf):
    X, y, X_test, _ = long_tailed
    on_cpu, on_gpu = _fit_on("cpu", clf, X, y), _fit_on(GPU, clf, X, y)
    assert on_gpu.device_.startswith("cuda")
    scale = np.abs(on_cpu.coef_).max()
    np.testing.assert_allclose(on_gpu.coef_, on_cpu.coef_, atol=1e-3 * scale)
    agree = np.mean(on_gpu.predict(X_test) == on_cpu.predict(X_test))
    assert agree >= 0.99


def test_ncm_on_the_gpu_is_ncm_on_the_cpu(long_tailed, tmp_path):
    X, y, X_test, _ = long_tailed
    on_cpu = NCMClassifier(device="cpu").fit(X, y)
    on_gpu = NCMClassifier(device=GPU).fit(X, y)
    assert on_gpu.device_.startswith("cuda")
    np.testing.assert_allclose(on_gpu.centroids_, on_cpu.centroids_, atol=1e-6)
    assert on_gpu.temperature_ == pytest.approx(on_cpu.temperature_, rel=1e-3)
    assert np.mean(on_gpu.predict(X_test) == on_cpu.predict(X_test)) >= 0.99
    # Repeatable bit for bit, and float64 features keep their precision.
    again = NCMClassifier(device=GPU).fit(X, y)
    np.testing.assert_array_equal(again.centroids_, on_gpu.centroids_)
    X64 = X.astype(np.float64)
    np.testing.assert_allclose(
        NCMClassifier(device=GPU).fit(X64, y).centroids_,
        NCMClassifier(device="cpu").fit(X64, y).centroids_,
        atol=1e-12,
    )
    # Streamed from a memory map (never resident): the same means.
    np.save(tmp_path / "X.npy", X)
    streamed = NCMClassifier(device=GPU).fit(
        np.load(tmp_path / "X.npy", mmap_mode="r"), y
    )
    np.testing.assert_allclose(streamed.centroids_, on_gpu.centroids_, atol=1e-6)


@pytest.mark.parametrize("cls", CLASSIFIERS, ids=lambda cls: cls.__name__)
def test_a_model_fit_on_the_gpu_holds_no_gpu_state(small_problem, cls):
    X, y = small_problem
    fitted = instance(cls, device=GPU, random_state=0).fit(X, y)
    for name, value in vars(fitted).items():
        assert not isinstance(value, torch.Tensor), name
    pickled = pickle.dumps(fitted)
    # No torch object at all: it unpickles where there is no GPU (or torch).
    assert b"torch" not in pickled
    restored = pickle.loads(pickled)
    np.testing.assert_array_equal(restored.predict_proba(X), fitted.predict_proba(X))


@pytest.mark.parametrize("clf", TRAINED + [NCMClassifier()], ids=_ids)
def test_features_already_on_the_gpu_train_like_arrays(long_tailed, clf):
    X, y, X_test, _ = long_tailed
    on_gpu = torch.from_numpy(X).to(GPU)
    from_array = _fit_on(GPU, clf, X, y)
    from_tensor = _fit_on(GPU, clf, on_gpu, torch.from_numpy(y).to(GPU))
    fitted = "centroids_" if isinstance(clf, NCMClassifier) else "coef_"
    np.testing.assert_allclose(
        getattr(from_tensor, fitted), getattr(from_array, fitted), rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        from_tensor.predict_proba(torch.from_numpy(X_test).to(GPU)),
        from_array.predict_proba(X_test),
        rtol=1e-5,
        atol=1e-6,
    )
    # And fitted where the estimator says, wherever the tensor is.
    on_cpu = _fit_on("cpu", clf, on_gpu, y)
    assert on_cpu.device_ == "cpu"
    assert np.mean(on_cpu.predict(X_test) == from_array.predict(X_test)) >= 0.99


@pytest.mark.parametrize(
    "clf", [CRTClassifier(random_state=0), NCMClassifier()], ids=_ids
)
def test_features_on_the_gpu_are_scored_there(long_tailed, clf):
    # Predicting from a tensor on the GPU scores it there, in float64, and
    # brings back only the results: the rows are not copied to the host.
    X, y, X_test, _ = long_tailed
    fitted = _fit_on("cpu", clf, X, y)
    on_gpu = torch.from_numpy(X_test).to(GPU)
    scores = next(fitted._iter_scores(on_gpu))
    assert scores.device.type == torch.device(GPU).type
    assert scores.dtype == torch.float64
    np.testing.assert_allclose(
        fitted.predict_proba(on_gpu),
        fitted.predict_proba(X_test),
        rtol=1e-10,
        atol=1e-14,
    )
    np.testing.assert_array_equal(fitted.predict(on_gpu), fitted.predict(X_test))


def test_tau_sweep_of_features_on_the_gpu_runs_there(long_tailed):
    from skltr.metrics import tau_sweep

    X, y, X_test, y_test = long_tailed
    joint = _fit_on("cpu", JointClassifier(random_state=0), X, y)
    on_gpu = tau_sweep(joint, torch.from_numpy(X_test).to(GPU), y_test)
    on_host = tau_sweep(joint, X_test, y_test)
    for split in ("many", "medium", "few", "all"):
        np.testing.assert_array_equal(on_gpu[split], on_host[split])


def test_float32_features_on_the_gpu_are_used_in_place(long_tailed):
    X, y, _, _ = long_tailed
    on_gpu = torch.from_numpy(X).to(GPU)
    assert DeviceFeatures(on_gpu, y, torch.device(GPU))._X_device is on_gpu
    as_half = on_gpu.half()
    assert DeviceFeatures(as_half, y, torch.device(GPU))._X_device is as_half


def test_streamed_features_train_like_resident_ones_on_the_gpu(long_tailed, tmp_path):
    # A memory-mapped file is never resident: its batches are read on the
    # host, pinned and copied without blocking; resident ones are gathered on
    # the device inside a captured CUDA graph.
    X, y, _, _ = long_tailed
    np.save(tmp_path / "X.npy", X)
    mapped = np.load(tmp_path / "X.npy", mmap_mode="r")
    assert not DeviceFeatures(mapped, y, torch.device(GPU)).resident
    clf = CRTClassifier(device=GPU, random_state=0)
    resident, streamed = clone(clf).fit(X, y), clone(clf).fit(mapped, y)
    np.testing.assert_allclose(streamed.coef_, resident.coef_, rtol=1e-4, atol=1e-5)


def test_moments_and_step_size_on_the_gpu_match_the_host(long_tailed):
    X, y, _, _ = long_tailed
    on_cpu = DeviceFeatures(X, y, torch.device("cpu"))
    on_gpu = DeviceFeatures(X, y, torch.device(GPU))
    assert on_gpu.resident
    (cpu_mean, cpu_var), (gpu_mean, gpu_var) = on_cpu.moments(), on_gpu.moments()
    np.testing.assert_allclose(gpu_mean, cpu_mean, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(gpu_var, cpu_var, rtol=1e-5)
    for data in (on_cpu, on_gpu):
        data.standardise(cpu_mean, np.sqrt(cpu_var))
    cpu_eigenvalue = on_cpu.top_eigenvalue(np.random.default_rng(0))
    gpu_eigenvalue = on_gpu.top_eigenvalue(np.random.default_rng(0))
    assert gpu_eigenvalue == pytest.approx(cpu_eigenvalue, rel=1e-4)


def test_features_on_the_gpu_are_the_features_on_the_cpu(tmp_path):
    torch.manual_seed(0)
    save_file(cifar_resnet20().state_dict(), tmp_path / "w.safetensors")
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(12, 32, 32, 3), dtype=np.uint8)
    extractor = FeatureExtractor(
        "cifar_resnet20", weights=tmp_path / "w.safetensors", batch_size=5
    )
    on_cpu = clone(extractor).set_params(device="cpu").fit_transform(pixels)
    on_gpu = clone(extractor).set_params(device=GPU).fit_transform(pixels)
    # cuDNN may run float32 convolutions in TF32 (PyTorch's default for
    # them), about 1e-3 relative.
    np.testing.assert_allclose(on_gpu, on_cpu, rtol=1e-2, atol=1e-2 * on_cpu.std())
