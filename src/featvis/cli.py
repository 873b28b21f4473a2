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
- ``path/to/file.py:factory``: your own model, ``factory()`` called with no arguments must return
  a ``torch.nn.Module``; ``--weights FILE`` loads a state dict into it.

Weights files are loaded with ``torch.load(..., weights_only=True)``.

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
import importlib.util
import os
import re
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO

import torch
from torch import Tensor, nn

from . import models as featvis_models
from .gallery import render_gallery
from .models import CIFAR10_CLASSES, default_input_channels, default_input_size, default_preprocess
from .objectives import Objective, as_objective, channel, class_logit
from .render import render_vis
from .result import RenderResult
from .sizes import Size, parse_size, size_pair
from .state import rendering_state, seeded

__all__ = ["FEATVIS_MODELS", "CLIError", "layer_table", "load_model", "load_weights", "main", "parse_channels"]

#: featvis's own models by their command-line name
FEATVIS_MODELS = {f"cifar10-resnet{depth}": depth for depth in (20, 32, 44, 56)}

#: exit status for a command that asks for something impossible (also argparse's own)
USAGE_ERROR = 2
#: exit status for a failure while running
RUNTIME_ERROR = 1


class CLIError(Exception):
    """An error the command reports as one line (``featvis: error: ...``) with an exit code.

    Example:
        >>> error = CLIError("no such file: x.py")
        >>> str(error), error.code
        ('no such file: x.py', 2)
    """

    def __init__(self, message: str, code: int = USAGE_ERROR) -> None:
        super().__init__(message)
        self.code = code


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    if isinstance(error, KeyError) and text.startswith("'") and text.endswith("'"):
        text = text[1:-1]
    return text or type(error).__name__


# ---- models ------------------------------------------------------------------------
def _close_names(name: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=4, cutoff=0.5)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def _state_dict_from(checkpoint: Any, path: Path) -> dict[str, Tensor]:
    """The state dict inside a loaded checkpoint: the dict itself, or its ``state_dict``/``model`` entry."""
    if isinstance(checkpoint, nn.Module):  # only possible with weights_only=False; kept for clarity
        checkpoint = checkpoint.state_dict()
    if isinstance(checkpoint, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(checkpoint.get(key), Mapping):
                checkpoint = checkpoint[key]
                break
    if not isinstance(checkpoint, Mapping) or not all(isinstance(v, Tensor) for v in checkpoint.values()):
        raise CLIError(
            f"{path} holds {type(checkpoint).__name__}, not a state dict (a mapping of names to tensors, "
            "as saved by torch.save(model.state_dict(), path))"
        )
    state = dict(checkpoint)
    if state and all(key.startswith("module.") for key in state):  # saved from nn.DataParallel
        state = {key.removeprefix("module."): value for key, value in state.items()}
    return state


def load_weights(model: nn.Module, path: str | os.PathLike[str], model_name: str = "the model") -> None:
    """Load a state dict from a local file into ``model`` (``weights_only=True``), or say what does not fit.

    A checkpoint dict with a ``state_dict`` (or ``model_state_dict``, ``model``) entry works too,
    and a ``module.`` prefix on every key (``nn.DataParallel``) is dropped.

    Raises:
        CLIError: the file is missing or unreadable, or its keys or shapes do not fit ``model``;
            the message is one line naming the first differences.

    Example:
        >>> import tempfile, pathlib
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = pathlib.Path(folder) / "w.pt"
        ...     torch.save(nn.Linear(2, 3).state_dict(), path)
        ...     load_weights(nn.Linear(2, 4), path, "linear")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        featvis.cli.CLIError: the weights in w.pt do not fit linear: shape of weight is (3, 2) in the file, ...
    """
    file = Path(path)
    if not file.is_file():
        raise CLIError(f"weights file not found: {file}")
    try:
        checkpoint = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CLIError(
            f"could not load {file} as PyTorch weights with weights_only=True: {_one_line(error)}"
        ) from error
    state = _state_dict_from(checkpoint, file)
    expected = model.state_dict()
    # BatchNorm fills in num_batches_tracked, which checkpoints from before PyTorch 0.4.1 lack
    missing = [key for key in expected if key not in state and not key.endswith("num_batches_tracked")]
    unexpected = [key for key in state if key not in expected]
    shapes = [
        f"shape of {key} is {tuple(state[key].shape)} in the file, {tuple(value.shape)} in the model"
        for key, value in expected.items()
        if key in state and state[key].shape != value.shape
    ]

    def listed(keys: list[str]) -> str:
        return ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")

    problems = []
    if missing:
        problems.append(f"{len(missing)} key(s) missing from the file ({listed(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} key(s) the model does not have ({listed(unexpected)})")
    problems += shapes[:3] + ([f"and {len(shapes) - 3} more shape differences"] if len(shapes) > 3 else [])
    if problems:
        raise CLIError(f"the weights in {file.name} do not fit {model_name}: {'; '.join(problems)}")
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise CLIError(f"the weights in {file.name} do not fit {model_name}: {_one_line(error)}") from error


def _torchvision_model(name: str, weights: str | None, warn: TextIO, random_weights: bool) -> nn.Module:
    from torchvision import models as tv_models

    available = tv_models.list_models()
    if name not in available:
        raise CLIError(
            f"torchvision has no model {name!r}{_close_names(name, available)}; "
            "torchvision.models.list_models() lists them"
        )
    if weights is not None and weights.upper() == "DEFAULT":
        try:
            return tv_models.get_model(name, weights="DEFAULT")
        except Exception as error:
            raise CLIError(
                f"could not get torchvision's weights for {name} ({_one_line(error)}); without a network, "
                "download them elsewhere and pass --weights FILE",
                RUNTIME_ERROR,
            ) from error
    model = tv_models.get_model(name, weights=None)
    if weights is None and not random_weights:
        print(
            f"featvis: warning: torchvision:{name} has random weights (give --weights FILE for a local state "
            "dict, or --weights DEFAULT to download torchvision's)",
            file=warn,
        )
    return model


def _featvis_model(name: str, weights: str | None, weights_dir: str | None, random_weights: bool) -> nn.Module:
    depth = FEATVIS_MODELS[name]
    factory = getattr(featvis_models, f"cifar10_resnet{depth}")
    if weights is not None or random_weights:
        return factory(pretrained=False)
    if weights_dir is not None:
        filename = featvis_models._WEIGHTS[depth]
        folder = Path(weights_dir)
        if not folder.is_dir():
            raise CLIError(f"--weights-dir {folder} is not a folder")
        if not (folder / filename).is_file():
            raise CLIError(
                f"{folder} has no {filename}, the weights of {name}; put the file there or leave out --weights-dir"
            )
    try:
        return factory(model_dir=weights_dir, progress=False)
    except RuntimeError as error:  # a failed download, or a damaged file
        if weights_dir is not None:
            raise CLIError(_one_line(error)) from error
        hint = " On the command line: --weights-dir DIR (the folder holding that file) or --weights FILE."
        raise CLIError(_one_line(error) + hint, RUNTIME_ERROR) from error


def _import_factory(path_text: str, factory_name: str) -> nn.Module:
    path = Path(path_text)
    if not path.is_file():
        raise CLIError(f"model file not found: {path}")
    if not factory_name.isidentifier():
        raise CLIError(f"{factory_name!r} is not a Python name; write MODEL as path/to/file.py:factory")
    module_name = "featvis_user_model_" + re.sub(r"\W", "_", str(path.resolve()))
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise CLIError(f"cannot import {path} as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        sys.modules.pop(module_name, None)
        raise CLIError(f"importing {path} failed: {type(error).__name__}: {_one_line(error)}", RUNTIME_ERROR) from error
    factory = getattr(module, factory_name, None)
    if factory is None:
        names = [n for n in vars(module) if not n.startswith("_") and callable(vars(module)[n])]
        raise CLIError(f"{path} has no {factory_name!r}{_close_names(factory_name, names)}")
    if not callable(factory):
        raise CLIError(f"{factory_name} in {path} is a {type(factory).__name__}, not a function or class")
    try:
        model = factory()
    except Exception as error:
        raise CLIError(
            f"{factory_name}() in {path} failed: {type(error).__name__}: {_one_line(error)}", RUNTIME_ERROR
        ) from error
    if not isinstance(model, nn.Module):
        raise CLIError(
            f"{factory_name}() in {path} returned {type(model).__name__}, not a torch.nn.Module; "
            "the factory must build and return the model"
        )
    return model


def load_model(
    spec: str,
    *,
    weights: str | None = None,
    weights_dir: str | None = None,
    random_weights: bool = False,
    device: str = "cpu",
    warn: TextIO | None = None,
) -> nn.Module:
    """The model a command-line MODEL names, with its weights, in eval mode on ``device``.

    Args:
        spec: ``torchvision:NAME``, ``cifar10-resnet20`` (``32``, ``44``, ``56``) or ``path.py:factory``.
        weights: a local state-dict file, or ``DEFAULT`` for torchvision's published weights.
        weights_dir: the folder holding a featvis model's published weights file.
        random_weights: keep the model's random initial weights (for trying things out), without a warning.
        device: ``cpu``, ``cuda``, ``cuda:1``, ... or ``auto`` (CUDA when there is one).
        warn: where warnings go (default: stderr).

    Raises:
        CLIError: with the one-line message and exit code the command reports.

    Example:
        >>> load_model("cifar10-resnet20", random_weights=True).featvis_input_size
        32
        >>> load_model("alexnet")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        featvis.cli.CLIError: unknown model 'alexnet': give torchvision:NAME (e.g. torchvision:resnet18), ...
    """
    warn = warn or sys.stderr
    target_device = _device(device)
    kind, _, name = spec.partition(":")
    normalised = spec.lower().replace("_", "-")
    if weights_dir is not None and normalised not in FEATVIS_MODELS:
        raise CLIError(
            "--weights-dir is for featvis's cifar10 models, which know their weights file's name; give --weights FILE"
        )
    if random_weights and weights is not None:
        raise CLIError("give --weights or --random-weights, not both")
    if kind == "torchvision" and name:
        model = _torchvision_model(name, weights, warn, random_weights)
        if weights is not None and weights.upper() == "DEFAULT":
            weights = None
    elif normalised in FEATVIS_MODELS:
        model = _featvis_model(normalised, weights, weights_dir, random_weights)
    elif ":" in spec and spec.rpartition(":")[0].endswith(".py"):
        path_text, _, factory_name = spec.rpartition(":")
        model = _import_factory(path_text, factory_name)
    elif spec.endswith(".py"):
        raise CLIError(f"name the function that builds the model: {spec}:FACTORY (e.g. {spec}:build_model)")
    else:
        known = [*FEATVIS_MODELS, "torchvision:"]
        raise CLIError(
            f"unknown model {spec!r}{_close_names(normalised, known)}: give torchvision:NAME (e.g. "
            f"torchvision:resnet18), one of featvis's models ({', '.join(FEATVIS_MODELS)}), or "
            "path/to/file.py:factory"
        )
    if weights is not None:
        load_weights(model, weights, spec)
    return model.to(target_device).eval()


def _device(text: str) -> torch.device:
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError as error:
        raise CLIError(f"unknown device {text!r} ({_one_line(error)}); use cpu, cuda, cuda:N or auto") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CLIError(f"--device {text}: CUDA is not available here; use --device cpu (or auto)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise CLIError(f"--device {text}: there are {torch.cuda.device_count()} CUDA device(s)")
    return device


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
                        f"{type(error).__name__}: {_one_line(error)}"
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
    if re.fullmatch(r"\d+", text):
        index = int(text)
        is_cifar = isinstance(model, featvis_models.CifarResNet) and index < len(CIFAR10_CLASSES)
        return index, f"class {index} ({CIFAR10_CLASSES[index]})" if is_cifar else f"class {index}"
    if isinstance(model, featvis_models.CifarResNet) and text in CIFAR10_CLASSES:
        index = CIFAR10_CLASSES.index(text)
        return index, f"class {index} ({text})"
    raise CLIError(
        f"--class takes a class number, or for the cifar10 models a class name ({', '.join(CIFAR10_CLASSES)}); "
        f"got {text!r}"
    )


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
    common.add_argument("model", metavar="MODEL", help="torchvision:NAME, cifar10-resnet20|32|44|56 or path.py:factory")
    weights = common.add_argument_group("model and device")
    weights.add_argument("--weights", metavar="FILE", help="a state dict file (or DEFAULT: torchvision's weights)")
    weights.add_argument("--weights-dir", metavar="DIR", help="folder with a cifar10 model's published weights file")
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
    render.add_argument("--class", dest="classes", action="append", metavar="N", help="a class logit (repeatable)")
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
        message = _one_line(error)
        if not isinstance(error, (CLIError, ValueError, TypeError, IndexError, KeyError, RuntimeError)):
            message = f"{type(error).__name__}: {message}"
        print(f"featvis: error: {message}", file=sys.stderr)
        return code
    except KeyboardInterrupt:
        print("featvis: interrupted", file=sys.stderr)
        return 130
