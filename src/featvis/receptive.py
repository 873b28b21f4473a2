"""Receptive fields: the pixels of an image that a position of any layer depends on.

:func:`receptive_field` finds them for any model from the support of a gradient, with the
backward pass linearised (ReLU-like functions and clamps pass the gradient straight through,
max pooling spreads it over its window) so that a probe image's values hide no pixel.
``receptive_boxes`` does the same for many positions of one layer at once, as
:func:`featvis.dataset.top_activating` needs for its crops. A field is a :class:`Box`.

Example:
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Conv2d(3, 4, 5), nn.ReLU(), nn.MaxPool2d(2)).eval()
    >>> box = receptive_field(model, "2", (1, 1), 16)  # a 2x2 window of 5x5 kernels: 6x6 pixels
    >>> box, (box.height, box.width)
    (Box(top=2, left=2, bottom=8, right=8), (6, 6))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from .gradients import RELU_LIKE
from .hooks import ActivationCapture, LayerRef, LayerSpec, channels_first, model_device_dtype, resolve_layer
from .models import default_input_channels, resolve_preprocess
from .sizes import size_pair
from .state import rendering_state

__all__ = ["Box", "receptive_field"]

#: Random probe images per position when finding receptive fields (their supports are joined).
_PROBES = 2
#: Probe images per backward pass when finding receptive fields.
_PROBE_BATCH = 16


class Box(NamedTuple):
    """A rectangle of image pixels: rows ``top`` to ``bottom - 1``, columns ``left`` to ``right - 1``.

    Example:
        >>> box = Box(top=2, left=0, bottom=7, right=3)
        >>> box.height, box.width
        (5, 3)
    """

    top: int
    left: int
    bottom: int
    right: int

    @property
    def height(self) -> int:
        """Rows in the box."""
        return self.bottom - self.top

    @property
    def width(self) -> int:
        """Columns in the box."""
        return self.right - self.left


def _straight_through(value: Tensor, gradient_path: Tensor) -> Tensor:
    """``value`` forward, the gradient of ``gradient_path`` backward."""
    return gradient_path + (value - gradient_path).detach()


#: Functions whose gradient is zero on part of their input (the ReLU-like ones and other clipping
#: functions), and the out-of-place function that computes their value (for the in-place ones).
_CLIPPING: dict[Callable[..., Any], Callable[..., Any]] = {
    **RELU_LIKE,
    F.threshold: F.threshold,
    F.threshold_: F.threshold,
    F.hardsigmoid: F.hardsigmoid,
    F.hardswish: F.hardswish,
    torch.clamp: torch.clamp,
    Tensor.clamp: torch.clamp,
    torch.clamp_: torch.clamp,
    Tensor.clamp_: torch.clamp,
    torch.clip: torch.clamp,
    Tensor.clip: torch.clamp,
    Tensor.clip_: torch.clamp,
    torch.clamp_min: torch.clamp_min,
    Tensor.clamp_min: torch.clamp_min,
    torch.clamp_min_: torch.clamp_min,
    Tensor.clamp_min_: torch.clamp_min,
}

_MAX_POOL_ARGUMENTS = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")


class _Linearised(TorchFunctionMode):
    """Inside, gradients flow as if the network were linear, while values stay the same.

    ReLU-like functions pass the gradient everywhere (straight through) and max pooling passes
    it to its whole window (as average pooling does), so that neither hides a pixel on which a
    position depends only because of the probe image's values. In-place versions compute
    out of place here: the gradient path needs the input as it was.
    """

    def __torch_function__(
        self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = dict(kwargs or {})
        if func in _CLIPPING and args and isinstance(args[0], Tensor) and args[0].is_floating_point():
            kwargs.pop("inplace", None)
            return _straight_through(_CLIPPING[func](*args, **kwargs), args[0])
        if func is F.max_pool2d:
            bound = dict(zip(_MAX_POOL_ARGUMENTS, args))
            bound.update(kwargs)
            dilation = bound.get("dilation", 1)
            if not bound.get("return_indices", False) and dilation in (1, (1, 1), [1, 1]):
                value = func(*args, **kwargs)
                window = F.avg_pool2d(
                    bound["input"],
                    bound["kernel_size"],
                    bound.get("stride"),
                    bound.get("padding", 0),
                    bool(bound.get("ceil_mode", False)),
                    count_include_pad=True,
                )
                return _straight_through(value, window)
        if func is F.adaptive_max_pool2d:
            bound = dict(zip(("input", "output_size", "return_indices"), args))
            bound.update(kwargs)
            if not bound.get("return_indices", False):
                value = func(*args, **kwargs)
                return _straight_through(value, F.adaptive_avg_pool2d(bound["input"], bound["output_size"]))
        return func(*args, **kwargs)


def receptive_boxes(
    model: nn.Module,
    ref: LayerRef,
    positions: Sequence[tuple[int, ...]],
    image_shape: tuple[int, int, int],
    prepare: Callable[[Tensor], Tensor],
    device: torch.device,
    dtype: torch.dtype,
) -> dict[tuple[int, ...], Box]:
    """The receptive field of each of many positions of layer ``ref``, a few probes per backward pass.

    The work of :func:`receptive_field`, without its checks: ``ref`` must name a layer of
    ``model``, each position must be in range, and the call must be made inside
    :func:`~featvis.state.rendering_state` (so that the model runs in eval mode, without
    weight gradients). The probes come from a fixed seed: the same call gives the same boxes,
    and torch's own random state is left alone.

    Args:
        model: the network.
        ref: the layer.
        positions: positions in the layer's output (see :func:`receptive_field`); repeats
            are computed once.
        image_shape: ``(C, H, W)`` of the images.
        prepare: what turns [0, 1] images into the model's input (its preprocessing).
        device: where the probe images go (the model's device).
        dtype: the model's dtype.

    Returns:
        A :class:`Box` for each position.

    Example:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3)).eval()
        >>> layer, cpu, identity = LayerRef.parse("0"), torch.device("cpu"), lambda images: images
        >>> with rendering_state(model):
        ...     boxes = receptive_boxes(model, layer, [(0, 0), (5, 2)], (3, 8, 8), identity, cpu, torch.float32)
        >>> boxes[(5, 2)]
        Box(top=5, left=2, bottom=8, right=5)
    """
    channels, height, width = image_shape
    generator = torch.Generator().manual_seed(0)  # probes repeat from call to call; torch's own state is untouched
    unique = list(dict.fromkeys(positions))
    per_pass = max(1, _PROBE_BATCH // _PROBES)
    boxes: dict[tuple[int, ...], Box] = {}
    for start in range(0, len(unique), per_pass):
        chunk = unique[start : start + per_pass]
        probe = torch.rand((len(chunk) * _PROBES, channels, height, width), generator=generator)
        probe = probe.to(device).requires_grad_(True)
        with torch.enable_grad(), _Linearised(), ActivationCapture(model, [ref]) as capture:
            activations = channels_first(capture.run(prepare(probe).to(dtype), image=probe)[ref], ref)
            # a random mixture of all channels: the layer's receptive field, which no single
            # channel's zero weights can shrink (a cancellation to exactly zero has probability zero)
            mixture = torch.randn(activations.shape[1], generator=generator).to(activations)
            total = activations.new_zeros(())
            for number, position in enumerate(chunk):
                rows = slice(number * _PROBES, (number + 1) * _PROBES)
                total = total + (activations[(rows, slice(None), *position)] * mixture).sum()
            (gradient,) = torch.autograd.grad(total.float(), probe)
        support = gradient.detach().abs().amax(dim=1) > 0  # (probes, H, W)
        for number, position in enumerate(chunk):
            boxes[position] = _bounding_box(support[number * _PROBES : (number + 1) * _PROBES].any(dim=0))
    return boxes


def _bounding_box(mask: Tensor) -> Box:
    """The smallest box holding every ``True`` of a 2-D mask (the whole image if there is none)."""
    rows = mask.any(dim=1).nonzero().flatten()
    columns = mask.any(dim=0).nonzero().flatten()
    if rows.numel() == 0:  # the position does not depend on the image at all
        return Box(0, 0, mask.shape[0], mask.shape[1])
    return Box(int(rows[0]), int(columns[0]), int(rows[-1]) + 1, int(columns[-1]) + 1)


def receptive_field(
    model: nn.Module,
    layer: LayerSpec,
    position: Sequence[int],
    image_size: int | tuple[int, int],
    *,
    image_channels: int | None = None,
    preprocess: Callable[[Tensor], Tensor] | bool | None = None,
) -> Box:
    """The pixels of an image that one position of a layer depends on.

    Found for any model from the support of a gradient: the gradient, with respect to
    random probe images, of a random mixture of the layer's channels at ``position``.
    A pixel is in the field when that gradient is not zero there. So that the probe's
    values do not hide pixels, the backward pass is linearised: ReLU, ReLU6, hardtanh,
    threshold, clamp and hard-sigmoid/swish pass the gradient straight through, and
    max pooling spreads it over its whole window; two probes are joined for what this
    does not cover. Zero padding makes the field smaller near the borders: the box is
    always inside the image. Weights that are exactly zero leave their pixels out (the
    field is what the trained unit can see, not only the architecture's reach).

    Args:
        model: the network (it comes back untouched).
        layer: the layer.
        position: where in the layer's output: ``(y, x)`` for ``(N, C, H, W)``
            activations, ``(token,)`` for ``(N, tokens, C)``, ``()`` for ``(N, C)``.
        image_size: the image's size, ``H`` or ``(H, W)`` (the field depends on it
            only near the borders).
        image_channels: channels of the image (default: what the model takes).
        preprocess: as in :func:`featvis.render_vis` (default: the model's own).

    Returns:
        A :class:`Box` in image pixels (``bottom`` and ``right`` excluded).

    Example:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2)).eval()
        >>> receptive_field(model, "2", (3, 3), 16)  # rows 6-8 of layer 0 see rows 5-9 of the image
        Box(top=5, left=5, bottom=10, right=10)
        >>> receptive_field(model, "0", (0, 0), 16)  # clipped by the image's border
        Box(top=0, left=0, bottom=2, right=2)
    """
    height, width = size_pair(image_size)
    channels = image_channels if image_channels is not None else default_input_channels(model)
    ref = LayerRef.parse(layer)
    resolve_layer(model, ref)
    position = as_position(position, "position")
    device, dtype = model_device_dtype(model)
    prepare = resolve_preprocess(preprocess, model, device)
    with rendering_state(model):
        probe = torch.zeros(1, channels, height, width, device=device)
        with torch.no_grad(), ActivationCapture(model, [ref]) as capture:
            shape = channels_first(capture.run(prepare(probe).to(dtype))[ref], ref).shape
        check_position(position, tuple(shape[2:]), ref)
        return receptive_boxes(model, ref, [position], (channels, height, width), prepare, device, dtype)[position]


# ---- positions ------------------------------------------------------------------------
def as_position(values: Sequence[int], what: str) -> tuple[int, ...]:
    """``values`` as a position tuple, or a ``TypeError`` naming ``what`` if one of them is not a whole number.

    Example:
        >>> as_position([3, 4], "position")
        (3, 4)
        >>> as_position((3, 4.5), "a neuron's position")
        Traceback (most recent call last):
        ...
        TypeError: a neuron's position must be whole numbers, such as (y, x), got (3, 4.5)
    """
    position = tuple(values)
    for value in position:
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{what} must be whole numbers, such as (y, x), got {tuple(values)!r}")
    return position


def check_position(position: tuple[int, ...], sizes: tuple[int, ...], ref: LayerRef) -> None:
    """Check that ``position`` fits a layer whose activations have ``sizes`` per channel, or say what does.

    Args:
        position: ``(y, x)``, ``(token,)`` or ``()``.
        sizes: the layer's sizes after the batch and channel axes, e.g. ``(H, W)``.
        ref: the layer, for the message.

    Raises:
        ValueError: the position has the wrong number of axes, or is out of range.

    Example:
        >>> check_position((2, 3), (4, 4), LayerRef.parse("layer1"))
        >>> check_position((2, 4), (4, 4), LayerRef.parse("layer1"))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: position (2, 4) is out of range for layer 'layer1', whose activation map is 4x4 (valid: ...)
    """
    if len(position) != len(sizes):
        kind = {0: "(N, C): give no position", 1: "(N, tokens, C): give (token,)", 2: "(N, C, H, W): give (y, x)"}
        raise ValueError(
            f"position {position} does not fit layer {str(ref)!r}, whose activations are "
            f"{kind.get(len(sizes), f'{len(sizes)}-D per channel')}"
        )
    for value, size in zip(position, sizes):
        if not 0 <= value < size:
            raise ValueError(
                f"position {position} is out of range for layer {str(ref)!r}, whose activation map is "
                f"{'x'.join(map(str, sizes))} (valid: 0 to size - 1 along each axis)"
            )
