"""Feature extraction throughput: FeatureExtractor against a plain PyTorch loop.

The peer is what a user writes by hand: open each image with PIL in the main
process, apply the model's evaluation transform, stack a batch, copy it to the
device and run the model under ``torch.no_grad``. Both use the same network and
weights on the same JPEG files, in the same run; the table reports images per
second and the ratio to the peer, and checks that the features agree.

    python benchmarks/extraction_speed.py --model resnet50 --n-images 2000

Random weights (``pretrained=False``) unless ``--weights`` is given: throughput
does not depend on the weights.
"""

import argparse
import os
import tempfile
import time

import numpy as np
import torch
from PIL import Image


def write_jpegs(directory, n_images, size, seed=0):
    """Smooth random images (noise compresses unrealistically badly)."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n_images):
        small = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((size, size), Image.BICUBIC)
        path = os.path.join(directory, f"{i:06d}.jpg")
        image.save(path, quality=90)
        paths.append(path)
    return paths


def peer_features(network, transform, paths, batch_size, device):
    outputs = []
    with torch.no_grad():
        for start in range(0, len(paths), batch_size):
            batch = torch.stack(
                [
                    transform(Image.open(p).convert("RGB"))
                    for p in paths[start : start + batch_size]
                ]
            )
            outputs.append(network(batch.to(device)).float().cpu().numpy())
    return np.concatenate(outputs)


def timed(function, *args, **kwargs):
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = function(*args, **kwargs)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return result, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--n-images", type=int, default=2000)
    parser.add_argument("--size", type=int, default=256, help="JPEG side, pixels")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--num-workers", default="auto")
    parser.add_argument("--precisions", default="float32,bfloat16,float16")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from skltr import FeatureExtractor

    workers = args.num_workers if args.num_workers == "auto" else int(args.num_workers)
    with tempfile.TemporaryDirectory() as directory:
        paths = write_jpegs(directory, args.n_images, args.size)
        common = dict(
            batch_size=args.batch_size,
            device=args.device,
            verbose=0,
            num_workers=workers,
        )
        reference = FeatureExtractor(
            args.model, pretrained=False, weights=args.weights, **common
        ).fit(paths[:1])
        network = reference._loaded_network()
        device = torch.device(reference.device_)
        peer_features(network, reference.preprocess_, paths[:8], 8, device)  # warm-up
        peer, peer_seconds = timed(
            peer_features,
            network,
            reference.preprocess_,
            paths,
            args.batch_size,
            device,
        )
        rows = [("plain loop (peer), float32", peer_seconds, 1.0, 0.0)]
        for precision in args.precisions.split(","):
            extractor = reference.set_params(precision=precision)
            extractor.transform(paths[:8])  # warm-up
            features, seconds = timed(extractor.transform, paths)
            error = np.abs(features - peer).max() / np.abs(peer).max()
            rows.append(
                (
                    f"FeatureExtractor, {precision}",
                    seconds,
                    peer_seconds / seconds,
                    error,
                )
            )

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"{args.model}, {args.n_images} JPEGs of {args.size}x{args.size}, batch "
        f"{args.batch_size}, {gpu}, {os.cpu_count()} CPUs, workers {workers}\n"
    )
    print("| extraction | images/s | speed-up vs peer | max rel. diff vs peer |")
    print("|---|---|---|---|")
    for name, seconds, ratio, error in rows:
        print(
            f"| {name} | {args.n_images / seconds:.0f} | {ratio:.2f}x | {error:.1e} |"
        )


if __name__ == "__main__":
    main()
