"""Pictures of image batches: tensors to PIL images, and captioned grids of them.

:class:`GridOptions` holds how a grid is laid out (images per row, padding,
captions, enlargement); :func:`grid` draws one. :class:`~featvis.result.RenderResult`
(``result.grid(...)``, ``result.save_grid(...)``) and the animations of
``featvis.animation`` (one grid per frame) take the same four options.

Example:
    >>> import torch
    >>> from featvis.grid import GridOptions, grid
    >>> grid(torch.rand(4, 3, 8, 8), GridOptions(nrow=2, labels=["a", "b", "c", "d"], scale=4)).size
    (70, 94)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

import torch
from torch import Tensor

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

__all__ = [
    "READABLE_MAX_SCALE",
    "READABLE_SIDE",
    "GridOptions",
    "Labels",
    "displayable",
    "grid",
    "over_checkerboard",
    "readable_scale",
    "to_pil",
]

#: a caption per image, ``True`` for the units a render names, or ``None``/``False`` for none
Labels = Union[Sequence[object], bool, None]


#: small images are enlarged to about this many pixels a side by default (grids, notebooks) ...
READABLE_SIDE = 128
#: ... but at most this many times
READABLE_MAX_SCALE = 8


def readable_scale(height: int, width: int) -> int:
    """How many times to enlarge ``height x width`` images (nearest neighbour) so that they and their
    captions can be read: to about :data:`READABLE_SIDE` pixels a side, at most
    :data:`READABLE_MAX_SCALE` times; images that large already stay as they are.

    Example:
        >>> readable_scale(32, 32), readable_scale(8, 8), readable_scale(224, 224)
        (4, 8, 1)
    """
    return max(1, min(READABLE_MAX_SCALE, READABLE_SIDE // max(height, width, 1)))


@dataclass(frozen=True)
class GridOptions:
    """How a grid of images is laid out.

    Args:
        nrow: images per row (a near-square grid by default).
        padding: white pixels between and around the images.
        labels: a caption under each image: one per image, or ``True`` for the units a
            render names (:attr:`RenderResult.units <featvis.result.RenderResult.units>`).
        scale: enlarge each image this many times (nearest neighbour), so that 32x32
            pictures and their captions can be read.

    Example:
        >>> GridOptions(nrow=4, scale=2).padding
        2
        >>> GridOptions(scale=0)
        Traceback (most recent call last):
        ...
        ValueError: scale must be a positive whole number, got 0
    """

    nrow: int | None = None
    padding: int = 2
    labels: Labels = None
    scale: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.scale, bool) or self.scale < 1 or int(self.scale) != self.scale:
            raise ValueError(f"scale must be a positive whole number, got {self.scale!r}")

    def captions(self, count: int, units: Sequence[object] = ()) -> list[str]:
        """The caption of each of ``count`` images (none when :attr:`labels` is ``None`` or ``False``).

        Example:
            >>> GridOptions(labels=True).captions(2, units=[3, 7])
            ['3', '7']
        """
        labels = self.labels
        if labels is None or labels is False:
            return []
        if labels is True:
            if len(units) != count:
                raise ValueError("labels=True shows the rendered units, but this result has none; pass the labels")
            labels = units
        captions = [str(label) for label in labels]
        if len(captions) != count:
            raise ValueError(f"got {len(captions)} labels for {count} images; give one label per image")
        return captions


def displayable(images: Tensor) -> Tensor:
    """``(N, C, H, W)`` in [0, 1] -> ``(N, 1 or 3, H, W)``: grayscale and RGB as they are,
    two channels averaged, more than three shown by their first three.

    Example:
        >>> displayable(torch.rand(2, 5, 4, 4)).shape
        torch.Size([2, 3, 4, 4])
    """
    channels = images.shape[1]
    if channels in (1, 3):
        return images
    if channels == 2:
        return images.mean(dim=1, keepdim=True)
    return images[:, :3]


def over_checkerboard(images: Tensor, square: int | None = None) -> Tensor:
    """Images whose last channel is their opacity (RGBA, or grey and alpha), composited over a grey
    checkerboard, as image editors show transparency: ``(N, C + 1, H, W) -> (N, C, H, W)``.

    Args:
        images: in [0, 1], the alpha channel last.
        square: the side of the board's squares in pixels (default: an eighth of the smaller side,
            at least 2).

    Example:
        >>> clear = torch.zeros(1, 4, 8, 8)  # fully transparent: only the board shows
        >>> sorted(set(over_checkerboard(clear, square=4).flatten().tolist()))
        [0.6000000238418579, 0.800000011920929]
    """
    height, width = images.shape[-2:]
    square = square or max(2, min(height, width) // 8)
    rows = torch.arange(height, device=images.device) // square
    columns = torch.arange(width, device=images.device) // square
    board = torch.where((rows[:, None] + columns[None, :]) % 2 == 0, 0.8, 0.6).to(images.dtype)
    colours, alpha = images[:, :-1].clamp(0, 1), images[:, -1:].clamp(0, 1)
    return colours * alpha + board * (1 - alpha)


def to_pil(images: Tensor, alpha: bool = False) -> list[PILImage]:
    """One PIL image per batch element (``"L"`` for 1 channel, else ``"RGB"``; with ``alpha``, the last
    channel is the opacity: ``"LA"`` or ``"RGBA"``), values clamped to [0, 1].

    Example:
        >>> [picture.mode for picture in to_pil(torch.zeros(2, 1, 4, 4))]
        ['L', 'L']
        >>> to_pil(torch.zeros(1, 4, 4, 4), alpha=True)[0].mode
        'RGBA'
    """
    from PIL import Image

    if alpha and images.shape[1] not in (2, 4):
        raise ValueError(f"images with an alpha channel have 2 (grey) or 4 (RGB) channels, got {images.shape[1]}")
    shown = images if alpha else displayable(images)
    array = (shown.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    array = array.permute(0, 2, 3, 1).numpy()
    if array.shape[3] == 1:
        return [Image.fromarray(a[:, :, 0], mode="L") for a in array]
    mode = {2: "LA", 3: "RGB", 4: "RGBA"}[array.shape[3]]
    return [Image.fromarray(a, mode=mode) for a in array]


def caption_font(width: int) -> tuple[Any, int]:
    """A font sized for captions under images ``width`` pixels wide, and the caption strip's height.

    Example:
        >>> caption_font(128)[1]
        18
    """
    from PIL import ImageFont

    size = max(8, min(14, width // 6))
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one fixed bitmap font
        font = ImageFont.load_default()
        size = 11
    return font, size + 4


def fit_text(draw: Any, text: str, font: Any, width: int) -> str:
    """``text``, cut and ended with an ellipsis where it is wider than ``width`` pixels.

    Example:
        >>> from PIL import Image, ImageDraw
        >>> draw = ImageDraw.Draw(Image.new("RGB", (10, 10)))
        >>> font, _ = caption_font(60)
        >>> fit_text(draw, "a very long caption indeed", font, 40).endswith("…")
        True
    """
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def grid(
    images: Tensor, options: GridOptions = GridOptions(), units: Sequence[object] = (), alpha: bool = False
) -> PILImage:
    """All ``images`` in one PIL image, laid out as ``options`` says.

    Args:
        images: ``(N, C, H, W)`` in [0, 1].
        options: the layout.
        units: what each image shows, for ``labels=True``.
        alpha: the last channel is each image's opacity: shown over a checkerboard
            (:func:`over_checkerboard`).

    Example:
        >>> grid(torch.rand(4, 3, 8, 8)).size
        (22, 22)
        >>> grid(torch.rand(2, 4, 8, 8), alpha=True).mode
        'RGB'
    """
    from PIL import Image, ImageDraw

    if alpha:
        images = over_checkerboard(images)
    count = images.shape[0]
    captions = options.captions(count, units)
    tiles = to_pil(images)
    scale, padding = options.scale, options.padding
    if scale != 1:
        tiles = [tile.resize((tile.width * scale, tile.height * scale), Image.NEAREST) for tile in tiles]
    width, height = tiles[0].size
    font, caption_height = caption_font(width) if captions else (None, 0)
    per_row = options.nrow or max(1, math.ceil(math.sqrt(count)))
    rows = math.ceil(count / per_row)
    cell_w, cell_h = width + padding, height + caption_height + padding
    canvas = Image.new(tiles[0].mode, (padding + per_row * cell_w, padding + rows * cell_h), color="white")
    draw = ImageDraw.Draw(canvas)
    for index, tile in enumerate(tiles):
        x = padding + (index % per_row) * cell_w
        y = padding + (index // per_row) * cell_h
        canvas.paste(tile, (x, y))
        if captions:
            text = fit_text(draw, captions[index], font, width)
            text_width = draw.textlength(text, font=font)
            draw.text((x + (width - text_width) / 2, y + height + 1), text, fill="black", font=font)
    return canvas
