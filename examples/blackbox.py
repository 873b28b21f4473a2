"""CIFAR-10 classes of a trained ResNet-20 seen through a black box, rendered without gradients.

The model is wrapped as a remote API would be: its input goes through NumPy and is rounded to 8-bit
colours, so no gradient reaches the image. featvis.optim.EvolutionStrategy renders each class logit
from the losses alone (one render per class: a batch would mix the images' losses, see
docs/blackbox.md). With --gradient-out, the same classes are also rendered the usual way, by
gradients through the plain model, for comparison.

python examples/blackbox.py --weights-dir DIR                 # DIR holds resnet20-12fca82f.th
python examples/blackbox.py --classes cat ship --steps 2      # a quick smoke run
python examples/blackbox.py --gradient-out gradient.png       # also the gradient render
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterable

import numpy as np
import torch

import featvis
from featvis import objectives
from featvis.models import CIFAR10_CLASSES
from featvis.optim import EvolutionStrategy


def eight_bit_preprocess(model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """[0, 1] images -> 8-bit colours through NumPy (no gradient passes) -> the model's normalisation."""
    normalise = featvis.models.default_preprocess(model)

    def preprocess(images: torch.Tensor) -> torch.Tensor:
        array = np.round(images.detach().cpu().numpy() * 255.0).astype(np.uint8)
        return normalise(torch.from_numpy(array.astype(np.float32) / 255.0).to(images.device))

    return preprocess


def class_index(name: str) -> int:
    if name.isdigit() and int(name) < len(CIFAR10_CLASSES):
        return int(name)
    if name not in CIFAR10_CLASSES:
        raise SystemExit(f"unknown class {name!r}; use one of {', '.join(CIFAR10_CLASSES)} or 0-9")
    return CIFAR10_CLASSES.index(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights-dir", default=None, help="folder holding the weights file (default: torch hub)")
    parser.add_argument("--steps", type=int, default=384, help="evolution strategy steps per class")
    parser.add_argument("--population", type=int, default=8, help="model evaluations per step")
    parser.add_argument("--sigma", type=float, default=0.1, help="size of the perturbations of the spectrum")
    parser.add_argument("--classes", nargs="+", default=list(CIFAR10_CLASSES), help="class names or indices")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--out", default="blackbox.png")
    parser.add_argument("--gradient-out", default=None, help="also render the classes with gradients, here")
    parser.add_argument("--gradient-steps", type=int, default=256)
    args = parser.parse_args()

    model = featvis.models.cifar10_resnet20(model_dir=args.weights_dir)
    preprocess = eight_bit_preprocess(model)
    indices = [class_index(name) for name in args.classes]
    labels = [CIFAR10_CLASSES[i] for i in indices]

    def es(parameters: Iterable[torch.Tensor]) -> EvolutionStrategy:
        return EvolutionStrategy(parameters, population=args.population, sigma=args.sigma)

    started = time.perf_counter()
    results = [
        featvis.render_vis(
            model,
            objectives.class_logit("linear", index),
            size=32,
            optimizer=es,
            steps=args.steps,
            preprocess=preprocess,
            seed=args.seed + number,
            progress=False,
        )
        for number, index in enumerate(indices)
    ]
    seconds = time.perf_counter() - started
    black_box = featvis.RenderResult.concatenate(results)
    black_box.save_grid(args.out, nrow=len(indices), labels=labels, scale=3)
    evaluations = len(indices) * args.steps * args.population
    print(
        f"wrote {args.out}: {len(indices)} classes, {args.steps} steps x {args.population} evaluations "
        f"= {evaluations} model evaluations in {seconds:.0f} s"
    )
    report("black box", model, preprocess, black_box.images, indices)

    if args.gradient_out:
        objective = objectives.Objective.sum(
            objectives.class_logit("linear", index, batch=number) for number, index in enumerate(indices)
        )
        gradient = featvis.render_vis(
            model,
            objective,
            featvis.param.image(32, batch=len(indices), seed=args.seed),
            steps=args.gradient_steps,
            seed=args.seed,
            progress=False,
        )
        gradient.save_grid(args.gradient_out, nrow=len(indices), labels=labels, scale=3)
        print(
            f"wrote {args.gradient_out}: gradient render, {args.gradient_steps} steps "
            f"({args.gradient_steps} forward and backward passes of the batch)"
        )
        report("gradient", model, preprocess, gradient.images, indices)


@torch.no_grad()
def report(
    title: str,
    model: torch.nn.Module,
    preprocess: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    indices: list[int],
) -> None:
    """Print each image's logit and probability for its class, as the black box (8-bit input) sees it."""
    logits = model(preprocess(images))
    probabilities = torch.softmax(logits, dim=1)
    rows = range(len(indices))
    print(f"{title}: logit " + " ".join(f"{CIFAR10_CLASSES[i]}={logits[r, i]:.1f}" for r, i in zip(rows, indices)))
    print(f"{title}: probability " + " ".join(f"{probabilities[r, i]:.3f}" for r, i in zip(rows, indices)))


if __name__ == "__main__":
    main()
