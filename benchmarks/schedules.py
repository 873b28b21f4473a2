"""How featvis's default learning rate, blur and 1/f exponent were chosen: class images under other settings.

For the ten CIFAR-10 class logits of the trained ResNet-20 (two images per class, 20 in one
batch, as in ``quality.py``), each setting renders the images once per seed with snapshots at
``--steps``, and the table gives the mean over seeds of the share of ResNet-32's probability kept
after a 2x down-and-up resize (``resize2``; the column where featvis lagged), and the median
spectral slope (natural 32x32 patches: -2.34; the goal is within 0.5). The other columns of
``quality.py`` are 1.00 for every setting here.

A setting whose learning rate depends on the number of steps (``cosine``) gets one run per step
count, so that each row shows what ``render_vis(steps=k)`` returns; the others get one run with
snapshots, which is the same thing for them.

Run (about 2 minutes a setting on one thread)::

    OMP_NUM_THREADS=1 python benchmarks/schedules.py --weights-dir ../shared/models/cifar10 --seed 0 1 2 3 4

``--settings default lr0.1-held64-power2-decay1.4`` picks settings by name (``--list`` shows them).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import featvis
from featvis import objectives
from featvis.objectives import Objective

_spec = importlib.util.spec_from_file_location("featvis_quality_benchmark", Path(__file__).with_name("quality.py"))
assert _spec is not None and _spec.loader is not None
quality = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = quality
_spec.loader.exec_module(quality)


@dataclass(frozen=True)
class Setting:
    """A learning rate ``lr * factor(step, steps)`` (0-based step), a blur's largest sigma (0: none) and the
    Fourier basis's 1/f exponent."""

    lr: float
    factor: Callable[[int, int], float]
    blur: float
    decay: float
    depends_on_steps: bool = False


def held(hold: int, power: float) -> Callable[[int, int], float]:
    """1 for the first ``hold`` steps, then ``(hold / step) ** power``."""
    return lambda step, steps: min(1.0, hold / (step + 1)) ** power


def cosine(step: int, steps: int) -> float:
    """featvis's previous default: from 1 to 0.2 at the last step of the run, along a half cosine."""
    last = max(steps - 1, 1)
    return 0.2 + 0.8 * 0.5 * (1.0 + math.cos(math.pi * min(step, last) / last))


SETTINGS: dict[str, Setting] = {
    # the previous default: Adam 0.05 along a half cosine to 0.01 at the run's last step, blur, decay 1.25
    "lr0.05-cosine-blur-decay1.25": Setting(0.05, cosine, 0.5, 1.25, depends_on_steps=True),
    "lr0.1-held64-power2-decay1.25": Setting(0.1, held(64, 2.0), 0.0, 1.25),
    "lr0.1-held64-power2-blur-decay1.25": Setting(0.1, held(64, 2.0), 0.5, 1.25),
    "lr0.1-held64-power2-decay1.4": Setting(0.1, held(64, 2.0), 0.0, 1.4),
    # render_vis's defaults: Adam 0.1 held for 64 steps then (64 / step) ** 2, blur up to half a pixel, decay 1.4
    "default": Setting(0.1, held(64, 2.0), 0.5, 1.4),
}


def render(
    model: torch.nn.Module, classes: list[int], name: str, steps: int, thresholds: list[int], seed: int
) -> dict[int, torch.Tensor]:
    """The class images of one run, as ``{step: images}``; ``"default"`` is ``render_vis`` as it comes."""
    setting = SETTINGS[name]
    torch.manual_seed(seed)
    objective = Objective.sum(objectives.class_logit("linear", c, batch=i) for i, c in enumerate(classes))
    options: dict[str, object] = {}
    if name != "default":

        def optimizer(parameters: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
            adam = torch.optim.Adam(parameters, lr=setting.lr, fused=True)  # as render_vis's own on a CPU
            schedule = torch.optim.lr_scheduler.LambdaLR(adam, lambda step: setting.factor(step, steps))
            adam.register_step_post_hook(lambda *args: schedule.step())
            return adam

        options = {
            "optimizer": optimizer,
            "transforms": featvis.transforms.standard(blur=(0.0, setting.blur) if setting.blur else 0),
        }
    result = featvis.render_vis(
        model,
        objective,
        featvis.param.image(32, batch=len(classes), decay=setting.decay),
        steps=steps,
        thresholds=thresholds,
        seed=seed,
        progress=False,
        **options,  # type: ignore[arg-type]
    )
    return result.snapshots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights-dir", default=None, help="folder holding the ResNet weights (default: torch hub)")
    parser.add_argument("--steps", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--seed", type=int, nargs="+", default=[0])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), help="setting names (default: all)")
    parser.add_argument("--list", action="store_true", help="print the setting names and stop")
    args = parser.parse_args()
    if args.list:
        print("\n".join(SETTINGS))
        return
    unknown = [name for name in args.settings if name not in SETTINGS]
    if unknown:
        parser.error(f"unknown setting {unknown[0]!r}; choose from {', '.join(SETTINGS)}")
    torch.set_grad_enabled(True)
    source = featvis.models.cifar10_resnet20(model_dir=args.weights_dir).eval()
    judge = featvis.models.cifar10_resnet32(model_dir=args.weights_dir).eval()
    classes = [c for _ in range(2) for c in range(10)]
    intended, index = torch.tensor(classes), torch.arange(len(classes))
    steps = sorted(args.steps)

    def measure(images: torch.Tensor) -> tuple[float, float]:
        clean = quality.class_probabilities(judge, images)[index, intended].mean()
        resized = quality.class_probabilities(judge, quality.down_up(images))[index, intended].mean()
        return (resized / clean).item(), quality.spectral_slope(images).median().item()

    header = " | ".join(f"resize2 {k}" for k in steps) + " | " + " | ".join(f"slope {k}" for k in steps)
    lines = [f"| setting | {header} |", "|---|" + "---:|" * (2 * len(steps))]
    for name in args.settings:
        setting = SETTINGS[name]
        per_step: dict[int, list[tuple[float, float]]] = {k: [] for k in steps}
        for seed in args.seed:
            runs = [(k, [k]) for k in steps] if setting.depends_on_steps else [(steps[-1], steps)]
            for total, thresholds in runs:
                for k, images in render(source, classes, name, total, thresholds, seed).items():
                    per_step[k].append(measure(images))
        resize = [float(np.mean([r for r, _ in per_step[k]])) for k in steps]
        slope = [float(np.mean([s for _, s in per_step[k]])) for k in steps]
        lines.append(f"| {name} | " + " | ".join(f"{v:.2f}" for v in resize + slope) + " |")
        print(f"{name}: done", flush=True)
    print()
    print("\n".join(lines))


if __name__ == "__main__":
    main()
