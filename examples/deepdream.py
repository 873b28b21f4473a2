"""DeepDream with the trained CIFAR-10 ResNet-20 on a real photo: the photo and its dream side by side.

python examples/deepdream.py --weights-dir DIR                     # scikit-learn's china.jpg, 256 pixels wide
python examples/deepdream.py --weights-dir DIR --image me.jpg      # your own picture
python examples/deepdream.py --weights-dir DIR --steps 2 --octaves 2 --size 64   # a quick smoke run
python examples/deepdream.py --weights-dir DIR --compare -o tricks.png   # with and without each trick

DIR holds resnet20-12fca82f.th (leave --weights-dir out to download it through torch.hub).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy
import torch
from PIL import Image

import featvis
from featvis.dream import deepdream


def load_photo(path: str | None, width: int) -> Image.Image:
    """The picture at ``path``, or scikit-learn's sample photo china.jpg, resized to ``width`` pixels wide."""
    if path is not None:
        picture = Image.open(path).convert("RGB")
    else:
        try:
            from sklearn.datasets import load_sample_images
        except ImportError:
            sys.exit("the default photo comes with scikit-learn (pip install scikit-learn); or pass --image PATH")
        picture = Image.fromarray(load_sample_images().images[0])  # china.jpg
    height = max(1, round(picture.height * width / picture.width))
    return picture.resize((width, height), Image.LANCZOS)


def compare(model: torch.nn.Module, photo: Image.Image, args: argparse.Namespace) -> None:
    """The photo, the dream, and the dream with one trick changed at a time, as one labelled grid."""
    settings = {
        "octaves": args.octaves,
        "octave_scale": args.octave_scale,
        "steps": args.steps,
        "step_size": args.step_size,
        "laplacian_levels": args.laplacian_levels,
        "tile_size": args.tile_size,
        "seed": args.seed,
        "progress": False,
    }
    tile = args.tile_size or max(16, args.size // 4)
    variants = {
        "dream": {},
        "one octave": {"octaves": 1, "steps": args.steps * args.octaves},
        "plain gradient": {"laplacian_levels": 0},
        f"tiles of {tile}": {"tile_size": tile},
    }
    images = [torch.from_numpy(numpy.asarray(photo).copy()).permute(2, 0, 1)[None].float() / 255]
    for label, change in variants.items():
        start = time.perf_counter()
        result = deepdream(model, photo, args.layer, **{**settings, **change})
        print(f"{label}: {time.perf_counter() - start:.1f} s, objective at the full size {-result.losses[-1]:.3g}")
        images.append(result.images)
    grid = featvis.RenderResult(torch.cat(images), {}, torch.zeros(1), "compare", 1)
    grid.save_grid(args.out, nrow=len(images), labels=["photo", *variants])
    print(f"wrote {args.out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights-dir", default=None, help="folder holding the weights file (default: torch hub)")
    parser.add_argument("--image", default=None, help="a picture of your own (default: scikit-learn's china.jpg)")
    parser.add_argument("--layer", default="layer2", help="the layer whose activations are amplified")
    parser.add_argument("--octaves", type=int, default=4)
    parser.add_argument("--octave-scale", type=float, default=1.4)
    parser.add_argument("--steps", type=int, default=10, help="steps per octave")
    parser.add_argument("--step-size", type=float, default=0.006)
    parser.add_argument("--laplacian-levels", type=int, default=4)
    parser.add_argument("--size", type=int, default=256, help="width of the photo, in pixels")
    parser.add_argument("--tile-size", type=int, default=None, help="compute the gradient in tiles this large")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--compare",
        action="store_true",
        help="instead, a labelled grid: the photo, the dream, and the dream without each trick in turn",
    )
    parser.add_argument("-o", "--out", default="deepdream.png")
    args = parser.parse_args()

    model = featvis.models.cifar10_resnet20(model_dir=args.weights_dir)
    photo = load_photo(args.image, args.size)
    if args.compare:
        compare(model, photo, args)
        return
    start = time.perf_counter()
    result = deepdream(
        model,
        photo,
        args.layer,
        octaves=args.octaves,
        octave_scale=args.octave_scale,
        steps=args.steps,
        step_size=args.step_size,
        laplacian_levels=args.laplacian_levels,
        tile_size=args.tile_size,
        seed=args.seed,
    )
    seconds = time.perf_counter() - start
    dream = result.pil()[0]
    side_by_side = Image.new("RGB", (2 * photo.width + 4, photo.height), "white")
    side_by_side.paste(photo, (0, 0))
    side_by_side.paste(dream, (photo.width + 4, 0))
    side_by_side.save(args.out)
    print(
        f"wrote {args.out}: {photo.width}x{photo.height} photo and its dream of {args.layer} "
        f"({result.steps} steps in {seconds:.1f} s; at the full size the objective went from "
        f"{-result.losses[-args.steps]:.3g} to {-result.losses[-1]:.3g})"
    )


if __name__ == "__main__":
    main()
