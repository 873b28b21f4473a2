"""Every channel of ResNet-20's last stage (``layer3``, 64 channels), one image each, as a labelled grid.

python examples/cifar10_layer3.py                              # weights downloaded through torch.hub
python examples/cifar10_layer3.py --weights-dir DIR            # offline: DIR holds resnet20-12fca82f.th
python examples/cifar10_layer3.py --steps 4 --channels 0 1 2   # a quick smoke run
"""

from __future__ import annotations

import argparse

import featvis


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights-dir", default=None, help="folder holding the weights file (default: torch hub)")
    parser.add_argument("--layer", default="layer3")
    parser.add_argument("--channels", type=int, nargs="*", default=None, help="channels to render (default: all)")
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32, help="channels optimised together")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--out", default="cifar10_layer3.png")
    args = parser.parse_args()

    model = featvis.models.cifar10_resnet20(model_dir=args.weights_dir)
    result = featvis.render_channels(
        model, args.layer, args.channels, batch_size=args.batch_size, steps=args.steps, seed=args.seed
    )
    result.save_grid(args.out, nrow=8, labels=True, scale=3)
    print(f"wrote {args.out}: {len(result)} channels of {args.layer}, {result.steps} steps each")


if __name__ == "__main__":
    main()
