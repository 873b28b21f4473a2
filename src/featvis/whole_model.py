"""Render every unit of a whole model, across processes and machines, resumably.

:func:`render_model` renders every channel of the chosen layers (by default every convolution and
linear layer) into a folder, one PNG and one JSON record per unit. Under ``torchrun`` each process
takes its share of the job's chunks (see ``featvis.jobs``); alone, one process takes them all.
A rerun of the same call skips what is done (with any number of processes, after a crash or a
kill), and refuses other settings. When all is done the main process writes one browsable
``index.html`` (``featvis.model_index``).

Example:
    >>> import tempfile
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3)).eval()
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     job = render_model(model, folder, size=12, steps=4, progress=False)
    ...     again = render_model(model, folder, size=12, steps=4, progress=False)
    >>> job.total, job.rendered, again.rendered
    (6, 6, 0)
"""

from __future__ import annotations

import copy
import io
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import __version__
from . import param as param_module
from .dataset import top_activating
from .distributed import JobProcesses, job_processes
from .gallery import CurveRecorder, unit_activations
from .grid import readable_scale
from .hooks import model_device_dtype
from .jobs import Chunk, JobFolder, plan_chunks, select_layers
from .layers import LayerRef
from .model_index import write_model_index
from .models import default_input_channels, default_input_size
from .objectives import Objective, diversity
from .objectives import channel as channel_objective
from .probe import layer_width
from .render import render_channels, render_vis
from .result import RenderResult
from .sizes import Size, size_pair
from .state import check_seed

__all__ = ["EXIT_AFTER_UNITS", "ModelRender", "render_model"]

#: an environment variable for testing resumption: a process that has written this many units exits
#: at once (exit status 3), as if it had been killed
EXIT_AFTER_UNITS = "FEATVIS_EXIT_AFTER_UNITS"


@dataclass
class ModelRender:
    """What :func:`render_model` did in this process.

    Attributes:
        directory: the job's folder.
        index: its ``index.html`` (``None`` in the other processes, or with ``index=False``).
        total: units in the job.
        rendered: units this process rendered and wrote in this call.
        done: units done in the folder when this process finished.

    Example:
        >>> ModelRender(Path("job"), None, 10, 4, 10).complete
        True
    """

    directory: Path
    index: Path | None
    total: int
    rendered: int
    done: int

    @property
    def complete(self) -> bool:
        """Whether every unit of the job is done."""
        return self.done >= self.total


def _on_device(model: nn.Module, device: torch.device | None) -> nn.Module:
    """``model`` itself when it is on ``device`` already (or no device is asked for), else a copy there: the
    user's model is never moved."""
    if device is None or model_device_dtype(model)[0] == device:
        return model
    return copy.deepcopy(model).to(device)


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


class _Progress:
    """The job's progress, printed by the main process: units done of the total, units a second, time left."""

    def __init__(self, folder: JobFolder, total: int, shown: bool) -> None:
        self.folder, self.total, self.shown = folder, total, shown
        self.start, self.done_at_start = time.monotonic(), folder.count_done()

    def report(self) -> None:
        if not self.shown:
            return
        done = self.folder.count_done()
        elapsed = time.monotonic() - self.start
        rate = (done - self.done_at_start) / elapsed if elapsed > 0 else 0.0
        left = f", about {_duration((self.total - done) / rate)} left" if rate > 0 and done < self.total else ""
        print(
            f"featvis render-model: {done}/{self.total} units ({100 * done / max(self.total, 1):.0f}%), "
            f"{rate:.2f} units/s{left}",
            file=sys.stderr,
            flush=True,
        )


def _settings(
    model_name: str, steps: int, size: tuple[int, int], image_channels: int, batch_size: int, seed: int, options: dict
) -> dict[str, Any]:
    """What decides the job's pictures, as JSON: a rerun with other settings is refused."""
    return {
        "model": model_name,
        "steps": steps,
        "size": list(size),
        "image_channels": image_channels,
        "batch_size": batch_size,
        "seed": seed,
        "options": {key: repr(value) for key, value in sorted(options.items())},
    }


def _check_job(folder: JobFolder, job: JobProcesses, settings: dict[str, Any], widths: dict[str, int]) -> None:
    """The main process writes the manifest (or checks the one there); then every process checks it. An error
    of the main process is raised after the barrier, so that the others are not left waiting."""
    problem: BaseException | None = None
    if job.is_main:
        try:
            if folder.read_manifest() is None:
                folder.write_manifest(settings, widths, featvis=__version__)
            else:
                folder.check_manifest(settings, widths)
        except Exception as error:  # raised below, after the others have passed the barrier
            problem = error
    job.barrier()
    if problem is not None:
        raise problem
    folder.check_manifest(settings, widths)


def _peak_memory(model: nn.Module) -> str:
    """This process's peak memory: the GPU's allocations on a GPU, else the resident set (where the OS says)."""
    device = model_device_dtype(model)[0]
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**20:.0f} MB (GPU)"
    try:
        import resource
    except ImportError:  # not on Windows
        return "unknown"
    kilobytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # bytes on macOS
    return f"{kilobytes / (2**20 if sys.platform == 'darwin' else 2**10):.0f} MB (resident)"


def _png(image: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def render_model(
    model: nn.Module,
    out_dir: str | os.PathLike[str],
    layers: Sequence[str] | None = None,
    *,
    steps: int = 512,
    size: Size | None = None,
    batch_size: int = 8,
    seed: int = 0,
    image_channels: int | None = None,
    model_name: str | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    index: bool = True,
    examples: Any = None,
    examples_k: int = 6,
    diverse: int = 0,
    diversity_weight: float = 1.0,
    **render_kwargs: Any,
) -> ModelRender:
    """Render every unit of ``layers`` of ``model`` into ``out_dir``, sharing the work among the job's processes.

    Run it in one process, or in each process of ``torchrun --nproc_per_node=N`` (``--nnodes`` and a
    c10d rendezvous across machines; see ``featvis.distributed``). Each unit is rendered once in
    the whole job; its picture depends on the settings and the unit, not on the number of processes.
    Rerun it after a failure: what is done is skipped.

    Args:
        model: the network (left as it is: a process with its own GPU renders a copy of it there).
        out_dir: the job's folder (see ``featvis.jobs`` for its layout).
        layers: layer names or shell-style patterns (``"layer*.conv2"``); default every convolution
            and linear layer (:func:`~featvis.jobs.select_layers`).
        steps: optimisation steps per unit.
        size: image size (default: the model's usual input size, or 224).
        batch_size: units of a layer rendered together; part of the settings (the pictures depend on it).
        seed: the job's seed; each chunk's seed is derived from it and the chunk's units.
        image_channels: channels of the images (default: what the model takes).
        model_name: shown in the index and kept in the manifest (default: the model's class name).
        device: where to render (default: under torchrun with GPUs, this process's ``cuda:LOCAL_RANK``;
            else the model's device).
        progress: the main process prints the job's progress (units done, units a second, time left).
        index: the main process writes ``index.html`` once every unit is done.
        examples: natural images (a tensor batch, or a re-iterable of batches such as a ``DataLoader``):
            each unit's ``examples_k`` top images among them (:func:`featvis.top_activating`, one pass
            over them per chunk) are saved beside its picture, as their crops, and shown on its page.
        examples_k: how many top images per unit.
        diverse: also render this many different pictures of each unit (its channel, with
            ``diversity_weight`` times :func:`featvis.objectives.diversity` at its layer among its own
            pictures), saved beside its picture and shown on its page.
        diversity_weight: the diversity term's weight.
        **render_kwargs: passed to :func:`featvis.render_channels` (``transforms``, ``preprocess``, ...);
            recorded in the settings by their ``repr``.

    Returns:
        A :class:`ModelRender`: what this process did.

    Example:
        >>> import tempfile
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(300, 2)).eval()
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     job = render_model(model, folder, ["3"], size=12, steps=2, progress=False)
        ...     sorted(p.name for p in (Path(folder) / "layers" / "3").iterdir() if p.suffix != ".html")
        ['unit-0000.json', 'unit-0000.png', 'unit-0001.json', 'unit-0001.png']
    """
    check_seed(seed)
    if seed is None:
        raise TypeError("render_model needs a seed (a whole number): the job's pictures must repeat when it resumes")
    if "unit" in render_kwargs or "channels" in render_kwargs:
        raise TypeError("render_model renders every channel of its layers; it takes no unit= or channels=")
    folder = JobFolder(out_dir)
    with job_processes() as job:
        chosen = torch.device(device) if device is not None else (job.device() if job.distributed else None)
        work = _on_device(model, chosen)
        names = select_layers(work, layers)
        height, width = size_pair(size if size is not None else default_input_size(work))
        channels = image_channels if image_channels is not None else default_input_channels(work)
        preprocess = render_kwargs.get("preprocess")
        widths = {name: layer_width(work, LayerRef(name), (height, width), channels, preprocess) for name in names}
        name = model_name or type(model).__name__
        settings = _settings(name, steps, (height, width), channels, batch_size, seed, render_kwargs)
        settings["examples"] = examples_k if examples is not None else 0
        if not isinstance(diverse, int) or isinstance(diverse, bool) or diverse < 0 or diverse == 1:
            raise ValueError(f"diverse must be 0 (none) or a number of pictures >= 2, got {diverse!r}")
        settings["diverse"] = [diverse, diversity_weight] if diverse else 0
        wanted = _Extras(
            [examples] if isinstance(examples, torch.Tensor) else examples, examples_k, diverse, diversity_weight
        )
        _check_job(folder, job, settings, widths)

        pending = [chunk for chunk in plan_chunks(widths, batch_size, seed) if not folder.chunk_done(chunk)]
        job.barrier()  # every process has listed what is left before any writes
        mine = pending[job.rank :: job.world_size]
        total = sum(widths.values())
        folder.log(job.rank, f"{time.strftime('%Y-%m-%d %H:%M:%S')} start: {len(mine)} of {len(pending)} chunks left")
        tracker = _Progress(folder, total, progress and job.is_main)
        rendered = 0
        limit = int(os.environ.get(EXIT_AFTER_UNITS, "0") or 0)
        for chunk in mine:
            written = _render_chunk(
                work, chunk, folder, job, settings, steps, (height, width), channels, render_kwargs, wanted
            )
            if written is None:  # interrupted: nothing of the chunk was written
                folder.log(job.rank, f"interrupted in {chunk.layer} units {chunk.units[0]}-{chunk.units[-1]}")
                return ModelRender(folder.root, None, total, rendered, folder.count_done())
            for _ in range(written):
                rendered += 1
                if limit and rendered >= limit:
                    folder.log(job.rank, f"exiting after {rendered} units ({EXIT_AFTER_UNITS}={limit})")
                    os._exit(3)
            tracker.report()
        folder.log(
            job.rank,
            f"{time.strftime('%Y-%m-%d %H:%M:%S')} finished: {rendered} units rendered, "
            f"peak memory {_peak_memory(work)}",
        )
        if not job.is_main:  # done: the main process waits for the others, and writes the index
            return ModelRender(folder.root, None, total, rendered, folder.count_done())
        _wait_for_the_others(folder, total, tracker)
        page = write_model_index(folder.root) if index else None
        return ModelRender(folder.root, page, total, rendered, folder.count_done())


def _wait_for_the_others(folder: JobFolder, total: int, tracker: _Progress) -> None:
    """Wait until every unit of the job is done, looking at the folder (the others may need hours more: no
    barrier waits that long; if one of them fails, torchrun stops this process too, and restarts the job)."""
    pause = 0.05
    while folder.count_done() < total:
        time.sleep(pause)
        pause = min(pause * 2, 10.0)
        if pause == 10.0:
            tracker.report()


@dataclass
class _Extras:
    """What a job keeps beside each unit's picture: top natural images, diverse pictures."""

    data: Any
    k: int
    diverse: int
    weight: float


def _diverse_pictures(
    model: nn.Module,
    chunk: Chunk,
    wanted: _Extras,
    steps: int,
    size: tuple[int, int],
    channels: int,
    render_kwargs: dict[str, Any],
) -> torch.Tensor | None:
    """``wanted.diverse`` pictures of each unit of the chunk, pushed apart within each unit's group."""
    if not wanted.diverse:
        return None
    count = wanted.diverse
    objective = Objective.sum(
        channel_objective(chunk.layer, unit, batch=i * count + j)
        for i, unit in enumerate(chunk.units)
        for j in range(count)
    ) + wanted.weight * diversity(chunk.layer, group_size=count)
    seed = chunk.seed ^ 0x5DEECE66D  # another draw than the chunk's main pictures
    image = param_module.image(size[1], size[0], batch=len(chunk.units) * count, channels=channels, seed=seed)
    result = render_vis(model, objective, image, steps=steps, seed=seed, progress=False, **render_kwargs)
    return result.images


def _render_chunk(
    model: nn.Module,
    chunk: Chunk,
    folder: JobFolder,
    job: JobProcesses,
    settings: dict[str, Any],
    steps: int,
    size: tuple[int, int],
    channels: int,
    render_kwargs: dict[str, Any],
    wanted: _Extras,
) -> int | None:
    """Render one chunk and write the units not done yet: how many were written, or ``None`` if interrupted."""
    began = time.monotonic()
    recorder = CurveRecorder()
    result = render_channels(
        model,
        chunk.layer,
        list(chunk.units),
        batch_size=len(chunk.units),
        size=size,
        image_channels=channels,
        unit=recorder,
        seed=chunk.seed,
        steps=steps,
        progress=False,
        **render_kwargs,
    )
    if result.interrupted:
        return None
    curves = recorder.curves(result.steps)[: len(result)]
    activations = unit_activations(
        model, chunk.layer, result.images, list(chunk.units), preprocess=render_kwargs.get("preprocess")
    )
    found = None
    if wanted.data is not None:  # the chunk's units' top natural images, in one pass over the data
        units = [(chunk.layer, u) for u in chunk.units]
        found = top_activating(model, wanted.data, units, k=wanted.k, progress=False)
    varied = _diverse_pictures(model, chunk, wanted, steps, size, channels, render_kwargs)
    seconds = time.monotonic() - began
    written = 0
    for position, (unit, picture) in enumerate(zip(chunk.units, result.pil())):
        if folder.is_done(chunk.layer, unit):  # written by an earlier, killed run: kept as it is
            continue
        folder.write_picture(chunk.layer, unit, _png(picture))
        shown = {}
        if found is not None:
            top = found[position]
            name = folder.picture_path(chunk.layer, unit).name.replace(".png", "-examples.png")
            strip = top.grid(crops=top.crops is not None, scale=readable_scale(*top.images.shape[-2:]))
            folder.write_file(chunk.layer, name, _png(strip))
            shown = {"examples": name, "example_scores": [round(float(s), 6) for s in top.scores]}
        if varied is not None:
            name = folder.picture_path(chunk.layer, unit).name.replace(".png", "-diverse.png")
            mine = varied[position * wanted.diverse : (position + 1) * wanted.diverse]
            pictures = RenderResult(mine, {}, torch.zeros(0), "diverse", steps)
            folder.write_file(chunk.layer, name, _png(pictures.grid(nrow=wanted.diverse)))
            shown["diverse"] = name
        record = {
            "layer": chunk.layer,
            "unit": unit,
            "picture": folder.picture_path(chunk.layer, unit).name,
            "activation": float(activations[position]),
            "objective": [round(float(v), 6) for v in curves[position]],
            "steps": result.steps,
            "seed": chunk.seed,
            "chunk": list(chunk.units),
            "batch_index": position,
            "seconds": round(seconds / len(chunk.units), 4),
            "rank": job.rank,
            "world_size": job.world_size,
            "featvis": __version__,
            "settings": settings,
            **shown,
        }
        folder.write_record(chunk.layer, unit, record)
        written += 1
    folder.log(
        job.rank,
        f"{chunk.layer} units {chunk.units[0]}-{chunk.units[-1]}: {written} written in {seconds:.1f} s",
    )
    return written
