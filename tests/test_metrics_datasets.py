import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from skltr.datasets import load_digits_lt, make_long_tailed
from skltr.metrics import shot_accuracy


def test_shot_accuracy_by_hand():
    y_true = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    y_pred = np.array([0, 1, 1, 1, 0, 2, 0, 0])
    scores = shot_accuracy(y_true, y_pred, class_counts=[500, 150, 50, 5])
    assert scores == {"many": 0.75, "medium": 0.5, "few": 0.0, "all": 0.5}


def test_shot_accuracy_empty_split_is_nan_and_labels_align():
    scores = shot_accuracy(
        ["b", "a"], ["b", "b"], class_counts={"a": 300, "b": 200}, many=100
    )
    assert (
        scores["many"] == 0.5 and np.isnan(scores["few"]) and np.isnan(scores["medium"])
    )
    with pytest.raises(ValueError, match="without a training count"):
        shot_accuracy([0, 7], [0, 7], class_counts=[10], labels=[0])
    with pytest.raises(ValueError, match="pass labels="):
        shot_accuracy([0, 1], [0, 1], class_counts=[10, 20, 30])


def test_cifar100_lt_profile_has_10847_samples():
    y = np.repeat(np.arange(100), 500)
    kept = make_long_tailed(y, imbalance_ratio=100)
    counts = np.bincount(y[kept])
    assert len(kept) == 10847 and counts[0] == 500 and counts[-1] == 5
    with pytest.raises(ValueError, match="imbalance_ratio"):
        make_long_tailed(y, imbalance_ratio=0.5)
    with pytest.raises(ValueError, match="has 500 samples"):
        make_long_tailed(y, imbalance_ratio=10, max_per_class=600)


def test_digits_lt_is_long_tailed_and_balanced_on_the_test_side():
    X_train, X_test, y_train, y_test = load_digits_lt(imbalance_ratio=20)
    counts = np.bincount(y_train)
    assert counts[0] / counts[-1] == pytest.approx(20, rel=0.1)
    assert np.all(np.bincount(y_test) == 50)
    assert X_train.shape[1] == X_test.shape[1] == 64


def test_main_job_prints_every_row_and_column(tmp_path):
    script = Path(__file__).parents[1] / "benchmarks" / "run.py"
    out = tmp_path / "rows.json"
    result = subprocess.run(
        [sys.executable, str(script), "--device", "cpu", "--json", str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "| classifier | Many | Medium | Few | All | fit (s) |" in result.stdout
    rows = json.loads(out.read_text())["rows"]
    for name in ("Joint", "NCM", "cRT", "tau-norm (tau on train)", "LWS", "LORT"):
        assert f"| {name} |" in result.stdout
        assert set(rows[name]) == {"many", "medium", "few", "all", "fit_seconds"}
    # Re-balancing helps the tail of the long-tailed digits.
    assert rows["cRT"]["few"] > rows["Joint"]["few"]
