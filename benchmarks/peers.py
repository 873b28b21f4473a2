"""The peer libraries in the ImageNet benchmark (``benchmarks/imagenet.py``): Lucent, DreamLens and faccent,
each called as its documentation tells a user, with the model's own input scaling, timed and snapshotted the
same way as featvis; and the helpers every method's run shares (seeding, timing, the batches of units).

faccent pins packages that clash with torch-lucent, so it runs in its own virtual environment, made on first
use under ``benchmarks/.peers/faccent-venv``, in a subprocess: ``python benchmarks/peers.py --faccent-worker
JOB`` (see ``imagenet.py``'s docstring for every call).
"""

from __future__ import annotations

import argparse
import copy
import importlib.metadata
import importlib.util
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import quality  # noqa: E402  (benchmarks/quality.py: Run and StepClock)

from featvis.models import default_preprocess  # noqa: E402

Snapshots = dict[int, Tensor]

PEERS = HERE / ".peers"
FACCENT_VENV = PEERS / "faccent-venv"
FACCENT_PACKAGES = ["faccent==1.0.3", "kornia==0.4.1", "einops", "decorator"]
# faccent imports matplotlib at the top of faccent.utils: installed without its dependencies, those that
# this environment lacks named here, so that pip never touches this environment's packages
MATPLOTLIB_PACKAGES = {  # distribution: module
    "matplotlib": "matplotlib", "contourpy": "contourpy", "cycler": "cycler",
    "fonttools": "fontTools", "kiwisolver": "kiwisolver", "pyparsing": "pyparsing",
}  # fmt: skip
#: every method of the benchmark, featvis first
METHODS = ["featvis", "lucent", "faccent", "dreamlens"]


# ---- what every method's run shares -----------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def timed(model: nn.Module, steps: list[int], run: Callable[[], Any], offset: int = 0) -> tuple[Any, dict[int, float]]:
    """Call ``run`` with a :class:`quality.StepClock` on ``model``: its result and the seconds to each step."""
    clock = quality.StepClock(model)
    start = time.perf_counter()
    result = run()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    end = time.perf_counter()
    if offset:  # a loop whose last forward pass takes no step (faccent): step k ends when forward k + 1 starts
        clock.handle.remove()
        return result, {k: (end if k == max(steps) else clock.stamps[k]) - start for k in steps}
    return result, clock.times(start, end, steps)


def unit_batches(classes: list[int], hidden_units: list[tuple[str, int]]) -> list[tuple[str, list[tuple[str, int]]]]:
    return [("classes", [("_fc", c) for c in classes]), ("hidden", list(hidden_units))]


def normalising_copy(model: nn.Module, device: torch.device | str) -> nn.Module:
    """A copy of ``model`` on ``device`` that applies its own normalisation to [0, 1] input (a forward pre-hook)."""
    twin = copy.deepcopy(model).to(device).eval()
    prepare = default_preprocess(model).to(device)
    twin.register_forward_pre_hook(lambda module, args: (prepare(args[0]), *args[1:]))
    return twin


def run_lucent(
    model: nn.Module, classes: list[int], hidden_units: list[tuple[str, int]], steps: list[int], seed: int, size: int
) -> quality.Run:
    """Lucent's ``render_vis`` with its defaults, ``param.image(size, batch=N)`` and ``preprocess=False`` (the
    model's own normalisation by a pre-hook on a copy: Lucent's would apply ImageNet's mean and std)."""
    from lucent.optvis import objectives as lucent_objectives
    from lucent.optvis import param as lucent_param
    from lucent.optvis import render as lucent_render
    from lucent.optvis.param import spatial as lucent_spatial

    parts: list[Snapshots] = []
    seconds: dict[int, float] = {}
    for kind, units in unit_batches(classes, hidden_units):
        twin = normalising_copy(model, lucent_spatial.device)  # Lucent puts its images on its own device
        objective = sum(
            lucent_objectives.channel(layer.replace(".", "_"), c, batch=i) for i, (layer, c) in enumerate(units)
        )
        seed_everything(seed)
        images, times = timed(
            twin,
            steps,
            partial(
                lucent_render.render_vis,
                twin,
                objective,
                partial(lucent_param.image, size, batch=len(units)),
                thresholds=steps,
                preprocess=False,
                show_image=False,
                progress=False,
            ),
        )
        parts.append({k: torch.from_numpy(a).permute(0, 3, 1, 2).float() for k, a in zip(steps, images)})
        if kind == "classes":
            seconds = times
    return quality.Run(parts[0], parts[1], seconds)


class CanvasSnapshots:
    """A forward pre-hook that keeps the canvas's images before forward k + 1 (= after k steps) for k in ``steps``."""

    def __init__(self, canvas: Any, steps: Sequence[int]) -> None:
        self.canvas, self.steps, self.forwards = canvas, set(steps), 0
        self.snapshots: Snapshots = {}

    def __call__(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        if self.forwards in self.steps:
            self.snapshots[self.forwards] = self.canvas.as_nchw()
        self.forwards += 1


def run_dreamlens(
    model: nn.Module,
    classes: list[int],
    hidden_units: list[tuple[str, int]],
    steps: list[int],
    seed: int,
    size: int,
    device: torch.device | str = "cpu",
) -> quality.Run:
    """DreamLens's ``FeatureVisualizer.maximize_classes`` / ``maximize_channels`` with its defaults at ``size``.

    Snapshots: the canvas DreamLens would make (``FourierCanvas(height, width, device, standard_deviation,
    batch_size)``, as in ``_maximize_target_batch``) is passed in, in a subclass that DreamLens's defensive
    ``deepcopy`` leaves as it is, and read by a forward pre-hook before forward k + 1 (= after k steps).
    """
    from dreamlens import FeatureVisualizer, FourierCanvas, RenderConfig

    class TrackedCanvas(FourierCanvas):
        def __deepcopy__(self, memo: dict[int, Any]) -> TrackedCanvas:
            return self

    config = RenderConfig(width=size, height=size, steps=max(steps))
    twin = copy.deepcopy(model).to(device).eval()
    visualizer = FeatureVisualizer(twin, quiet=True, device=device, preprocess=default_preprocess(model).to(device))
    jobs: list[tuple[str, list[int], Callable[..., Any]]] = [
        (
            "classes",
            classes,
            lambda ids, canvas: visualizer.maximize_classes(ids, layer="_fc", config=config, image_parameter=canvas),
        )
    ]
    for layer in dict.fromkeys(name for name, _ in hidden_units):
        channels = [c for name, c in hidden_units if name == layer]
        if channels:
            jobs.append(
                (
                    layer,
                    channels,
                    lambda ids, canvas, layer=layer: visualizer.maximize_channels(
                        layer, ids, config=config, image_parameter=canvas
                    ),
                )
            )
    hidden: dict[int, list[Tensor]] = {k: [] for k in steps}
    classes_out: Snapshots = {}
    seconds: dict[int, float] = {}
    for kind, ids, call in jobs:
        seed_everything(seed)
        canvas = TrackedCanvas(
            height=size, width=size, device=device, standard_deviation=config.noise_std, batch_size=len(ids)
        )
        snap = CanvasSnapshots(canvas, steps)
        handle = twin.register_forward_pre_hook(snap)
        try:
            result, times = timed(twin, steps, partial(call, ids, canvas))
        finally:
            handle.remove()
        snapshots = {**snap.snapshots, max(steps): result.image.as_nchw()}
        if kind == "classes":
            classes_out, seconds = snapshots, times
        else:
            for k in steps:
                hidden[k].append(snapshots[k])
    return quality.Run(classes_out, {k: torch.cat(v) for k, v in hidden.items()}, seconds)


# ---- faccent, in its own environment ------------------------------------------------------------------
def faccent_python() -> Path:
    return FACCENT_VENV / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_faccent_venv() -> Path:
    """Make ``benchmarks/.peers/faccent-venv`` on first use: a venv that sees this one's packages through a
    ``.pth`` file (torch is not installed twice), with faccent and what it imports that this one lacks."""
    python = faccent_python()
    if python.exists():
        check = subprocess.run(
            [python, "-c", "import faccent.render, faccent.param, faccent.objectives"], capture_output=True
        )
        if check.returncode == 0:
            return python
    print(f"making faccent's environment in {FACCENT_VENV} (once)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(FACCENT_VENV)], check=True)
    site_packages = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    ours = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    # "import site; site.addsitedir(...)" rather than a bare path: our .pth files (featvis, editable) are read too
    lines = "".join(f"import site; site.addsitedir({p!r})\n" for p in ours)
    (Path(site_packages) / "featvis-benchmark-parent.pth").write_text(lines)
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps"]
    subprocess.run([*pip, *FACCENT_PACKAGES], check=True)
    check = "import importlib.util as u, sys; print(*(n for n in sys.argv[1:] if u.find_spec(n) is None))"
    absent = subprocess.run([python, "-c", check, *MATPLOTLIB_PACKAGES.values()], capture_output=True, text=True)
    missing = [package for package, module in MATPLOTLIB_PACKAGES.items() if module in absent.stdout.split()]
    if missing:
        subprocess.run([*pip, *missing], check=True)
    return python


def run_faccent(
    model: nn.Module,
    classes: list[int],
    hidden_units: list[tuple[str, int]],
    steps: list[int],
    seed: int,
    size: int,
    device: torch.device | str = "cpu",
    chunk: int | None = None,
) -> tuple[quality.Run, str]:
    """faccent in its own environment: the job (the model pickled whole) and the images go through .pt files.

    ``chunk``: optimise this many images at a time (faccent's 16 crops a step make its batch 16 times the
    images: ten 224-px images need over 16 GB), the seconds added up; ``None``: all at once."""
    python = ensure_faccent_venv()
    with tempfile.TemporaryDirectory(prefix="featvis-faccent-") as folder:
        job = Path(folder) / "job.pt"
        job_data = {
            "model": model.cpu(),
            "classes": classes,
            "hidden_units": hidden_units,
            "steps": steps,
            "seed": seed,
            "size": size,
            "device": str(device),
            "threads": torch.get_num_threads(),
            "normalization": getattr(model, "featvis_normalization", None),
            "chunk": chunk,
        }
        torch.save(job_data, job)
        model.to(device)
        done = subprocess.run(
            [python, str(Path(__file__).resolve()), "--faccent-worker", str(job)], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"faccent's worker failed (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        out = torch.load(job.with_suffix(".out.pt"), weights_only=False)
    return quality.Run(out["classes"], out["hidden"], out["seconds"]), out["version"]


def faccent_worker(job_path: str) -> None:
    """The faccent side (run by faccent's environment's python): render, time, and write the snapshots."""
    import faccent.objectives
    import faccent.param
    import faccent.render

    job = torch.load(job_path, weights_only=False)
    torch.set_num_threads(job["threads"])
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])  # pay torch._dynamo's import before timing
    device, size, steps, seed = torch.device(job["device"]), job["size"], job["steps"], job["seed"]
    model = job["model"].to(device).eval()
    input_range = faccent_input_range(job["normalization"])
    parts: list[Snapshots] = []
    seconds: dict[int, float] = {}
    chunk = job.get("chunk") or None  # images optimised together: faccent's 16 crops a step make 16x the batch
    for kind, units in unit_batches(job["classes"], job["hidden_units"]):
        pieces: list[Snapshots] = []
        times_total = dict.fromkeys(steps, 0.0)
        for start in range(0, len(units), chunk or len(units)):
            piece = units[start : start + (chunk or len(units))]
            objective = faccent.objectives.Objective.sum(
                [faccent.objectives.channel(layer.replace(".", "_"), c, batch=i) for i, (layer, c) in enumerate(piece)]
            )
            seed_everything(seed + start)
            parameterizer = faccent.param.fourier(img_size=(size, size), batch_size=len(piece), device=device)
            (images, *_), times = timed(
                model,
                steps,
                partial(
                    faccent.render.render_vis,
                    model,
                    objective,
                    parameterizer=parameterizer,
                    out_thresholds=steps,
                    inline_thresholds=[],
                    model_input_size=(size, size),
                    model_input_range=input_range,
                    img_size=(size, size),
                    progress=False,
                ),
                offset=1,
            )
            pieces.append({k: image.float().cpu() for k, image in zip(steps, images)})
            times_total = {k: times_total[k] + times[k] for k in steps}
        parts.append({k: torch.cat([piece[k] for piece in pieces]) for k in steps})
        if kind == "classes":
            seconds = times_total
    version = importlib.metadata.version("faccent")
    torch.save(
        {"classes": parts[0], "hidden": parts[1], "seconds": seconds, "version": version},
        Path(job_path).with_suffix(".out.pt"),
    )


# ---- choosing and describing the methods ------------------------------------------------------------------
def available(method: str) -> str | None:
    """Why ``method`` cannot run here, or None when it can."""
    if method == "lucent" and importlib.util.find_spec("lucent") is None:
        return 'torch-lucent is not installed (pip install --no-deps torch-lucent "kornia==0.4.1" decorator)'
    if method == "dreamlens" and importlib.util.find_spec("dreamlens") is None:
        return "dreamlens is not installed (pip install --no-deps dreamlens)"
    if method == "faccent":
        try:
            ensure_faccent_venv()
        except (OSError, subprocess.CalledProcessError) as error:
            return f"faccent's environment could not be made ({error})"
    return None


def faccent_input_range(normalization: Any) -> tuple[float, float]:
    """Where [0, 1] goes under the model's own (mean, std) scaling, as faccent's ``model_input_range`` (one
    affine map for every channel)."""
    mean, std = normalization or ((0.0,) * 3, (1.0,) * 3)
    if len(set(mean)) != 1 or len(set(std)) != 1:
        raise ValueError("faccent's model_input_range is one affine map for every channel; this model's is not")
    return ((0 - mean[0]) / std[0], (1 - mean[0]) / std[0])


def describe_calls(size: int, n_classes: int, steps: list[int], model: nn.Module) -> dict[str, str]:
    """The exact call of each method, as printed and saved."""
    last, thresholds = max(steps), list(steps)
    low, high = faccent_input_range(getattr(model, "featvis_normalization", None))
    input_range = f"({low:.6g}, {high:.6g})"
    return {
        "featvis": (
            f"featvis.render_vis(model, Objective.sum(class_logit('_fc', c, batch=i) ...), "
            f"featvis.param.image({size}, batch={n_classes}), steps={last}, thresholds={thresholds}, seed=s, "
            "progress=False)"
        ),
        "lucent": (
            f"lucent.optvis.render.render_vis(model_copy_with_own_normalisation_prehook, "
            f"sum(objectives.channel('_fc', c, batch=i) ...), lambda: param.image({size}, batch={n_classes}), "
            f"thresholds={thresholds}, preprocess=False, show_image=False, progress=False)"
        ),
        "faccent": (
            f"faccent.render.render_vis(model, Objective.sum([objectives.channel('_fc', c, batch=i) ...]), "
            f"parameterizer=faccent.param.fourier(img_size=({size}, {size}), batch_size={n_classes}, device=d), "
            f"out_thresholds={thresholds}, inline_thresholds=[], model_input_size=({size}, {size}), "
            f"model_input_range={input_range}, img_size=({size}, {size}), progress=False)"
        ),
        "dreamlens": (
            f"dreamlens.FeatureVisualizer(model_copy, quiet=True, device=d, preprocess=<own normalisation>)"
            f".maximize_classes(classes, layer='_fc', config=RenderConfig(width={size}, height={size}, steps={last}))"
        ),
    }


def version_of(method: str) -> str:
    names = {"featvis": "featvis", "lucent": "torch-lucent", "dreamlens": "dreamlens", "faccent": "faccent"}
    try:
        return importlib.metadata.version(names[method])
    except importlib.metadata.PackageNotFoundError:
        return "in its own environment" if method == "faccent" else "?"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="faccent's side of the ImageNet benchmark (run by its own python)")
    parser.add_argument("--faccent-worker", metavar="JOB", required=True)
    faccent_worker(parser.parse_args().faccent_worker)
