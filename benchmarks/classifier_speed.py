"""Classifier fit speed against scikit-learn and against the machine's limit.

On synthetic long-tailed features (``make_long_tailed_features``) of a given
size, every trained classifier is fit with its defaults and timed against the
peer a user would reach for, ``make_pipeline(StandardScaler(),
LogisticRegression(class_weight="balanced"))`` (plain ``LogisticRegression``
for the Joint row, which ignores the imbalance too), in the same run; balanced
accuracy on a balanced test set is reported beside each, and cRT is timed
again from a tensor already on the device (no host validation, no copy).
``predict_proba`` on the test rows is timed for the balanced peer and for
cRT, from an array and from a tensor on the device (scored there). The
machine's limit is the float32 matrix-product rate measured with torch for the
shapes of one training step; cRT's time per epoch (from fits of two lengths, 2
and 12 epochs unless ``--epoch-fits`` says otherwise, so that fixed costs
cancel) is reported against it.

    python benchmarks/classifier_speed.py --size cifar100 --repeats 5
    python benchmarks/classifier_speed.py --size imagenet --peer-budget 600

Sizes: cifar100 (N = 10,847, d = 512, C = 100), imagenet (115,846, 2,048,
1,000), inat (437,513, 2,048, 8,142), or --n-samples / --n-features /
--n-classes. ``--features FILE`` times them on real features instead: an .npz
(or a folder of .npy) with X_train, y_train, X_test, y_test, as
``run.py --save-features`` writes them.

    python benchmarks/run.py --dataset cifar10 --data cifar10-jpeg.zip \
        --backbone cifar_resnet56 --weights resnet56-4bfd9763.th \
        --save-features r56.npz
    python benchmarks/classifier_speed.py --features r56.npz --repeats 5

When the peer would not finish within ``--peer-budget`` seconds, it is run
with fewer lbfgs iterations and its full time is extrapolated: (time per
iteration, measured) x (iterations it needs to converge at this size, taken
from a converged run on a 10% subsample of the rows, which needs about as
many). The table says when a figure is extrapolated.
"""

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import balanced_accuracy_score

from skltr import (
    BalancedSoftmaxClassifier,
    CRTClassifier,
    DisAlignClassifier,
    JointClassifier,
    LDAMClassifier,
    LogitAdjustedClassifier,
    LORTClassifier,
    LWSClassifier,
    NCMClassifier,
    TauNormClassifier,
    WeightBalancedClassifier,
)
from skltr.datasets import make_long_tailed_features

try:  # python -m benchmarks.<script>, from the repository root
    from ._data import _load_features
    from ._rows import logistic_regression_peer
    from ._timing import timed_calls, timed_fit, timed_fit_against, torch_device
except ImportError:  # python benchmarks/<script>.py
    from _data import _load_features
    from _rows import logistic_regression_peer
    from _timing import timed_calls, timed_fit, timed_fit_against, torch_device

# The classifiers whose fit includes a joint fit and the cross-fitted choice.
REBALANCERS = (
    "TauNormClassifier",
    "LWSClassifier",
    "LORTClassifier",
    "LogitAdjustedClassifier",
    "DisAlignClassifier",
    "WeightBalancedClassifier",
)

SIZES = {
    "cifar100": (10_847, 512, 100),
    "imagenet": (115_846, 2_048, 1_000),
    "inat": (437_513, 2_048, 8_142),
}


def matmul_rate(batch, n_features, n_classes, device, seconds=2.0):
    """Measured float32 FLOP/s of one step's products: forward and weight grad."""
    X = torch.randn(batch, n_features, device=device)
    W = torch.randn(n_classes, n_features, device=device)
    G = torch.randn(batch, n_classes, device=device)
    flops_per_step = 2 * (2 * batch * n_features * n_classes)
    X @ W.T, G.T @ X  # warm-up (library initialisation)
    if device.type == "cuda":
        torch.cuda.synchronize()
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        X @ W.T
        G.T @ X
        steps += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * flops_per_step / (time.perf_counter() - start)


# After a multithreaded NumPy product, OpenBLAS's worker threads keep
# spinning for a moment and take cores from the next PyTorch fit: on 2 cores a
# 0.30 s joint fit took 0.36 to 0.55 s right after one (0.30 s with
# OPENBLAS_NUM_THREADS=1). Every timed fit, the peer's included, starts after
# a pause (--settle), so a row does not pay for the previous row's predict or
# tau-norm's own sweep.
DEFAULT_SETTLE_SECONDS = 1.0


def time_peer(X, y, budget, seed, class_weight="balanced", repeats=1, settle=0.0):
    """Seconds the peer needs to converge, measured or extrapolated, and how.

    The runs cut short on purpose warn that they did not converge; those
    warnings are silenced.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return _time_peer(X, y, budget, seed, class_weight, repeats, settle)


def _time_peer(X, y, budget, seed, class_weight, repeats, settle):
    rows = np.random.default_rng(seed).permutation(len(y))[: max(1, len(y) // 10)]
    probe = logistic_regression_peer(class_weight, 1000).fit(X[rows], y[rows])
    iterations = int(probe[-1].n_iter_[0])
    one = logistic_regression_peer(class_weight, 1)
    seconds_one = timed_fit(one, X, y, settle=settle)
    if seconds_one * iterations <= budget:
        model = logistic_regression_peer(class_weight, 1000)
        return timed_fit(model, X, y, repeats, settle), model, "measured"
    few = max(2, int(budget / seconds_one / 2))
    model = logistic_regression_peer(class_weight, few)
    seconds = timed_fit(model, X, y, settle=settle)
    per_iteration = (seconds - seconds_one) / (few - 1)
    estimate = seconds_one + per_iteration * (iterations - 1)
    how = (
        f"extrapolated: {few} of ~{iterations} iterations run "
        f"({per_iteration:.1f} s each)"
    )
    return estimate, model, how


def print_predict_times(estimator, peer, X_test, device, repeats, settle):
    """Times ``predict_proba`` on the test rows: the peer, then ``estimator``.

    ``estimator`` scores an array on the host and a tensor on its device.
    """
    peer_seconds = (
        float("nan")
        if peer is None
        else timed_calls(peer.predict_proba, X_test, repeats=repeats, settle=settle)
    )
    on_device = torch.from_numpy(X_test).to(device)
    rows = {
        "peer: scaler + LogisticRegression(balanced)": peer_seconds,
        f"{type(estimator).__name__}, X_test an array": timed_calls(
            estimator.predict_proba, X_test, repeats=repeats, settle=settle
        ),
        f"{type(estimator).__name__}, X_test a tensor on {device}": timed_calls(
            estimator.predict_proba, on_device, repeats=repeats, settle=settle
        ),
    }
    print(f"\n| predict_proba, {len(X_test)} test rows | seconds | peer / this |")
    print("|---|---:|---:|")
    for name, seconds in rows.items():
        print(f"| {name} | {seconds:.4f} | {peer_seconds / seconds:.1f} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=SIZES, default="cifar100")
    parser.add_argument("--n-samples", type=int)
    parser.add_argument("--n-features", type=int)
    parser.add_argument("--n-classes", type=int)
    parser.add_argument("--imbalance-ratio", type=float, default=100)
    parser.add_argument(
        "--features",
        type=Path,
        help="time on these features instead of synthetic ones (an .npz or a "
        "folder of .npy with X_train, y_train, X_test, y_test)",
    )
    parser.add_argument("--peer-budget", type=float, default=600)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--only", help="comma-separated classifier names to time (default: all)"
    )
    parser.add_argument("--no-peer", action="store_true", help="skip the peer")
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="time each fit this many times and report the median (fits of a "
        "second or less vary by up to 40%% from run to run on 2 cores)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=DEFAULT_SETTLE_SECONDS,
        help="seconds idle before each timed fit, so that the NumPy work before "
        "it (a predict) does not slow it",
    )
    parser.add_argument(
        "--epoch-fits",
        default="2,12",
        help="the two cRT fit lengths, in epochs, whose difference times an epoch",
    )
    parser.add_argument(
        "--tf32",
        action="store_true",
        help="allow TF32 matrix products on CUDA (the user's opt-in)",
    )
    args = parser.parse_args(argv)
    lengths = [int(epochs) for epochs in args.epoch_fits.split(",")]
    if len(lengths) != 2 or min(lengths) < 1 or lengths[0] == lengths[1]:
        parser.error(
            f"--epoch-fits needs two different epoch counts; got {args.epoch_fits}"
        )
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    device = torch_device(args.device)
    if args.features:
        train, test, _ = _load_features(args.features)
        X, y, X_test, y_test = train.X, train.y, test.X, test.y
        (n, d), c = X.shape, int(y.max()) + 1
        counts = np.bincount(y, minlength=c)
        data = (
            f"features from {args.features}: imbalance ratio "
            f"{counts.max() / max(1, counts.min()):g}"
        )
    else:
        n, d, c = SIZES[args.size]
        n, d, c = args.n_samples or n, args.n_features or d, args.n_classes or c
        X, X_test, y, y_test = make_long_tailed_features(
            n, d, c, imbalance_ratio=args.imbalance_ratio, random_state=args.seed
        )
        data = f"synthetic, imbalance ratio {args.imbalance_ratio:g}"
    print(
        f"N = {n}, d = {d}, C = {c}, {data}, "
        f"{len(y_test)} test rows; device {device}, "
        f"{torch.get_num_threads()} torch threads"
        + (f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else "")
        + (", TF32 allowed" if args.tf32 else "")
        + ".\n"
    )
    # The plain peer is the Joint row's (both ignore the imbalance); the
    # balanced one is every re-balancer's.
    peers = {}
    for class_weight in ("balanced", None):
        if args.no_peer:
            peers[class_weight] = (float("nan"), float("nan"), "not run", None)
            continue
        seconds, model, how = time_peer(
            X, y, args.peer_budget, args.seed, class_weight, args.repeats, args.settle
        )
        accuracy = balanced_accuracy_score(y_test, model.predict(X_test))
        peers[class_weight] = (seconds, accuracy, how, model)
    trained = {"device": str(device), "random_state": args.seed}
    rows = {
        "JointClassifier": JointClassifier(**trained),
        "CRTClassifier": CRTClassifier(**trained),
        "NCMClassifier": NCMClassifier(device=str(device)),
        "TauNormClassifier": TauNormClassifier(**trained),
        "LWSClassifier": LWSClassifier(**trained),
        "LORTClassifier": LORTClassifier(**trained),
        "LogitAdjustedClassifier": LogitAdjustedClassifier(**trained),
        "DisAlignClassifier": DisAlignClassifier(**trained),
        "WeightBalancedClassifier": WeightBalancedClassifier(**trained),
        "BalancedSoftmaxClassifier": BalancedSoftmaxClassifier(**trained),
        "LDAMClassifier": LDAMClassifier(**trained),
    }
    print("| classifier | fit (s) | peer fit / fit | fit / Joint fit | balanced acc. |")
    print("|---|---:|---:|---:|---:|")
    for class_weight, label in (("balanced", "balanced"), (None, "plain")):
        seconds, accuracy, _, _ = peers[class_weight]
        print(
            f"| peer: scaler + LogisticRegression({label}) | {seconds:.2f} "
            f"| 1.0 | | {100 * accuracy:.1f} |"
        )
    if args.only:
        rows = {name: rows[name] for name in args.only.split(",")}
    # Library initialisation (CUDA context, BLAS handles) is not a fit's cost.
    CRTClassifier(epochs=1, **trained).fit(
        X[:: max(1, n // 20000)], y[:: max(1, n // 20000)]
    )
    joint_seconds = float("nan")
    for name, estimator in rows.items():
        if name in REBALANCERS:
            # Each fit right after a Joint fit: the ratio that says what the
            # cross-fitted choice costs.
            seconds, to_joint = timed_fit_against(
                JointClassifier(**trained), estimator, X, y, args.repeats, args.settle
            )
        else:
            seconds = timed_fit(estimator, X, y, args.repeats, args.settle)
            if name == "JointClassifier":
                joint_seconds = seconds
            to_joint = seconds / joint_seconds
        accuracy = balanced_accuracy_score(y_test, estimator.predict(X_test))
        peer_seconds = peers[None if name == "JointClassifier" else "balanced"][0]
        print(
            f"| {name} (defaults) | {seconds:.2f} | {peer_seconds / seconds:.1f} "
            f"| {to_joint:.2f} | {100 * accuracy:.1f} |"
        )
    if "CRTClassifier" in rows:
        # The same fit from features already where it trains, as a tensor:
        # no validation on the host and no copy to the device.
        on_device = torch.from_numpy(X).to(device)
        estimator = CRTClassifier(**trained)
        seconds = timed_fit(estimator, on_device, y, args.repeats, args.settle)
        del on_device
        accuracy = balanced_accuracy_score(y_test, estimator.predict(X_test))
        print(
            f"| CRTClassifier (defaults), X a tensor already on {device} "
            f"| {seconds:.2f} | {peers['balanced'][0] / seconds:.1f} "
            f"| {seconds / joint_seconds:.2f} | {100 * accuracy:.1f} |"
        )
        print_predict_times(
            estimator, peers["balanced"][3], X_test, device, args.repeats, args.settle
        )
    print(
        "\nThe Joint row is timed against the plain peer, the others against the "
        "balanced one. The re-balancers' fits (tau-norm, LWS, LORT, logit "
        "adjustment, DisAlign, weight balancing) include their own joint fit "
        "and the cross-fitted choice of their knob; their fit / Joint fit is "
        "the median ratio of fits made "
        "right after a Joint fit, the others' the ratio of the medians."
        f" Peer times: balanced {peers['balanced'][2]}, "
        f"plain {peers[None][2]}. Each measured fit time is the median of "
        f"{args.repeats} fit(s), each after {args.settle:g} s idle."
    )

    # Machine limit: cRT's time per epoch from two fit lengths.
    batch = CRTClassifier().batch_size
    rate = matmul_rate(batch, d, c, device)
    few, many = sorted(lengths)
    short = timed_fit(
        CRTClassifier(epochs=few, **trained), X, y, args.repeats, args.settle
    )
    long = timed_fit(
        CRTClassifier(epochs=many, **trained), X, y, args.repeats, args.settle
    )
    epoch = (long - short) / (many - few)
    needed = 4 * n * d * c  # forward and weight gradient; features need none
    convention = 6 * n * d * c
    print(
        f"\nMeasured float32 matrix-product rate for a ({batch} x {d}) by "
        f"({d} x {c}) step: {rate / 1e9:.1f} GFLOP/s.\n"
        f"cRT epoch: {epoch:.3f} s; {needed / epoch / 1e9:.1f} GFLOP/s of the "
        f"4NdC it computes ({needed / epoch / rate:.0%} of the measured rate); "
        f"counted as 6NdC: {convention / epoch / 1e9:.1f} GFLOP/s "
        f"({convention / epoch / rate:.0%})."
    )


if __name__ == "__main__":
    main()
