"""Feature extraction throughput: FeatureExtractor against a plain PyTorch loop.

The peer is what a user writes by hand: open each image with PIL in the main
process, apply the model's evaluation transform, stack a batch, copy it to the
device and run the model under ``torch.no_grad``. Both use the same network and
weights on the same images (JPEG files, or an in-memory uint8 array with
``--source uint8``), in the same run; the table reports images per second and
the ratio to the peer, and checks that the features agree. The last row is the
network alone on a batch already on the device (the ceiling no input pipeline
can pass), in the fastest precision asked for.

    python benchmarks/extraction_speed.py --model resnet50 --n-images 2000
    python benchmarks/extraction_speed.py --source uint8 --precisions bfloat16

The network is a timm model built as a user builds it (``timm.create_model(name,
num_classes=0)``, with timm's evaluation transform), and ``FeatureExtractor``
gets that same module and transform, so both sides run identical weights.
Random weights unless ``--weights`` (a safetensors file or a PyTorch state dict)
is given: throughput does not depend on the weights.
"""

import argparse
import os
import tempfile
import time

import numpy as np
import torch
from PIL import Image

try:  # python -m benchmarks.<script>, from the repository root
    from ._timing import timed
except ImportError:  # python benchmarks/<script>.py
    from _timing import timed


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


def write_pixels(n_images, size, seed=0):
    """The same kind of smooth images, as one (n, size, size, 3) uint8 array."""
    rng = np.random.default_rng(seed)
    pixels = np.empty((n_images, size, size, 3), dtype=np.uint8)
    for i in range(n_images):
        small = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
        pixels[i] = np.asarray(Image.fromarray(small).resize((size, size)))
    return pixels


def open_rgb(item):
    if isinstance(item, np.ndarray):
        return Image.fromarray(item)
    return Image.open(item).convert("RGB")


def peer_features(network, transform, images, batch_size, device):
    outputs = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            batch = torch.stack(
                [
                    transform(open_rgb(item))
                    for item in images[start : start + batch_size]
                ]
            )
            outputs.append(network(batch.to(device)).float().cpu().numpy())
    return np.concatenate(outputs)


def load_weights(network, path):
    """Load a state dict (read without unpickling) into a headless timm model."""
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    missing = network.load_state_dict(state, strict=False).missing_keys
    if missing:
        raise SystemExit(f"{path} does not fit the model; missing {missing[:5]}.")


def network_ceiling(network, batch_size, image_size, precision, device, seconds=5.0):
    """Images/s of the network alone on one batch already on the device."""
    dtype = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
    batch = torch.randn(batch_size, 3, image_size, image_size, device=device)

    def forward():
        with (
            torch.inference_mode(),
            torch.autocast(
                device.type,
                dtype=dtype[precision],
                enabled=dtype[precision] is not None,
            ),
        ):
            return network(batch).float().cpu()  # .cpu() waits for the device

    forward()  # warm-up
    images, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        forward()
        images += batch_size
    return images / (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--n-images", type=int, default=2000)
    parser.add_argument("--source", choices=["jpeg", "uint8"], default="jpeg")
    parser.add_argument(
        "--image-size", type=int, default=256, help="image side, pixels"
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--num-workers", default="auto")
    parser.add_argument("--precisions", default="float32,bfloat16,float16")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import timm
    from timm.data import create_transform, resolve_model_data_config

    from skltr import FeatureExtractor

    network = timm.create_model(args.model, pretrained=False, num_classes=0).eval()
    if args.weights is not None:
        load_weights(network, args.weights)
    data_config = resolve_model_data_config(network)
    transform = create_transform(**data_config, is_training=False)

    workers = args.num_workers if args.num_workers == "auto" else int(args.num_workers)
    with tempfile.TemporaryDirectory() as directory:
        if args.source == "jpeg":
            images = write_jpegs(directory, args.n_images, args.image_size)
        else:
            images = write_pixels(args.n_images, args.image_size)
        common = dict(
            batch_size=args.batch_size,
            device=args.device,
            verbose=0,
            num_workers=workers,
        )
        reference = FeatureExtractor(network, preprocess=transform, **common)
        reference.fit(images[:1])
        device = torch.device(reference.device_)
        network.to(device).requires_grad_(False)
        peer_features(network, transform, images[:8], 8, device)  # warm-up
        peer, peer_seconds = timed(
            peer_features,
            network,
            transform,
            images,
            args.batch_size,
            device,
        )
        rows = [("plain loop (peer), float32", peer_seconds, 1.0, 0.0)]
        for precision in args.precisions.split(","):
            extractor = reference.set_params(precision=precision)
            extractor.transform(images[:8])  # warm-up
            features, seconds = timed(extractor.transform, images)
            error = np.abs(features - peer).max() / np.abs(peer).max()
            rows.append(
                (
                    f"FeatureExtractor, {precision}",
                    seconds,
                    peer_seconds / seconds,
                    error,
                )
            )

        fastest = args.precisions.split(",")[-1]
        ceiling = network_ceiling(
            network, args.batch_size, data_config["input_size"][-1], fastest, device
        )

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    kind = "JPEGs" if args.source == "jpeg" else "uint8 arrays"
    side = args.image_size
    print(
        f"{args.model}, {args.n_images} {kind} of {side}x{side}, batch "
        f"{args.batch_size}, {gpu}, {os.cpu_count()} CPUs, workers {workers}\n"
    )
    print("| extraction | images/s | speed-up vs peer | max rel. diff vs peer |")
    print("|---|---|---|---|")
    for name, seconds, ratio, error in rows:
        print(
            f"| {name} | {args.n_images / seconds:.0f} | {ratio:.2f}x | {error:.1e} |"
        )
    print(
        f"| network alone, {fastest}, batch on the device (ceiling) | "
        f"{ceiling:.0f} | | |"
    )


if __name__ == "__main__":
    main()
