"""The main job end to end on tiny configurations (the full runs are benchmarks)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

RUN = Path(__file__).parents[1] / "benchmarks" / "run.py"
COLUMNS = "| classifier | Many | Medium | Few | All | fit (s) |"
ROWS = (
    "Joint",
    "NCM",
    "cRT",
    "tau-norm",
    "LWS",
    "LORT",
    "logit adjustment",
    "DisAlign",
    "weight balancing",
    "Balanced Softmax",
    "LDAM-DRW",
    "Joint, class-balanced loss",
    "Joint, focal loss",
    "LogisticRegression (balanced)",
)
FIGURES = ("weight_norms.png", "tau_sweep.png", "per_class_accuracy.png")

# Slow: each test runs a benchmark script in a subprocess; CI runs them, the quick
# command does not.
pytestmark = pytest.mark.slow


def run_main_job(*arguments):
    result = subprocess.run(
        [sys.executable, str(RUN), "--device", "cpu", "--quiet", *arguments],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return result


def check_outputs(result, out, rows=ROWS):
    assert COLUMNS in result.stdout
    report = json.loads((out / "results.json").read_text())
    for name in rows:
        assert f"| {name} |" in result.stdout
        assert {"many", "medium", "few", "all", "fit_seconds"} <= set(
            report["rows"][name]
        )
    assert (out / "results.md").read_text().strip() == result.stdout.strip()
    for figure in FIGURES:
        assert (out / figure).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return report


def test_main_job_on_digits(tmp_path):
    result = run_main_job("--stage1-epochs", "5", "--out", str(tmp_path))
    report = check_outputs(result, tmp_path, ROWS + ("tau-norm (tau on val)",))
    many, few = report["thresholds"]["many"], report["thresholds"]["few"]
    assert f"Many n > {many}" in result.stdout and f"Few n < {few}" in result.stdout
    assert len(report["tau_sweep_on_test"]["tau"]) == 21
    # A log line per stage, on stderr, with its duration.
    for stage in ("loading the data set", "stage 1", "fitting every classifier"):
        assert f"{stage}" in result.stderr
    assert "done in" in result.stderr
    assert set(report["stage_seconds"]) >= {"loading the data set"}


def test_main_job_on_precomputed_features(tmp_path):
    from skltr.datasets import make_long_tailed_features

    X, X_test, y, y_test = make_long_tailed_features(
        600, 8, 6, imbalance_ratio=20, n_test_per_class=20, random_state=0
    )
    np.savez(tmp_path / "f.npz", X_train=X, y_train=y, X_test=X_test, y_test=y_test)
    out = tmp_path / "out"
    result = run_main_job(
        "--dataset", "features", "--data", str(tmp_path / "f.npz"), "--out", str(out),
        "--save-features", str(tmp_path / "again.npz"),
    )  # fmt: skip
    report = check_outputs(result, out)
    assert report["feature_dimension"] == 8
    assert "tau-norm (tau on val)" not in report["rows"]
    # What it saves is what it read, in the format it reads.
    with np.load(tmp_path / "again.npz") as saved:
        assert sorted(saved) == ["X_test", "X_train", "y_test", "y_train"]
        np.testing.assert_array_equal(saved["X_train"], X)
        np.testing.assert_array_equal(saved["y_test"], y_test)


def test_main_job_on_images_from_split_lists(tmp_path):
    """The ImageNet-LT / Places-LT path: official lists, a named backbone."""
    from safetensors.torch import save_file

    from skltr.models import cifar_resnet20

    rng = np.random.default_rng(0)
    lists = {"train": [], "val": [], "test": []}
    for label, n_train in enumerate([12, 6, 3]):
        for split, count in (("train", n_train), ("val", 2), ("test", 3)):
            for i in range(count):
                relative = f"{split}/c{label}/{i}.png"
                (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                pixels[..., label] = 255  # something to learn
                Image.fromarray(pixels).save(tmp_path / relative)
                lists[split].append(f"{relative} {label}")
    for split, lines in lists.items():
        (tmp_path / f"Places_LT_{split}.txt").write_text("\n".join(lines) + "\n")
    torch.manual_seed(0)
    weights = tmp_path / "r20.safetensors"
    save_file(cifar_resnet20().state_dict(), weights)
    out = tmp_path / "out"
    result = run_main_job(
        "--dataset", "places_lt", "--data", str(tmp_path),
        "--backbone", "cifar_resnet20", "--weights", str(weights),
        "--many", "10", "--few", "4", "--num-workers", "0", "--out", str(out),
    )  # fmt: skip
    report = check_outputs(result, out, ROWS + ("tau-norm (tau on val)",))
    assert report["feature_dimension"] == 64
    assert report["class_counts"] == [12, 6, 3]
    assert (out / "feature_cache").is_dir()


def test_main_job_trains_a_cifar_stage1_network(tmp_path):
    """The papers' setting: a CIFAR ResNet trained here, then frozen."""
    rng = np.random.default_rng(0)
    for split, per_class in (("train", 12), ("test", 2)):
        for label in range(10):
            folder = tmp_path / "cifar" / split / f"class{label}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:04d}.png")
    out = tmp_path / "out"
    result = run_main_job(
        "--dataset", "cifar10", "--data", str(tmp_path / "cifar"),
        "--imbalance-ratio", "4", "--backbone", "stage1",
        "--stage1-arch", "cifar_resnet20", "--stage1-epochs", "1",
        "--num-workers", "0", "--out", str(out),
    )  # fmt: skip
    report = check_outputs(result, out)
    assert report["class_counts"] == [12, 10, 8, 7, 6, 5, 4, 4, 3, 3]
    assert "cifar_resnet20 trained 1 epochs" in report["backbone"]
    assert (out / "stage1_cifar_resnet20_e1.safetensors").is_file()


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--dataset", "cifar10"], "needs --data"),
        (["--dataset", "features", "--backbone", "resnet50"], "takes no --backbone"),
    ],
)
def test_main_job_says_what_is_missing(arguments, message):
    result = subprocess.run(
        [sys.executable, str(RUN), *arguments], capture_output=True, text=True
    )
    assert result.returncode != 0 and message in result.stderr


# --- the performance scripts, at sizes that take seconds ---------------------


def run_script(name, *arguments):
    result = subprocess.run(
        [sys.executable, str(RUN.parent / name), *arguments],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_classifier_speed_reports_every_classifier_against_the_peer():
    out = run_script(
        "classifier_speed.py", "--n-samples", "600", "--n-features", "16",
        "--n-classes", "5", "--imbalance-ratio", "10", "--device", "cpu",
        "--epoch-fits", "1,3", "--repeats", "2", "--settle", "0",
    )  # fmt: skip
    assert "| peer: scaler + LogisticRegression(balanced) |" in out
    for name in (
        "Joint", "CRT", "NCM", "TauNorm", "LWS", "LORT", "LogitAdjusted",
        "BalancedSoftmax", "DisAlign", "LDAM", "WeightBalanced",
    ):  # fmt: skip
        assert f"| {name}Classifier (defaults) |" in out
    assert "| CRTClassifier (defaults), X a tensor already on cpu |" in out
    assert "| predict_proba, " in out
    assert "| CRTClassifier, X_test a tensor on cpu |" in out
    assert "Peer times: balanced measured, plain measured." in out
    assert "median of 2 fit(s), each after 0 s idle" in out
    assert "GFLOP/s" in out and "cRT epoch:" in out


def test_classifier_speed_runs_on_features_from_a_file(tmp_path):
    from skltr.datasets import make_long_tailed_features

    X, X_test, y, y_test = make_long_tailed_features(
        400, 12, 4, imbalance_ratio=10, n_test_per_class=10, random_state=1
    )
    np.savez(tmp_path / "f.npz", X_train=X, y_train=y, X_test=X_test, y_test=y_test)
    out = run_script(
        "classifier_speed.py", "--features", str(tmp_path / "f.npz"),
        "--device", "cpu", "--only", "CRTClassifier", "--epoch-fits", "1,2",
        "--settle", "0",
    )  # fmt: skip
    assert f"N = 400, d = 12, C = 4, features from {tmp_path / 'f.npz'}" in out
    assert "40 test rows" in out
    assert "| CRTClassifier (defaults) |" in out
    assert "| JointClassifier (defaults) |" not in out


def test_peer_check_scores_every_classifier_against_the_peer(tmp_path):
    from skltr.datasets import make_long_tailed_features

    X, X_test, y, y_test = make_long_tailed_features(
        400, 12, 4, imbalance_ratio=10, n_test_per_class=20, random_state=1
    )
    np.savez(tmp_path / "f.npz", X_train=X, y_train=y, X_test=X_test, y_test=y_test)
    out = run_script(
        "peer_check.py",
        "--features",
        str(tmp_path / "f.npz"),
        "--no-gaussians",
        "--no-digits",
    )
    header, _, row = out.splitlines()[:3]
    assert header.split(" | ")[1:4] == ["peer", "Joint", "cRT"]
    assert "logit adjustment" in header and "tau-norm, best tau on test" in header
    assert "Balanced Softmax" in header and "LDAM-DRW" in header
    cells = row.split(" | ")
    assert cells[0] == "| f.npz"
    # One accuracy per column, and the margin of the worst re-balancer.
    assert len(cells) == len(header.split(" | "))
    assert "Worst re-balancer minus the peer: mean" in out


def test_extraction_speed_reports_each_precision_against_the_peer():
    out = run_script(
        "extraction_speed.py", "--model", "test_efficientnet", "--n-images", "12",
        "--image-size", "32", "--batch-size", "4", "--source", "jpeg",
        "--device", "cpu", "--num-workers", "0", "--precisions", "float32,bfloat16",
    )  # fmt: skip
    assert "| plain loop (peer), float32 |" in out
    assert "| FeatureExtractor, float32 |" in out
    assert "| FeatureExtractor, bfloat16 |" in out
    assert "(ceiling) |" in out


def test_grid_search_script_counts_each_image_once():
    out = run_script(
        "grid_search.py", "--n-samples", "600", "--n-features", "16",
        "--n-classes", "5", "--n-images", "40",
    )  # fmt: skip
    assert "| GridSearchCV, memory= | 105 + refit |" in out
    assert "forward passes 40, distinct images 40." in out


def test_memory_script_measures_every_case():
    out = run_script(
        "memory.py", "--n-samples", "400", "--n-features", "8", "--n-classes",
        "4", "--predict-rows", "1000", "--predict-features", "8",
    )  # fmt: skip
    for case in ("float32", "float16", "memmap", "predict, 1000 x 8 mapped"):
        assert f"| {case} |" in out


def test_memory_script_runs_the_cases_asked_for():
    out = run_script(
        "memory.py", "--n-samples", "400", "--n-features", "8", "--n-classes",
        "4", "--cases", "float32:NCMClassifier,memmap:CRTClassifier",
    )  # fmt: skip
    rows = [line for line in out.splitlines() if line.startswith("| float32 |")]
    assert [row.split("|")[2].strip() for row in rows] == ["NCMClassifier"]
    assert "| memmap | CRTClassifier |" in out and "predict" not in out
    result = subprocess.run(
        [sys.executable, str(RUN.parent / "memory.py"), "--cases", "float64:NCM"],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0 and "unknown cases ['float64:NCM']" in result.stderr


def test_the_test_agnostic_protocol_resamples_to_the_priors_it_names():
    sys.path.insert(0, str(RUN.parent))
    try:
        import _shift
    finally:
        sys.path.remove(str(RUN.parent))
    y_test = np.repeat(np.arange(4), 50)
    class_counts = np.array([10, 400, 40, 100])  # class 1 is the head
    sets = _shift.shifted_test_sets(y_test, class_counts, ratio=50, seed=0)
    forward, prior = sets["forward"]
    kept = np.bincount(y_test[forward], minlength=4)
    # By training count, the head keeps all 50, the next 50 / 50^(1/3) = 13,
    # then 50 / 50^(2/3) = 3, and the tail 50 / 50 = 1.
    np.testing.assert_array_equal(kept, [1, 50, 3, 13])
    np.testing.assert_allclose(prior, kept / kept.sum())
    backward, _ = sets["backward"]
    np.testing.assert_array_equal(
        np.bincount(y_test[backward], minlength=4), [50, 1, 13, 3]
    )
    assert len(np.unique(forward)) == len(forward)  # no row twice
    np.testing.assert_array_equal(sets["uniform"][0], np.arange(200))


def test_prior_shift_script_compares_em_strengths_with_known_and_plain():
    out = run_script(
        "prior_shift.py", "--synthetic", "600,12,6", "--seeds", "2",
        "--strengths", "0,1",
    )  # fmt: skip
    header, rule, *rows = out.strip().splitlines()
    assert header.split(" | ")[1:] == [
        "plain",
        "known",
        "EM, strength 0",
        "EM, strength 1 |",
    ]
    assert [row.split(" | ")[0] for row in rows] == [
        "| forward",
        "| uniform",
        "| backward",
    ]
    for row in rows:
        values = [float(cell) for cell in row.strip(" |").split(" | ")[1:]]
        assert len(values) == 4 and all(0 < v <= 100 for v in values)


@pytest.mark.parametrize("script", ["run", "peer_check", "classifier_speed"])
def test_scripts_run_as_modules_of_the_benchmarks_package(script):
    # python -m benchmarks.<script> from the repository root finds the
    # helpers through the package, as python benchmarks/<script>.py finds
    # them beside the file.
    result = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{script}", "--help"],
        capture_output=True,
        text=True,
        cwd=RUN.parents[1],
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout
