"""Colour and noise: random changes of brightness, contrast and saturation, and Gaussian noise, drawn
per image from the run's generator. Ghiasi et al. 2022 (*What do Vision Transformers Learn? A Visual
Exploration*) found them, beside the usual geometric ones, what makes a ViT's pictures readable.

Example:
    >>> import torch
    >>> ColorJitter(0.2, 0.2, 0.2)(torch.rand(2, 3, 8, 8)).shape
    torch.Size([2, 3, 8, 8])
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..generators import generator

__all__ = ["ColorJitter", "GaussianNoise"]

#: the weights of the red, green and blue channels in an image's grey (ITU-R 601, as torchvision's)
GREY = (0.299, 0.587, 0.114)


def _check_amount(name: str, amount: float) -> float:
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not 0 <= amount <= 1:
        raise ValueError(f"{name} must be a number from 0 to 1, got {amount!r}")
    return float(amount)


class ColorJitter(nn.Module):
    """Scale each image's brightness, contrast and saturation by factors drawn uniformly from
    ``[1 - amount, 1 + amount]`` (each image its own), in that order, differentiably.

    Brightness multiplies the pixels; contrast moves them from the image's mean grey; saturation
    from each pixel's grey (RGB images only: other channel counts skip it).

    Args:
        brightness, contrast, saturation: the largest change of each, from 0 to 1.

    Example:
        >>> import torch
        >>> grey = torch.full((4, 3, 8, 8), 0.5)
        >>> bool(torch.allclose(ColorJitter(0, 0.5, 0.5)(grey), grey))  # a flat grey has no contrast or colour
        True
    """

    def __init__(self, brightness: float = 0.1, contrast: float = 0.1, saturation: float = 0.1) -> None:
        super().__init__()
        self.brightness = _check_amount("brightness", brightness)
        self.contrast = _check_amount("contrast", contrast)
        self.saturation = _check_amount("saturation", saturation)

    def forward(self, images: Tensor) -> Tensor:
        count = images.shape[0]
        draws = torch.rand(count, 3, device=images.device, dtype=images.dtype, generator=generator(images.device))
        amounts = torch.tensor([self.brightness, self.contrast, self.saturation], device=images.device)
        factors = (1 + (draws * 2 - 1) * amounts.to(images.dtype)).reshape(count, 3, 1, 1, 1).unbind(1)
        brightness, contrast, saturation = factors
        out = images * brightness
        out = (out - out.mean(dim=(1, 2, 3), keepdim=True)) * contrast + out.mean(dim=(1, 2, 3), keepdim=True)
        if images.shape[1] == 3:
            weights = torch.tensor(GREY, device=images.device, dtype=images.dtype).reshape(1, 3, 1, 1)
            grey = (out * weights).sum(dim=1, keepdim=True)
            out = (out - grey) * saturation + grey
        return out

    def extra_repr(self) -> str:
        return f"brightness={self.brightness}, contrast={self.contrast}, saturation={self.saturation}"


class GaussianNoise(nn.Module):
    """Add Gaussian noise of standard deviation ``sd`` to every pixel (each image its own draw).

    Example:
        >>> import torch
        >>> noisy = GaussianNoise(0.05)(torch.zeros(8, 3, 16, 16))
        >>> 0.04 < float(noisy.std()) < 0.06
        True
    """

    def __init__(self, sd: float = 0.02) -> None:
        super().__init__()
        if isinstance(sd, bool) or not isinstance(sd, (int, float)) or sd < 0:
            raise ValueError(f"sd must be a number >= 0, got {sd!r}")
        self.sd = float(sd)

    def forward(self, images: Tensor) -> Tensor:
        if self.sd == 0:
            return images
        noise = torch.randn(images.shape, device=images.device, dtype=images.dtype, generator=generator(images.device))
        return images + self.sd * noise

    def extra_repr(self) -> str:
        return f"sd={self.sd}"
