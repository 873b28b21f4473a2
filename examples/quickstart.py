"""Render the ten CIFAR-10 classes as seen by a trained ResNet-20, and save a PNG grid.

python examples/quickstart.py                       # weights downloaded through torch.hub
python examples/quickstart.py --weights-dir DIR     # offline: DIR holds resnet20-12fca82f.th
"""

from __future__ import annotations

import argparse

import featvis
from featvis import objectives
from featvis.models import CIFAR10_CLASSES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights-dir", default=None, help="folder holding the weights file (default: torch hub)")
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--out", default="quickstart.png")
    args = parser.parse_args()

    model = featvis.models.cifar10_resnet20(model_dir=args.weights_dir)
    # one image per class: batch element i maximises the logit of class i
    objective = sum(objectives.class_logit("linear", index, batch=index) for index in range(10))
    result = featvis.render_vis(
        model, objective, featvis.param.image(32, batch=10, seed=args.seed), steps=args.steps, seed=args.seed
    )
    result.save_grid(args.out, nrow=10)  # 32x32 images, enlarged 4 times to be read
    print(f"classes, left to right: {', '.join(CIFAR10_CLASSES)}")
    print(f"wrote {args.out} (loss {result.losses[0]:.2f} -> {result.losses[-1]:.2f} in {result.steps} steps)")


if __name__ == "__main__":
    main()
