"""Trust benchmark: are a unit's pictures processed like its real examples? Maximising against matching.

For channels of the trained CIFAR-10 ResNet-20's ``layer3`` (``--channels``), each channel's top
natural examples are its ``--k`` best of the 32x32 patches of scikit-learn's sample photographs
(the quality benchmark's 2496), by the channel's mean activation. Two ways to picture each channel,
same steps and seeds:

- **maximise**: featvis's defaults, ``render_channels`` (the channel's mean activation raised);
- **match**: ``objectives.match_distribution("layer3", examples)``, each picture's layer3
  activations sort-matched, channel by channel, to those of its unit's top examples (VITAL-style).

Columns, medians over the channels: ``activation``, the channel's mean activation on its picture as a
multiple of its best natural patch's; ``trust``, :func:`featvis.trust.trust_scores` (the cosine
similarity of the activation patterns at every earlier convolution with the top examples' mean);
``slope``, the picture's spectral slope (photographs: -2.34). Two references for trust: the unit's
next best natural patch (rank k + 1), and a random natural patch.

Run::

    python benchmarks/trust.py --weights-dir ../shared/models/cifar10

``--channels 0 1 --steps 8 --seeds 0`` makes a quick smoke run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
from torch import Tensor

import featvis
from featvis import objectives
from featvis.trust import trust_scores

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import quality  # noqa: E402  (benchmarks/quality.py: the natural patches, channel means, spectral slope)

LAYER = "layer3"


def pictures_matching(model: torch.nn.Module, references: list[Tensor], steps: int, seed: int) -> Tensor:
    """One picture per unit, each sort-matched to its own reference activations."""
    objective = objectives.Objective.sum(
        objectives.match_distribution(LAYER, reference, batch=i) for i, reference in enumerate(references)
    )
    image = featvis.param.image(32, batch=len(references), seed=seed)
    result = featvis.render_vis(model, objective, image, steps=steps, seed=seed, progress=False)
    return result.images


def layer_activations(model: torch.nn.Module, images: Tensor) -> Tensor:
    out: list[Tensor] = []
    handle = model.get_submodule(LAYER).register_forward_hook(lambda m, i, o: out.append(o.detach()))
    prepare = featvis.models.default_preprocess(model)
    try:
        with torch.no_grad():
            model(prepare(images))
    finally:
        handle.remove()
    return out[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights-dir", default="../shared/models/cifar10")
    parser.add_argument("--channels", type=int, nargs="+", default=list(range(16)))
    parser.add_argument("--k", type=int, default=9)
    parser.add_argument("--steps", type=int, default=256)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument(
        "--save", default=None, help="write the first seed's pictures, and each unit's best patch, here"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)

    model = featvis.models.cifar10_resnet20(model_dir=args.weights_dir).eval()
    patches = quality.natural_patches()
    means = quality.channel_means(model, LAYER, patches)  # (patches, C)
    order = means.argsort(dim=0, descending=True)
    tops = torch.stack([patches[order[: args.k, c]] for c in args.channels])  # (units, k, 3, 32, 32)
    next_best = torch.stack([patches[order[args.k, c]] for c in args.channels])
    random_patch = patches[
        torch.randperm(len(patches), generator=torch.Generator().manual_seed(0))[: len(args.channels)]
    ]
    best = means.max(dim=0).values[args.channels]
    references = [layer_activations(model, top) for top in tops]

    rows: dict[str, list[dict[str, float]]] = {"maximise": [], "match": []}
    for seed in args.seeds:
        found = {
            "maximise": featvis.render_channels(
                model, LAYER, args.channels, size=32, steps=args.steps, seed=seed, progress=False
            ).images,
            "match": pictures_matching(model, references, args.steps, seed),
        }
        for method, images in found.items():
            reached = quality.channel_means(model, LAYER, images)[torch.arange(len(args.channels)), args.channels]
            trust = trust_scores(model, LAYER, images, tops)
            slopes = quality.spectral_slope(images)
            rows[method].append(
                {
                    "activation": float((reached / best).median()),
                    "trust": float(trust.median()),
                    "slope": float(slopes.median()),
                }
            )
            print(method, seed, rows[method][-1], flush=True)
        if args.save and seed == args.seeds[0]:
            grid = torch.cat([found["maximise"], found["match"], tops[:, 0]])
            labels = [f"max {c}" for c in args.channels] + [f"match {c}" for c in args.channels]
            labels += [f"best patch {c}" for c in args.channels]
            featvis.RenderResult(grid, {}, torch.zeros(1), "trust", args.steps).save_grid(
                args.save, nrow=len(args.channels), labels=labels
            )
    natural = {
        "next best patch": float(trust_scores(model, LAYER, next_best, tops).median()),
        "random patch": float(trust_scores(model, LAYER, random_patch, tops).median()),
    }
    print("\n| method | activation | trust | slope |\n| --- | ---: | ---: | ---: |")
    for method, results in rows.items():
        cells = [statistics.mean(r[column] for r in results) for column in ("activation", "trust", "slope")]
        print(f"| {method} | {cells[0]:.2f} | {cells[1]:.2f} | {cells[2]:.2f} |")
    for name, value in natural.items():
        print(f"| {name} (reference) | | {value:.2f} | |")


if __name__ == "__main__":
    main()
