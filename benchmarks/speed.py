"""Speed benchmark: what one featvis step costs, against the floor and against Lucent.

The *floor* of a step is the network's own work: one forward pass of a leaf image batch up to the
deepest targeted layer, then the backward pass to the image only (weights frozen), written here
without featvis. featvis's step adds the parameterisation, the random transforms, the
normalisation, the objective and the Adam update. featvis is timed in its steady state: its first 16
steps also redirect the ReLUs' gradients (for units that start dead), which costs more per step and is
timed on its own by ``--ablations``. Lucent (torch-lucent 0.1.8) runs its own
``render_vis`` on the same units, batch, image size and steps, with its standard transforms and
``fixed_image_size`` set to the image size (so that both networks see the same image; by default
Lucent would upsample 32x32 images to 224x224), on its own copy of the model, since Lucent leaves
its hooks on every module.

Every method runs ``--steps`` steps, ``--repeats`` times, in a new random order each round, so that a
slow spell of this shared machine hits all of them alike; a step's time is the median of the
intervals between consecutive forward passes (the first ``WARMUP`` of each run dropped), in CPU time
of this process on a CPU and wall time on a GPU. A ratio to the floor is taken within each round and
the median over the rounds is reported, so that a slow spell, which stretches a whole round, cancels
out. The floor is timed twice: the ratio of the two ("floor A/A") shows how far the machine's noise
alone moves a ratio.

Workloads (CPU): ResNet-20 (trained, ``../shared/models/cifar10``) class logits, 10 images, 32x32;
ResNet-20 ``layer2``, 16 channels, 32x32; torchvision GoogLeNet ``inception4a``, 8 channels, 224x224
(random weights). On a CUDA device also: GoogLeNet, all 512 channels of ``inception4c``, 128x128,
256 steps, total seconds (``render_channels`` against Lucent in chunks of the same size).

Run::

    pip install --no-deps torch-lucent "kornia==0.4.1"   # only for the Lucent column
    python benchmarks/speed.py --weights-dir ../shared/models/cifar10

``--options`` adds rows for featvis's opt-in speed options (channels-last, compile, autocast),
``--ablations`` rows for featvis with the redirected ReLUs of its first steps, and without its blur,
its transforms, its normalisation;
``--workloads resnet20-classes --steps 8 --repeats 1`` makes a quick smoke run.
"""

from __future__ import annotations

import argparse
import copy
import functools
import platform
import random
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torchvision
from torch import Tensor, nn

import featvis
from featvis import objectives

#: intervals dropped at the start of each timed run (first-call costs, allocator warm-up)
WARMUP = 3


@dataclass
class Workload:
    """One rendering task: units ``units[i]`` of ``layer``, one per image, at ``size`` x ``size``."""

    name: str
    make_model: Callable[[], nn.Module]
    layer: str
    units: list[int]
    size: int
    model: nn.Module | None = field(default=None, repr=False)

    def get_model(self, device: torch.device) -> nn.Module:
        if self.model is None:
            self.model = self.make_model().eval().to(device)
        return self.model


def resnet20(weights_dir: str | None) -> Callable[[], nn.Module]:
    return lambda: featvis.models.cifar10_resnet20(model_dir=weights_dir)


def googlenet() -> nn.Module:
    torch.manual_seed(0)
    with warnings.catch_warnings():  # torchvision's GoogLeNet still calls torch.jit, which warns
        warnings.simplefilter("ignore", FutureWarning)
        return torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True)


def workloads(weights_dir: str | None) -> dict[str, Workload]:
    return {
        "resnet20-classes": Workload("resnet20-classes", resnet20(weights_dir), "linear", list(range(10)), 32),
        "resnet20-layer2": Workload("resnet20-layer2", resnet20(weights_dir), "layer2", list(range(16)), 32),
        "googlenet-inception4a": Workload("googlenet-inception4a", googlenet, "inception4a", list(range(8)), 224),
    }


# ---- timing ---------------------------------------------------------------------------------
#: the clock steps are timed with: CPU time of this process on a CPU (the machine is shared, and other
#: processes' load stretches wall time but not the work done), wall time on a GPU; set in main()
clock: Callable[[], float] = time.perf_counter


class StepClock:
    """Stamps the start of every forward pass of ``model``; a step is the interval between two."""

    def __init__(self, model: nn.Module) -> None:
        self.stamps: list[float] = []
        self.handle = model.register_forward_pre_hook(lambda module, args: self.stamps.append(clock()))

    def stop(self) -> list[float]:
        """The step intervals, without the first WARMUP; the last one ends now."""
        self.stamps.append(clock())
        self.handle.remove()
        return [b - a for a, b in zip(self.stamps, self.stamps[1:])][WARMUP:]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Stop(Exception):
    pass


def floor_steps(model: nn.Module, workload: Workload, steps: int, device: torch.device) -> list[float]:
    """The floor: forward to the target layer (cut there), backward to a leaf image; frozen weights.

    On a CPU it runs with denormals flushed to zero, as featvis's steps do: that is arithmetic, not
    overhead, and the ratio should show featvis's overhead only.
    """
    flush = device.type == "cpu" and torch.set_flush_denormal(True)
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    captured: dict[str, Tensor] = {}

    def cut(module: nn.Module, args: Any, output: Tensor) -> None:
        captured["out"] = output
        raise _Stop

    target = model.get_submodule(workload.layer)
    handle = target.register_forward_hook(cut)
    batch = len(workload.units)
    image = torch.rand(batch, 3, workload.size, workload.size, device=device, requires_grad=True)
    rows = torch.arange(batch, device=device)
    units = torch.tensor(workload.units, device=device)
    times = []
    try:
        for _ in range(steps):
            synchronize(device)
            start = clock()
            image.grad = None
            try:
                model(image)
            except _Stop:
                pass
            out = captured.pop("out")
            out[rows, units].sum().backward()
            synchronize(device)
            times.append(clock() - start)
    finally:
        handle.remove()
        for p, flag in flags:
            p.requires_grad_(flag)
        if flush:
            torch.set_flush_denormal(False)
    return times[WARMUP:]


def featvis_objective(workload: Workload) -> objectives.Objective:
    return objectives.Objective.sum(
        objectives.channel(workload.layer, unit, batch=i) for i, unit in enumerate(workload.units)
    )


def featvis_steps(
    model: nn.Module, workload: Workload, steps: int, device: torch.device, **options: Any
) -> list[float]:
    """featvis's ``render_vis`` with its defaults (plus ``options``), timed step by step.

    Its steady-state step, that is without the redirected ReLUs of its first steps, unless ``options``
    asks for them.
    """
    options.setdefault("redirected_relu", 0)
    param = featvis.param.image(workload.size, batch=len(workload.units))
    clock = StepClock(model)
    featvis.render_vis(model, featvis_objective(workload), param, steps=steps, progress=False, **options)
    synchronize(device)
    return clock.stop()


def lucent_steps(model: nn.Module, workload: Workload, steps: int, device: torch.device) -> list[float]:
    """Lucent's ``render_vis`` with its standard transforms, at the workload's image size."""
    from lucent.optvis import objectives as lucent_objectives
    from lucent.optvis import param as lucent_param
    from lucent.optvis import render as lucent_render

    objective = sum(lucent_objectives.channel(workload.layer, u, batch=i) for i, u in enumerate(workload.units))
    clock = StepClock(model)
    lucent_render.render_vis(
        model,
        objective,
        lambda: lucent_param.image(workload.size, batch=len(workload.units)),
        thresholds=(steps,),
        show_image=False,
        progress=False,
        fixed_image_size=workload.size,
    )
    synchronize(device)
    return clock.stop()


def lucent_available() -> bool:
    try:
        import lucent.optvis.render  # noqa: F401
    except ImportError:
        return False
    return True


# ---- featvis's opt-in options -----------------------------------------------------------------
def option_sets(device: torch.device) -> dict[str, dict[str, Any]]:
    """The render_vis options to time beside the defaults."""
    sets: dict[str, dict[str, Any]] = {
        "channels-last": {"channels_last": True},
        "compile": {"compile": True},
    }
    sets["autocast-bf16"] = {"autocast": torch.bfloat16}
    if device.type == "cuda":
        sets["autocast-fp16"] = {"autocast": torch.float16}
    return sets


def ablation_sets() -> dict[str, dict[str, Any]]:
    """featvis with a part more or without one, to see what each part of a step costs."""
    return {
        "redirected ReLU (first steps)": {"redirected_relu": 1_000_000},
        "without blur": {"transforms": featvis.transforms.standard(blur=0)},
        "without transforms": {"transforms": []},
        "without transforms or normalisation": {"transforms": [], "preprocess": False},
    }


# ---- the full-layer workload (CUDA) ------------------------------------------------------------
def full_layer_seconds(device: torch.device, steps: int, with_lucent: bool) -> dict[str, float]:
    """GoogLeNet inception4c, all 512 channels at 128x128: total seconds for featvis and Lucent.

    featvis picks its own batch (``auto_batch_size``); Lucent renders in chunks of the same size.
    """
    model = googlenet().eval().to(device)
    batch = featvis.auto_batch_size(model, "inception4c", 128)
    times: dict[str, float] = {"batch": float(batch)}
    synchronize(device)
    start = time.perf_counter()
    featvis.render_channels(model, "inception4c", batch_size=batch, size=128, steps=steps, progress=False)
    synchronize(device)
    times["featvis"] = time.perf_counter() - start
    if with_lucent:
        from lucent.optvis import objectives as lucent_objectives
        from lucent.optvis import param as lucent_param
        from lucent.optvis import render as lucent_render

        theirs = copy.deepcopy(model)
        start = time.perf_counter()
        for first in range(0, 512, batch):
            units = list(range(first, min(first + batch, 512)))
            count = len(units)
            objective = sum(lucent_objectives.channel("inception4c", u, batch=i) for i, u in enumerate(units))
            lucent_render.render_vis(
                theirs,
                objective,
                lambda count=count: lucent_param.image(128, batch=count),
                thresholds=(steps,),
                show_image=False,
                progress=False,
                fixed_image_size=128,
            )
        synchronize(device)
        times["lucent"] = time.perf_counter() - start
    return times


# ---- the table ------------------------------------------------------------------------------
def median_ms(intervals: list[float]) -> float:
    return 1e3 * statistics.median(intervals)


def paired_ratio(rounds: list[dict[str, float]], numerator: str, denominator: str) -> float:
    """The median over rounds of one method's step time over another's in the same round.

    A slow spell of a shared machine stretches a whole round; the ratio within a round cancels it.

    Example:
        >>> paired_ratio([{"a": 2.0, "b": 1.0}, {"a": 4.0, "b": 2.0}, {"a": 9.0, "b": 1.0}], "a", "b")
        2.0
    """
    return statistics.median(r[numerator] / r[denominator] for r in rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights-dir", default=None, help="folder holding the ResNet-20 weights (default: torch hub)")
    parser.add_argument("--workloads", nargs="*", default=None, help="workloads to run (default: all; none: no names)")
    parser.add_argument("--steps", type=int, default=12, help="steps per timed run")
    parser.add_argument("--repeats", type=int, default=8, help="timed runs per method, in a random order each round")
    parser.add_argument("--options", action="store_true", help="also time featvis's opt-in speed options")
    parser.add_argument("--ablations", action="store_true", help="also time featvis without some of its parts")
    parser.add_argument("--no-lucent", action="store_true", help="skip Lucent")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--full-layer-steps", type=int, default=256, help="steps of the full-layer workload")
    parser.add_argument(
        "--full-layer", action=argparse.BooleanOptionalAction, default=None, help="run it (default: on CUDA only)"
    )
    parser.add_argument(
        "--clock", choices=["cpu", "wall"], default=None, help="what a step's time is (default: cpu on a CPU)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch's CPU threads (default: torch's choice)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    global clock
    cpu_clock = (args.clock or ("cpu" if device.type == "cpu" else "wall")) == "cpu"
    clock = time.process_time if cpu_clock else time.perf_counter
    torch.set_grad_enabled(True)
    # the first torch.optim optimizer of a process imports torch._dynamo (seconds): pay it before timing
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])

    available = workloads(args.weights_dir)
    chosen = list(available) if args.workloads is None else args.workloads
    unknown = [name for name in chosen if name not in available]
    if unknown:
        parser.error(f"unknown workload {unknown[0]!r}; choose from {', '.join(available)}")
    with_lucent = not args.no_lucent and lucent_available()
    machine = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    if device.type == "cuda":
        machine = torch.cuda.get_device_name(device)
    print(
        f"torch {torch.__version__}, device {device} ({machine}); {args.steps} steps x {args.repeats} runs; "
        f"{'CPU' if clock is time.process_time else 'wall'} time per step"
    )
    if not with_lucent:
        print("Lucent not installed (or --no-lucent): its column is empty")

    options = option_sets(device) if args.options else {}
    if args.ablations:
        options.update(ablation_sets())
    lines = [
        "| workload | method | ms/step | floor ms/step | x floor | floor A/A | Lucent ms/step | speed-up over Lucent |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    verdicts = []
    for name in chosen:
        workload = available[name]
        model = workload.get_model(device)
        theirs = copy.deepcopy(model) if with_lucent else None
        task = (workload, args.steps, device)
        timers: dict[str, Callable[[], list[float]]] = {
            "floor": functools.partial(floor_steps, model, *task),
            "floor again": functools.partial(floor_steps, model, *task),
            "featvis": functools.partial(featvis_steps, model, *task),
        }
        for option, settings in options.items():
            timers[option] = functools.partial(featvis_steps, model, *task, **settings)
        if theirs is not None:
            timers["lucent"] = functools.partial(lucent_steps, theirs, *task)
        runs: dict[str, list[float]] = {method: [] for method in timers}
        rounds: list[dict[str, float]] = []  # each method's median step in each round
        order = random.Random(0)
        for _ in range(args.repeats):  # short runs in a new random order each round
            methods = list(timers)
            order.shuffle(methods)
            this_round = {}
            for method in methods:
                steps = timers[method]()
                runs[method] += steps
                this_round[method] = median_ms(steps)
            rounds.append(this_round)
        floor = median_ms(runs["floor"])
        lucent = median_ms(runs["lucent"]) if "lucent" in runs else None
        noise = paired_ratio(rounds, "floor again", "floor")
        for method in ["featvis", *options]:
            ours = median_ms(runs[method])
            lucent_cells = f"{lucent:.1f} | {paired_ratio(rounds, 'lucent', method):.2f}x" if lucent else "- | -"
            label = (
                "featvis"
                if method == "featvis"
                else f"featvis, {method}"
                if method.startswith(("with ", "without"))
                else (f"featvis + {method}")
            )
            ratio = paired_ratio(rounds, method, "floor")
            lines.append(
                f"| {name} | {label} | {ours:.1f} | {floor:.1f} | {ratio:.2f} | {noise:.2f} | {lucent_cells} |"
            )
        limit = 1.2 if device.type == "cuda" else 1.10
        ratio = paired_ratio(rounds, "featvis", "floor")
        verdicts.append((f"{name}: step <= {limit:.2f}x the floor ({ratio:.2f}x)", ratio <= limit))
        if lucent and device.type == "cpu":
            speedup = paired_ratio(rounds, "lucent", "featvis")
            verdicts.append((f"{name}: >= 1.3x faster than Lucent ({speedup:.2f}x)", speedup >= 1.3))
        print(f"{name}: done", flush=True)

    print()
    print("\n".join(lines))
    print()
    if args.full_layer if args.full_layer is not None else device.type == "cuda":
        times = full_layer_seconds(device, args.full_layer_steps, with_lucent)
        speedup = times["lucent"] / times["featvis"] if "lucent" in times else None
        shown = f"{speedup:.1f}x" if speedup else "-"
        print(
            f"GoogLeNet inception4c, 512 channels, 128x128, {args.full_layer_steps} steps, batch "
            f"{times['batch']:.0f}: featvis {times['featvis']:.1f} s, "
            f"Lucent {times.get('lucent', float('nan')):.1f} s, speed-up {shown}"
        )
        if speedup and device.type == "cuda":
            verdicts.append((f"full layer: >= 5x faster than Lucent ({speedup:.1f}x)", speedup >= 5))
    else:
        print("GoogLeNet inception4c full-layer workload: not measured (no CUDA device)")
    print()
    print("\n".join(f"{'PASS' if ok else 'FAIL'}  {text}" for text, ok in verdicts))


if __name__ == "__main__":
    main()
