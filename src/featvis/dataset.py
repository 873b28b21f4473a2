"""Dataset examples: the real images that most activate a unit, and the crops its receptive field sees.

A feature visualisation shows what a unit responds to in the extreme; the images of a
data set that excite it most show what it responds to in practice. :func:`top_activating`
runs a model over a data loader (hooked at one layer, stopped there, without gradients,
keeping only the running top ``k``) and returns :class:`~featvis.dataset_examples.DatasetExamples`:
the top images, their scores, where in the dataset they are, where in the image the unit
peaked, and the crop of the image inside the unit's receptive field there.

The receptive fields come from ``featvis.receptive`` (:func:`~featvis.receptive.receptive_field`),
the result and its pictures from ``featvis.dataset_examples``
(:func:`~featvis.dataset_examples.examples_figure`: units' visualisations beside their top images
and crops); both are importable from here as well.

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
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Union

import torch
from torch import Tensor, nn

from .dataset_examples import DatasetExamples, examples_figure
from .hooks import (
    INPUT,
    ActivationCapture,
    Activations,
    LayerRef,
    MissingLayer,
    channels_first,
    model_device_dtype,
    resolve_layer,
)
from .models import resolve_preprocess
from .receptive import Box, as_position, check_position, receptive_boxes, receptive_field
from .state import rendering_state

__all__ = ["Box", "DatasetExamples", "UnitSpec", "examples_figure", "receptive_field", "top_activating"]

#: What :func:`top_activating` ranks images by: ``(layer, channel)``, ``"layer:channel"``,
#: ``(layer, channel, *position)`` or a function of the activations giving one score per image.
UnitSpec = Union[str, tuple, Callable[[Activations], Tensor]]

#: Images whose values go beyond [0, 1] by more than this are taken to be normalised already.
_RANGE_TOLERANCE = 0.05


# ---- what to rank by -------------------------------------------------------------------
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
            check_position(self.position, sizes, self.ref)
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
        fixed = as_position(position, "a neuron's position") if position else None
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
            ref: receptive_boxes(model, ref, positions, image_shape, prepare, device, dtype)
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
