"""Loading the model a command line names: ``torchvision:NAME``, ``cifar10-resnetN``, ``efficientnet-liteN``
or ``path.py:factory``.

:func:`load_model` turns the ``featvis`` command's MODEL (and its ``--weights``, ``--weights-dir``,
``--random-weights`` and ``--device``) into a model in eval mode; :func:`load_weights` loads a
local state-dict file into a model, or says in one line what does not fit. Whatever cannot be done
as asked raises :class:`CLIError`, with the one-line message and the exit code the command
reports (see the ``featvis`` command, :func:`featvis.cli.main`).

Example:
    >>> model = load_model("cifar10-resnet20", random_weights=True)
    >>> type(model).__name__, model.training
    ('CifarResNet', False)
    >>> load_model("cifar10-resnet20", weights_dir="/nonexistent")
    Traceback (most recent call last):
    ...
    featvis.cli_errors.CLIError: --weights-dir /nonexistent is not a folder
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import re
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import Tensor, nn

from . import models as featvis_models
from .cli_errors import RUNTIME_ERROR, CLIError, one_line
from .models.weights import hash_prefix, hub_checkpoints

__all__ = ["FEATVIS_MODELS", "load_model", "load_weights"]

#: featvis's own models: command-line name -> the name of their factory in ``featvis.models``
FEATVIS_MODELS = {
    **{f"cifar10-resnet{depth}": f"cifar10_resnet{depth}" for depth in (20, 32, 44, 56)},
    "efficientnet-lite0": "efficientnet_lite0",
    "efficientnet-lite1": "efficientnet_lite1",
}


# ---- models -------------------------------------------------------------------------
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
        featvis.cli_errors.CLIError: the weights in w.pt do not fit linear: shape of weight is (3, 2) in the ...
    """
    file = Path(path)
    if not file.is_file():
        raise CLIError(f"weights file not found: {file}")
    try:
        checkpoint = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CLIError(f"could not load {file} as PyTorch weights with weights_only=True: {one_line(error)}") from error
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
        raise CLIError(f"the weights in {file.name} do not fit {model_name}: {one_line(error)}") from error


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
            _download_torchvision_weights(name)
            return tv_models.get_model(name, weights="DEFAULT")
        except Exception as error:
            url = tv_models.get_model_weights(name).DEFAULT.url
            raise CLIError(
                f"could not get torchvision's weights for {name} ({one_line(error)}); without a network, "
                f"download {url} elsewhere and pass --weights FILE, or put it in {hub_checkpoints()}",
                RUNTIME_ERROR,
            ) from error
    with warnings.catch_warnings():
        # torchvision's note on GoogLeNet's and Inception's future initialisation says nothing to a user here
        warnings.filterwarnings("ignore", message="The default weight initialization of", category=FutureWarning)
        warnings.filterwarnings("ignore", message="The default weight initialization of", category=UserWarning)
        model = tv_models.get_model(name, weights=None)
    if weights is None and not random_weights:
        print(
            f"featvis: warning: torchvision:{name} has random weights (give --weights FILE for a local state "
            "dict, or --weights DEFAULT to download torchvision's)",
            file=warn,
        )
    return model


def _download_torchvision_weights(name: str) -> None:
    """Put torchvision's default weights for ``name`` in torch.hub's cache, if they are not there, without
    the "Downloading: ..." line torch prints before it knows whether it can (a progress bar on a terminal)."""
    from torchvision import models as tv_models

    url = tv_models.get_model_weights(name).DEFAULT.url
    path = hub_checkpoints() / os.path.basename(url)
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(url, str(path), hash_prefix=hash_prefix(path.name), progress=sys.stderr.isatty())


def _weights_file_name(name: str) -> str:
    """The published weights file of one of featvis's models, by its command-line name."""
    family, _, variant = name.partition("-")
    if family == "efficientnet":
        return featvis_models.efficientnet_weights_file(variant)
    return featvis_models.cifar10_weights_file(int(variant.removeprefix("resnet")))


def _featvis_model(name: str, weights: str | None, weights_dir: str | None, random_weights: bool) -> nn.Module:
    factory = getattr(featvis_models, FEATVIS_MODELS[name])
    if weights is not None or random_weights:
        return factory(pretrained=False)
    if weights_dir is not None:
        filename = _weights_file_name(name)
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
            raise CLIError(one_line(error)) from error
        raise CLIError(one_line(error), RUNTIME_ERROR) from error  # featvis.cli words its advice for the command


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
        raise CLIError(f"importing {path} failed: {type(error).__name__}: {one_line(error)}", RUNTIME_ERROR) from error
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
            f"{factory_name}() in {path} failed: {type(error).__name__}: {one_line(error)}", RUNTIME_ERROR
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
        spec: ``torchvision:NAME``, ``cifar10-resnet20`` (``32``, ``44``, ``56``), ``efficientnet-lite0``
            (``1``) or ``path.py:factory``.
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
        featvis.cli_errors.CLIError: unknown model 'alexnet': give torchvision:NAME (e.g. torchvision:resnet18), ...
    """
    warn = warn or sys.stderr
    target_device = _device(device)
    kind, _, name = spec.partition(":")
    normalised = spec.lower().replace("_", "-")
    if weights_dir is not None and normalised not in FEATVIS_MODELS:
        raise CLIError(
            f"--weights-dir is for featvis's own models ({', '.join(FEATVIS_MODELS)}), which know their weights "
            "file's name; give --weights FILE"
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
        raise CLIError(f"unknown device {text!r} ({one_line(error)}); use cpu, cuda, cuda:N or auto") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CLIError(f"--device {text}: CUDA is not available here; use --device cpu (or auto)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise CLIError(f"--device {text}: there are {torch.cuda.device_count()} CUDA device(s)")
    return device
