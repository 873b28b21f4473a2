"""Whole-model benchmark: units per second with 1 and 2 processes, each process's peak memory, and what all of
ResNet-50 and GoogLeNet would cost at 512 steps.

**Scaling.** ``featvis render-model`` renders the same layers of the trained CIFAR-10 ResNet-20
(``../shared/models/cifar10``) under ``torchrun --nproc_per_node=1`` and ``=2``, alternately for
``--rounds`` rounds (so that a slow spell of this shared machine hits both alike), each into a new
folder. Units per second are the job's units over the command's wall time (process start-up
included), and the ratio of 2 to 1 processes is taken within each round; the ideal is 2. Each
process's peak memory comes from its log (its resident set on a CPU).

**Projection.** For every convolution of torchvision's ResNet-50 and GoogLeNet (random weights:
the cost does not depend on them), ``torch.utils.flop_counter`` counts the floating-point operations
of one featvis step on one 224x224 image: the forward pass up to that layer and the backward pass to
the image, which is what the step costs beyond featvis's small overhead. A whole model's work is the
sum over its layers of units x steps x that count. It is turned into time with two rates: this CPU's
(measured here: the ResNet-20 job's counted operations over its measured time, one process), and an
H200's, *assumed* (no GPU was available when this was written): 25 TFLOP/s, what training ResNet-50
in float32 (TF32 convolutions, cuDNN's default) reaches on an H100-class GPU, about 2,000 images a
second at some 12 GFLOP each, 5% of the 494 TFLOP/s dense TF32 peak. 8 GPUs divide the time by 8
(each unit is independent; the scaling measured above says how near to that processes come).

Run::

    python benchmarks/whole_model.py --weights-dir ../shared/models/cifar10

``--steps 16 --rounds 1`` makes a quick smoke run; ``--json FILE`` keeps the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

#: the layers of ResNet-20 the scaling runs render: 32 + 64 units
LAYERS = ["layer2.2.conv2", "layer3.2.conv2"]
#: the rate a featvis step is assumed to reach on an H200 (float32, TF32 convolutions): ResNet-50
#: training's, about 2,000 images/s x 12.3 GFLOP
H200_ASSUMED = 25e12


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_job(processes: int, folder: Path, weights_dir: str, steps: int, batch_size: int) -> dict:
    """One render-model job under torchrun: its wall time, units and each process's peak memory."""
    command = [
        sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}",
        "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{free_port()}",
        "-m", "featvis", "render-model", "cifar10-resnet20", "--weights-dir", weights_dir, "-o", str(folder),
        "--layers", *LAYERS, "--steps", str(steps), "--batch-size", str(batch_size), "--no-progress",
    ]  # fmt: skip
    began = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"render-model failed:\n{done.stderr[-3000:]}")
    logs = [p.read_text() for p in sorted((folder / "logs").glob("rank-*.log"))]
    units = sum(int(n) for log in logs for n in re.findall(r": (\d+) written in", log))
    rendering = [sum(float(s) for s in re.findall(r"written in ([\d.]+) s", log)) for log in logs]
    peaks = [float(re.search(r"peak memory (\d+) MB", log)[1]) for log in logs]
    return {"processes": processes, "seconds": seconds, "units": units, "units_per_second": units / seconds,
            "rendering_seconds": rendering, "peak_mb": peaks}  # fmt: skip


def step_flops(model: nn.Module, layer: str, size: int = 224) -> float:
    """Floating-point operations of one featvis step on one image for a unit of ``layer``: the forward pass up
    to the layer (cut there, as featvis does) and the backward pass to the image."""
    import featvis
    from featvis.hooks import ActivationCapture

    image = torch.rand(1, 3, size, size, requires_grad=True)
    with featvis.state.rendering_state(model, warn=False), FlopCounterMode(display=False) as counter:
        with ActivationCapture(model, [layer]) as capture:
            output = capture.run(image)[layer]
        output[:, 0].mean().backward()
    return float(counter.get_total_flops())


def model_work(model: nn.Module, steps: int) -> tuple[int, float]:
    """Units (output channels of every convolution) and operations to render them all at ``steps`` steps."""
    units, work = 0, 0.0
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            units += module.out_channels
            work += module.out_channels * steps * step_flops(model, name)
    return units, work


def duration(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} h" if hours >= 1 else f"{seconds / 60:.0f} min"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights-dir", default="../shared/models/cifar10")
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)

    scratch = Path(tempfile.mkdtemp(prefix="featvis-whole-model-"))
    runs: list[dict] = []
    try:
        for round_number in range(args.rounds):
            order = (1, 2) if round_number % 2 == 0 else (2, 1)
            for processes in order:
                folder = scratch / f"round{round_number}-p{processes}"
                runs.append(run_job(processes, folder, args.weights_dir, args.steps, args.batch_size))
                print(json.dumps(runs[-1]), flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    one = [r for r in runs if r["processes"] == 1]
    two = [r for r in runs if r["processes"] == 2]
    ratios = [b["units_per_second"] / a["units_per_second"] for a, b in zip(one, two)]

    from torchvision.models import googlenet, resnet50

    import featvis

    resnet20 = featvis.models.cifar10_resnet20(model_dir=args.weights_dir).eval()
    counted = sum(
        resnet20.get_submodule(layer).out_channels * args.steps * step_flops(resnet20, layer, 32) for layer in LAYERS
    )
    cpu_rate = counted / statistics.median(sum(r["rendering_seconds"]) for r in one)
    projections = {}
    for name, make in (("resnet50", resnet50), ("googlenet", lambda: googlenet(init_weights=False, aux_logits=False))):
        units, work = model_work(make().eval(), 512)
        projections[name] = {
            "units": units,
            "tflop": work / 1e12,
            "cpu_one_core": duration(work / cpu_rate),
            "h200": duration(work / H200_ASSUMED),
            "h200x8": duration(work / H200_ASSUMED / 8),
        }
    summary = {
        "units_per_second_1": statistics.median(r["units_per_second"] for r in one),
        "units_per_second_2": statistics.median(r["units_per_second"] for r in two),
        "ratio_2_to_1": statistics.median(ratios),
        "ratios": ratios,
        "peak_mb_per_process_1": max(p for r in one for p in r["peak_mb"]),
        "peak_mb_per_process_2": max(p for r in two for p in r["peak_mb"]),
        "cpu_gflops_one_core": cpu_rate / 1e9,
        "projections": projections,
    }
    print(json.dumps(summary, indent=1))
    print("\n| processes | units/s (median) | peak memory per process |\n| --- | --- | --- |")
    print(f"| 1 | {summary['units_per_second_1']:.2f} | {summary['peak_mb_per_process_1']:.0f} MB |")
    print(f"| 2 | {summary['units_per_second_2']:.2f} | {summary['peak_mb_per_process_2']:.0f} MB |")
    print(f"\n2 processes / 1: {summary['ratio_2_to_1']:.2f}x (rounds: {', '.join(f'{r:.2f}' for r in ratios)})")
    print("\n| model, 512 steps | units | TFLOP | one CPU core (measured rate) | one H200 (assumed) | 8 H200 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, p in projections.items():
        print(f"| {name} | {p['units']} | {p['tflop']:.0f} | {p['cpu_one_core']} | {p['h200']} | {p['h200x8']} |")
    if args.json is not None:
        args.json.write_text(json.dumps({"runs": runs, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
