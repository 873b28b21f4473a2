"""What :func:`featvis.dataset.top_activating` returns, and pictures of it.

:class:`DatasetExamples` holds one unit's top images of a data set (best first): their
scores, where in the data they are, where in each image the unit peaked, and the crop of
the image inside the unit's receptive field there; :meth:`DatasetExamples.grid` shows them.
:func:`examples_figure` puts units' visualisations beside their top images and crops, one
labelled row per unit.

Example:
    >>> import torch
    >>> examples = DatasetExamples("layer2:5", torch.rand(3, 3, 8, 8), torch.tensor([3.0, 2.0, 1.0]), torch.arange(3))
    >>> figure = examples_figure([examples], torch.rand(1, 3, 8, 8), crops=False)  # enlarged 3 times
    >>> len(examples), figure.width  # the visualisation and 3 images: four 24-pixel tiles, 2-pixel gaps
    (3, 106)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .receptive import Box
from .result import RenderResult

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

__all__ = ["DatasetExamples", "examples_figure"]


@dataclass
class DatasetExamples:
    """The top images of a dataset for one unit (best first), from :func:`~featvis.dataset.top_activating`.

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
            :func:`~featvis.receptive.receptive_field`); ``None`` for a function or with ``crop=False``.
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
        rows.append(result.grid(nrow=len(images), labels=captions, scale=1))  # tiles already sized
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
