import json
import subprocess
import sys
from pathlib import Path


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
