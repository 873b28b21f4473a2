"""Two other priors on the picture: a CPPN (a small network of the pixel coordinates, drawn again at
any size) and a generator (here a tiny decoder trained in a few seconds on pictures of one coloured
disk, so that every picture it makes is a disk).

Row 1: ResNet-20 layer3 channels as CPPNs, optimised at 32x32 (``featvis.param.cppn``).
Row 2: the same CPPNs drawn again at 128x128 from the same weights (``Image.at_size``): new detail,
not enlarged pixels.
Row 3: CIFAR-10 classes through the disk generator (``featvis.param.generator``): the disk of the
colour, size and place that the class likes best.

python examples/priors.py --weights-dir DIR                    # DIR holds resnet20-12fca82f.th
python examples/priors.py --imagenet --steps 256               # CPPNs of EfficientNet-Lite0 (minutes)
python examples/priors.py --steps 3 --train-steps 5 --channels 5 --weights-dir DIR   # a smoke run
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

import featvis
from featvis import objectives, param


def disks(count: int, generator: torch.Generator, size: int = 32) -> torch.Tensor:
    """Pictures of one disk each, of a random colour, place and size, on a random grey."""
    ys, xs = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    centre = torch.rand(count, 2, generator=generator) * size / 2 + size / 4
    radius = (torch.rand(count, generator=generator) * 0.2 + 0.15) * size
    colour = torch.rand(count, 3, generator=generator)
    ground = torch.rand(count, 1, generator=generator).expand(-1, 3) * 0.6 + 0.2
    inside = ((ys - centre[:, 0, None, None]) ** 2 + (xs - centre[:, 1, None, None]) ** 2) < radius[:, None, None] ** 2
    inside = inside[:, None].float()
    return inside * colour[:, :, None, None] + (1 - inside) * ground[:, :, None, None]


def disk_decoder(steps: int, seed: int) -> nn.Module:
    """A decoder (8 standard normal numbers -> a 32x32 picture) trained as half of a variational
    autoencoder of disk pictures, so that the latents around the prior all decode to disks."""
    draw = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 256), nn.ReLU(), nn.Linear(256, 16))
    decoder = nn.Sequential(
        nn.Linear(8, 256), nn.ReLU(), nn.Linear(256, 3 * 32 * 32), nn.Tanh(), nn.Unflatten(1, (3, 32, 32))
    )
    optimiser = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=2e-3)
    for _ in range(steps):
        batch = disks(64, draw)
        mean, log_variance = encoder(batch).chunk(2, dim=1)
        latent = mean + torch.randn(mean.shape, generator=draw) * (0.5 * log_variance).exp()
        divergence = 0.5 * (mean.square() + log_variance.exp() - 1 - log_variance).sum(1).mean()
        loss = F.mse_loss((decoder(latent) + 1) / 2, batch, reduction="sum") / len(batch) + divergence
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return decoder.eval()


def imagenet_cppns(args: argparse.Namespace) -> None:
    """CPPNs of EfficientNet-Lite0 channels, optimised at 96 pixels and drawn again at 384."""
    model = featvis.models.efficientnet_lite0(model_dir=args.weights_dir)
    channels = args.channels if args.channels != [5, 25, 40, 60] else [0, 3, 7, 12]
    units = objectives.Objective.sum(objectives.channel("_blocks.8", c, batch=i) for i, c in enumerate(channels))
    pattern = param.cppn(96, batch=len(channels), seed=args.seed)
    drawn = featvis.render_vis(model, units, pattern, steps=args.steps, seed=args.seed)
    with torch.no_grad():
        large = pattern.at_size(384)().cpu()
    small = F.interpolate(drawn.images, size=(384, 384), mode="nearest")
    labels = [f"cppn {c} at 96" for c in channels] + [f"{c} at 384" for c in channels]
    featvis.RenderResult(torch.cat([small, large]), {}, torch.zeros(1), "priors", args.steps).save_grid(
        args.out, nrow=len(channels), labels=labels, scale=1
    )
    print(f"wrote {args.out}: CPPNs of EfficientNet-Lite0 _blocks.8 {channels}, at 96 and at 384 pixels")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights-dir", default=None, help="folder holding the weights file (default: torch hub)")
    parser.add_argument("--imagenet", action="store_true", help="CPPNs of EfficientNet-Lite0 (no generator row)")
    parser.add_argument("--channels", type=int, nargs="+", default=[5, 25, 40, 60])
    parser.add_argument("--classes", nargs="+", default=["airplane", "frog", "truck", "ship"])
    parser.add_argument("--steps", type=int, default=512)
    parser.add_argument("--train-steps", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--out", default="priors.png")
    args = parser.parse_args()
    if args.imagenet:
        imagenet_cppns(args)
        return

    model = featvis.models.cifar10_resnet20(model_dir=args.weights_dir)
    count = len(args.channels)
    units = objectives.Objective.sum(objectives.channel("layer3", c, batch=i) for i, c in enumerate(args.channels))
    pattern = param.cppn(32, batch=count, seed=args.seed)
    drawn = featvis.render_vis(model, units, pattern, steps=args.steps, seed=args.seed)
    with torch.no_grad():
        large = pattern.at_size(128)().cpu()
    small = F.interpolate(drawn.images, size=(128, 128), mode="nearest")

    decoder = disk_decoder(args.train_steps, args.seed)
    indices = [featvis.models.CIFAR10_CLASSES.index(name) for name in args.classes]
    classes = objectives.Objective.sum(objectives.class_logit("linear", c, batch=i) for i, c in enumerate(indices))
    prior = param.generator(decoder, (8,), batch=len(indices), bound=3.0, seed=args.seed)
    disked = featvis.render_vis(model, classes, prior, steps=args.steps, seed=args.seed)

    images = torch.cat([small, large, F.interpolate(disked.images, size=(128, 128), mode="nearest")])
    labels = [f"cppn {c}" for c in args.channels] + [f"{c} at 128" for c in args.channels] + list(args.classes)
    featvis.RenderResult(images, {}, torch.zeros(1), "priors", args.steps).save_grid(
        args.out, nrow=max(count, len(indices)), labels=labels, scale=1
    )
    print(f"wrote {args.out}: CPPNs of layer3 {args.channels}, and {', '.join(args.classes)} through a disk generator")


if __name__ == "__main__":
    main()
