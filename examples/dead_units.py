"""Units that start dead: ResNet-20 layer3 channels that stay grey without the gradient tricks, rendered
without them, with redirected ReLU (the default) and with gradient normalisation alone.

python examples/dead_units.py --weights-dir DIR                   # DIR holds resnet20-12fca82f.th
python examples/dead_units.py --steps 4 --channels 6 9 --weights-dir DIR   # a quick smoke run
"""

from __future__ import annotations

import argparse

import featvis

#: the layer3 channels whose gradient is zero for the usual grey-noise start
DEAD_AT_START = [5, 6, 8, 9, 24, 40, 54, 63]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights-dir", default=None, help="folder holding the weights file (default: torch hub)")
    parser.add_argument("--channels", type=int, nargs="*", default=DEAD_AT_START)
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--out", default="dead_units.png")
    args = parser.parse_args()

    model = featvis.models.cifar10_resnet20(model_dir=args.weights_dir)
    ways = {
        "plain": {"redirected_relu": 0},
        "redirected": {},
        "normalised": {"redirected_relu": 0, "normalize_gradients": True},
    }
    rows, labels = [], []
    for name, options in ways.items():
        rows.append(
            featvis.render_channels(model, "layer3", args.channels, steps=args.steps, seed=args.seed, **options)
        )
        labels += [f"{name} {c}" for c in args.channels]
    featvis.RenderResult.concatenate(rows).save_grid(args.out, nrow=len(args.channels), labels=labels, scale=3)
    print(f"wrote {args.out}: layer3 channels {args.channels}, rows: {', '.join(ways)}")


if __name__ == "__main__":
    main()
