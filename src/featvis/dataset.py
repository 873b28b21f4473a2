"""Dataset examples: the real images that most activate a unit, and the crops its receptive field sees.

A feature visualisation shows what a unit responds to in the extreme; the images of a
data set that excite it most show what it responds to in practice. :func:`top_activating`
runs a model over a data loader (hooked at one layer, stopped there, without gradients,
keeping only the running top ``k``) and returns :class:`DatasetExamples`: the top
images, their scores, where in the dataset they are, where in the image the unit
peaked, and the crop of the image inside the unit's receptive field there.

:func:`receptive_field` finds the input pixels that a position of any layer depends on,
from the support of a gradient (see its docstring); :func:`examples_figure` puts units'
visualisations beside their top images and crops, one labelled row per unit.

Example:
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
    >>> images = torch.rand(20, 3, 12, 12)
    >>> batches = images.split(8)  # any iterable of batches, or a DataLoader
    >>> examples = top_activating(model, batches, ("1", 2), k=3, progress=False)
    >>> examples.images.shape, examples.crops[0].shape
    (torch.Size([3, 3, 12, 12]), torch.Size([3, 3, 3]))
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from .gradients import RELU_LIKE
from .hooks import (
    INPUT,
    ActivationCapture,
    Activations,
    LayerRef,
    LayerSpec,
    MissingLayer,
    channels_first,
    model_device_dtype,
    resolve_layer,
)
from .models import default_input_channels, resolve_preprocess
from .result import RenderResult
from .sizes import size_pair
from .state import rendering_state

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

__all__ = ["Box", "DatasetExamples", "UnitSpec", "examples_figure", "receptive_field", "top_activating"]

#: What :func:`top_activating` ranks images by: ``(layer, channel)``, ``"layer:channel"``,
#: ``(layer, channel, *position)`` or a function of the activations giving one score per image.
UnitSpec = Union[str, tuple, Callable[[Activations], Tensor]]

#: Images whose values go beyond [0, 1] by more than this are taken to be normalised already.
_RANGE_TOLERANCE = 0.05
#: Random probe images per position when finding receptive fields (their supports are joined).
_PROBES = 2
#: Probe images per backward pass when finding receptive fields.
_PROBE_BATCH = 16


# ---- receptive fields ----------------------------------------------------------------
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


def _receptive_boxes(
    model: nn.Module,
    ref: LayerRef,
    positions: Sequence[tuple[int, ...]],
    image_shape: tuple[int, int, int],
    prepare: Callable[[Tensor], Tensor],
    device: torch.device,
    dtype: torch.dtype,
) -> dict[tuple[int, ...], Box]:
    """The receptive field of each position of layer ``ref`` (inside ``_rendering_state``)."""
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
    position = _as_position(position, "position")
    device, dtype = model_device_dtype(model)
    prepare = resolve_preprocess(preprocess, model, device)
    with rendering_state(model):
        probe = torch.zeros(1, channels, height, width, device=device)
        with torch.no_grad(), ActivationCapture(model, [ref]) as capture:
            shape = channels_first(capture.run(prepare(probe).to(dtype))[ref], ref).shape
        _check_position(position, tuple(shape[2:]), ref)
        return _receptive_boxes(model, ref, [position], (channels, height, width), prepare, device, dtype)[position]


# ---- what to rank by -------------------------------------------------------------------
def _as_position(values: Sequence[int], what: str) -> tuple[int, ...]:
    position = tuple(values)
    for value in position:
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{what} must be whole numbers, such as (y, x), got {tuple(values)!r}")
    return position


def _check_position(position: tuple[int, ...], sizes: tuple[int, ...], ref: LayerRef) -> None:
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


@dataclass(frozen=True)
class _Unit:
    """A parsed :data:`UnitSpec`."""

    description: str
    ref: LayerRef | None = None
    channel: int = 0
    position: tuple[int, ...] | None = None  # a neuron's fixed position; None: the channel's peak
    function: Callable[[Activations], Tensor] | None = None

    def score(self, activations: Activations, count: int) -> tuple[Tensor, list[tuple[int, ...]] | None]:
        """One score per image, and where in the layer each was reached."""
        if self.function is not None:
            scores = self.function(activations)
            if not isinstance(scores, Tensor) or tuple(scores.shape) != (count,):
                shape = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
                raise ValueError(
                    f"the unit function {self.description} must return one score per image, a tensor of shape "
                    f"({count},) for this batch, got {shape}; an Objective built with batch=None sums over the "
                    "batch, so write a function such as lambda acts: acts['layer2'][:, 5].amax(dim=(1, 2))"
                )
            return scores, None
        assert self.ref is not None
        units = channels_first(activations[self.ref], self.ref)
        if not 0 <= self.channel < units.shape[1]:
            raise ValueError(
                f"channel {self.channel} is out of range for layer {str(self.ref)!r}, which has "
                f"{units.shape[1]} channels (valid: 0 to {units.shape[1] - 1})"
            )
        units = units[:, self.channel]
        sizes = tuple(units.shape[1:])
        if self.position is not None:
            _check_position(self.position, sizes, self.ref)
            return units[(slice(None), *self.position)], [self.position] * count
        peaks = units.reshape(count, -1).argmax(dim=1)  # the first maximum, in row-major order
        scores = units.reshape(count, -1).gather(1, peaks[:, None])[:, 0]
        if not sizes:
            return scores, [()] * count
        coordinates = torch.stack(torch.unravel_index(peaks.cpu(), sizes), dim=1)
        return scores, [tuple(row) for row in coordinates.tolist()]


def _parse_unit(unit: UnitSpec, model: nn.Module) -> _Unit:
    if isinstance(unit, str):
        name, sep, index = unit.rpartition(":")
        if not sep or not name or not index.strip().isdigit():
            raise ValueError(f"a unit string is 'layer:channel', such as 'layer3:5', got {unit!r}")
        unit = (name, int(index))
    if isinstance(unit, tuple):
        if len(unit) < 2 or not isinstance(unit[0], (str, nn.Module, LayerRef)):
            raise ValueError(
                f"a unit tuple is (layer, channel) or (layer, channel, y, x), got {unit!r}; the layer is a "
                "name from featvis.layer_names(model), a module or a LayerRef"
            )
        ref = LayerRef.parse(unit[0])
        if ref.layer == INPUT:
            raise ValueError("the unit must be a layer of the model, not 'input'")
        resolve_layer(model, ref)  # an unknown layer fails here, before any data is read
        channel, *position = unit[1:]
        if not isinstance(channel, int) or isinstance(channel, bool) or channel < 0:
            raise ValueError(f"the channel of a unit is a whole number from 0, got {channel!r}")
        fixed = _as_position(position, "a neuron's position") if position else None
        description = f"{ref}:{channel}" + (f" at {fixed}" if fixed else "")
        return _Unit(description, ref, channel, fixed)
    if callable(unit):
        return _Unit(getattr(unit, "__name__", None) or type(unit).__name__, function=unit)
    raise TypeError(
        "unit must be (layer, channel), (layer, channel, y, x), 'layer:channel', or a function of the "
        f"activations returning one score per image, got {type(unit).__name__}"
    )


# ---- reading batches -----------------------------------------------------------------
_IMAGE_KEYS = ("image", "images")
_LABEL_KEYS = ("label", "labels")


def _read_batch(batch: Any, number: int, check_range: bool) -> tuple[Tensor, list[Any] | None]:
    """The images (N, C, H, W) float of one batch, and its labels when it has them."""
    labels: Any = None
    images: Any
    if isinstance(batch, Tensor):
        images = batch
    elif isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], Tensor):
        images = batch[0]
        labels = batch[1] if len(batch) > 1 else None
    elif isinstance(batch, Mapping) and any(key in batch for key in _IMAGE_KEYS):
        images = next(batch[key] for key in _IMAGE_KEYS if key in batch)
        labels = next((batch[key] for key in _LABEL_KEYS if key in batch), None)
    else:
        raise TypeError(
            f"batch {number} is {_describe(batch)}; each batch must be an image tensor (N, C, H, W), an "
            "(images, labels) tuple or list, or a dict with an 'image' key. Wrap a Dataset in "
            "torch.utils.data.DataLoader(dataset, batch_size=...)"
        )
    if not isinstance(images, Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        single = isinstance(images, Tensor) and images.ndim == 3
        hint = " (one image: this looks like a Dataset; wrap it in a DataLoader)" if single else ""
        raise ValueError(f"batch {number} holds images of shape {shape}, not a batch (N, C, H, W){hint}")
    if images.dtype == torch.uint8:
        images = images.float() / 255
    elif not images.is_floating_point():
        raise TypeError(f"batch {number} holds {images.dtype} images; give floats in [0, 1] or uint8")
    if check_range and images.numel():
        low, high = float(images.min()), float(images.max())
        if low < -_RANGE_TOLERANCE or high > 1 + _RANGE_TOLERANCE:
            raise ValueError(
                f"batch {number} has values from {low:.3g} to {high:.3g}; give images in [0, 1] (featvis "
                "normalises them with the model's preprocessing), or pass preprocess=False if your loader "
                "already gives the model's input"
            )
    if isinstance(labels, Tensor):
        labels = labels.tolist() if labels.ndim == 1 and len(labels) == len(images) else None
    elif isinstance(labels, (list, tuple)):
        labels = list(labels) if len(labels) == len(images) else None
    else:
        labels = None
    return images, labels


def _describe(batch: Any) -> str:
    if isinstance(batch, Mapping):
        return f"a dict with keys {list(batch)[:6]}"
    if isinstance(batch, (tuple, list)):
        first = type(batch[0]).__name__ if batch else "nothing"
        return f"a {type(batch).__name__} of {len(batch)} items starting with a {first}"
    return f"a {type(batch).__name__}"


# ---- the result ------------------------------------------------------------------------
@dataclass
class DatasetExamples:
    """The top images of a dataset for one unit (best first), from :func:`top_activating`.

    Attributes:
        unit: what was ranked by, e.g. ``"layer2:5"``.
        images: the top images, ``(k, C, H, W)`` on the CPU, as the data gave them.
        scores: their scores, ``(k,)``: the channel's largest activation in the image
            (a neuron's activation, or the function's value).
        indices: their positions in the data, counting images in the order the data
            gave them, from 0.
        positions: where the channel peaked in each image, in the layer's coordinates
            (``(y, x)``; ``()`` for a layer without positions); ``None`` for a function.
        boxes: the receptive field of each position, in image pixels (see
            :func:`receptive_field`); ``None`` for a function or with ``crop=False``.
        crops: each image cut to its box, ``(C, h, w)`` tensors (smaller near borders).
        labels: the labels the batches came with, if they had any.
        seen: how many images were ranked.

    Example:
        >>> examples = DatasetExamples("demo", torch.rand(2, 3, 8, 8), torch.tensor([2.0, 1.0]), torch.tensor([4, 0]))
        >>> len(examples), examples.grid(scale=2).width  # two 16-pixel tiles and 2-pixel gaps
        (2, 38)
    """

    unit: str
    images: Tensor
    scores: Tensor
    indices: Tensor
    positions: list[tuple[int, ...]] | None = None
    boxes: list[Box] | None = None
    crops: list[Tensor] | None = None
    labels: list[Any] | None = None
    seen: int = 0

    def __len__(self) -> int:
        return self.images.shape[0]

    def crop_tiles(self, size: tuple[int, int] | None = None) -> Tensor:
        """The crops on white tiles of one size, ``(k, C, H, W)``, each enlarged by the same whole factor.

        Every crop is magnified by the largest whole factor at which the largest crop fits
        ``size`` (default: the images' size), and centred, so crops keep their relative sizes.

        Example:
            >>> examples = DatasetExamples("demo", torch.rand(1, 3, 8, 8), torch.ones(1), torch.zeros(1))
            >>> examples.crops = [torch.zeros(3, 3, 2)]
            >>> examples.crop_tiles((8, 8))[0, 0]
            tensor([[1., 1., 1., 1., 1., 1., 1., 1.],
                    [1., 1., 0., 0., 0., 0., 1., 1.],
                    [1., 1., 0., 0., 0., 0., 1., 1.],
                    [1., 1., 0., 0., 0., 0., 1., 1.],
                    [1., 1., 0., 0., 0., 0., 1., 1.],
                    [1., 1., 0., 0., 0., 0., 1., 1.],
                    [1., 1., 0., 0., 0., 0., 1., 1.],
                    [1., 1., 1., 1., 1., 1., 1., 1.]])
        """
        if self.crops is None:
            raise ValueError(
                "these examples have no crops: they were ranked by a function (no position) or with crop=False"
            )
        height, width = size if size is not None else tuple(self.images.shape[-2:])
        largest_h = max(crop.shape[1] for crop in self.crops)
        largest_w = max(crop.shape[2] for crop in self.crops)
        factor = max(1, min(height // largest_h, width // largest_w))
        tiles = torch.ones(len(self.crops), self.images.shape[1], height, width)
        for tile, crop in zip(tiles, self.crops):
            big = crop.repeat_interleave(factor, dim=1).repeat_interleave(factor, dim=2)[:, :height, :width]
            top, left = (height - big.shape[1]) // 2, (width - big.shape[2]) // 2
            tile[:, top : top + big.shape[1], left : left + big.shape[2]] = big
        return tiles

    def grid(
        self, *, crops: bool = False, nrow: int | None = None, scale: int = 1, labels: bool | Sequence[object] = True
    ) -> PILImage:
        """The top images (or with ``crops=True`` their crops) as a PIL grid, captioned with their scores.

        Args:
            crops: show the receptive-field crops instead of the whole images.
            nrow: images per row (default: all in one row).
            scale: enlarge each image this many times.
            labels: ``True`` for the scores, ``False`` for none, or one caption per image.

        Example:
            >>> examples = DatasetExamples("demo", torch.rand(3, 3, 8, 8), torch.ones(3), torch.arange(3))
            >>> examples.grid(scale=4).width  # three 32-pixel tiles in a row, 2-pixel gaps
            104
        """
        images = self.crop_tiles() if crops else self.images
        captions = [f"{float(s):.3g}" for s in self.scores] if labels is True else (labels or None)
        result = RenderResult(images.float().clamp(0, 1), {}, torch.zeros(0), self.unit, 0)
        return result.grid(nrow=nrow or max(1, len(self)), labels=captions, scale=scale)

    def save_grid(self, path: str | os.PathLike[str], **grid_options: Any) -> None:
        """Save :meth:`grid` as a PNG (options as there).

        Example:
            >>> import tempfile, pathlib
            >>> examples = DatasetExamples("demo", torch.rand(2, 3, 8, 8), torch.ones(2), torch.arange(2))
            >>> with tempfile.TemporaryDirectory() as folder:
            ...     examples.save_grid(pathlib.Path(folder) / "top.png", scale=2)
        """
        self.grid(**grid_options).save(path)


# ---- ranking -------------------------------------------------------------------------
def top_activating(
    model: nn.Module,
    data: Iterable[Any],
    unit: UnitSpec | list[UnitSpec],
    k: int = 9,
    *,
    preprocess: Callable[[Tensor], Tensor] | bool | None = None,
    crop: bool = True,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> DatasetExamples | list[DatasetExamples]:
    """The ``k`` images of ``data`` that most activate ``unit``, best first, with their crops.

    One pass over the data, without gradients, in eval mode, with a hook on the unit's
    layer only and the forward pass stopped there. Only the running top ``k`` are kept
    (on the CPU), so memory does not grow with the dataset. Equal scores are ranked in
    the order the data gave the images, so the result does not depend on the batch
    size; a shuffling loader changes ``indices`` (they count images as they came).

    Args:
        model: the network (it comes back untouched: weights, train/eval mode,
            ``requires_grad``, no hooks).
        data: a ``torch.utils.data.DataLoader`` or any iterable of batches. A batch is
            an image tensor ``(N, C, H, W)``, an ``(images, labels, ...)`` tuple or list,
            or a dict with an ``"image"`` (or ``"images"``) key and optionally
            ``"label"``/``"labels"``. Images are floats in [0, 1] (uint8 is divided by
            255), unnormalised, all of one size.
        unit: what to rank by:

            - ``(layer, channel)`` or ``"layer:channel"``: a channel; an image scores
              the channel's largest activation anywhere in it, and ``positions`` says
              where (the first such place in row-major order);
            - ``(layer, channel, y, x)``: one neuron (``(layer, channel, t)`` for a
              token of ``(N, tokens, C)`` activations);
            - a function ``activations -> (N,)`` tensor of scores, such as
              ``lambda acts: acts["layer3"][:, 5].mean(dim=(1, 2))`` (the layers it
              reads are found on the first batch). It has no position, so no crops.
            - a list of these: all of them from one pass over the data (one
              forward pass per batch, stopped after the deepest layer needed).
        k: how many images to keep (fewer if the data holds fewer).
        preprocess: what turns [0, 1] images into the model's input (default: the
            model's own normalisation; ``False``: none, and no range check).
        crop: find each top image's receptive-field box and crop (see
            :func:`receptive_field`).
        device: where the batches go (default: the model's device). It must be the
            model's device (featvis does not move the model); it matters for a model
            without parameters or buffers, which runs wherever its input is.
        progress: show a tqdm progress bar over the batches.

    Returns:
        :class:`DatasetExamples`, or a list of them (in order) for a list of units.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1)).eval()
        >>> images, labels = torch.rand(30, 3, 16, 16), torch.arange(30)
        >>> loader = DataLoader(TensorDataset(images, labels), batch_size=8)
        >>> examples = top_activating(model, loader, ("2", 1), k=4, progress=False)
        >>> examples.scores.shape, examples.boxes[0].height <= 5, examples.labels == examples.indices.tolist()
        (torch.Size([4]), True, True)
        >>> [len(e) for e in top_activating(model, loader, [("2", 0), "0:3"], k=2, progress=False)]
        [2, 2]
    """
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a whole number of at least 1 (images to keep), got {k!r}")
    if isinstance(data, torch.utils.data.Dataset) and not isinstance(data, torch.utils.data.IterableDataset):
        raise TypeError(
            f"data is a {type(data).__name__}: a Dataset gives one image at a time; wrap it in "
            "torch.utils.data.DataLoader(dataset, batch_size=64) to give batches"
        )
    if isinstance(data, (Tensor, str, bytes)) or not hasattr(data, "__iter__"):
        raise TypeError(
            f"data must be a DataLoader or an iterable of batches, got {type(data).__name__}; for one tensor "
            "of images use images.split(batch_size)"
        )
    many = isinstance(unit, list)
    units = [_parse_unit(one, model) for one in (unit if many else [unit])]
    if not units:
        raise ValueError("no units given: pass a unit, or a non-empty list of units")
    device, dtype = _run_device(model, device)
    prepare = resolve_preprocess(preprocess, model, device)
    _warn_if_shuffled(data)
    from tqdm.auto import tqdm

    tops = [_RunningTop(k, with_positions=one.function is None) for one in units]
    layers = [one.ref for one in units if one.ref is not None]
    total = len(data) if hasattr(data, "__len__") else None  # type: ignore[arg-type]
    description = units[0].description if len(units) == 1 else f"{len(units)} units"
    seen, size = 0, None
    with rendering_state(model):
        with (
            torch.no_grad(),
            ActivationCapture(model, layers) as capture,
            tqdm(data, total=total, desc=description, disable=not progress, leave=False) as bar,
        ):
            for number, batch in enumerate(bar):
                images, labels = _read_batch(batch, number, check_range=preprocess is not False)
                count = images.shape[0]
                if count == 0:
                    continue
                if size is not None and images.shape[1:] != size:
                    raise ValueError(
                        f"batch {number} holds images of size {tuple(images.shape[1:])}, earlier batches "
                        f"{tuple(size)}; all images must have one size (resize or crop them)"
                    )
                size = images.shape[1:]
                on_device = images.to(device)
                scored = _score_batch(units, capture, prepare(on_device).to(dtype), on_device, count)
                for top, (scores, positions) in zip(tops, scored):
                    top.add(scores, positions, images, labels, seen)
                seen += count
        if size is None:
            raise ValueError("data gave no images: it is empty (check the DataLoader and its dataset)")
        # the receptive fields of every position needed, one batched computation per layer
        needed: dict[LayerRef, list[tuple[int, ...]]] = {}
        for top, one in zip(tops, units):
            if crop and one.ref is not None and top.positions is not None:
                needed.setdefault(one.ref, []).extend(top.positions)
        image_shape = (int(size[0]), int(size[1]), int(size[2]))
        fields = {
            ref: _receptive_boxes(model, ref, positions, image_shape, prepare, device, dtype)
            for ref, positions in needed.items()
        }
        results = [top.result(one, seen, fields.get(one.ref) if one.ref else None) for top, one in zip(tops, units)]
    return results if many else results[0]


def _run_device(model: nn.Module, device: torch.device | str | None) -> tuple[torch.device, torch.dtype]:
    """The device the batches are sent to, and the model's dtype; a device the model is not on is refused."""
    model_device, dtype = model_device_dtype(model)
    if device is None:
        return model_device, dtype
    chosen = torch.device(device)
    has_tensors = any(True for _ in model.parameters()) or any(True for _ in model.buffers())
    if has_tensors and (chosen.type, chosen.index or 0) != (model_device.type, model_device.index or 0):
        raise ValueError(
            f"device={str(chosen)!r} but the model is on {str(model_device)!r}; featvis does not move your "
            f"model: call model.to({str(chosen)!r}) first, or leave device out"
        )
    return chosen, dtype


class _RunningTop:
    """The best ``k`` images seen so far for one unit, ordered by score, then by data order."""

    def __init__(self, k: int, with_positions: bool) -> None:
        self.k = k
        self.scores = torch.zeros(0)
        self.indices = torch.zeros(0, dtype=torch.long)
        self.images: Tensor | None = None
        self.positions: list[tuple[int, ...]] | None = [] if with_positions else None
        self.labels: list[Any] | None = []

    def add(
        self,
        scores: Tensor,
        positions: list[tuple[int, ...]] | None,
        images: Tensor,
        labels: list[Any] | None,
        first_index: int,
    ) -> None:
        """Merge one batch (its first image is number ``first_index`` of the data)."""
        count = images.shape[0]
        # candidates: the current top (ordered by score, then index) followed by this batch (in data
        # order); a stable sort keeps that order among equal scores, so ties go to the earlier image
        candidates = torch.cat([self.scores, scores.detach().float().cpu()])
        ranking = torch.nan_to_num(candidates, nan=-math.inf)  # a NaN score ranks last
        keep = torch.sort(ranking, descending=True, stable=True).indices[: self.k]
        previous = self.scores.shape[0]
        self.scores = candidates[keep]
        self.indices = torch.cat([self.indices, torch.arange(first_index, first_index + count)])[keep]
        # only the images that enter the top are copied (to the CPU); the batch itself is let go
        is_new = keep >= previous
        entering = images[(keep[is_new] - previous).to(images.device)].detach().cpu().float()
        pool = entering if self.images is None else torch.cat([self.images, entering])
        rows = keep.clone()
        rows[is_new] = previous + torch.arange(int(is_new.sum()))
        self.images = pool[rows]
        if self.positions is not None and positions is not None:
            everything = self.positions + positions
            self.positions = [everything[i] for i in keep.tolist()]
        if self.labels is not None:
            self.labels = None if labels is None else [(self.labels + labels)[i] for i in keep.tolist()]

    def result(self, unit: _Unit, seen: int, fields: dict[tuple[int, ...], Box] | None) -> DatasetExamples:
        """The examples, with the receptive-field boxes and crops of their positions when ``fields`` has them."""
        assert self.images is not None
        boxes = crops = None
        if fields is not None and self.positions is not None:
            boxes = [fields[position] for position in self.positions]
            crops = [image[:, b.top : b.bottom, b.left : b.right].clone() for image, b in zip(self.images, boxes)]
        return DatasetExamples(
            unit=unit.description,
            images=self.images,
            scores=self.scores,
            indices=self.indices,
            positions=self.positions,
            boxes=boxes,
            crops=crops,
            labels=self.labels,
            seen=seen,
        )


def _score_batch(
    units: list[_Unit], capture: ActivationCapture, inputs: Tensor, images: Tensor, count: int
) -> list[tuple[Tensor, list[tuple[int, ...]] | None]]:
    """Run one batch and score every unit; hook each layer a unit function reads that is not hooked yet, and retry."""
    for _ in range(len(list(capture.model.modules())) + 1):
        activations = capture.run(inputs, image=images)
        try:
            return [unit.score(activations, count) for unit in units]
        except MissingLayer as missing:
            capture.add(missing.module, missing.name)
    raise RuntimeError("could not find the layers read by the unit functions")  # pragma: no cover


def _warn_if_shuffled(data: Any) -> None:
    sampler = getattr(data, "sampler", None)
    if isinstance(sampler, torch.utils.data.RandomSampler):
        warnings.warn(
            "the DataLoader shuffles: indices count the images in the order it gave them, which are not "
            "dataset indices; use shuffle=False to find the images in the dataset again",
            stacklevel=3,
        )


# ---- pictures -----------------------------------------------------------------------
def _fit(images: Tensor, size: tuple[int, int]) -> Tensor:
    """Images resized to ``size`` (bilinear) when they are not that size already."""
    if tuple(images.shape[-2:]) == size:
        return images
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False).clamp(0, 1)


def examples_figure(
    examples: Sequence[DatasetExamples],
    visualisations: Tensor | RenderResult | None = None,
    *,
    labels: Sequence[object] | None = None,
    crops: bool = True,
    scale: int = 3,
) -> PILImage:
    """One labelled row per unit: its visualisation, its top images, then their crops.

    Args:
        examples: one :class:`DatasetExamples` per unit (all with the same ``k``).
        visualisations: one image per unit, ``(units, C, H, W)`` in [0, 1] or a
            :class:`~featvis.render.RenderResult` (e.g. from
            :func:`featvis.render_channels`); resized to the images' size if needed.
            ``None`` shows the examples only.
        labels: the caption under each visualisation (default: each unit's name).
        crops: add the receptive-field crops after the images, each on a white tile,
            all of a row enlarged by the same whole factor (the largest that fits).
        scale: enlarge every tile this many times.

    Returns:
        A PIL image. The images are captioned with their scores, the crops with their
        index in the data.

    Example:
        >>> examples = DatasetExamples("c0", torch.rand(2, 3, 8, 8), torch.ones(2), torch.arange(2))
        >>> examples_figure([examples, examples], torch.rand(2, 3, 8, 8), crops=False, scale=2).width
        56
    """
    from PIL import Image

    if not examples:
        raise ValueError("no examples to show")
    if isinstance(visualisations, RenderResult):
        visualisations = visualisations.images
    if visualisations is not None and len(visualisations) != len(examples):
        raise ValueError(f"got {len(visualisations)} visualisations for {len(examples)} units; give one per unit")
    if labels is not None and len(labels) != len(examples):
        raise ValueError(f"got {len(labels)} labels for {len(examples)} units; give one per unit")
    if scale < 1 or int(scale) != scale:
        raise ValueError(f"scale must be a positive whole number, got {scale!r}")
    height, width = examples[0].images.shape[-2:]
    size = (int(height) * scale, int(width) * scale)  # tiles are made at their final size: crops enlarge more
    rows = []
    for number, unit in enumerate(examples):
        tiles = [_fit(_enlarge(unit.images.float(), scale), size)]
        captions = [f"{float(s):.3g}" for s in unit.scores]
        if visualisations is not None:
            tiles.insert(0, _fit(_enlarge(visualisations[number : number + 1].float().cpu(), scale), size))
            captions.insert(0, str(labels[number]) if labels is not None else unit.unit)
        if crops and unit.crops is not None:
            tiles.append(unit.crop_tiles(size))
            captions += [f"#{int(i)}" for i in unit.indices]
        images = torch.cat([_match_channels(t, examples[0].images.shape[1]) for t in tiles]).clamp(0, 1)
        result = RenderResult(images, {}, torch.zeros(0), unit.unit, 0)
        rows.append(result.grid(nrow=len(images), labels=captions))
    canvas = Image.new(rows[0].mode, (max(r.width for r in rows), sum(r.height for r in rows)), color="white")
    top = 0
    for row in rows:
        canvas.paste(row, (0, top))
        top += row.height
    return canvas


def _enlarge(images: Tensor, scale: int) -> Tensor:
    """Each pixel repeated ``scale`` times along both axes."""
    return images.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)


def _match_channels(images: Tensor, channels: int) -> Tensor:
    if images.shape[1] == channels:
        return images
    if images.shape[1] == 1:
        return images.expand(-1, channels, -1, -1)
    raise ValueError(f"cannot show {images.shape[1]}-channel visualisations beside {channels}-channel images")
