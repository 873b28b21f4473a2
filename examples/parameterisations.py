"""The same units of ResNet-20 rendered with each image parameterisation, and an interpolation with shared parts.

Writes two labelled grids:

- ``--out``: one row per parameterisation (pixel, Fourier, Laplacian pyramid, low resolution,
  MACO), one column per unit (class logits, and ``layer3`` channels labelled ``cN``), same seed
  and steps;
- ``--interpolation-out``: an interpolation between two ``layer3`` channels across a batch of
  frames (``objectives.channel_interpolate``), top row with independent images
  (``param.image``), bottom row with shared low-resolution parts (``param.interpolation_image``).

python examples/parameterisations.py --weights-dir DIR     # DIR holds resnet20-12fca82f.th
python examples/parameterisations.py --steps 4             # a quick smoke run
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from torch import nn

import featvis
from featvis import objectives, param
from featvis.models import CIFAR10_CLASSES
from featvis.objectives import Objective

#: each parameterisation of n images, its random start drawn with a seed
PARAMETERISATIONS: dict[str, Callable[[int, int], nn.Module]] = {
    "pixel": lambda n, seed: param.image(32, batch=n, fft=False, seed=seed),
    "fourier": lambda n, seed: param.image(32, batch=n, seed=seed),
    "laplacian": lambda n, seed: param.laplacian_pyramid(32, batch=n, seed=seed),
    "lowres": lambda n, seed: param.lowres_image(32, batch=n, factor=2, seed=seed),
    "maco": lambda n, seed: param.maco(32, batch=n, seed=seed),
}


def unit_objective(unit: str, batch: int) -> Objective:
    """``"cat"`` (a class name) -> its logit; ``"layer3:5"`` -> that channel."""
    if unit in CIFAR10_CLASSES:
        return objectives.class_logit("linear", CIFAR10_CLASSES.index(unit), batch=batch)
    layer, channel = unit.split(":")
    return objectives.channel(layer, int(channel), batch=batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights-dir", default=None, help="folder holding the weights file (default: torch hub)")
    parser.add_argument("--units", nargs="+", default=["cat", "ship", "layer3:5", "layer3:17"])
    parser.add_argument("--params", nargs="+", default=list(PARAMETERISATIONS), choices=list(PARAMETERISATIONS))
    parser.add_argument("--interpolate", nargs=2, type=int, default=[5, 17], help="two layer3 channels")
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--out", default="parameterisations.png")
    parser.add_argument("--interpolation-out", default="interpolation.png")
    args = parser.parse_args()

    model = featvis.models.cifar10_resnet20(model_dir=args.weights_dir)
    objective = Objective.sum(unit_objective(unit, i) for i, unit in enumerate(args.units))
    rows = []
    for name in args.params:
        made = PARAMETERISATIONS[name](len(args.units), args.seed)
        result = featvis.render_vis(model, objective, made, steps=args.steps, seed=args.seed, progress=False)
        rows.append(result)
        print(f"{name:10s} objective {-float(result.losses[-1]):8.2f}")
    short = [unit if unit in CIFAR10_CLASSES else "c" + unit.split(":")[1] for unit in args.units]
    labels = [f"{name} {unit}" for name in args.params for unit in short]
    featvis.RenderResult.concatenate(rows).save_grid(args.out, nrow=len(args.units), labels=labels, scale=3)
    print(f"wrote {args.out}")

    first, second = args.interpolate
    blend = objectives.channel_interpolate("layer3", first, "layer3", second)
    frames = []
    for name, make in (
        ("independent", lambda: param.image(32, batch=args.frames, seed=args.seed)),
        ("shared", lambda: param.interpolation_image(32, frames=args.frames, seed=args.seed)),
    ):
        result = featvis.render_vis(model, blend, make(), steps=args.steps, seed=args.seed, progress=False)
        frames.append(result)
        print(f"{name:11s} objective {-float(result.losses[-1]):8.2f}")
    labels = [f"{name} {i}" for name in ("indep.", "shared") for i in range(args.frames)]
    featvis.RenderResult.concatenate(frames).save_grid(args.interpolation_out, nrow=args.frames, labels=labels, scale=3)
    print(f"wrote {args.interpolation_out}: layer3 channel {first} -> {second} in {args.frames} frames")


if __name__ == "__main__":
    main()
