"""Operations of stage 2 on frozen features against the reference stage 2.

The reference implementations (Decoupling's code release) re-train the
classifier with the backbone frozen but still run it on every image in every
epoch. On frozen features the backbone runs once per image (extraction), and
each epoch is only the classifier's matrix products. This counts, does not
run: the backbone's forward FLOPs are measured on one image with PyTorch's
FLOP counter (``torch.utils.flop_counter``), the classifier's are 6 N d C per
epoch (forward, and backward for weights and inputs).

    python benchmarks/stage2_operations.py            # ImageNet-LT, ResNeXt-50
    python benchmarks/stage2_operations.py --model resnet152 --n-samples 62500 \\
        --n-classes 365 --epochs 10                   # Places-LT
"""

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import timm  # noqa: E402
import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402


def backbone_flops(model_name, image_size):
    """Forward FLOPs of one image through the backbone without its head."""
    model = timm.create_model(model_name, pretrained=False, num_classes=0).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        features = model(torch.zeros(1, 3, image_size, image_size))
    return counter.get_total_flops(), features.shape[1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnext50_32x4d")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--n-samples", type=int, default=115_846)
    parser.add_argument("--n-classes", type=int, default=1_000)
    parser.add_argument("--epochs", type=int, default=10, help="cRT: 10")
    parser.add_argument(
        "--candidates",
        type=int,
        default=21,
        help="stage-2 fits of a hyper-parameter search (21 taus)",
    )
    args = parser.parse_args(argv)
    per_image, n_features = backbone_flops(args.model, args.image_size)
    n, c, e = args.n_samples, args.n_classes, args.epochs
    head = 6 * n * n_features * c * e
    reference = n * per_image * e + head
    ours = n * per_image + head
    search = args.candidates * reference / (n * per_image + args.candidates * head)
    print(
        f"{args.model}: {per_image / 1e9:.2f} GFLOP per {args.image_size}-px image "
        f"forward, {n_features}-d features; N = {n}, C = {c}, {e} epochs.\n"
        f"Reference stage 2 (backbone every epoch): {reference / 1e15:.2f} PFLOP.\n"
        f"On frozen features (backbone once, then the head): {ours / 1e15:.3f} "
        f"PFLOP, of which the head {head / 1e12:.2f} TFLOP.\n"
        f"Ratio: {reference / ours:.1f}x fewer operations for one fit; for a "
        f"search of {args.candidates} fits sharing the extraction: "
        f"{search:.0f}x."
    )


if __name__ == "__main__":
    main()
