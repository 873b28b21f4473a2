"""The ten CIFAR-10 classes as a trained ResNet-20 sees them: several diverse images per class.

Each row is one class; its images maximise that class's logit, and a diversity term
(between the images of the same row only) makes them differ from one another.

python examples/cifar10_classes.py                          # weights downloaded through torch.hub
python examples/cifar10_classes.py --weights-dir DIR        # offline: DIR holds resnet20-12fca82f.th
python examples/cifar10_classes.py --steps 4 --per-class 2  # a quick smoke run
"""

from __future__ import annotations

import argparse

import featvis
from featvis import objectives
from featvis.models import CIFAR10_CLASSES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights-dir", default=None, help="folder holding the weights file (default: torch hub)")
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--per-class", type=int, default=4, help="images per class")
    parser.add_argument(
        "--diversity",
        type=float,
        default=800.0,
        help="weight of the diversity term (the summed logits are in the thousands)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--out", default="cifar10_classes.png")
    args = parser.parse_args()

    model = featvis.models.cifar10_resnet20(model_dir=args.weights_dir)
    k = args.per_class
    # batch element class_index * k + j is the j-th image of that class
    logits = objectives.Objective.sum(
        objectives.class_logit("linear", index, batch=index * k + j) for index in range(10) for j in range(k)
    )
    objective = logits + args.diversity * objectives.diversity("layer2", group_size=k)
    result = featvis.render_vis(
        model, objective, featvis.param.image(32, batch=10 * k, seed=args.seed), steps=args.steps, seed=args.seed
    )
    labels = [name for name in CIFAR10_CLASSES for _ in range(k)]
    result.save_grid(args.out, nrow=k, labels=labels, scale=3)
    print(f"wrote {args.out}: {k} images per class, {result.steps} steps, objective {result.objective[:60]}...")


if __name__ == "__main__":
    main()
