"""The main job: data set -> backbone -> features -> every classifier -> table.

Each row is one classifier trained on frozen features; the columns are the
Many / Medium / Few / All balanced test accuracies of the papers' protocol
(shot thresholds scaled to the data set and stated in the output) and the
fit time. The Markdown table is printed and written, with a JSON of every
number and the Decoupling paper's figures, to the output folder.

Examples (see docs/results.md for the runs and their numbers):

    python benchmarks/run.py                     # digits-LT, its own stage 1
    python benchmarks/run.py --dataset cifar10 --data cifar10-jpeg.zip \\
        --backbone cifar_resnet56 --weights resnet56-4bfd9763.th
    python benchmarks/run.py --dataset cifar10 --data cifar10-jpeg.zip \\
        --backbone stage1 --stage1-arch cifar_resnet32 --stage1-epochs 200
    python benchmarks/run.py --dataset imagenet_lt --data /data/imagenet \\
        --lists /data/ImageNet_LT --backbone resnext50_32x4d --weights w.pth
    python benchmarks/run.py --dataset features --data features.npz
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

try:  # python -m benchmarks.<script>, from the repository root
    from . import _data, _report, _rows, _shift, _stage1
    from ._timing import timed, torch_device
except ImportError:  # python benchmarks/<script>.py
    import _data
    import _report
    import _rows
    import _shift
    import _stage1
    from _timing import timed, torch_device

# The test-agnostic protocol's imbalance of the re-sampled test sets (SADE's).
SHIFT_RATIO = 50


class StageLog:
    """One line per stage on stderr: what it does, and how long it took."""

    def __init__(self):
        self.start = time.perf_counter()
        self.stages = {}

    def __call__(self, message):
        elapsed = time.perf_counter() - self.start
        print(f"[{elapsed:7.1f} s] {message}", file=sys.stderr, flush=True)

    def stage(self, name, function, *args, **kwargs):
        self(f"{name} ...")
        result, self.stages[name] = timed(function, *args, **kwargs)
        self(f"{name}: done in {self.stages[name]:.1f} s")
        return result


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", choices=_data.DATASETS, default="digits")
    data.add_argument(
        "--data",
        help="CIFAR: its pickles, .tar.gz, image folder or zip; ImageNet-LT, "
        "Places-LT, iNaturalist 2018: the images' root; features: an .npz "
        "(or a folder of .npy) with X_train, y_train, X_test, y_test and "
        "optionally X_val, y_val (integer labels)",
    )
    data.add_argument(
        "--lists", help="folder of the official split lists (default: --data)"
    )
    data.add_argument(
        "--imbalance-ratio",
        type=float,
        help="digits and CIFAR: largest / smallest class (default 20 for digits, "
        "100 for CIFAR)",
    )
    model = parser.add_argument_group("backbone")
    model.add_argument(
        "--backbone",
        default="stage1",
        help="'stage1': a network trained here on the long-tailed training set "
        "(digits: an MLP; CIFAR: --stage1-arch); otherwise any FeatureExtractor "
        "model name (timm, 'torchvision/<name>', 'cifar_resnet56', ...)",
    )
    model.add_argument("--weights", help="weights file for --backbone")
    model.add_argument("--stage1-arch", default="cifar_resnet32")
    model.add_argument(
        "--stage1-epochs",
        type=int,
        help="default 60 for digits, 200 for CIFAR (the papers' schedule)",
    )
    model.add_argument("--batch-size", type=int, default=128)
    model.add_argument("--num-workers", default="auto")
    evaluation = parser.add_argument_group("evaluation")
    evaluation.add_argument("--many", type=int, help="Many: n_j > MANY")
    evaluation.add_argument("--few", type=int, help="Few: n_j < FEW")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out",
        type=Path,
        help="output folder (default: skltr_output/<dataset>)",
    )
    parser.add_argument("--json", type=Path, help="also write the JSON here")
    parser.add_argument(
        "--save-features",
        type=Path,
        help="also write every split's features to this .npz, in the format "
        "that --dataset features reads (and classifier_speed.py --features)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = Path("skltr_output") / args.dataset
    if args.dataset == "features" and args.backbone != "stage1":
        parser.error("--dataset features takes no --backbone: it is features.")
    return args


def features(args, benchmark, log):
    """The frozen features of every split, and a description of the backbone."""
    splits = {"train": benchmark.train, "test": benchmark.test, "val": benchmark.val}
    splits = {name: split for name, split in splits.items() if split is not None}
    verbose = not args.quiet
    if benchmark.kind == "features":
        return splits, "precomputed features"
    if benchmark.kind == "digits":
        epochs = args.stage1_epochs or 60
        network = log.stage(
            "stage 1: training the digits MLP",
            _stage1.train_digits_network,
            benchmark.train.X,
            benchmark.train.y,
            epochs=epochs,
            seed=args.seed,
            verbose=verbose,
        )
        return {
            name: _data.Split(_stage1.digits_features(network, split.X), split.y)
            for name, split in splits.items()
        }, f"MLP 64-128-64 trained {epochs} epochs on the long-tailed training set"

    from skltr import FeatureExtractor

    name, weights = args.backbone, args.weights
    if name == "stage1":
        if benchmark.name not in ("cifar10", "cifar100"):
            raise SystemExit(
                "--backbone stage1 trains a CIFAR ResNet, for CIFAR only; name a "
                "backbone (and --weights) for this data set."
            )
        from safetensors.torch import save_file

        epochs = args.stage1_epochs or 200
        state = log.stage(
            f"stage 1: training {args.stage1_arch} for {epochs} epochs",
            _stage1.train_cifar_network,
            args.stage1_arch,
            benchmark.train.X,
            benchmark.train.y,
            epochs=epochs,
            device=torch_device(args.device),
            seed=args.seed,
            verbose=verbose,
        )
        args.out.mkdir(parents=True, exist_ok=True)
        weights = args.out / f"stage1_{args.stage1_arch}_e{epochs}.safetensors"
        save_file(state, weights)
        name = args.stage1_arch
        description = (
            f"{name} trained {epochs} epochs on the long-tailed training set "
            f"(stage 1), weights in {weights}"
        )
    else:
        description = f"{name} ({weights or 'pretrained weights'}), frozen"
    extractor = FeatureExtractor(
        name,
        weights=None if weights is None else str(weights),
        pretrained=weights is None,
        memory=args.out / "feature_cache",
        batch_size=args.batch_size,
        num_workers=args.num_workers
        if args.num_workers == "auto"
        else int(args.num_workers),
        device=args.device,
        verbose=int(verbose),
    )
    extractor.fit(benchmark.train.X[:1])
    return {
        split_name: _data.Split(
            log.stage(
                f"features of the {split_name} split ({len(split.y)} images)",
                extractor.transform,
                split.X,
            ),
            split.y,
        )
        for split_name, split in splits.items()
    }, description


def main(argv=None):
    args = parse_args(argv)
    log = StageLog()
    benchmark = log.stage("loading the data set", _data.load, args)
    many, few = benchmark.thresholds(args.many, args.few)
    log(benchmark.describe())
    splits, backbone = features(args, benchmark, log)
    if args.save_features:
        _data.save_features(args.save_features, splits)
        log(f"wrote the features to {args.save_features}")
    rows, fitted, per_class = log.stage(
        "fitting every classifier",
        _rows.fit_rows,
        splits["train"],
        splits["test"],
        splits.get("val"),
        many=many,
        few=few,
        device=args.device,
        seed=args.seed,
        log=log,
    )
    shift_rows, priors = log.stage(
        "the test-agnostic protocol and calibration",
        _shift.prior_shift_rows,
        fitted,
        splits["train"],
        splits["test"],
        many=many,
        few=few,
        ratio=SHIFT_RATIO,
        seed=args.seed,
    )
    summary = {
        "dataset": benchmark.describe(),
        "backbone": backbone,
        "feature_dimension": int(np.shape(splits["train"].X)[1]),
        "thresholds": {"many": many, "few": few},
        "class_counts": np.bincount(benchmark.train.y).tolist(),
    }
    report = log.stage(
        "writing the table, JSON and figures",
        _report.write,
        args.out,
        summary,
        rows,
        fitted,
        per_class,
        splits,
        log,
        shift=(shift_rows, priors, SHIFT_RATIO),
    )
    report["arguments"] = {k: str(v) for k, v in vars(args).items()}
    report["stage_seconds"] = log.stages
    (args.out / "results.json").write_text(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    print(report["markdown"])
    log(f"wrote {args.out}/results.md, results.json and the figures")
    return report


if __name__ == "__main__":
    main()
