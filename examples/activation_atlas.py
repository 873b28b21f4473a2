"""An activation atlas of a layer: its activations over thousands of photo crops, laid out in 2-D by
t-SNE (UMAP where umap-learn is installed), cut into a grid, and each cell's mean rendered.

The crops are random 32x32 windows (at three scales) of scikit-learn's and scikit-image's sample
photographs. Writes the atlas's picture to ``-o``, and with ``--folder`` its browsable page.

python examples/activation_atlas.py --weights-dir DIR                 # ResNet-20 layer3 (DIR: its weights)
python examples/activation_atlas.py --steps 2 --crops 200 --grid 3 --weights-dir DIR   # a smoke run
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

import featvis
from featvis.atlas import activation_atlas


def photo_crops(count: int, seed: int, size: int = 32) -> torch.Tensor:
    """``count`` random ``size`` x ``size`` crops of the sample photographs, each at a random scale of 1, 2 or 4."""
    from skimage import data
    from sklearn.datasets import load_sample_images

    photos = [*load_sample_images().images, data.chelsea(), data.coffee(), data.astronaut(), data.rocket()]
    photos = [torch.from_numpy(np.asarray(p, dtype=np.float32) / 255).permute(2, 0, 1) for p in photos]
    draw = torch.Generator().manual_seed(seed)
    crops = []
    for _ in range(count):
        photo = photos[int(torch.randint(len(photos), (), generator=draw))]
        scale = [1, 2, 4][int(torch.randint(3, (), generator=draw))]
        side = size * scale
        top = int(torch.randint(photo.shape[1] - side + 1, (), generator=draw))
        left = int(torch.randint(photo.shape[2] - side + 1, (), generator=draw))
        window = photo[:, top : top + side, left : left + side][None]
        crops.append(F.interpolate(window, size=(size, size), mode="area")[0] if scale > 1 else window[0])
    return torch.stack(crops)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights-dir", default=None, help="folder holding the weights file")
    parser.add_argument("--layer", default="layer3")
    parser.add_argument("--crops", type=int, default=4000)
    parser.add_argument("--grid", type=int, default=10)
    parser.add_argument("--min-count", type=int, default=8)
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--folder", default=None, help="also write the atlas's page and cells here")
    parser.add_argument("-o", "--out", default="activation_atlas.png")
    args = parser.parse_args()

    model = featvis.models.cifar10_resnet20(model_dir=args.weights_dir)
    crops = photo_crops(args.crops, args.seed)
    atlas = activation_atlas(
        model, args.layer, crops, grid=args.grid, min_count=args.min_count, steps=args.steps, seed=args.seed,
        method="tsne", progress=False,
    )  # fmt: skip
    picture = atlas.image()
    scale = max(1, 640 // picture.width)
    picture.resize((picture.width * scale, picture.height * scale), 0).save(args.out)
    if args.folder:
        atlas.save(args.folder)
    cells = f"{len(atlas.cells)} cells of a {args.grid}x{args.grid} atlas"
    print(f"wrote {args.out}: {cells} of {args.layer} over {args.crops} crops")


if __name__ == "__main__":
    main()
