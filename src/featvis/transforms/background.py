"""Transparent images onto backgrounds: what makes a unit's picture keep only what the unit needs.

:class:`RandomBackground` composites images whose last channel is their opacity (RGBA, from
``featvis.param.image(..., alpha=True)``) over a background drawn anew for each image at each
step: uniform noise, a flat colour, or blurred (low-resolution) noise. The unit cannot rely on
what shows through the transparent parts, so only the parts it needs pay to stay opaque (with
:func:`featvis.objectives.transparency` rewarding the rest).

Example:
    >>> import torch
    >>> RandomBackground()(torch.rand(2, 4, 16, 16)).shape
    torch.Size([2, 3, 16, 16])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..generators import generator

__all__ = ["BACKGROUNDS", "RandomBackground"]

#: the kinds of background :class:`RandomBackground` draws from
BACKGROUNDS = ("noise", "flat", "blurred")


class RandomBackground(nn.Module):
    """Composite ``(N, C + 1, H, W)`` images (opacity last) over a random background each:
    ``(N, C, H, W)``, ``colour * alpha + background * (1 - alpha)``.

    Args:
        kinds: the backgrounds to draw from, each image its own: ``"noise"`` (each pixel uniform in
            [0, 1]), ``"flat"`` (one uniform colour), ``"blurred"`` (noise on a grid of
            ``blur_cells`` cells, smoothly upsampled).
        blur_cells: the blurred noise's cells along the smaller side.

    Example:
        >>> import torch
        >>> opaque = torch.cat([torch.full((1, 3, 8, 8), 0.25), torch.ones(1, 1, 8, 8)], dim=1)
        >>> bool((RandomBackground()(opaque) == 0.25).all())  # nothing shows through
        True
    """

    def __init__(self, kinds: Sequence[str] = BACKGROUNDS, blur_cells: int = 4) -> None:
        super().__init__()
        kinds = tuple(kinds)
        unknown = [kind for kind in kinds if kind not in BACKGROUNDS]
        if not kinds or unknown:
            raise ValueError(f"kinds must be some of {BACKGROUNDS}, got {kinds!r}")
        if not isinstance(blur_cells, int) or blur_cells < 1:
            raise ValueError(f"blur_cells must be a whole number >= 1, got {blur_cells!r}")
        self.kinds, self.blur_cells = kinds, blur_cells

    def backgrounds(self, count: int, channels: int, height: int, width: int, like: Tensor) -> Tensor:
        """``count`` backgrounds ``(count, channels, height, width)``, each of a kind drawn at random.

        Example:
            >>> import torch
            >>> RandomBackground(["flat"]).backgrounds(2, 3, 4, 4, torch.zeros(1)).flatten(2).std(2).max().item()
            0.0
        """
        draw = generator(like.device)
        options = {"device": like.device, "dtype": like.dtype, "generator": draw}
        made = []
        if "noise" in self.kinds:
            made.append(torch.rand(count, channels, height, width, **options))
        if "flat" in self.kinds:
            made.append(torch.rand(count, channels, 1, 1, **options).expand(-1, -1, height, width))
        if "blurred" in self.kinds:
            cells = (
                max(1, round(self.blur_cells * height / min(height, width))),
                max(1, round(self.blur_cells * width / min(height, width))),
            )
            small = torch.rand(count, channels, *cells, **options)
            made.append(F.interpolate(small, size=(height, width), mode="bicubic", align_corners=False).clamp(0, 1))
        if len(made) == 1:
            return made[0]
        which = torch.randint(len(made), (count,), device=like.device, generator=draw)
        stacked = torch.stack(made)  # (kinds, N, C, H, W)
        return stacked[which, torch.arange(count, device=like.device)]

    def forward(self, images: Tensor) -> Tensor:
        if images.ndim != 4 or images.shape[1] < 2:
            raise ValueError(
                f"RandomBackground takes (N, C + 1, H, W) images with their opacity last, got {tuple(images.shape)}"
            )
        colours, alpha = images[:, :-1], images[:, -1:]
        count, channels, height, width = colours.shape
        background = self.backgrounds(count, channels, height, width, images)
        return colours * alpha + background * (1 - alpha)

    def extra_repr(self) -> str:
        return f"kinds={self.kinds}, blur_cells={self.blur_cells}"
