"""Neuron arithmetic on ResNet-20's layer3: two units, their sum, their difference, a direction that mixes
them (with and without the cosine term), and an interpolation from one to the other whose frames share
low-resolution parameters so that they stay aligned.

python examples/neuron_arithmetic.py --weights-dir DIR          # DIR holds resnet20-12fca82f.th
python examples/neuron_arithmetic.py --steps 4 --weights-dir DIR   # a quick smoke run
"""

from __future__ import annotations

import argparse

import torch

import featvis
from featvis import objectives as O


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights-dir", default=None, help="folder holding the weights file (default: torch hub)")
    parser.add_argument("--layer", default="layer3")
    parser.add_argument("--units", type=int, nargs=2, default=[0, 46], metavar=("A", "B"))
    parser.add_argument("--frames", type=int, default=6, help="frames of the interpolation")
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--out", default="neuron_arithmetic.png")
    args = parser.parse_args()

    model = featvis.models.cifar10_resnet20(model_dir=args.weights_dir)
    layer, (a, b) = args.layer, args.units
    width = featvis.probe.layer_width(model, featvis.LayerRef(layer), (32, 32), 3, None)
    mix = torch.zeros(width)
    mix[a] = mix[b] = 1.0
    # image i of one batch maximises objective i
    arithmetic = {
        f"{a}": lambda i: O.channel(layer, a, batch=i),
        f"{b}": lambda i: O.channel(layer, b, batch=i),
        f"{a} + {b}": lambda i: O.channel(layer, a, batch=i) + O.channel(layer, b, batch=i),
        f"{a} - {b}": lambda i: O.channel(layer, a, batch=i) - O.channel(layer, b, batch=i),
        "direction": lambda i: O.direction(layer, mix, batch=i),
        "dir, cos^4": lambda i: O.direction(layer, mix, batch=i, cossim_pow=4),
    }
    objective = O.Objective.sum(make(i) for i, make in enumerate(arithmetic.values()))
    row = featvis.render_vis(
        model,
        objective,
        featvis.param.image(32, batch=len(arithmetic), seed=args.seed),
        steps=args.steps,
        seed=args.seed,
    )
    frames = featvis.render_vis(
        model,
        O.channel_interpolate(layer, a, layer, b),
        featvis.param.interpolation_image(32, frames=args.frames, seed=args.seed),
        steps=args.steps,
        seed=args.seed,
    )
    labels = list(arithmetic) + [f"{a} -> {b}: {i}/{args.frames - 1}" for i in range(args.frames)]
    combined = featvis.RenderResult.concatenate([row, frames])
    combined.save_grid(args.out, nrow=max(len(arithmetic), args.frames), labels=labels, scale=3)
    print(f"wrote {args.out}: arithmetic of {layer} units {a} and {b}, and a {args.frames}-frame interpolation")


if __name__ == "__main__":
    main()
