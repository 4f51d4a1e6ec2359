"""Peak memory of fitting and predicting, against the size of the features.

Each measurement runs in a fresh subprocess that loads (or maps) the
features, then samples its anonymous resident memory (``RssAnon``: what the
process itself allocated) and its file-backed resident memory (``RssFile``:
pages of mapped files, which the kernel can drop at will) every 10 ms while
the classifier fits or predicts. The table reports the peak of each above
the level before the call, as a multiple of the feature matrix's size.

    python benchmarks/memory.py                       # ImageNet-LT size
    python benchmarks/memory.py --n-samples 20000 --n-features 512 --n-classes 100

Cases: float32 features in memory (fit must not copy them), float16 features
in memory (they stay float16 until a batch reaches the device), a
memory-mapped float32 file (fit streams it: anonymous memory stays far below
the file's size), and ``predict`` on a memory-mapped file of ``--predict-rows``
rows of ``--predict-features`` (chunks of rows, bounded memory; its size is the
reference of that row). Peak memory does not depend on the number of epochs,
so fits run one epoch (LWS on a one-epoch joint classifier).
"""

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

try:  # python -m benchmarks.<script>, from the repository root
    from ._data import add_size_arguments, save_synthetic_features
except ImportError:  # python benchmarks/<script>.py
    from _data import add_size_arguments, save_synthetic_features

CLASSIFIERS = ("JointClassifier", "CRTClassifier", "NCMClassifier", "LWSClassifier")


def _resident():
    fields = {}
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(("RssAnon:", "RssFile:")):
                name, value, _ = line.split()
                fields[name[:-1]] = int(value) * 1024
    return fields["RssAnon"], fields["RssFile"]


def _peak_during(call):
    """Peak (anon, file) resident bytes above the level before ``call()``."""
    base_anon, base_file = _resident()
    peak = [base_anon, base_file]
    done = threading.Event()

    def sample():
        while not done.is_set():
            anon, file = _resident()
            peak[0], peak[1] = max(peak[0], anon), max(peak[1], file)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    start = time.perf_counter()
    try:
        call()
    finally:
        done.set()
        sampler.join()
    return peak[0] - base_anon, peak[1] - base_file, time.perf_counter() - start


def worker(case, classifier, path, n_classes):
    """Runs in the subprocess: one measurement, printed as JSON."""
    import skltr

    mmap = case in ("memmap", "predict")
    X = np.load(path / "X.npy", mmap_mode="r" if mmap else None)
    if case == "float16":
        X = X.astype(np.float16)
    y = np.load(path / "y.npy")
    estimator = getattr(skltr, classifier)
    kwargs = {"device": "cpu"}
    if classifier != "NCMClassifier":
        kwargs["epochs"] = 1
    if classifier == "LWSClassifier":
        kwargs["joint"] = skltr.JointClassifier(epochs=1, device="cpu")
    if case == "predict":
        rows = np.load(path / "X_predict.npy", mmap_mode="r")
        n_fit = min(20000, len(rows))
        labels = np.arange(n_fit) % n_classes
        fitted = estimator(**kwargs).fit(np.asarray(rows[:n_fit]), labels)
        anon, file, seconds = _peak_during(lambda: fitted.predict(rows))
        size = rows.nbytes
    else:
        anon, file, seconds = _peak_during(lambda: estimator(**kwargs).fit(X, y))
        size = X.nbytes
    print(json.dumps({"anon": anon, "file": file, "seconds": seconds, "size": size}))


def measure(case, classifier, path, n_classes):
    result = subprocess.run(
        [sys.executable, __file__, "--worker", case, classifier, str(path),
         str(n_classes)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(result.stdout.strip().splitlines()[-1])


def _save_predict_rows(path, n_rows, n_features):
    predict = np.lib.format.open_memmap(
        path / "X_predict.npy", mode="w+", dtype=np.float32,
        shape=(n_rows, n_features),
    )  # fmt: skip
    rng = np.random.default_rng(0)
    for start in range(0, n_rows, 100_000):
        block = predict[start : start + 100_000]
        block[:] = rng.standard_normal(block.shape, dtype=np.float32)
    predict.flush()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_size_arguments(parser)
    parser.add_argument("--predict-rows", type=int, default=1_000_000)
    parser.add_argument("--predict-features", type=int, default=512)
    parser.add_argument(
        "--cases",
        help="comma-separated case:classifier pairs to run, e.g. "
        "float32:CRTClassifier,memmap:CRTClassifier (default: all)",
    )
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        case, classifier, path, n_classes = args.worker
        return worker(case, classifier, Path(path), int(n_classes))
    cases = [("float32", c) for c in CLASSIFIERS]
    cases += [("float16", "CRTClassifier"), ("memmap", "CRTClassifier")]
    cases += [("predict", "CRTClassifier")]
    if args.cases:
        chosen = [tuple(pair.split(":")) for pair in args.cases.split(",")]
        unknown = [":".join(pair) for pair in chosen if pair not in cases]
        if unknown:
            parser.error(
                f"unknown cases {unknown}; choose from "
                + ", ".join(":".join(pair) for pair in cases)
            )
        cases = chosen

    with tempfile.TemporaryDirectory(dir=".") as folder:
        path = Path(folder)
        save_synthetic_features(path, args.n_samples, args.n_features, args.n_classes)
        if any(case == "predict" for case, _ in cases):
            _save_predict_rows(path, args.predict_rows, args.predict_features)
        print(
            f"Features: {args.n_samples} x {args.n_features} float32 "
            f"({args.n_samples * args.n_features * 4 / 2**20:.0f} MiB), "
            f"{args.n_classes} classes. Peaks above the level before the call, "
            "as multiples of the feature matrix (anonymous memory; file-backed "
            "pages of a mapped file in brackets).\n"
        )
        print("| case | classifier | peak anon / features | (file) | seconds |")
        print("|---|---|---:|---:|---:|")
        for case, classifier in cases:
            r = measure(case, classifier, path, args.n_classes)
            label = (
                f"predict, {args.predict_rows} x {args.predict_features} mapped"
                if case == "predict"
                else case
            )
            print(
                f"| {label} | {classifier} | {r['anon'] / r['size']:.2f} "
                f"| ({r['file'] / r['size']:.2f}) | {r['seconds']:.1f} |"
            )


if __name__ == "__main__":
    main()
