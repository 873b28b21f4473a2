"""Render a few channels of a torchvision model and save them as a PNG grid.

    python examples/torchvision_channels.py --model googlenet --layer inception4a --channels 0 1 2 3
    python examples/torchvision_channels.py --pretrained     # torchvision's ImageNet weights (downloads)

Without --pretrained the network has random weights: the pictures then show only
what an untrained network's filters pick up, which is useful to check a setup.
"""

from __future__ import annotations

import argparse

import torch
import torchvision

import featvis


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="googlenet", help="a torchvision.models builder name")
    parser.add_argument("--layer", default="inception4a", help="a name from featvis.layer_names(model)")
    parser.add_argument("--channels", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--pretrained", action="store_true", help="use torchvision's default ImageNet weights")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--out", default="torchvision_channels.png")
    args = parser.parse_args()

    kwargs = {"weights": "DEFAULT" if args.pretrained else None}
    if args.model == "googlenet" and not args.pretrained:
        kwargs.update(aux_logits=False, init_weights=True)
    with torch.random.fork_rng():  # random weights (without --pretrained) drawn with the seed too
        torch.manual_seed(args.seed)
        model = torchvision.models.get_model(args.model, **kwargs).eval()
    result = featvis.render_channels(
        model, args.layer, args.channels, size=args.size, steps=args.steps, seed=args.seed, batch_size=4
    )
    result.save_grid(args.out, nrow=len(args.channels))
    print(f"wrote {args.out}: {args.model} {args.layer} channels {result.units}")


if __name__ == "__main__":
    main()
