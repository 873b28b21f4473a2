"""Quality benchmark: are featvis's pictures good, measured, and side by side with Lucent?

For the ten CIFAR-10 class logits of a trained ResNet-20 (one image per class) and for hidden
channels of its ``layer2`` and ``layer3``, each method renders images once, with snapshots at
32, 64, 128 and 256 steps, and the table gives for every snapshot:

(A snapshot at step k is what a run of k steps returns: featvis's default learning rate depends on
the step only, not on the number of steps asked for, which tests/test_render.py checks bit for bit,
and Lucent's is constant.)

- transfer: the share of class images (two per class by default) that ResNet-32 (another
  network, never optimised against) classifies as the intended class, and its mean probability
  for that class;
- robustness: the share of that probability kept after perturbations the optimisation never saw
  (a 3-pixel shift, a 3x3 box blur, a 2x down-and-up resize, Gaussian noise of sd 0.03);
- slope: the median slope of the radially averaged log power spectrum of the class images; the
  same number for 32x32 patches of scikit-learn's two sample photographs is printed above the table;
- layer2 / layer3: the channel's mean activation reached by its picture, as a multiple of the largest
  mean activation of that channel over the natural patches (median over the channels);
- seconds: wall time to reach that step (class images and hidden channels together).

Run (needs scikit-learn; Lucent only for its rows)::

    pip install scikit-learn ipython && pip install --no-deps torch-lucent "kornia==0.4.1"
    python benchmarks/quality.py --weights-dir ../shared/models/cifar10

``--methods featvis`` runs featvis alone; ``--steps 8 16 --channels 2`` makes a quick smoke run;
``--param fourier maco`` runs featvis once with each basis (rows ``featvis`` and ``featvis-maco``);
``--seed 0 1 2`` runs every method once per seed and gives the means over the seeds (pooled: the
seconds too), which cuts the noise of a single start; the goals are judged on those means.

``--imagenet`` runs the ImageNet benchmark instead (benchmarks/imagenet.py: EfficientNet-Lite0 at 224 px
beside Lucent, faccent and DreamLens), with the options that follow; ``--imagenet --help`` lists them.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import featvis
from featvis import objectives
from featvis.models import CIFAR10_CLASSES, default_preprocess
from featvis.objectives import Objective

Snapshots = dict[int, Tensor]


# ---- measurements ---------------------------------------------------------------------------
def radial_power_spectrum(images: Tensor) -> tuple[Tensor, Tensor]:
    """Radially averaged power spectrum of (N, C, H, W) images, channels averaged.

    The mean is removed and a Hann window applied first, so that the image's borders do not add
    a cross of false power. Returns the integer radii 1 .. min(H, W) // 2 - 1 and (N, R) powers.
    """
    gray = images.double().mean(dim=1)
    gray = gray - gray.mean(dim=(-2, -1), keepdim=True)
    height, width = gray.shape[-2:]
    window = torch.outer(
        torch.hann_window(height, periodic=False, dtype=torch.float64),
        torch.hann_window(width, periodic=False, dtype=torch.float64),
    )
    power = torch.fft.fft2(gray * window).abs() ** 2
    fy = torch.fft.fftfreq(height, dtype=torch.float64)[:, None] * height
    fx = torch.fft.fftfreq(width, dtype=torch.float64)[None, :] * width
    radius = torch.sqrt(fy**2 + fx**2).round().long()
    radii = torch.arange(1, min(height, width) // 2)
    averaged = torch.stack([power[:, radius == r].mean(dim=-1) for r in radii.tolist()], dim=-1)
    return radii, averaged


def spectral_slope(images: Tensor) -> Tensor:
    """Per-image slope of log power against log spatial frequency (about -2 for natural photographs).

    Example:
        >>> noise = torch.randn(4, 1, 64, 64)  # white noise: a flat spectrum
        >>> bool(spectral_slope(noise).abs().max() < 0.3)
        True
    """
    radii, power = radial_power_spectrum(images)
    x = torch.log(radii.double())
    y = torch.log(power.clamp_min(1e-30))
    x_centred = x - x.mean()
    return ((y - y.mean(dim=-1, keepdim=True)) * x_centred).sum(dim=-1) / (x_centred**2).sum()


def shift(images: Tensor, pixels: int = 3) -> Tensor:
    """Move the content ``pixels`` right and down, repeating the border into the gap."""
    padded = F.pad(images, (pixels, 0, pixels, 0), mode="replicate")
    return padded[..., : images.shape[-2], : images.shape[-1]]


def box_blur(images: Tensor) -> Tensor:
    """3x3 mean filter per channel, borders replicated."""
    channels = images.shape[1]
    kernel = torch.full((channels, 1, 3, 3), 1 / 9, dtype=images.dtype)
    return F.conv2d(F.pad(images, (1, 1, 1, 1), mode="replicate"), kernel, groups=channels)


def down_up(images: Tensor) -> Tensor:
    """Halve the resolution (area average) and bring it back (bilinear)."""
    small = F.avg_pool2d(images, 2)
    return F.interpolate(small, size=images.shape[-2:], mode="bilinear", align_corners=False)


def noise(images: Tensor, sd: float = 0.03, seed: int = 0) -> Tensor:
    """Add Gaussian noise of standard deviation ``sd`` (a fixed draw) and clip to [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    return (images + sd * torch.randn(images.shape, generator=generator, dtype=images.dtype)).clamp(0, 1)


PERTURBATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "shift3": shift,
    "blur3": box_blur,
    "resize2": down_up,
    "noise": noise,
}


def natural_patches(size: int = 32, scales: Sequence[int] = (1, 2, 4), stride: int = 16) -> Tensor:
    """All ``size`` x ``size`` patches (every ``stride`` pixels) of scikit-learn's two sample photographs,
    at the full resolution and shrunk ``scales`` times; (N, 3, size, size) in [0, 1]."""
    from PIL import Image
    from sklearn.datasets import load_sample_images

    patches = []
    for photo in load_sample_images().images:
        for factor in scales:
            image = Image.fromarray(photo)
            image = image.resize((image.width // factor, image.height // factor), Image.LANCZOS)
            tensor = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)
            tiles = tensor.unfold(1, size, stride).unfold(2, size, stride)  # C, nY, nX, size, size
            patches.append(tiles.permute(1, 2, 0, 3, 4).reshape(-1, 3, size, size))
    return torch.cat(patches)


def class_probabilities(model: nn.Module, images: Tensor, batch_size: int = 256) -> Tensor:
    """Softmax probabilities of a model for [0, 1] images (its own normalisation applied)."""
    prepare = default_preprocess(model)
    with torch.no_grad():
        return torch.cat([model(prepare(chunk)).softmax(-1) for chunk in images.split(batch_size)])


def channel_means(model: nn.Module, layer: str, images: Tensor, batch_size: int = 256) -> Tensor:
    """(N, C) spatial means of ``layer``'s output for [0, 1] images."""
    prepare = default_preprocess(model)
    out: list[Tensor] = []
    handle = model.get_submodule(layer).register_forward_hook(lambda m, i, o: out.append(o.mean(dim=(-2, -1))))
    try:
        with torch.no_grad():
            for chunk in images.split(batch_size):
                model(prepare(chunk))
    finally:
        handle.remove()
    return torch.cat(out)


# ---- the methods compared -------------------------------------------------------------------
@dataclass
class Run:
    """Snapshots of one method's class images and hidden-channel images, with the time to each step."""

    classes: Snapshots
    hidden: Snapshots
    seconds: dict[int, float]


class StepClock:
    """Time at which each forward pass of ``model`` starts, to read off the time to reach step k."""

    def __init__(self, model: nn.Module) -> None:
        self.stamps: list[float] = []
        self.handle = model.register_forward_pre_hook(lambda module, args: self.stamps.append(time.perf_counter()))

    def times(self, start: float, end: float, steps: Sequence[int]) -> dict[int, float]:
        """Seconds from ``start`` to the end of each of ``steps`` (the last forward is the last step)."""
        self.handle.remove()
        last = max(steps)
        return {k: (end if k == last else self.stamps[len(self.stamps) - (last - k)]) - start for k in steps}


def run_featvis(
    model: nn.Module,
    classes: list[int],
    hidden_units: list[tuple[str, int]],
    steps: list[int],
    seed: int,
    basis: str = "fourier",
) -> Run:
    """featvis with its defaults: ``render_vis`` with nothing but the objective and the image size
    (and the parameterisation's basis, ``featvis.param.image(32, basis=...)``)."""
    seconds: dict[int, float] = {}
    results = []
    for objective, batch in (
        (Objective.sum(objectives.class_logit("linear", c, batch=i) for i, c in enumerate(classes)), len(classes)),
        (sum(objectives.channel(layer, c, batch=i) for i, (layer, c) in enumerate(hidden_units)), len(hidden_units)),
    ):
        torch.manual_seed(seed)  # the start image is drawn here, outside render_vis
        clock = StepClock(model)
        start = time.perf_counter()
        result = featvis.render_vis(
            model,
            objective,
            featvis.param.image(32, batch=batch, basis=basis),  # type: ignore[arg-type]
            steps=max(steps),
            thresholds=steps,
            seed=seed,
            progress=False,
        )
        for k, t in clock.times(start, time.perf_counter(), steps).items():
            seconds[k] = seconds.get(k, 0.0) + t
        results.append(result.snapshots)
    return Run(results[0], results[1], seconds)


LUCENT_SETTINGS: dict[str, dict[str, object]] = {
    # what a new user writes: Lucent's own defaults (its standard transforms, upsampling to 224)
    "lucent-default": {},
    # the best settings found for Lucent on this task with `--search-lucent` (docs/benchmarks.md):
    # transforms scaled down to a 32x32 image, no upsampling, learning rate 0.1
    "lucent-best": {"transforms": "small", "fixed_image_size": 32, "lr": 0.1},
}

# candidates tried by --search-lucent: Lucent's knobs a user can reach through its render_vis
LUCENT_CANDIDATES: dict[str, dict[str, object]] = {
    "fixed32": {"fixed_image_size": 32},
    "small+fixed32": {"transforms": "small", "fixed_image_size": 32},
    "small+fixed32+lr0.1": {"transforms": "small", "fixed_image_size": 32, "lr": 0.1},
    "small+fixed32+lr0.2": {"transforms": "small", "fixed_image_size": 32, "lr": 0.2},
    "small+up224": {"transforms": "small"},
    "none+fixed32": {"transforms": "none", "fixed_image_size": 32},
    "jitter+fixed32+lr0.1": {"transforms": "jitter", "fixed_image_size": 32, "lr": 0.1},
}


def _lucent_transforms(kind: object) -> list[Callable[[Tensor], Tensor]] | None:
    """Lucent transform lists: its standard ones (None), ones scaled down for 32x32, plain jitter, or none."""
    from lucent.optvis import transform as lucent_transform

    if kind in (None, "standard"):
        return None
    if kind == "small":
        return [
            lucent_transform.pad(2, mode="constant", constant_value=0.5),
            lucent_transform.jitter(3),
            lucent_transform.random_scale([0.95, 0.975, 1.0, 1.025, 1.05]),
            lucent_transform.random_rotate(list(range(-5, 6))),
            lucent_transform.jitter(2),
        ]
    if kind == "jitter":
        return [lucent_transform.pad(2, mode="constant", constant_value=0.5), lucent_transform.jitter(3)]
    if kind == "none":
        return []
    raise ValueError(f"unknown Lucent transform setting {kind!r}")


def run_lucent(
    model: nn.Module,
    classes: list[int],
    hidden_units: list[tuple[str, int]],
    steps: list[int],
    seed: int,
    **settings: object,
) -> Run:
    """Lucent's ``render_vis`` on the same objectives, with the given settings."""
    from lucent.optvis import objectives as lucent_objectives
    from lucent.optvis import param as lucent_param
    from lucent.optvis import render as lucent_render

    transforms = _lucent_transforms(settings.get("transforms"))
    lr = float(settings.get("lr", 0.05))  # type: ignore[arg-type]
    fixed = settings.get("fixed_image_size")
    seconds: dict[int, float] = {}
    snapshots: list[Snapshots] = []
    for objective, batch in (
        (sum(lucent_objectives.channel("linear", c, batch=i) for i, c in enumerate(classes)), len(classes)),
        (
            sum(lucent_objectives.channel(layer, c, batch=i) for i, (layer, c) in enumerate(hidden_units)),
            len(hidden_units),
        ),
    ):
        torch.manual_seed(seed)
        np.random.seed(seed)
        clock = StepClock(model)
        start = time.perf_counter()
        images = lucent_render.render_vis(
            model,
            objective,
            lambda batch=batch: lucent_param.image(32, batch=batch),
            optimizer=lambda params: torch.optim.Adam(params, lr=lr),
            transforms=transforms,
            thresholds=steps,
            show_image=False,
            progress=False,
            fixed_image_size=fixed,
        )
        for k, t in clock.times(start, time.perf_counter(), steps).items():
            seconds[k] = seconds.get(k, 0.0) + t
        snapshots.append({k: torch.from_numpy(a).permute(0, 3, 1, 2).float() for k, a in zip(steps, images)})
    return Run(snapshots[0], snapshots[1], seconds)


# ---- the table ------------------------------------------------------------------------------
def evaluate(
    run: Run,
    intended: list[int],
    source: nn.Module,
    judge: nn.Module,
    hidden_units: list[tuple[str, int]],
    natural_max: dict[tuple[str, int], float],
) -> dict[int, dict[str, float]]:
    """All columns of the table, for every snapshot step of ``run`` (``intended[i]``: image i's class)."""
    classes = torch.tensor(intended)
    index = torch.arange(len(intended))
    rows: dict[int, dict[str, float]] = {}
    for step, images in run.classes.items():
        probs = class_probabilities(judge, images)
        clean = probs[index, classes].mean()
        row = {"transfer": (probs.argmax(-1) == classes).float().mean().item(), "prob": clean.item()}
        for name, perturb in PERTURBATIONS.items():
            perturbed = class_probabilities(judge, perturb(images))[index, classes].mean()
            row[name] = (perturbed / clean.clamp_min(1e-12)).item()
        row["slope"] = spectral_slope(images).median().item()
        hidden = run.hidden[step]
        for layer in dict.fromkeys(layer for layer, _ in hidden_units):
            ratios = []
            for i, (name, unit) in enumerate(hidden_units):
                if name == layer:
                    reached = channel_means(source, layer, hidden[i : i + 1])[0, unit].item()
                    ratios.append(reached / natural_max[(layer, unit)])
            row[layer] = float(np.median(ratios))
        row["seconds"] = run.seconds[step]
        rows[step] = row
    return rows


COLUMNS = ["transfer", "prob", *PERTURBATIONS, "slope", "layer2", "layer3", "seconds"]


def pooled(tables: Sequence[dict[int, dict[str, float]]]) -> dict[int, dict[str, float]]:
    """The mean over seeds of each method's measurements, step by step and column by column."""
    return {
        step: {column: float(np.mean([table[step][column] for table in tables])) for column in tables[0][step]}
        for step in tables[0]
    }


def format_table(results: dict[str, dict[int, dict[str, float]]]) -> str:
    """A Markdown table: one row per method and step count."""
    lines = [
        "| method | steps | " + " | ".join(COLUMNS) + " |",
        "|---|---:|" + "---:|" * len(COLUMNS),
    ]
    for method, rows in results.items():
        for step, row in rows.items():
            cells = [f"{row[c]:.1f}" if c == "seconds" else f"{row[c]:.2f}" for c in COLUMNS if c in row]
            lines.append(f"| {method} | {step} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _capped(value: float, column: str) -> float:
    """Robustness is a share kept: a perturbation that raises the probability (above 1) keeps all of it."""
    return min(value, 1.0) if column in PERTURBATIONS else value


def goals(results: dict[str, dict[int, dict[str, float]]], natural_slope: float) -> list[str]:
    """The issue's goals for featvis's defaults, each with PASS or FAIL."""
    ours = results["featvis"]
    checks = []
    if 64 in ours:
        checks.append(("transfer >= 0.95 by 64 steps", ours[64]["transfer"] >= 0.95))
    last = ours[max(ours)]
    checks.append(
        ("robustness >= 0.95 for every perturbation at the last step", all(last[p] >= 0.95 for p in PERTURBATIONS))
    )
    checks.append((f"slope within 0.5 of natural ({natural_slope:.2f})", abs(last["slope"] - natural_slope) <= 0.5))
    for method in results:
        if method.startswith("lucent-best"):
            theirs = results[method]
            worse = [
                f"{c}@{k}"
                for k in ours
                if k in theirs
                for c in ("transfer", "prob", *PERTURBATIONS, "layer2", "layer3")
                if _capped(ours[k][c], c) < _capped(theirs[k][c], c) - 0.02
            ]
            worse += [
                f"slope@{k}"
                for k in ours
                if k in theirs and abs(ours[k]["slope"] - natural_slope) > abs(theirs[k]["slope"] - natural_slope) + 0.1
            ]
            checks.append((f"no worse than {method} (margin 0.02): {', '.join(worse) or 'nowhere worse'}", not worse))
    return [f"{'PASS' if ok else 'FAIL'}  {text}" for text, ok in checks]


def main() -> None:
    if "--imagenet" in sys.argv[1:]:  # benchmarks/imagenet.py, with the other options
        import imagenet

        imagenet.main([arg for arg in sys.argv[1:] if arg != "--imagenet"])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights-dir", default=None, help="folder holding the ResNet weights (default: torch hub)")
    parser.add_argument("--steps", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--per-class", type=int, default=2, help="class images per class")
    parser.add_argument("--channels", type=int, default=8, help="hidden channels per layer (the first N)")
    parser.add_argument("--methods", nargs="+", default=["featvis", *LUCENT_SETTINGS])
    parser.add_argument(
        "--search-lucent", action="store_true", help="compare Lucent settings (LUCENT_CANDIDATES) to pick lucent-best"
    )
    parser.add_argument(
        "--param",
        nargs="+",
        default=["fourier"],
        choices=["fourier", "maco", "laplacian", "lowres", "pixel"],
        help="featvis's basis (featvis.param.image(32, basis=...)); several give one featvis row set each, "
        "named featvis (fourier) and featvis-NAME",
    )
    parser.add_argument(
        "--seed", type=int, nargs="+", default=[0], help="one or more seeds; the table gives the means over them"
    )
    parser.add_argument(
        "--imagenet", action="store_true", help="run benchmarks/imagenet.py instead, with the other options"
    )
    parser.add_argument("--save", default=None, help="write each method's last class images to SAVE-METHOD.png")
    args = parser.parse_args()
    torch.set_grad_enabled(True)

    source = featvis.models.cifar10_resnet20(model_dir=args.weights_dir).eval()
    judge = featvis.models.cifar10_resnet32(model_dir=args.weights_dir).eval()
    intended = [c for _ in range(args.per_class) for c in range(10)]  # image i shows class i % 10
    hidden_units = [(layer, c) for layer in ("layer2", "layer3") for c in range(args.channels)]

    patches = natural_patches()
    natural_slope = spectral_slope(patches).median().item()
    natural_max = {}
    for layer in ("layer2", "layer3"):
        maxima = channel_means(source, layer, patches).max(dim=0).values
        natural_max.update({(layer, c): maxima[c].item() for c in range(args.channels)})
    print(f"natural patches: {len(patches)} of 32x32; median spectral slope {natural_slope:.2f}")
    seeds = ", ".join(str(seed) for seed in args.seed)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, seed(s) {seeds}")

    lucent_settings = {**LUCENT_SETTINGS, **{f"lucent-{name}": v for name, v in LUCENT_CANDIDATES.items()}}
    methods = [f"lucent-{name}" for name in LUCENT_CANDIDATES] if args.search_lucent else args.methods
    unknown = [m for m in methods if m != "featvis" and m not in lucent_settings]
    if unknown:
        parser.error(f"unknown method {unknown[0]!r}; choose from featvis, {', '.join(lucent_settings)}")
    # the first torch.optim optimizer of a process imports torch._dynamo (seconds): pay it before timing anyone
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    per_seed: dict[str, list[dict[int, dict[str, float]]]] = {}
    runs = [
        (name, basis)
        for method in methods
        for name, basis in (
            [("featvis" if b == "fourier" else f"featvis-{b}", b) for b in args.param]
            if method == "featvis"
            else [(method, "")]
        )
    ]
    for (method, basis), seed in ((run, seed) for run in runs for seed in args.seed):
        if basis:
            run = run_featvis(source, intended, hidden_units, sorted(args.steps), seed, basis)
        else:
            run = run_lucent(source, intended, hidden_units, sorted(args.steps), seed, **lucent_settings[method])
        per_seed.setdefault(method, []).append(evaluate(run, intended, source, judge, hidden_units, natural_max))
        if args.save and seed == args.seed[0]:
            last = run.classes[max(run.classes)]
            featvis.RenderResult(last, {}, torch.zeros(1), method, max(args.steps)).save_grid(
                f"{args.save}-{method}.png", nrow=10, labels=[CIFAR10_CLASSES[c] for c in intended], scale=3
            )
        print(f"{method}, seed {seed}: done in {run.seconds[max(run.seconds)]:.1f} s", flush=True)
    results = {method: pooled(tables) for method, tables in per_seed.items()}

    print()
    print(format_table(results))
    if "featvis" in results:
        print()
        print("\n".join(goals(results, natural_slope)))


if __name__ == "__main__":
    main()
