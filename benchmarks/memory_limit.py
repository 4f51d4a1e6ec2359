"""Training on a memory-mapped feature file larger than the memory allowed.

The features are written to a ``.npy`` file and a classifier is fit twice
in fresh subprocesses: once on the array loaded into memory (no limit),
once on the file mapped read-only, inside a Linux memory cgroup whose limit
is smaller than the file. The cgroup charges the mapped file's page cache to
the process too, so the limited fit only completes if it streams the file in
bounded chunks and lets the kernel drop pages it has read. The table reports
the limit against the file, the cgroup's peak charge (resident pages of the
mapping included), the time, and the largest difference between the two
fits' weights (zero: they must be the same fit).

    sudo python benchmarks/memory_limit.py                  # ImageNet-LT size
    sudo python benchmarks/memory_limit.py --limit-fraction 0.5

Needs root and a cgroup memory controller (v1 or v2); without them it says
so and exits.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

try:  # python -m benchmarks.<script>, from the repository root
    from ._data import add_size_arguments, save_synthetic_features
except ImportError:  # python benchmarks/<script>.py
    from _data import add_size_arguments, save_synthetic_features

CGROUP_ROOTS = (Path("/sys/fs/cgroup/memory"), Path("/sys/fs/cgroup"))


def memory_cgroup(limit_bytes):
    """Create a memory cgroup with this limit; return (path, peak file name)."""
    for root in CGROUP_ROOTS:
        if (root / "memory.limit_in_bytes").exists():  # cgroup v1
            group = root / f"skltr_limit_{os.getpid()}"
            group.mkdir()
            (group / "memory.limit_in_bytes").write_text(str(limit_bytes))
            return group, "memory.max_usage_in_bytes"
        if "memory" in (root / "cgroup.controllers").read_text().split():  # v2
            group = root / f"skltr_limit_{os.getpid()}"
            group.mkdir()
            (group / "memory.max").write_text(str(limit_bytes))
            (group / "memory.swap.max").write_text("0")
            return group, "memory.peak"
    raise RuntimeError("no cgroup memory controller found")


def worker(path, mapped, epochs, out):
    """Runs in the subprocess: fit, save the weights."""
    from _timing import timed

    from skltr import CRTClassifier

    X = np.load(path / "X.npy", mmap_mode="r" if mapped else None)
    y = np.load(path / "y.npy")
    clf = CRTClassifier(epochs=epochs, device="cpu", random_state=0)
    _, seconds = timed(clf.fit, X, y)
    np.save(out, clf.coef_)
    print(json.dumps({"seconds": seconds}))


def run_worker(path, mapped, epochs, out, cgroup=None):
    def enter_cgroup():
        if cgroup is not None:
            (cgroup / "cgroup.procs").write_text(str(os.getpid()))

    result = subprocess.run(
        [sys.executable, __file__, "--worker", str(path), str(int(mapped)),
         str(epochs), str(out)],
        capture_output=True, text=True, preexec_fn=enter_cgroup,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(
            f"the {'mapped' if mapped else 'in-memory'} fit failed (exit "
            f"{result.returncode}; -9 is the kernel's OOM killer):\n"
            + result.stderr[-2000:]
        )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_size_arguments(parser)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument(
        "--limit-fraction",
        type=float,
        default=0.75,
        help="the cgroup limit as a fraction of the feature file",
    )
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        path, mapped, epochs, out = args.worker
        return worker(Path(path), mapped == "1", int(epochs), out)

    with tempfile.TemporaryDirectory(dir=".") as folder:
        path = Path(folder)
        file_bytes = save_synthetic_features(
            path, args.n_samples, args.n_features, args.n_classes
        )
        limit = int(args.limit_fraction * file_bytes)
        try:
            cgroup, peak_file = memory_cgroup(limit)
        except (OSError, RuntimeError) as exc:
            sys.exit(f"Cannot create a memory cgroup ({exc}); run as root on Linux.")
        try:
            free = run_worker(path, False, args.epochs, path / "free.npy")
            limited = run_worker(path, True, args.epochs, path / "limited.npy", cgroup)
            peak = int((cgroup / peak_file).read_text())
        finally:
            cgroup.rmdir()
        difference = np.abs(np.load(path / "free.npy") - np.load(path / "limited.npy"))
    mib = 2**20
    print(
        f"CRTClassifier, {args.epochs} epochs, on {args.n_samples} x "
        f"{args.n_features} float32 features ({file_bytes / mib:.0f} MiB), "
        f"{args.n_classes} classes.\n"
    )
    print("| fit | memory limit | peak charged | seconds | max weight difference |")
    print("|---|---:|---:|---:|---:|")
    print(f"| in memory | none | - | {free['seconds']:.1f} | - |")
    print(
        f"| mapped file | {limit / mib:.0f} MiB ({args.limit_fraction:.2f} x file) "
        f"| {peak / mib:.0f} MiB ({peak / file_bytes:.2f} x file) "
        f"| {limited['seconds']:.1f} | {difference.max():.1e} |"
    )


if __name__ == "__main__":
    main()
