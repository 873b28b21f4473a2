"""Probing the model: one forward pass before a run, to find what the objective reads and to
explain a forward pass that fails.

:func:`prepare_capture` hooks the objective's layers (finding them, for a plain function,
by asking it) and checks the objective's value on the start image, so that a wrong channel,
a wrong image size or a non-scalar objective is reported before the first step, in words
that say what to change (:func:`explain_forward_failure`).

Example:
    >>> import torch
    >>> from torch import nn
    >>> from featvis.objectives import as_objective
    >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
    >>> objective = as_objective(lambda acts: acts["1"].mean())
    >>> run = lambda capture, probe: capture.run(torch.rand(1, 3, 8, 8))
    >>> capture = prepare_capture(model, objective, run, (1, 3, 8, 8))
    >>> sorted(capture.names.values())
    ['1']
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from .hooks import ActivationCapture, LayerNotReachedError, LayerRef, LayerSpec, MissingLayer, model_device_dtype
from .models import resolve_preprocess
from .objectives import Objective
from .state import rendering_state

__all__ = [
    "check_value",
    "explain_forward_failure",
    "layer_output",
    "layer_width",
    "memory_error",
    "out_of_memory",
    "prepare_capture",
]

#: a forward pass: ``(capture, probe)`` -> activations, where ``probe`` (or ``None``: the run's own
#: images) is an image batch to try instead
RunForward = Callable[[ActivationCapture, "Tensor | None"], Any]


def prepare_capture(
    model: nn.Module,
    objective: Objective,
    run_forward: RunForward,
    image_shape: tuple[int, ...],
) -> ActivationCapture:
    """Hook the objective's layers and check the objective on one forward pass.

    For a plain callable (layers unknown), the layers it reads are found here: each
    read of a layer that is not hooked yet adds a hook and retries. A forward pass
    that fails is explained (wrong number of channels, an image too small) before
    any optimisation step.

    Args:
        model: the network.
        objective: what the run maximises.
        run_forward: the run's forward pass (see :data:`RunForward`).
        image_shape: the shape of the run's images.

    Returns:
        The capture, with hooks on every layer the objective reads (put on by ``with capture``).

    Example:
        >>> from torch import nn
        >>> from featvis.objectives import channel
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3)).eval()
        >>> def run(capture, probe):
        ...     return capture.run(torch.rand(1, 3, 8, 8) if probe is None else probe)
        >>> prepare_capture(model, channel("0", 9), run, (1, 3, 8, 8))
        Traceback (most recent call last):
        ...
        IndexError: channel 9 is out of range for layer '0', which has 4 channels (valid: 0 to 3)
    """
    capture = ActivationCapture(model, objective.layers or ())
    for _ in range(len(list(model.modules())) + 1):
        try:
            with capture, torch.no_grad():
                try:
                    activations = run_forward(capture, None)
                except (RuntimeError, ValueError) as error:
                    explain_forward_failure(model, capture, run_forward, image_shape, error)
                    raise
                value = objective(activations)
        except MissingLayer as missing:
            if objective.layers is not None and missing.module not in capture.names:
                raise RuntimeError(
                    f"the objective {objective} read layer {missing.name!r} that it does not list in its "
                    "layers; add it to Objective(..., layers=[...])"
                ) from None
            capture.add(missing.module, missing.name)
            continue
        check_value(value, objective)
        return capture
    raise RuntimeError("could not find the layers read by the objective")  # pragma: no cover


#: the largest side of the probe images used to find the smallest size a model accepts
LARGEST_PROBE = 1024


def explain_forward_failure(
    model: nn.Module,
    capture: ActivationCapture,
    run_forward: RunForward,
    image_shape: tuple[int, ...],
    error: Exception,
) -> None:
    """Raise a clear ValueError when the failed forward pass has a known cause; return otherwise.

    The known causes: images with the wrong number of channels for the first convolution,
    and images too small for the model (then the smallest size that works is found by
    probing larger grey images, up to :data:`LARGEST_PROBE` pixels a side).

    Example:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 5), nn.Conv2d(4, 4, 5)).eval()
        >>> capture = ActivationCapture(model, ["1"])
        >>> run = lambda capture, probe: capture.run(torch.rand(1, 3, 6, 6) if probe is None else probe)
        >>> with capture:
        ...     try:
        ...         explain_forward_failure(model, capture, run, (1, 3, 6, 6), RuntimeError("too small"))
        ...     except ValueError as error:
        ...         print(str(error).split(". ")[1].split(";")[0])
        The smallest size that works is 9x9 (height x width)
    """
    if isinstance(error, LayerNotReachedError):  # says what is wrong already; larger images would not help
        return
    if out_of_memory(error):  # not a size problem: probing larger images would make it worse
        raise memory_error(error, image_shape, "the model's forward pass") from error
    _explain_other_input_ranks(model, image_shape, error)
    channels = image_shape[1]
    first = _first_convolution(model)
    if first is not None and first[1].in_channels != channels:
        name, conv = first
        raise ValueError(
            f"the model expects {conv.in_channels}-channel {'images' if len(image_shape) == 4 else 'inputs'} "
            f"(its first convolution {name!r} has "
            f"in_channels={conv.in_channels}) but the image has {channels}; make the image with "
            f"featvis.param.image(..., channels={conv.in_channels}), or leave param out and featvis picks it"
        ) from error
    if len(image_shape) != 4:  # the size search below is for images
        return
    height, width = image_shape[-2:]

    def works(h: int, w: int) -> bool:
        probe = torch.full((1, channels, h, w), 0.5)
        try:
            run_forward(capture, probe)
        except (RuntimeError, ValueError):
            return False
        return True

    # a size problem fails at this size and works at some larger one (same aspect ratio, up to
    # LARGEST_PROBE pixels a side, so that probing stays cheap)
    factor = 2
    while max(height, width) * factor <= LARGEST_PROBE and not works(height * factor, width * factor):
        factor *= 2
    if max(height, width) * factor > LARGEST_PROBE:
        return
    low, high = height * factor // 2, height * factor  # low fails, high works (heights)
    while high - low > 1:
        middle = (low + high) // 2
        if works(middle, math.ceil(middle * width / height)):
            high = middle
        else:
            low = middle
    smallest = f"{high}x{math.ceil(high * width / height)}"
    raise ValueError(
        f"the image ({height}x{width}) is too small for this model: its forward pass fails with "
        f"{type(error).__name__}: {str(error).strip().splitlines()[0]}. The smallest size that works is "
        f"{smallest} (height x width); render at that size or larger (size=... or featvis.param.image(...))"
    ) from error


def memory_error(error: BaseException, image_shape: tuple[int, ...], where: str) -> MemoryError:
    """The ``MemoryError`` featvis raises for an allocator's out-of-memory ``error`` in ``where``, on
    images of ``image_shape``: what ran out, and what to render instead.

    Example:
        >>> error = RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        >>> print(str(memory_error(error, (64, 3, 224, 224), "step 12")).split(" (")[0])
        step 12 ran out of memory on 64 image(s) of 224x224
    """
    count, _, *size = image_shape
    return MemoryError(
        f"{where} ran out of memory on {count} image(s) of {'x'.join(map(str, size))} "
        f"({type(error).__name__}: {str(error).strip().splitlines()[0][:200]}). Render fewer images at a time "
        "(a smaller batch in featvis.param.image, or render_channels(..., batch_size=...); "
        "featvis.auto_batch_size says how many fit) or smaller ones (size=...)"
    )


def out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is the allocator running out of memory (CUDA's, or a CPU's "can't allocate").

    Example:
        >>> out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8 GB"))
        True
        >>> out_of_memory(RuntimeError("Given groups=1, weight of size [4, 3, 3, 3]"))
        False
    """
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(error)
    return "out of memory" in text.lower() or "can't allocate memory" in text or "Cannot allocate memory" in text


#: the convolutions whose in_channels say how many channels a model's input has
_CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)

_SIGNALS = (3, "1-d signals (N, C, L): audio, time series")
_VOLUMES = (5, "3-d volumes (N, C, T, H, W): video, medical scans")
#: the first layers that say a model takes 1-d signals or 3-d volumes: the rank of its input, and what it is
_OTHER_RANKS = {nn.Conv1d: _SIGNALS, nn.ConvTranspose1d: _SIGNALS, nn.Conv3d: _VOLUMES, nn.ConvTranspose3d: _VOLUMES}


def _first_convolution(model: nn.Module) -> tuple[str, nn.Module] | None:
    """The first convolution of any rank in ``named_modules()`` order, with its name."""
    return next(((name, m) for name, m in model.named_modules() if isinstance(m, _CONVOLUTIONS)), None)


def _explain_other_input_ranks(model: nn.Module, image_shape: tuple[int, ...], error: Exception) -> None:
    """A ValueError when the model's first convolution is not a 2-d one and the images do not fit it."""
    first = _first_convolution(model)
    if first is None or type(first[1]) not in _OTHER_RANKS:
        return
    rank, takes = _OTHER_RANKS[type(first[1])]
    if len(image_shape) == rank:  # the right rank: another cause
        return
    raise ValueError(
        f"this model's first convolution is a {type(first[1]).__name__}: it takes {takes}, and featvis made "
        f"images {tuple(image_shape)} (N, C, H, W). featvis's parameterisations and transforms make and move "
        "2-d images; for other inputs pass param= a module whose forward() returns tensors of the model's input "
        "shape, and transforms=[] (or your own); objectives read (N, C, L) and (N, C, T, H, W) activations "
        "channels first"
    ) from error


def check_value(value: Any, objective: Objective) -> None:
    """Raise a clear error unless the objective's ``value`` is a finite scalar tensor.

    Example:
        >>> from featvis.objectives import as_objective
        >>> try:
        ...     check_value(torch.ones(2), as_objective(lambda acts: acts["0"]))
        ... except ValueError as error:
        ...     print(str(error).split(";")[0])
        the objective <lambda> must return a scalar, got a tensor of shape (2,)
    """
    if not isinstance(value, Tensor):
        raise TypeError(f"the objective {objective} must return a tensor, got {type(value).__name__}")
    if value.numel() != 1:
        raise ValueError(
            f"the objective {objective} must return a scalar, got a tensor of shape {tuple(value.shape)}; "
            "reduce it, e.g. with .mean() or .sum()"
        )
    if not bool(torch.isfinite(value).all()):
        raise ValueError(
            f"the objective {objective} is {value.item()} on the start image, before any step; "
            "an objective must give a finite number (guard divisions and logarithms, e.g. with an epsilon)"
        )


def layer_width(model: nn.Module, ref: LayerRef, size: tuple[int, int], channels: int, preprocess: Any) -> int:
    """Number of channels of layer ``ref``, from one forward pass of one grey image of ``size``.

    Example:
        >>> from torch import nn
        >>> layer_width(nn.Sequential(nn.Conv2d(3, 5, 3)), LayerRef("0"), (8, 8), 3, False)
        5
    """
    output = layer_output(model, ref, torch.full((1, channels, *size), 0.5), preprocess)
    return int(output.shape[1] if output.ndim != 3 else output.shape[2])


def layer_output(model: nn.Module, layer: LayerSpec, images: Tensor, preprocess: Any = None) -> Tensor:
    """``layer``'s output for ``images`` (``[0, 1]``, prepared as ``preprocess`` says, as in
    :func:`featvis.render_vis`), in one forward pass cut after the layer, without gradients, the model in
    eval mode and given back as it was: float32, on the model's device.

    Example:
        >>> from torch import nn
        >>> layer_output(nn.Sequential(nn.Conv2d(3, 5, 3), nn.ReLU()), "1", torch.rand(2, 3, 6, 6)).shape
        torch.Size([2, 5, 4, 4])
    """
    device, dtype = model_device_dtype(model)
    prepare = resolve_preprocess(preprocess, model, device)
    ref = LayerRef.parse(layer)
    with rendering_state(model, warn=False), ActivationCapture(model, [ref]) as capture, torch.no_grad():
        return capture.run(prepare(images.to(device)).to(dtype))[ref].float()
