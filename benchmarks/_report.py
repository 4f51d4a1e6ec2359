"""The table, the JSON of every number, and the figures of one benchmark run."""

import numpy as np

from skltr.metrics import tau_sweep

try:  # python -m benchmarks.<script>, from the repository root
    from . import _shift
except ImportError:  # python benchmarks/<script>.py
    import _shift

WEIGHT_NORM_ROWS = ("Joint", "cRT", "tau-norm", "LWS", "LORT")


def markdown(summary, rows):
    many, few = summary["thresholds"]["many"], summary["thresholds"]["few"]
    lines = [
        f"{summary['dataset']}",
        f"Backbone: {summary['backbone']}; {summary['feature_dimension']}-d features.",
        f"Shot splits by training samples: Many n > {many}, Medium "
        f"{few} <= n <= {many}, Few n < {few}. Balanced test accuracy (%), the "
        "mean of per-class accuracies; fit time in seconds (the re-balancers' "
        "include their own joint fit and the cross-fitted choice of their "
        "knob; the row chosen on val re-balances the Joint row's classifier).",
        "",
        "| classifier | Many | Medium | Few | All | fit (s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in rows.items():
        cells = " | ".join(
            "-" if np.isnan(row[split]) else f"{row[split]:.1f}"
            for split in ("many", "medium", "few", "all")
        )
        lines.append(f"| {name} | {cells} | {row['fit_seconds']:.2f} |")
    chosen = (
        [f"{name}: tau = {row['tau']:g}" for name, row in rows.items() if "tau" in row]
        + [
            f"{name}: best epoch {row['best_epoch']}"
            for name, row in rows.items()
            if "best_epoch" in row
        ]
        + [
            f"{name}: weight decay {row['weight_decay']:g}"
            for name, row in rows.items()
            if "weight_decay" in row
        ]
    )
    lines += ["", "Chosen without the test set: " + "; ".join(chosen) + "."]
    return "\n".join(lines)


def write(out, summary, rows, fitted, per_class, splits, log, shift=None):
    """Write results.md and the figures under ``out``; return the report dict.

    ``shift`` is ``(rows, priors, ratio)`` of the test-agnostic protocol
    (``_shift.prior_shift_rows``), or None.
    """
    out.mkdir(parents=True, exist_ok=True)
    many, few = summary["thresholds"]["many"], summary["thresholds"]["few"]
    test = splits["test"]
    # tau-norm's own joint classifier: the one whose tau was chosen.
    joint = fitted["tau-norm"]
    sweep = tau_sweep(joint, test.X, test.y, many=many, few=few)
    report = {
        **summary,
        "rows": rows,
        "tau_sweep_on_test": {k: v.tolist() for k, v in sweep.items()},
        "weight_norms": {
            name: np.linalg.norm(fitted[name].coef_, axis=1).tolist()
            for name in WEIGHT_NORM_ROWS
        },
        "per_class_accuracy": {k: v.tolist() for k, v in per_class.items()},
        "figures": [],
    }
    report["markdown"] = markdown(summary, rows)
    if shift is not None:
        shift_rows, priors, ratio = shift
        report["prior_shift"] = {"rows": shift_rows, "priors": priors, "ratio": ratio}
        report["markdown"] += "\n\n" + _shift.markdown(shift_rows, ratio)
    (out / "results.md").write_text(report["markdown"] + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
    except ImportError:
        log("no figures: matplotlib is not installed (pip install 'skltr[plot]')")
        return report
    import matplotlib.pyplot as plt

    from skltr.plotting import (
        plot_per_class_accuracy,
        plot_tau_sweep,
        plot_weight_norms,
    )

    figures = {
        "weight_norms.png": lambda ax: plot_weight_norms(
            {name: fitted[name] for name in WEIGHT_NORM_ROWS}, ax=ax
        ),
        "tau_sweep.png": lambda ax: plot_tau_sweep(
            joint, test.X, test.y, many=many, few=few, ax=ax
        ),
        "per_class_accuracy.png": lambda ax: plot_per_class_accuracy(
            {name: fitted[name] for name in ("Joint", "cRT", "NCM")},
            test.X,
            test.y,
            many=many,
            few=few,
            ax=ax,
        ),
    }
    for file, draw in figures.items():
        figure, ax = plt.subplots(figsize=(6, 4))
        draw(ax)
        ax.set_title(f"{ax.get_title()}: {summary['dataset'].split(':')[0]}")
        figure.tight_layout()
        figure.savefig(out / file, dpi=100)
        plt.close(figure)
        report["figures"].append(file)
    return report
