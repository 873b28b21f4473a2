"""What the ``featvis`` command's subcommands do, once the model is loaded: ``layers`` (a table of
every layer's output shape), ``render`` (units to a PNG) and ``gallery`` (a browsable folder).

:func:`run_command` runs the one that the parsed arguments name (``featvis.cli`` parses them).

Example:
    >>> from torch import nn
    >>> layer_table(nn.Sequential(nn.Conv2d(3, 2, 3)), size=5)
    [('0', 'Conv2d', '(1, 2, 3, 3)')]
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import Tensor, nn

from .cli_errors import USAGE_ERROR, CLIError, one_line
from .gallery import render_gallery
from .models import default_input_channels, default_input_size, default_preprocess, unwrap
from .objectives import Objective, as_objective, channel, class_logit
from .param import image as make_image
from .render import render_vis
from .result import RenderResult
from .sizes import size_pair
from .state import rendering_state

__all__ = ["PICTURE_SUFFIXES", "RUNNERS", "layer_table", "load_image_folder", "run_command", "run_index"]


# ---- layers -------------------------------------------------------------------------
def _shape_text(output: Any) -> str:
    if isinstance(output, Tensor):
        return str(tuple(output.shape))
    if isinstance(output, (tuple, list)):
        inner = ", ".join(_shape_text(item) for item in output[:4]) + (", ..." if len(output) > 4 else "")
        return f"{type(output).__name__}[{inner}]"
    if isinstance(output, Mapping):
        inner = ", ".join(f"{key!r}: {_shape_text(value)}" for key, value in list(output.items())[:4])
        return "dict{" + inner + (", ..." if len(output) > 4 else "") + "}"
    return type(output).__name__


def layer_table(model: nn.Module, size: int | tuple[int, int] | None = None) -> list[tuple[str, str, str]]:
    """``(name, type, output shape)`` of every layer, from one forward pass of one grey image.

    The image is 0.5 everywhere, of the model's usual size (or ``size``), through the model's
    preprocessing, as ``render_vis`` would feed it. Every module gets a forward hook for that pass
    (removed after); a module that runs twice shows its first output with ``(ran 2 times)``, one
    that does not run shows ``not run``. The model comes back as it was.

    Example:
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten()).eval()
        >>> for row in layer_table(model, size=8):
        ...     print(row)
        ('0', 'Conv2d', '(1, 4, 6, 6)')
        ('1', 'ReLU', '(1, 4, 6, 6)')
        ('2', 'Flatten', '(1, 144)')
    """
    height, width = size_pair(size if size is not None else default_input_size(model))
    device = next((t.device for t in [*model.parameters(), *model.buffers()]), torch.device("cpu"))
    dtype = next((t.dtype for t in [*model.parameters(), *model.buffers()] if t.is_floating_point()), torch.float32)
    image = torch.full((1, default_input_channels(model), height, width), 0.5, device=device)
    named = [(name, module) for name, module in model.named_modules() if name]
    outputs: dict[int, Any] = {}
    calls: dict[int, int] = {}
    handles = []

    def hook(position: int) -> Any:
        def record(module: nn.Module, args: Any, output: Any) -> None:
            calls[position] = calls.get(position, 0) + 1
            outputs.setdefault(position, output)

        return record

    try:
        for position, (_, module) in enumerate(named):
            handles.append(module.register_forward_hook(hook(position)))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "(?s).*training mode", UserWarning)  # one pass in eval mode is fine
            with rendering_state(model), torch.no_grad():
                prepare = default_preprocess(model).to(device)
                try:
                    model(prepare(image).to(dtype))
                except Exception as error:
                    raise RuntimeError(
                        f"the model's forward pass on one grey {height}x{width} image failed with "
                        f"{type(error).__name__}: {one_line(error)}"
                    ) from error
    finally:
        for handle in handles:
            handle.remove()
    rows = []
    for position, (name, module) in enumerate(named):
        if position not in outputs:
            shape = "not run"
        else:
            shape = _shape_text(outputs[position])
            if calls[position] > 1:
                shape += f" (ran {calls[position]} times)"
        rows.append((name, type(module).__name__, shape))
    return rows


def _print_table(rows: Sequence[tuple[str, ...]], header: tuple[str, ...], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip(), file=out)


def _run_layers(args: argparse.Namespace, model: nn.Module) -> int:
    rows = layer_table(model, args.size)
    height, width = size_pair(args.size if args.size is not None else default_input_size(model))
    print(f"# {args.model}: {len(rows)} layers, output shapes for one {height}x{width} image", file=sys.stdout)
    _print_table(rows, ("name", "type", "output shape"), sys.stdout)
    return 0


# ---- render -------------------------------------------------------------------------
def _class_index(text: str, model: nn.Module) -> tuple[int, str]:
    """A ``--class`` argument as a class number, and its label: a number, or one of the names of the
    model's ``featvis_classes`` (featvis's own models have them; case does not matter)."""
    classes = getattr(unwrap(model), "featvis_classes", None)
    if re.fullmatch(r"\d+", text):
        index = int(text)
        named = classes is not None and index < len(classes)
        return index, f"class {index} ({classes[index]})" if named else f"class {index}"
    if classes is None:
        raise CLIError(
            f"--class takes a class number, or for featvis's own models (which name their classes) a class name; "
            f"got {text!r}"
        )
    lowered = [name.lower() for name in classes]
    wanted = " ".join(text.split()).lower()
    if wanted in lowered:
        index = lowered.index(wanted)
        return index, f"class {index} ({classes[index]})"
    if len(classes) <= 20:
        known = f"one of {', '.join(classes)}"
    else:
        close = difflib.get_close_matches(wanted, lowered, n=4, cutoff=0.6)
        known = f"one of its {len(classes)} class names" + (
            f" (did you mean {', '.join(classes[lowered.index(name)] for name in close)}?)" if close else ""
        )
    raise CLIError(f"--class {text!r} is not a class of this model: give a class number or {known}")


def _objectives(args: argparse.Namespace, model: nn.Module) -> tuple[Objective, list[str]]:
    """One objective for all images (target t, copy k -> batch t * batch + k), and each image's label."""
    targets: list[tuple[str, Any]] = []
    for text in args.targets:
        as_objective(text)  # a malformed target: ValueError with featvis's own message
        name, _, unit = text.rpartition(":")
        targets.append((text, ("channel", name.strip(), int(unit))))
    for text in args.classes or ():
        index, label = _class_index(text, model)
        targets.append((label, ("class", "", index)))
    if not targets:
        raise CLIError("give at least one TARGET (layer:channel, e.g. layer3:5) or --class N")
    terms, labels = [], []
    for position, (label, (kind, layer, index)) in enumerate(targets):
        for copy in range(args.batch):
            batch = position * args.batch + copy
            make = channel if kind == "channel" else class_logit
            terms.append(make(layer, index, batch=batch))
            labels.append(label)
    return Objective.sum(terms), labels


def _check_output(path: Path) -> None:
    from PIL import Image

    if path.suffix.lower() not in Image.registered_extensions():
        raise CLIError(f"cannot tell the image format of {path}: give a file name ending in .png")


def _run_render(args: argparse.Namespace, model: nn.Module) -> int:
    output = Path(args.output)
    _check_output(output)
    objective, labels = _objectives(args, model)
    height, width = size_pair(args.size if args.size is not None else default_input_size(model))
    # the start image drawn with the seed too; render_vis mixes it for the run's own draws
    param = make_image(width, height, batch=len(labels), channels=default_input_channels(model), seed=args.seed)
    result = render_vis(model, objective, param, steps=args.steps, seed=args.seed, progress=args.progress)
    written = _save_render(result, labels, output, args)
    final = -float(result.losses[-1]) if result.steps else float("nan")
    summed = f" (the sum over the {len(result)} images)" if len(result) > 1 else ""
    print(
        f"wrote {', '.join(str(p) for p in written)}: {len(result)} image(s) of {width}x{height} "
        f"({', '.join(dict.fromkeys(labels))}), {result.steps} steps, final objective {final:.4g}{summed}"
    )
    return 0


def _save_render(result: RenderResult, labels: list[str], output: Path, args: argparse.Namespace) -> list[Path]:
    output.parent.mkdir(parents=True, exist_ok=True)
    if len(result) == 1:
        result.save(output)
        return [output]
    if args.separate:
        paths = [output.with_name(f"{output.stem}-{i}{output.suffix}") for i in range(len(result))]
        for index, path in enumerate(paths):
            result.save(path, index)
        return paths
    width = result.images.shape[-1]
    scale = args.scale or max(1, min(4, 128 // max(width, 1)))
    result.save_grid(output, nrow=args.batch if args.batch > 1 else min(len(result), 8), labels=labels, scale=scale)
    return [output]


# ---- gallery ------------------------------------------------------------------------
def _run_gallery(args: argparse.Namespace, model: nn.Module) -> int:
    layer = args.layer
    gallery = render_gallery(
        model,
        layer,
        args.output,
        args.channels,
        steps=args.steps,
        size=args.size,
        batch_size=args.batch_size,
        seed=args.seed,
        progress=args.progress,
        model_name=args.model,
    )
    print(
        f"wrote {gallery.index} and {len(gallery.images)} unit PNGs ({args.model}, {layer}, "
        f"{gallery.result.steps} steps); open {gallery.index.resolve().as_uri()}"
    )
    return 0


# ---- a whole model ----------------------------------------------------------------------
#: the picture files ``--examples DIR`` reads
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def load_image_folder(folder: str | Path, size: tuple[int, int]) -> torch.Tensor:
    """Every picture in ``folder`` (PNG, JPEG, BMP, WebP), in RGB, resized so that its shorter side fits and
    centre-cropped to ``size`` (height, width): ``(N, 3, H, W)`` in [0, 1], in file-name order.

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     Image.new("RGB", (40, 20), "red").save(Path(folder) / "a.png")
        ...     load_image_folder(folder, (8, 8)).shape
        torch.Size([1, 3, 8, 8])
    """
    from PIL import Image
    from torchvision.transforms.functional import center_crop, pil_to_tensor, resize

    paths = sorted(p for p in Path(folder).expanduser().iterdir() if p.suffix.lower() in PICTURE_SUFFIXES)
    if not paths:
        raise CLIError(f"no pictures ({', '.join(PICTURE_SUFFIXES)}) in {folder}", USAGE_ERROR)
    pictures = []
    for path in paths:
        with Image.open(path) as opened:
            tensor = pil_to_tensor(opened.convert("RGB")).float() / 255
        pictures.append(center_crop(resize(tensor, list(size), antialias=True), list(size)).clamp(0, 1))
    return torch.stack(pictures)


def _run_render_model(args: argparse.Namespace, model: nn.Module) -> int:
    from .whole_model import render_model

    examples = None
    if args.examples is not None:
        examples = load_image_folder(args.examples, size_pair(args.size or default_input_size(model)))
    done = render_model(
        model,
        args.output,
        args.layers,
        steps=args.steps,
        size=args.size,
        batch_size=args.batch_size,
        seed=args.seed,
        model_name=args.model,
        progress=args.progress,
        examples=examples,
        examples_k=args.examples_k,
        diverse=args.diverse,
        diversity_weight=args.diversity_weight,
    )
    if done.index is not None:
        print(
            f"{done.done} of {done.total} units done in {done.directory} ({done.rendered} rendered by this process); "
            f"open {done.index.resolve().as_uri()}"
        )
    return 0


def run_index(args: argparse.Namespace) -> int:
    """``featvis index DIR``: write the index of a render-model folder.

    Example:
        >>> import argparse, tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     try:
        ...         run_index(argparse.Namespace(directory=folder))
        ...     except FileNotFoundError as error:
        ...         print("no manifest.json" in str(error))
        True
    """
    from .model_index import write_model_index

    index = write_model_index(args.directory)
    print(f"wrote {index}; open {index.resolve().as_uri()}")
    return 0


#: what each subcommand runs: ``(parsed arguments, the loaded model) -> exit status``
RUNNERS: dict[str, Callable[[argparse.Namespace, nn.Module], int]] = {
    "layers": _run_layers,
    "render": _run_render,
    "gallery": _run_gallery,
    "render-model": _run_render_model,
}


def run_command(args: argparse.Namespace, model: nn.Module) -> int:
    """Run the subcommand ``args.command`` (``layers``, ``render`` or ``gallery``) on ``model``.

    Example:
        >>> import argparse, contextlib, io
        >>> from torch import nn
        >>> args = argparse.Namespace(command="layers", model="mine", size=4)
        >>> with contextlib.redirect_stdout(io.StringIO()) as out:
        ...     code = run_command(args, nn.Sequential(nn.Conv2d(3, 2, 3)))
        >>> code, out.getvalue().splitlines()[0]
        (0, '# mine: 1 layers, output shapes for one 4x4 image')
    """
    return RUNNERS[args.command](args, model)
