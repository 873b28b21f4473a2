"""Channels of ResNet-20 beside the photo patches that excite them most, and their receptive-field crops.

Each row of the PNG: the channel's feature visualisation (featvis.render_channels), its top-k
32x32 patches (captioned with the channel's peak activation), then each patch cut to the
receptive field of the position where the channel peaked (captioned with the patch's index).

No dataset can be downloaded offline, so the patches come from real photographs: scikit-learn's
two sample photos (a Chinese temple and a flower, 427x640) or the pictures in --images FOLDER,
each shrunk to several scales and cut into overlapping 32x32 patches.

python examples/dataset_examples.py --weights-dir DIR                      # DIR holds resnet20-12fca82f.th
python examples/dataset_examples.py --layer layer3 --channels 5 9 12       # other units
python examples/dataset_examples.py --images ~/Pictures -o mine.png        # your own photos
python examples/dataset_examples.py --steps 2 --k 3 --channels 0 1         # a smoke run (seconds)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import featvis
from featvis.dataset import examples_figure, top_activating

#: how many times each photo is shrunk (1 is the photo as it is)
SHRINK_FACTORS = (1, 2, 4, 8)
PICTURE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def load_photos(folder: str | None) -> list[torch.Tensor]:
    """(3, H, W) float images in [0, 1]: the pictures in ``folder``, or scikit-learn's two sample photos."""
    if folder is None:
        from sklearn.datasets import load_sample_images

        arrays = load_sample_images().images
    else:
        from PIL import Image

        paths = sorted(p for p in Path(folder).expanduser().iterdir() if p.suffix.lower() in PICTURE_SUFFIXES)
        if not paths:
            raise SystemExit(f"no pictures ({', '.join(sorted(PICTURE_SUFFIXES))}) in {folder}")
        arrays = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    return [torch.from_numpy(np.array(a)).permute(2, 0, 1).float() / 255 for a in arrays]


def cut_patches(photos: list[torch.Tensor], size: int = 32) -> torch.Tensor:
    """Overlapping ``size`` x ``size`` patches (stride ``size // 2``) of every photo at every shrink factor."""
    patches = []
    for photo in photos:
        for factor in SHRINK_FACTORS:
            height, width = photo.shape[1] // factor, photo.shape[2] // factor
            if min(height, width) < size:
                continue
            small = F.interpolate(photo[None], size=(height, width), mode="area")[0] if factor > 1 else photo
            tiles = small.unfold(1, size, size // 2).unfold(2, size, size // 2)  # (3, rows, cols, size, size)
            patches.append(tiles.permute(1, 2, 0, 3, 4).reshape(-1, 3, size, size))
    return torch.cat(patches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights-dir", default=None, help="folder holding resnet20-12fca82f.th (default: torch hub)")
    parser.add_argument("--layer", default="layer2.0", help="layer whose channels to show")
    parser.add_argument("--channels", type=int, nargs="+", default=[0, 10, 26, 13], help="channels of the layer")
    parser.add_argument("--k", type=int, default=6, help="top patches per channel")
    parser.add_argument("--steps", type=int, default=256, help="optimisation steps of the visualisations")
    parser.add_argument("--images", default=None, help="folder of your own pictures (default: scikit-learn's photos)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-crops",
        action="store_true",
        help="leave the crops out (for deep layers, whose receptive field covers the whole 32x32 patch)",
    )
    parser.add_argument("--scale", type=int, default=3, help="enlarge every 32x32 tile this many times")
    parser.add_argument("-o", "--out", default="dataset_examples.png")
    args = parser.parse_args()

    model = featvis.models.cifar10_resnet20(model_dir=args.weights_dir)
    patches = cut_patches(load_photos(args.images))
    print(f"{len(patches)} patches of 32x32 from the photos")
    loader = torch.utils.data.DataLoader(patches, batch_size=256)
    visualisations = featvis.render_channels(
        model, args.layer, args.channels, steps=args.steps, seed=args.seed, progress=False
    )
    # every channel's top patches from one pass over the patches
    examples = top_activating(model, loader, [(args.layer, c) for c in args.channels], k=args.k, progress=False)
    for channel, found in zip(args.channels, examples):
        sizes = sorted({(box.height, box.width) for box in found.boxes or []})
        print(f"{args.layer}:{channel}: top scores {[round(float(s), 2) for s in found.scores]}, crops {sizes}")
    labels = [f"{args.layer}:{c}" for c in args.channels]
    figure = examples_figure(examples, visualisations, labels=labels, crops=not args.no_crops, scale=args.scale)
    figure.save(args.out)
    print(f"wrote {args.out}: one row per channel: visualisation, top {args.k} patches, their receptive-field crops")


if __name__ == "__main__":
    main()
