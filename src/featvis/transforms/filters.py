"""Filters and normalisation: a random Gaussian blur drawn per image, and per-channel normalisation.

Example:
    >>> import torch
    >>> RandomBlur((0.0, 1.0))(torch.rand(2, 3, 8, 8)).shape
    torch.Size([2, 3, 8, 8])
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..generators import generator

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "Normalize", "RandomBlur"]

#: Mean and standard deviation of ImageNet's RGB channels (torchvision's models).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def _replicate(images: Tensor, pad: int, dim: int) -> Tensor:
    """Pad ``pad`` copies of the edge on both sides of ``dim`` (as ``F.pad(mode="replicate")``, which
    ``torch.compile`` does not always get right on CPU)."""
    first, last = images.narrow(dim, 0, 1), images.narrow(dim, images.shape[dim] - 1, 1)
    sizes = [-1] * images.ndim
    sizes[dim] = pad
    return torch.cat([first.expand(sizes), images, last.expand(sizes)], dim=dim)


def _pad_edges(images: Tensor, rows: int, columns: int) -> Tensor:
    """Repeat the edge ``rows`` times above and below and ``columns`` times left and right.

    ``F.pad(mode="replicate")`` is one operation forward and backward; under ``torch.compile`` the
    padding is built from slices, which the compiler always gets right on CPU.
    """
    if torch.compiler.is_compiling():
        padded = _replicate(images, columns, -1) if columns else images
        return _replicate(padded, rows, -2) if rows else padded
    return F.pad(images, (columns, columns, rows, rows), mode="replicate")


#: RandomBlur kernels up to this many taps a side run as one 2-D convolution, wider ones as two 1-D ones
_LARGEST_SQUARE_KERNEL = 5


class RandomBlur(nn.Module):
    """Gaussian blur whose standard deviation (in pixels) is drawn per image from ``sigma``.

    Optimising through a random blur makes the picture keep its meaning when it is
    blurred or resized, instead of resting on pixel-exact detail: a small network
    on 32x32 inputs is otherwise easily driven by patterns that a 2x resize erases.
    The kernel is a Gaussian ``2 * ceil(2 * max(sigma)) + 1`` taps wide, borders
    replicated, applied in one 2-D convolution when it is small (the default
    half-pixel blur: 3x3) and as two 1-D ones otherwise; sigma 0 leaves the image
    as it is.

    Args:
        sigma: ``(low, high)`` range, or one number for a fixed blur.

    Example:
        >>> blur = RandomBlur((0.0, 1.0))
        >>> blur(torch.rand(4, 3, 16, 16)).shape
        torch.Size([4, 3, 16, 16])
    """

    def __init__(self, sigma: float | tuple[float, float] = (0.0, 1.0)) -> None:
        super().__init__()
        low, high = (sigma, sigma) if isinstance(sigma, (int, float)) else sigma
        if not 0 <= low <= high:
            raise ValueError(f"sigma must be a range 0 <= low <= high in pixels, got {sigma!r}")
        self.low, self.high = float(low), float(high)
        self.radius = max(1, math.ceil(2 * self.high))

    def forward(self, images: Tensor) -> Tensor:
        n, c, h, w = images.shape
        if self.high == 0:
            return images
        draws = torch.rand(n, device=images.device, dtype=images.dtype, generator=generator(images.device))
        sigma = self.low + (self.high - self.low) * draws
        offsets = torch.arange(-self.radius, self.radius + 1, device=images.device, dtype=images.dtype)
        weights = torch.exp(-0.5 * (offsets / sigma.clamp_min(1e-3)[:, None]) ** 2)
        weights = (weights / weights.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # (n * c, taps)
        flat = images.reshape(1, n * c, h, w)
        r, taps = self.radius, weights.shape[1]
        if taps <= _LARGEST_SQUARE_KERNEL:  # one small 2-D convolution costs less than two 1-D ones
            kernels = weights[:, :, None] * weights[:, None, :]
            flat = F.conv2d(_pad_edges(flat, r, r), kernels[:, None], groups=n * c)
            return flat.view(n, c, h, w)
        flat = F.conv2d(_pad_edges(flat, 0, r), weights.view(n * c, 1, 1, taps), groups=n * c)
        flat = F.conv2d(_pad_edges(flat, r, 0), weights.view(n * c, 1, taps, 1), groups=n * c)
        return flat.view(n, c, h, w)

    def extra_repr(self) -> str:
        return f"sigma=({self.low}, {self.high})"


class Normalize(nn.Module):
    """Subtract a per-channel mean and divide by a per-channel standard deviation.

    Example:
        >>> normalize = Normalize(IMAGENET_MEAN, IMAGENET_STD)
        >>> normalize(torch.full((1, 3, 2, 2), 0.485))[0, 0, 0, 0].item()
        0.0
    """

    mean: Tensor
    std: Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        mean_t = torch.as_tensor(mean, dtype=torch.float32).flatten()
        std_t = torch.as_tensor(std, dtype=torch.float32).flatten()
        if mean_t.shape != std_t.shape:
            raise ValueError(f"mean and std need the same number of channels, got {len(mean_t)} and {len(std_t)}")
        if bool((std_t <= 0).any()):
            raise ValueError("std must be positive")
        self.register_buffer("mean", mean_t.reshape(1, -1, 1, 1))
        self.register_buffer("std", std_t.reshape(1, -1, 1, 1))

    def forward(self, images: Tensor) -> Tensor:
        if images.ndim != 4 or images.shape[1] != self.mean.shape[1]:
            raise ValueError(
                f"Normalize expects images with {self.mean.shape[1]} channels, got shape {tuple(images.shape)}"
            )
        return (images - self.mean.to(images)).div_(self.std.to(images))  # in place on the fresh difference

    def extra_repr(self) -> str:
        def show(values: Tensor) -> str:
            return "(" + ", ".join(f"{v:.4g}" for v in values.flatten().tolist()) + ")"

        return f"mean={show(self.mean)}, std={show(self.std)}"
