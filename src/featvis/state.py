"""The state a render sets for its run and gives back after, whatever happens.

Each is a context manager, so that a run composes them in one ``with`` and every
one of them is undone on the way out, also on an error or Ctrl-C:

- :func:`rendering_state`: the model in eval mode and without weight gradients;
- :func:`seeded`: torch's generators seeded, the caller's random state kept;
- :func:`denormals_flushed`: tiny floats treated as zero on a CPU (much faster);
- :func:`memory_format`: the model's 4-D weights in channels-last layout.

Example:
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train()
    >>> with rendering_state(model, warn=False):
    ...     model.training, model[0].weight.requires_grad
    (False, False)
    >>> model.training, model[0].weight.requires_grad
    (True, True)
"""

from __future__ import annotations

import contextlib
import operator
import re
import threading
import warnings
import weakref
from collections.abc import Iterator

import torch
from torch import nn

from .models import unwrap

__all__ = [
    "check_seed",
    "denormals_flushed",
    "flushing_denormals",
    "memory_format",
    "rendering_state",
    "run_seed",
    "seeded",
]


@contextlib.contextmanager
def rendering_state(model: nn.Module, warn: bool = True) -> Iterator[None]:
    """Eval mode and no weight gradients inside; each module's mode and every
    parameter's ``requires_grad`` restored afterwards, whatever happens.

    With ``warn``, a model in training mode gets a warning that featvis renders in eval mode.
    One thread at a time: while a thread renders a model (or a model that shares modules with
    it), another thread's render of it fails at once with a ``RuntimeError`` and changes nothing
    (the same thread may nest renders, as ``render_channels`` does).

    Example:
        >>> from torch import nn
        >>> layer = nn.Linear(2, 2)
        >>> with rendering_state(layer, warn=False):
        ...     layer.weight.requires_grad
        False
    """
    with _claimed(model):
        training = [(module, module.training) for module in model.modules()]
        grads = [(p, p.requires_grad) for p in model.parameters()]
        with _eval_without_weight_gradients(model, training, grads, warn):
            yield


#: each module being rendered now: the thread rendering it, and how many renders of that thread hold it
_RENDERING: weakref.WeakKeyDictionary[nn.Module, tuple[int, int]] = weakref.WeakKeyDictionary()
_RENDERING_LOCK = threading.Lock()


@contextlib.contextmanager
def _claimed(model: nn.Module) -> Iterator[None]:
    """Hold every module of ``model`` for this thread inside; a module another thread holds is an error."""
    modules = list(model.modules())
    me = threading.get_ident()
    with _RENDERING_LOCK:
        if any(_RENDERING.get(module, (me, 0))[0] != me for module in modules):
            raise RuntimeError(
                f"another thread is rendering this {type(unwrap(model)).__name__} (or a model that shares its "
                "modules) now: featvis switches a model to eval mode and turns off its weights' gradients while it "
                "renders, so two renders at once would leave it corrupted. Render one at a time, or give each "
                "thread its own copy: copy.deepcopy(model)"
            )
        for module in modules:
            _RENDERING[module] = (me, _RENDERING.get(module, (me, 0))[1] + 1)
    try:
        yield
    finally:
        with _RENDERING_LOCK:
            for module in modules:
                owner, depth = _RENDERING[module]
                if depth == 1:
                    del _RENDERING[module]
                else:
                    _RENDERING[module] = (owner, depth - 1)


@contextlib.contextmanager
def _eval_without_weight_gradients(
    model: nn.Module, training: list[tuple[nn.Module, bool]], grads: list[tuple[nn.Parameter, bool]], warn: bool
) -> Iterator[None]:
    try:
        inner = unwrap(model)  # a new DataParallel wrapper is in training mode; what counts is the model inside
        if warn and inner.training:
            warnings.warn(
                f"{type(inner).__name__} is in training mode; featvis renders in eval mode and puts "
                "training mode back afterwards",
                stacklevel=6,
            )
        model.eval()
        for p, _ in grads:
            p.requires_grad_(False)
        yield
    finally:
        for module, mode in training:
            module.training = mode
        for p, flag in grads:
            p.requires_grad_(flag)


def check_seed(seed: object, name: str = "seed") -> int | None:
    """``seed`` if it is ``None`` or a whole number (an ``int``, of any size, or a NumPy integer), else a
    ``TypeError`` that names the argument: a string, a float and a bool are refused rather than guessed.

    Example:
        >>> check_seed(7), check_seed(None), check_seed(2**70) == 2**70
        (7, None, True)
        >>> check_seed("42")
        Traceback (most recent call last):
        ...
        TypeError: seed must be a whole number or None, got '42' (a str); write seed=42
    """
    if seed is None:
        return None
    if isinstance(seed, bool) or not hasattr(type(seed), "__index__"):
        hint = ""
        if isinstance(seed, str) and re.fullmatch(r"\s*-?[0-9]+\s*", seed):
            hint = f"; write {name}={int(seed)}"
        elif isinstance(seed, float) and seed.is_integer():
            hint = f"; write {name}={int(seed)}"
        raise TypeError(f"{name} must be a whole number or None, got {seed!r} (a {type(seed).__name__}){hint}")
    return operator.index(seed)


def run_seed(seed: int) -> int:
    """The seed a run's generators get for ``seed=seed``: ``seed`` mixed, so that a run's random draws do not
    replay those of ``torch.manual_seed(seed)``, with which a caller may have drawn the starting image.

    Example:
        >>> run_seed(0) != 0 and run_seed(0) != run_seed(1)
        True
    """
    return (operator.index(seed) * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) % 2**63


@contextlib.contextmanager
def seeded(seed: int | None, device: torch.device, mix: bool = True) -> Iterator[None]:
    """Seed torch's generators inside, and give the caller's states back after.

    ``mix=True`` (a run) seeds with :func:`run_seed`; ``mix=False`` (a starting image drawn
    before a run) with ``seed`` itself, as ``torch.manual_seed(seed)`` would, so that the run's
    draws do not replay the image's. It seeds the CPU's generator and, on a GPU, that GPU's: the
    ones it gives back; other GPUs' are left alone. ``seed=None`` changes nothing.

    Example:
        >>> with seeded(0, torch.device("cpu"), mix=False):
        ...     first = torch.rand(2)
        >>> _ = torch.manual_seed(0)
        >>> torch.equal(first, torch.rand(2))
        True
    """
    if seed is None:
        yield
        return
    devices = [device.index or 0] if device.type == "cuda" else []
    value = run_seed(seed) if mix else operator.index(seed) % 2**64  # torch takes 64 bits
    with torch.random.fork_rng(devices=devices):
        # only the generators whose states come back after: the CPU's, and the run's GPU's
        torch.random.default_generator.manual_seed(value)
        if devices:
            with torch.cuda.device(devices[0]):
                torch.cuda.manual_seed(value)
        yield


def flushing_denormals() -> bool:
    """Whether this thread flushes denormal floats to zero (torch can set it but not read it).

    Example:
        >>> isinstance(flushing_denormals(), bool)
        True
    """
    return float(torch.tensor([1e-40], dtype=torch.float32)[0] * 1.0) == 0.0


@contextlib.contextmanager
def denormals_flushed(device: torch.device) -> Iterator[None]:
    """On a CPU, treat floats below 1.2e-38 as zero inside (x86 computes with them many times slower,
    and a picture does not depend on them); the caller's setting comes back after.

    Example:
        >>> before = flushing_denormals()
        >>> with denormals_flushed(torch.device("cpu")):
        ...     pass
        >>> flushing_denormals() == before
        True
    """
    # nothing to do off the CPU, when already flushing, or on a CPU that cannot flush
    if device.type != "cpu" or flushing_denormals() or not torch.set_flush_denormal(True):
        yield
        return
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


@contextlib.contextmanager
def memory_format(model: nn.Module, layout: torch.memory_format | None) -> Iterator[None]:
    """The model's 4-D parameters and buffers in ``layout`` inside; the very same tensors back after.

    Example:
        >>> from torch import nn
        >>> conv = nn.Conv2d(3, 4, 3)
        >>> with memory_format(conv, torch.channels_last):
        ...     conv.weight.is_contiguous(memory_format=torch.channels_last)
        True
        >>> conv.weight.is_contiguous()
        True
    """
    if layout is None:
        yield
        return
    saved = [(t, t.data) for t in [*model.parameters(), *model.buffers()] if t.ndim == 4]
    try:
        for tensor, data in saved:
            tensor.data = data.contiguous(memory_format=layout)
        yield
    finally:
        for tensor, data in saved:
            tensor.data = data
