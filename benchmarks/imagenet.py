"""ImageNet quality benchmark: featvis's pictures of EfficientNet-Lite0 at 224 px, measured, beside its peers.

For the class logits (``_fc``) of EfficientNet-Lite0 for ten ImageNet classes (goldfish, flamingo, monarch,
zebra, giant panda, jack-o'-lantern, mushroom, strawberry, volcano, daisy; one image per class, 224 px) and
for hidden channels of an early, a middle and a late block (``_blocks.2``, ``_blocks.8``, ``_blocks.14``),
each method renders its images once, 256 steps with snapshots at 64 and 128 (a snapshot at step k is what a
k-step run returns: featvis's default learning rate depends on the step only, and the peers' are constant).
EfficientNet-Lite1 judges the class images (never optimised against: resized to its 240 px with an
antialiased bilinear resize, its own input scaling). Per snapshot the table gives:

- judge's mean prob: the judge's mean probability of the intended class;
- robustness: the share of that probability kept after perturbations the optimisation never saw: an 8-px
  shift right and down (a translate whose gap is filled by reflection, not ``torch.roll``), a 5x5 box blur
  (borders replicated), a 2x down-then-up resize (bilinear, antialiased down) and Gaussian noise (sd 0.03,
  a fixed draw, then clipped to [0, 1]);
- colour statistics: mean saturation (HSV's S), contrast (the standard deviation of the luminance
  0.299 R + 0.587 G + 0.114 B of each image, mean over the images) and the clipped fraction (the share of
  pixel values <= 1/255 or >= 254/255);
- s/image: wall seconds to reach that step, divided by the number of class images.

The "photographs" row gives the same figures for natural photographs (scikit-image's ``astronaut``,
``chelsea``, ``coffee``, ``rocket`` and the left ``stereo_motorcycle`` view, and scikit-learn's two sample
images; shorter side resized to 224, centre crop), each with the judge's top class as "intended".

The hidden-channels table gives the channel's mean activation reached by its picture as a multiple of the
best mean activation of that channel over natural crops (``--crops`` random square crops per photograph,
a side of 30-100 % of the shorter one, resized to 224; seeded), median over the channels (``--channels``
per block, the first ones of the block whose natural best is positive: block outputs are linear, and a
channel that natural pictures never drive above zero has no meaningful multiple).

Methods (``--methods``; the default is every one that is installed, a missing one is skipped with a note):

- ``featvis``: ``featvis.render_vis`` with the defaults a user gets: the model, the objective (the sum of
  ``class_logit("_fc", c, batch=i)``; of ``channel(layer, n, batch=i)`` for hidden channels) and
  ``featvis.param.image(224, batch=N)``, nothing else. ``--featvis-config NAME ...`` runs other settings
  from ``FEATVIS_CONFIGS`` (rows ``featvis-NAME``) for experiments.
- ``lucent`` (torch-lucent 0.1.8): ``lucent.optvis.render.render_vis`` with its defaults (its standard
  transforms, Adam 0.05) and ``param.image(224, batch=N)``. Lucent's own ``preprocess`` would apply
  ImageNet's mean and std, which is wrong for this network (it scales inputs as ``(255 x - 127) / 128``), so
  it gets ``preprocess=False`` and a copy of the model whose forward pre-hook applies the model's own
  normalisation. Layer names are Lucent's (``_blocks_2``: the module path joined with ``_``).
- ``faccent`` (1.0.3): ``faccent.render.render_vis`` with its defaults (``fourier`` parameterisation,
  ``standard_box_transforms``: box crops of 5-99 % plus noise, 16 transforms a step, Adam 0.05), except
  ``img_size=(224, 224)`` (its default is 512) and ``model_input_size=(224, 224)``; the model's own input
  scaling is passed as faccent's ``model_input_range`` (the range [0, 1] maps to: it is an affine map, the
  same for every channel). faccent pins ``kornia==0.4.1`` and a ``lucent==0.1.0`` that clash with
  torch-lucent, so it runs in its own virtual environment, made on first use under
  ``benchmarks/.peers/faccent-venv`` (it sees this environment's packages, torch included, through a
  ``.pth`` file), in a subprocess (``python benchmarks/peers.py --faccent-worker JOB``). The PyPI
  ``lucent==0.1.0`` is not the Lucent library (its ``lucent/__init__.py`` imports ``light.client``) and
  faccent never imports ``lucent``, so it is left out.
- ``dreamlens`` (0.1.1): ``FeatureVisualizer(model, preprocess=<the model's own normalisation>)`` and
  ``maximize_classes(classes, layer="_fc", config=RenderConfig(width=224, height=224, steps=256))`` (its
  defaults otherwise: lr 9e-3, scale 0.5-1.2, rotation 15 degrees, gradient clipping 1.0); hidden channels
  with ``maximize_channels(layer, channels, config)``, one call per block (it takes one layer per batch).
  Its default size is 256; its default ``layer=-1`` (the last leaf module) is ``_fc`` here too, named
  all the same so that the call does not hang on the order of the model's modules.

Run (``--seed 0 1`` by default: every method once per seed, means pooled, seconds too)::

    pip install scikit-learn decorator && pip install --no-deps torch-lucent "kornia==0.4.1" dreamlens
    python benchmarks/imagenet.py                 # or: python benchmarks/quality.py --imagenet
    python benchmarks/imagenet.py --methods featvis --steps 4 8 --classes 2 --channels 1 --size 64  # smoke

``--out DIR`` writes each method's class (and hidden-channel) images as labelled PNG grids per step count,
and ``results.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import quality  # noqa: E402  (benchmarks/quality.py: the CIFAR benchmark's measurements)
from peers import (  # noqa: E402  (benchmarks/peers.py: Lucent, DreamLens and faccent, and the shared helpers)
    METHODS,
    Snapshots,
    available,
    describe_calls,
    run_dreamlens,
    run_faccent,
    run_lucent,
    timed,
    unit_batches,
    version_of,
)

import featvis  # noqa: E402
from featvis import objectives  # noqa: E402
from featvis.models import default_input_size, default_preprocess, imagenet_class, imagenet_classes  # noqa: E402
from featvis.objectives import Objective  # noqa: E402

Table = dict[int, dict[str, float]]

CLASS_NAMES = [
    "goldfish", "flamingo", "monarch", "zebra", "giant panda",
    "jack-o'-lantern", "mushroom", "strawberry", "volcano", "daisy",
]  # fmt: skip
BLOCKS = {"early": "_blocks.2", "middle": "_blocks.8", "late": "_blocks.14"}
SKIMAGE_PHOTOS = ["astronaut", "chelsea", "coffee", "rocket", "stereo_motorcycle"]


# ---- perturbations and colour statistics ----------------------------------------------------------
def shift(images: Tensor, pixels: int = 8) -> Tensor:
    """Move the content ``pixels`` right and down; the gap is filled by reflection (not wrapped round)."""
    padded = F.pad(images, (pixels, 0, pixels, 0), mode="reflect")
    return padded[..., : images.shape[-2], : images.shape[-1]]


def box_blur(images: Tensor, size: int = 5) -> Tensor:
    """``size`` x ``size`` mean filter per channel, borders replicated."""
    channels, half = images.shape[1], size // 2
    kernel = torch.full((channels, 1, size, size), 1 / size**2, dtype=images.dtype, device=images.device)
    return F.conv2d(F.pad(images, (half, half, half, half), mode="replicate"), kernel, groups=channels)


def down_up(images: Tensor) -> Tensor:
    """Halve the resolution (bilinear, antialiased) and bring it back (bilinear)."""
    small = F.interpolate(images, scale_factor=0.5, mode="bilinear", antialias=True, align_corners=False)
    return F.interpolate(small, size=images.shape[-2:], mode="bilinear", align_corners=False)


def noise(images: Tensor, sd: float = 0.03, seed: int = 0) -> Tensor:
    """Gaussian noise of standard deviation ``sd`` (a fixed draw, on the CPU), clipped to [0, 1]."""
    return quality.noise(images.cpu(), sd, seed).to(images.device)


PERTURBATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "shift8": shift,
    "blur5": box_blur,
    "resize2": down_up,
    "noise": noise,
}


def saturation(images: Tensor) -> float:
    """Mean HSV saturation, (max - min) / max over the channels (0 where max is 0), of (N, 3, H, W) images."""
    high, low = images.amax(dim=1), images.amin(dim=1)
    return torch.where(high > 0, (high - low) / high.clamp_min(1e-12), torch.zeros_like(high)).mean().item()


def luminance(images: Tensor) -> Tensor:
    """Rec. 601 luma (PIL's "L") of (N, 3, H, W) images: (N, H, W)."""
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=images.dtype, device=images.device)
    return torch.einsum("c,nchw->nhw", weights, images)


def contrast(images: Tensor) -> float:
    """The standard deviation of each image's luminance (population sd), mean over the images."""
    return luminance(images).flatten(1).std(dim=1, unbiased=False).mean().item()


def clipped(images: Tensor) -> float:
    """The share of pixel values (every channel) at most 1/255 or at least 254/255."""
    return ((images <= 1 / 255) | (images >= 254 / 255)).double().mean().item()


COLOUR: dict[str, Callable[[Tensor], float]] = {"saturation": saturation, "contrast": contrast, "clipped": clipped}


# ---- photographs --------------------------------------------------------------------------------------
def photographs() -> dict[str, np.ndarray]:
    """The colour photographs of scikit-image and scikit-learn (those that load here), as HxWx3 uint8."""
    import skimage.data

    photos: dict[str, np.ndarray] = {}
    for name in SKIMAGE_PHOTOS:
        try:
            image = getattr(skimage.data, name)()
        except Exception as error:  # a file that scikit-image would have to download
            print(f"note: skimage.data.{name} not loaded ({type(error).__name__}); left out")
            continue
        photos[name] = image[0] if isinstance(image, tuple) else image
    try:
        from sklearn.datasets import load_sample_images
    except ImportError:
        print("note: scikit-learn is not installed: its two sample photographs are left out")
        return photos
    samples = load_sample_images()
    for path, image in zip(samples.filenames, samples.images):
        photos[Path(path).stem] = image
    return photos


def to_tensor(photo: np.ndarray) -> Tensor:
    """HxWx3 uint8 to a (3, H, W) float tensor in [0, 1]."""
    return torch.from_numpy(np.array(photo[..., :3])).permute(2, 0, 1).float() / 255


def centre_crop(photo: np.ndarray, size: int) -> Tensor:
    """The shorter side resized to ``size`` (bilinear, antialiased), then the central square: (3, size, size)."""
    image = to_tensor(photo)[None]
    height, width = image.shape[-2:]
    scale = size / min(height, width)
    new = (max(size, round(height * scale)), max(size, round(width * scale)))
    image = F.interpolate(image, size=new, mode="bilinear", antialias=True, align_corners=False)
    top, left = (new[0] - size) // 2, (new[1] - size) // 2
    return image[0, :, top : top + size, left : left + size].clamp(0, 1)


def random_crops(photos: Sequence[np.ndarray], size: int, per_photo: int, seed: int = 0) -> Tensor:
    """``per_photo`` random square crops of each photo, a side of 30-100 % of its shorter side, resized to
    ``size`` (bilinear, antialiased): (N, 3, size, size), the same for the same seed."""
    generator = torch.Generator().manual_seed(seed)
    crops = []
    for photo in photos:
        image = to_tensor(photo)[None]
        height, width = image.shape[-2:]
        for _ in range(per_photo):
            side = int(min(height, width) * (0.3 + 0.7 * torch.rand(1, generator=generator).item()))
            top = int(torch.randint(0, height - side + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - side + 1, (1,), generator=generator))
            crop = image[..., top : top + side, left : left + side]
            crops.append(F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False))
    return torch.cat(crops).clamp(0, 1)


# ---- the judge and the table ---------------------------------------------------------------------------
def judge_probabilities(judge: nn.Module, images: Tensor, batch_size: int = 32) -> Tensor:
    """The judge's softmax for [0, 1] images, resized to its input size (antialiased bilinear) first."""
    size = default_input_size(judge)
    size = (size, size) if isinstance(size, int) else tuple(size)
    device = next(judge.parameters()).device
    images = images.to(device)
    if tuple(images.shape[-2:]) != size:
        images = F.interpolate(images, size=size, mode="bilinear", antialias=True, align_corners=False)
    return quality.class_probabilities(judge, images.clamp(0, 1), batch_size).cpu()


def image_row(images: Tensor, intended: Sequence[int], judge: nn.Module) -> dict[str, float]:
    """Judge's mean probability, the share of it kept after each perturbation, and the colour statistics."""
    classes = torch.tensor(list(intended))
    index = torch.arange(len(classes))
    clean = judge_probabilities(judge, images)[index, classes].mean()
    row = {"prob": clean.item()}
    for name, perturb in PERTURBATIONS.items():
        perturbed = judge_probabilities(judge, perturb(images))[index, classes].mean()
        row[name] = (perturbed / clean.clamp_min(1e-12)).item()
    row.update({name: measure(images) for name, measure in COLOUR.items()})
    return row


def layer_means(model: nn.Module, layers: Sequence[str], images: Tensor, batch_size: int = 32) -> dict[str, Tensor]:
    """(N, C) spatial means of each of ``layers``' outputs for [0, 1] images, in one pass per batch (the
    model's own normalisation applied; :func:`quality.channel_means` for several layers at once)."""
    prepare = default_preprocess(model).to(next(model.parameters()).device)
    out: dict[str, list[Tensor]] = {layer: [] for layer in layers}
    handles = [
        model.get_submodule(layer).register_forward_hook(
            lambda m, i, o, layer=layer: out[layer].append(o.mean(dim=(-2, -1)).cpu())
        )
        for layer in layers
    ]
    try:
        with torch.no_grad():
            for chunk in images.split(batch_size):
                model(prepare(chunk.to(next(model.parameters()).device)))
    finally:
        for handle in handles:
            handle.remove()
    return {layer: torch.cat(means) for layer, means in out.items()}


def hidden_row(
    images: Tensor,
    hidden_units: Sequence[tuple[str, int]],
    source: nn.Module,
    natural_max: dict[tuple[str, int], float],
) -> dict[str, float]:
    """Per block, the median over its channels of (mean activation reached) / (best natural mean activation);
    image i shows ``hidden_units[i]``."""
    means = layer_means(source, list(dict.fromkeys(layer for layer, _ in hidden_units)), images)
    row = {}
    for block, layer in BLOCKS.items():
        ratios = [
            means[name][i, unit].item() / natural_max[(name, unit)]
            for i, (name, unit) in enumerate(hidden_units)
            if name == layer
        ]
        if ratios:
            row[block] = float(np.median(ratios))
    return row


def evaluate(
    run: quality.Run,
    intended: Sequence[int],
    source: nn.Module,
    judge: nn.Module,
    hidden_units: Sequence[tuple[str, int]],
    natural_max: dict[tuple[str, int], float],
) -> Table:
    """All columns of both tables, for every snapshot step of ``run`` (``intended[i]``: image i's class)."""
    rows: Table = {}
    for step, images in sorted(run.classes.items()):
        row = image_row(images, intended, judge)
        row.update(hidden_row(run.hidden[step], hidden_units, source, natural_max))
        row["s_per_image"] = run.seconds[step] / len(intended)
        rows[step] = row
    return rows


CLASS_COLUMNS = {
    "prob": "judge's mean prob",
    "shift8": "8px shift",
    "blur5": "5x5 blur",
    "resize2": "2x down-up",
    "noise": "noise",
    "saturation": "saturation",
    "contrast": "contrast (sd)",
    "clipped": "clipped",
    "s_per_image": "s/image",
}


def _cell(row: dict[str, float], column: str) -> str:
    if column not in row:
        return "—"
    return f"{row[column]:.2f}" if column == "s_per_image" else f"{row[column]:.3f}"


def format_tables(results: dict[str, Table], photos: dict[str, float]) -> str:
    """One Markdown table of the class images per step count (with the photographs' row), then the hidden one."""
    out = []
    steps = sorted({step for rows in results.values() for step in rows})
    for step in steps:
        out += [f"**{step} steps**", ""]
        out.append("| method | " + " | ".join(CLASS_COLUMNS.values()) + " |")
        out.append("|---|" + "---:|" * len(CLASS_COLUMNS))
        for method, rows in results.items():
            if step in rows:
                out.append(f"| {method} | " + " | ".join(_cell(rows[step], c) for c in CLASS_COLUMNS) + " |")
        out.append("| photographs | " + " | ".join(_cell(photos, c) for c in CLASS_COLUMNS) + " |")
        out.append("")
    out += ["**hidden channels** (multiple of the best natural mean activation, median over channels)", ""]
    out.append("| method | steps | " + " | ".join(f"{block} ({layer})" for block, layer in BLOCKS.items()) + " |")
    out.append("|---|---:|" + "---:|" * len(BLOCKS))
    for method, rows in results.items():
        for step, row in sorted(rows.items()):
            out.append(f"| {method} | {step} | " + " | ".join(_cell(row, b) for b in BLOCKS) + " |")
    return "\n".join(out)


def _kept(value: float) -> float:
    """A perturbation that raises the probability keeps all of it (a share kept is at most 1)."""
    return min(value, 1.0)


def goals(results: dict[str, Table], photos: dict[str, float], ours: str = "featvis") -> list[str]:
    """The issue's goals for one featvis row set, each with PASS, FAIL or SKIP (judged on the pooled means,
    at the last step unless a step is named)."""
    mine = results[ours]
    last = max(mine)
    row = mine[last]
    peers = {m: r[last] for m, r in results.items() if not m.startswith("featvis") and last in r}
    lines: list[tuple[str, bool | None]] = []
    if 128 in mine:
        lines.append((f"judge's mean prob >= 0.95 by 128 steps ({mine[128]['prob']:.3f})", mine[128]["prob"] >= 0.95))
    else:
        lines.append(("judge's mean prob >= 0.95 by 128 steps (128 not among --steps)", None))
    for name in PERTURBATIONS:
        best_name, best = max(((m, _kept(r[name])) for m, r in peers.items()), key=lambda x: x[1], default=("", 0))
        bar = min(_kept(photos[name]), best) if peers else _kept(photos[name])
        peer_text = f", best peer {best_name} {best:.3f}" if peers else ", no peer run"
        lines.append(
            (
                f"{name} keeps {_kept(row[name]):.3f} >= min(photographs {_kept(photos[name]):.3f}{peer_text})",
                _kept(row[name]) >= bar,
            )
        )
    for name in ("saturation", "contrast"):
        ratio = row[name] / photos[name]
        lines.append((f"{name} {row[name]:.3f} within 15% of photographs' {photos[name]:.3f}", abs(ratio - 1) <= 0.15))
    lines.append(
        (f"clipped {row['clipped']:.4f} <= photographs' {photos['clipped']:.4f}", row["clipped"] <= photos["clipped"])
    )
    if "lucent" in peers:
        theirs = peers["lucent"]
        text = ", ".join(f"{b} {row[b]:.2f} vs {theirs[b]:.2f}" for b in BLOCKS if b in row)
        lines.append(
            (
                f"hidden channels no lower than lucent's on every block ({text})",
                all(row[b] >= theirs[b] for b in BLOCKS if b in row),
            )
        )
    else:
        lines.append(("hidden channels no lower than lucent's on every block (lucent not run)", None))
    for peer, factor in (("lucent", 1.5), ("dreamlens", 1.0), ("faccent", 5.0)):
        wanted = f"{factor:g}x faster than {peer}" if factor != 1.0 else f"faster than {peer}"
        if peer in peers:
            mine_s, theirs_s = row["s_per_image"], peers[peer]["s_per_image"]
            ok = mine_s * factor <= theirs_s if factor != 1.0 else mine_s < theirs_s
            lines.append((f"per image {wanted} ({mine_s:.2f} s vs {theirs_s:.2f} s)", ok))
        else:
            lines.append((f"per image {wanted} ({peer} not run)", None))
    verdict = {True: "PASS", False: "FAIL", None: "SKIP"}
    return [f"{verdict[ok]}  {ours}: {text}" for text, ok in lines]


# ---- the methods ----------------------------------------------------------------------------------------
def _default_config(model: nn.Module, size: int, batch: int) -> dict[str, Any]:
    """What a user writes: the image parameterisation at the size, nothing else."""
    return {"param": featvis.param.image(size, batch=batch)}


#: featvis settings by name: ``(model, size, batch) -> render_vis keyword arguments``; ``--featvis-config``
#: picks them (rows ``featvis`` for ``default``, ``featvis-NAME`` otherwise). Add experiments here.
FEATVIS_CONFIGS: dict[str, Callable[[nn.Module, int, int], dict[str, Any]]] = {
    "default": _default_config,
    # the defaults of small images at every size (featvis's defaults before the large-image ones)
    "small-defaults": lambda model, size, batch: {
        "param": featvis.param.image(size, batch=batch, decay=featvis.param.DEFAULT_DECAY),
        "transforms": featvis.transforms.standard(),
    },
    # the large-image blur and decay without the crops
    "no-crops": lambda model, size, batch: {
        "param": featvis.param.image(size, batch=batch),
        "transforms": featvis.transforms.standard(blur=(0.0, 2.0)),
    },
    # crops down to a third of the image
    "crops-third": lambda model, size, batch: {
        "param": featvis.param.image(size, batch=batch),
        "transforms": featvis.transforms.crops(size=(0.35, 1.0)),
    },
    # crops that widen from a quarter of the image to all of it by step 128 (tried as the default)
    "widening": lambda model, size, batch: {
        "param": featvis.param.image(size, batch=batch),
        "transforms": featvis.transforms.crops(size=(0.25, 1.0), final_size=(1.0, 1.0)),
    },
}


def run_featvis(
    model: nn.Module,
    classes: list[int],
    hidden_units: list[tuple[str, int]],
    steps: list[int],
    seed: int,
    size: int,
    config: str = "default",
) -> quality.Run:
    """featvis: ``render_vis(model, objective, **FEATVIS_CONFIGS[config](model, size, batch), steps=...,
    thresholds=..., seed=..., progress=False)``."""
    parts: list[Snapshots] = []
    seconds: dict[int, float] = {}
    for kind, units in unit_batches(classes, hidden_units):
        if kind == "classes":
            objective = Objective.sum(objectives.class_logit(layer, c, batch=i) for i, (layer, c) in enumerate(units))
        else:
            objective = Objective.sum(objectives.channel(layer, c, batch=i) for i, (layer, c) in enumerate(units))
        torch.manual_seed(seed)  # the start image is drawn here, outside render_vis
        kwargs = FEATVIS_CONFIGS[config](model, size, len(units))
        result, times = timed(
            model,
            steps,
            partial(
                featvis.render_vis,
                model,
                objective,
                **kwargs,
                steps=max(steps),
                thresholds=steps,
                seed=seed,
                progress=False,
            ),
        )
        parts.append({k: v.detach().float().cpu() for k, v in result.snapshots.items()})
        if kind == "classes":
            seconds = times
    return quality.Run(parts[0], parts[1], seconds)


def choose_hidden_units(
    source: nn.Module, crops: Tensor, per_block: int
) -> tuple[list[tuple[str, int]], dict[tuple[str, int], float]]:
    """The first ``per_block`` channels of each block whose best mean activation over ``crops`` is positive,
    and those bests."""
    units: list[tuple[str, int]] = []
    natural_max: dict[tuple[str, int], float] = {}
    means = layer_means(source, list(BLOCKS.values()), crops)
    for layer in BLOCKS.values():
        maxima = means[layer].max(dim=0).values
        chosen = [c for c in range(len(maxima)) if maxima[c] > 0][:per_block]
        units += [(layer, c) for c in chosen]
        natural_max.update({(layer, c): maxima[c].item() for c in chosen})
    return units, natural_max


def save_grids(folder: Path, method: str, run: quality.Run, labels: list[str], hidden_labels: list[str]) -> None:
    """Each step's class images (and hidden-channel images) as a labelled PNG grid."""
    folder.mkdir(parents=True, exist_ok=True)
    for step in sorted(run.classes):
        for kind, images, names in (
            ("classes", run.classes[step], labels),
            ("hidden", run.hidden[step], hidden_labels),
        ):
            result = featvis.RenderResult(images.clamp(0, 1), {}, torch.zeros(1), method, step)
            result.save_grid(folder / f"{method}-{kind}-{step}.png", nrow=len(names), labels=names, scale=1)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights-dir", default=None, help="folder holding the EfficientNet-Lite weights files")
    parser.add_argument("--steps", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--classes", type=int, default=10, help="the first N of the ten classes")
    parser.add_argument("--channels", type=int, default=4, help="hidden channels per block")
    parser.add_argument("--size", type=int, default=224, help="image size (224; smaller for smoke runs)")
    parser.add_argument("--crops", type=int, default=32, help="natural crops per photograph for the channels' best")
    parser.add_argument("--methods", nargs="+", default=None, choices=METHODS, help="default: all installed")
    parser.add_argument(
        "--featvis-config", nargs="+", default=["default"], choices=sorted(FEATVIS_CONFIGS), help="featvis settings"
    )
    parser.add_argument("--seed", type=int, nargs="+", default=[0, 1], help="seeds; the tables give the means")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default=None, help="folder for PNG grids and results.json")
    parser.add_argument(
        "--faccent-chunk", type=int, default=None, help="faccent's images per run (its memory: 16 crops a step)"
    )
    args = parser.parse_args(argv)
    torch.set_grad_enabled(True)
    device = torch.device(args.device)
    steps = sorted(set(args.steps))

    source = featvis.models.efficientnet_lite0(model_dir=args.weights_dir).eval().to(device)
    judge = featvis.models.efficientnet_lite1(model_dir=args.weights_dir).eval().to(device)
    names = CLASS_NAMES[: args.classes]
    classes = [imagenet_class(name) for name in names]

    photos = photographs()
    photo_images = torch.stack([centre_crop(p, args.size) for p in photos.values()])
    photo_intended = judge_probabilities(judge, photo_images).argmax(dim=-1).tolist()
    photo_row = image_row(photo_images, photo_intended, judge)
    crops = random_crops(list(photos.values()), args.size, args.crops, seed=0)
    hidden_units, natural_max = choose_hidden_units(source, crops, args.channels)
    hidden_labels = [f"{layer}:{c}" for layer, c in hidden_units]
    all_names = imagenet_classes()
    print(f"photographs ({len(photos)}; the judge's top class): " + ", ".join(
        f"{n} -> {all_names[c]}" for n, c in zip(photos, photo_intended)
    ))  # fmt: skip
    print(f"natural crops: {len(crops)} of {args.size} px; hidden channels: {', '.join(hidden_labels)}")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}, size {args.size}, "
        f"seed(s) {', '.join(map(str, args.seed))}"
    )

    methods = args.methods or METHODS
    runnable = []
    for method in methods:
        why = None if method == "featvis" else available(method)
        if why:
            print(f"note: {method} skipped: {why}")
        else:
            runnable.append(method)
    calls = describe_calls(args.size, len(classes), steps, source)
    versions = {m: version_of(m) for m in runnable}
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # pay torch._dynamo's import before timing anyone

    rows = [
        (method if config == "default" or method != "featvis" else f"featvis-{config}", method, config)
        for method in runnable
        for config in (args.featvis_config if method == "featvis" else [""])
    ]
    per_seed: dict[str, list[Table]] = {}
    failed: set[str] = set()
    for (row, method, config), seed in ((r, s) for r in rows for s in args.seed):
        if row in failed:
            continue
        try:
            if method == "featvis":
                run = run_featvis(source, classes, hidden_units, steps, seed, args.size, config)
            elif method == "lucent":
                run = run_lucent(source, classes, hidden_units, steps, seed, args.size)
            elif method == "dreamlens":
                run = run_dreamlens(source, classes, hidden_units, steps, seed, args.size, device)
            else:
                run, versions["faccent"] = run_faccent(
                    source, classes, hidden_units, steps, seed, args.size, device, chunk=args.faccent_chunk
                )
        except Exception as error:  # a peer that breaks leaves the others to finish; featvis's own errors stop
            if method == "featvis":
                raise
            print(f"note: {method} failed (seed {seed}) and is left out: {type(error).__name__}: {error}", flush=True)
            failed.add(row)
            per_seed.pop(row, None)
            continue
        per_seed.setdefault(row, []).append(evaluate(run, classes, source, judge, hidden_units, natural_max))
        if args.out and seed == args.seed[0]:
            save_grids(Path(args.out), row, run, names, hidden_labels)
        print(f"{row}, seed {seed}: {run.seconds[steps[-1]]:.1f} s for the class images", flush=True)
    results = {row: quality.pooled(tables) for row, tables in per_seed.items()}

    print()
    for method in runnable:
        if method not in failed:
            print(f"{method} {versions[method]}: {calls[method]}")
    print()
    print(format_tables(results, photo_row))
    lines = [line for row in results if row.startswith("featvis") for line in goals(results, photo_row, row)]
    print()
    print("\n".join(lines))
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        summary = {
            "args": vars(args),
            "torch": torch.__version__,
            "versions": versions,
            "calls": {m: calls[m] for m in runnable},
            "classes": dict(zip(names, classes)),
            "hidden_units": hidden_labels,
            "photographs": {"names": list(photos), "intended": photo_intended, "row": photo_row},
            "results": results,
            "per_seed": per_seed,
            "goals": lines,
        }
        (Path(args.out) / "results.json").write_text(json.dumps(summary, indent=1))
        print(f"\nwrote {args.out}/results.json and the PNG grids")


if __name__ == "__main__":
    main()
