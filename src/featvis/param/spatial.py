"""Spatial bases: pixels, a 1/f-scaled Fourier spectrum, a Laplacian pyramid and a low-resolution tensor.

Each is a :class:`~featvis.param.Basis`: an :class:`torch.nn.Module` whose ``forward()`` takes
no argument and returns an unbounded ``(N, C, H, W)`` tensor, with a ``set_raw(raw)`` method to
start from an image. The helpers below them (resizing, the expected variance of a random start)
are shared with the other bases of the package.

Example:
    >>> from featvis.param import FourierImage
    >>> FourierImage(1, 3, 16, 16)().shape
    torch.Size([1, 3, 16, 16])
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..sizes import is_large
from .basis import check_size, draw_normal

__all__ = [
    "DEFAULT_DECAY",
    "LARGE_IMAGE_DECAY",
    "FourierImage",
    "LaplacianPyramidImage",
    "LowResImage",
    "PixelImage",
    "UpsampleMode",
    "check_mode",
    "default_decay",
    "fourier_frequencies",
    "fourier_start_variance",
    "half_spectrum_weights",
    "upsample",
    "upsampled_noise_variance",
]

#: The default exponent of the ``1/f`` amplitude scaling (why 1.4: docs/benchmarks.md).
DEFAULT_DECAY = 1.4
#: ... and for large images (``featvis.sizes.LARGE_IMAGE``), such as ImageNet's 224x224 (why: docs/benchmarks.md).
LARGE_IMAGE_DECAY = 1.6


def default_decay(height: int, width: int) -> float:
    """The ``1/f`` exponent :func:`featvis.param.image` uses at this size: :data:`DEFAULT_DECAY`, or
    :data:`LARGE_IMAGE_DECAY` for large images (``featvis.sizes.LARGE_IMAGE`` pixels a side and up).

    Example:
        >>> default_decay(32, 32), default_decay(224, 224)
        (1.4, 1.6)
    """
    return LARGE_IMAGE_DECAY if is_large((height, width)) else DEFAULT_DECAY


#: How a small tensor is upsampled to the image size.
UpsampleMode = Literal["bilinear", "bicubic"]


class PixelImage(nn.Module):
    """One learnable number per pixel and channel (an unbounded image).

    Args:
        batch, channels, height, width: the shape of the image batch.
        sd: standard deviation of the random initial values.

    Example:
        >>> basis = PixelImage(1, 3, 8, 8)
        >>> basis().shape
        torch.Size([1, 3, 8, 8])
    """

    def __init__(self, batch: int, channels: int, height: int, width: int, sd: float = 0.01) -> None:
        super().__init__()
        check_size(batch, channels, height, width)
        self.sd = float(sd)
        self.pixels = nn.Parameter(torch.empty(batch, channels, height, width))
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Draw the random start anew from ``generator`` (``None``: torch's global one).

        Example:
            >>> basis = PixelImage(1, 3, 4, 4)
            >>> basis.reset_parameters(torch.Generator().manual_seed(0)); basis.pixels.shape
            torch.Size([1, 3, 4, 4])
        """
        draw_normal([self.pixels], self.sd, generator)

    def forward(self) -> Tensor:
        return self.pixels

    @torch.no_grad()
    def set_raw(self, raw: Tensor) -> None:
        """Set the parameters so that ``forward()`` returns ``raw``.

        Example:
            >>> basis = PixelImage(1, 1, 2, 2)
            >>> basis.set_raw(torch.ones(1, 1, 2, 2)); float(basis().detach().sum())
            4.0
        """
        self.pixels.copy_(raw)


def fourier_frequencies(height: int, width: int) -> Tensor:
    """Spatial frequency magnitude (cycles per pixel) of each real-FFT bin.

    The result has shape ``(height, width // 2 + 1)``, the layout of
    :func:`torch.fft.rfft2`, and is correct for odd and even sizes.

    Example:
        >>> fourier_frequencies(4, 4)[0, :3]
        tensor([0.0000, 0.2500, 0.5000])
    """
    fy = torch.fft.fftfreq(height)[:, None]
    fx = torch.fft.rfftfreq(width)[None, :]
    return torch.sqrt(fx * fx + fy * fy)


class FourierImage(nn.Module):
    """An image parameterised by its real-FFT spectrum, with 1/f amplitude scaling.

    Each frequency bin's learnable complex coefficient is multiplied by
    ``S / max(f * S, 1) ** decay`` before the inverse FFT (``S = max(H, W)``,
    ``f`` in cycles per pixel, so ``f * S`` counts cycles across the image). High
    frequencies get small steps and the optimiser does not waste its steps on
    pixel noise (Olah et al., 2017). The coarsest frequencies have gain ``S`` at
    every ``decay`` and every size, so the step a learning rate makes at the
    coarse scale is the same for a 32x32 image and a 224x224 one. With
    ``decay=1`` this is Lucid's scaling ``1 / max(f, 1 / S)``; Lucid then divides
    the image by 4 and featvis does not, which is the same as a 4 times larger
    learning rate.

    Args:
        batch, channels, height, width: the shape of the image batch.
        decay: exponent of the ``1/f`` amplitude scaling (``0``: every frequency has gain ``S``).
        sd: standard deviation of the random initial spectrum.

    Example:
        >>> basis = FourierImage(2, 3, 31, 20, decay=1.0)
        >>> basis().shape
        torch.Size([2, 3, 31, 20])
    """

    scale: Tensor

    def __init__(
        self,
        batch: int,
        channels: int,
        height: int,
        width: int,
        decay: float = DEFAULT_DECAY,
        sd: float = 0.01,
    ) -> None:
        super().__init__()
        check_size(batch, channels, height, width)
        self.height, self.width, self.decay = height, width, float(decay)
        freqs = fourier_frequencies(height, width)
        longest = max(height, width)
        scale = longest / torch.clamp(freqs * longest, min=1.0) ** self.decay
        self.register_buffer("scale", scale, persistent=False)
        # real and imaginary parts, last dimension
        self.sd = float(sd)
        self.spectrum = nn.Parameter(torch.empty(batch, channels, *freqs.shape, 2))
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Draw the random start anew from ``generator`` (``None``: torch's global one).

        Example:
            >>> basis = FourierImage(1, 3, 8, 8)
            >>> basis.reset_parameters(torch.Generator().manual_seed(0)); basis().shape
            torch.Size([1, 3, 8, 8])
        """
        draw_normal([self.spectrum], self.sd, generator)

    def forward(self) -> Tensor:
        coefficients = torch.view_as_complex(self.spectrum) * self.scale
        raw = torch.fft.irfft2(coefficients, s=(self.height, self.width), norm="ortho")
        return raw

    @torch.no_grad()
    def set_raw(self, raw: Tensor) -> None:
        """Set the spectrum so that ``forward()`` returns ``raw`` (up to rounding).

        Example:
            >>> basis = FourierImage(1, 1, 5, 6)
            >>> target = torch.rand(1, 1, 5, 6)
            >>> basis.set_raw(target); bool(torch.allclose(basis(), target, atol=1e-5))
            True
        """
        coefficients = torch.fft.rfft2(raw, norm="ortho") / self.scale
        self.spectrum.copy_(torch.view_as_real(coefficients))


# ---- resizing and the variance of a random start, shared with the other bases --------------
def check_mode(mode: str) -> None:
    """Raise a ``ValueError`` unless ``mode`` is an :data:`UpsampleMode`.

    Example:
        >>> check_mode("bicubic")
        >>> check_mode("nearest")
        Traceback (most recent call last):
        ...
        ValueError: mode must be 'bilinear' or 'bicubic', got 'nearest'
    """
    if mode not in ("bilinear", "bicubic"):
        raise ValueError(f"mode must be 'bilinear' or 'bicubic', got {mode!r}")


def _resize_matrix(size_in: int, size_out: int, mode: str = "bilinear") -> Tensor:
    """The ``(size_out, size_in)`` float64 matrix that ``F.interpolate`` (``align_corners=False``)
    applies along one axis: column ``i`` is the resized unit impulse at ``i``."""
    impulses = torch.eye(size_in, dtype=torch.float64).reshape(size_in, 1, size_in, 1)
    resized = F.interpolate(impulses, size=(size_out, 1), mode=mode, align_corners=False)
    return resized[:, 0, :, 0].T.contiguous()


def upsample(values: Tensor, size: tuple[int, int], mode: str) -> Tensor:
    """``values`` resized to ``size`` (``align_corners=False``), or ``values`` itself if it has that size.

    Example:
        >>> upsample(torch.ones(1, 1, 2, 2), (4, 4), "bilinear").shape
        torch.Size([1, 1, 4, 4])
    """
    if tuple(values.shape[-2:]) == size:
        return values
    return F.interpolate(values, size=size, mode=mode, align_corners=False)


def upsampled_noise_variance(small: tuple[int, int], size: tuple[int, int], mode: str) -> float:
    """Mean variance per pixel of unit white noise of shape ``small`` once upsampled to ``size``.

    Example:
        >>> upsampled_noise_variance((4, 4), (4, 4), "bilinear")
        1.0
    """
    variance = 1.0
    for size_in, size_out in zip(small, size):
        matrix = _resize_matrix(size_in, size_out, mode)
        variance *= float((matrix**2).sum(dim=1).mean())
    return variance


def half_spectrum_weights(height: int, width: int) -> Tensor:
    """How many bins of the full spectrum each real-FFT bin stands for in an image's energy:
    2 for the inner columns, 1 for the zero-frequency column (and the Nyquist one for even widths).

    Example:
        >>> half_spectrum_weights(2, 4)
        tensor([[1., 2., 1.],
                [1., 2., 1.]], dtype=torch.float64)
    """
    weights = torch.full((height, width // 2 + 1), 2.0, dtype=torch.float64)
    weights[:, 0] = 1.0
    if width % 2 == 0:
        weights[:, -1] = 1.0
    return weights


def fourier_start_variance(height: int, width: int, decay: float, sd: float = 1.0) -> float:
    """Expected mean square pixel of a :class:`FourierImage` whose spectrum is drawn with ``sd``.

    Parseval, with the inverse real FFT keeping the Hermitian part of the zero-frequency and
    Nyquist columns: an inner bin's real and imaginary parts count twice each, an edge-column
    bin once in all.

    Example:
        >>> fourier_start_variance(1, 1, decay=1.0)  # one bin, gain 1, real part only
        1.0
    """
    scale = FourierImage(1, 1, height, width, decay=decay).scale.double()
    weights = half_spectrum_weights(height, width) ** 2  # 4 inside, 1 in the edge columns
    return sd**2 * float((weights * scale**2).sum()) / (height * width)


def _largest_levels(height: int, width: int) -> int:
    return math.floor(math.log2(max(height, width))) + 1


class LaplacianPyramidImage(nn.Module):
    """An image that is the sum of tensors at full, half, quarter, ... resolution, each upsampled.

    Level ``n`` is a learnable ``(N, C, ceil(H / 2**n), ceil(W / 2**n))`` tensor, upsampled to
    ``(H, W)`` (``mode``, ``align_corners=False``) and multiplied by a fixed gain
    ``c * (2**n) ** (decay - 1)``. White noise on a grid ``k`` times coarser puts ``k**2`` times
    more power in each frequency it reaches, so these gains give the sum of levels a
    ``1 / f**decay`` amplitude spectrum, like :class:`FourierImage` with the same ``decay``
    (Lucid's pyramid, all gains equal, is the ``decay=1`` case). ``c`` makes the expected
    pixel variance of the random start equal to a :class:`FourierImage`'s with the same
    ``decay`` and ``sd``. Coarse levels move many pixels together, so the optimiser reaches
    large shapes first; the finest level still lets every pixel change.

    Args:
        batch, channels, height, width: the shape of the image batch.
        levels: number of levels (default: down to 2 pixels on the shorter side, at least 1;
            at most ``floor(log2(max(H, W))) + 1``, where the coarsest level is 1 pixel).
        decay: the exponent of the ``1/f`` spectrum the gains aim at.
        sd: standard deviation of each level's random start.
        mode: ``"bilinear"`` or ``"bicubic"`` upsampling.

    Example:
        >>> basis = LaplacianPyramidImage(2, 3, 32, 24, levels=4)
        >>> [tuple(t.shape[-2:]) for t in basis.tensors], basis().shape
        ([(32, 24), (16, 12), (8, 6), (4, 3)], torch.Size([2, 3, 32, 24]))
    """

    gains: Tensor

    def __init__(
        self,
        batch: int,
        channels: int,
        height: int,
        width: int,
        levels: int | None = None,
        decay: float = DEFAULT_DECAY,
        sd: float = 0.01,
        mode: UpsampleMode = "bilinear",
    ) -> None:
        super().__init__()
        check_size(batch, channels, height, width)
        check_mode(mode)
        largest = _largest_levels(height, width)
        if levels is None:
            levels = max(1, math.floor(math.log2(min(height, width))))
        if not isinstance(levels, int) or isinstance(levels, bool) or not 1 <= levels <= largest:
            raise ValueError(
                f"levels must be a whole number from 1 to {largest} for a {height}x{width} image "
                f"(the coarsest level is then 1 pixel), got {levels!r}"
            )
        self.height, self.width, self.decay, self.mode = height, width, float(decay), mode
        self.sizes = [(math.ceil(height / 2**n), math.ceil(width / 2**n)) for n in range(levels)]
        shape_gains = [(2.0**n) ** (self.decay - 1.0) for n in range(levels)]
        variance = sum(
            g * g * upsampled_noise_variance(s, (height, width), mode) for g, s in zip(shape_gains, self.sizes)
        )
        c = math.sqrt(fourier_start_variance(height, width, self.decay) / variance)
        self.register_buffer("gains", torch.tensor([c * g for g in shape_gains]), persistent=False)
        self.sd = float(sd)
        self.tensors = nn.ParameterList(nn.Parameter(torch.empty(batch, channels, *s)) for s in self.sizes)
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Draw the random start anew from ``generator`` (``None``: torch's global one), finest level first.

        Example:
            >>> basis = LaplacianPyramidImage(1, 3, 8, 8)
            >>> basis.reset_parameters(torch.Generator().manual_seed(0)); basis().shape
            torch.Size([1, 3, 8, 8])
        """
        draw_normal(self.tensors, self.sd, generator)

    def forward(self) -> Tensor:
        size = (self.height, self.width)
        total = self.gains[0] * upsample(self.tensors[0], size, self.mode)
        for gain, level in zip(self.gains[1:], self.tensors[1:]):
            total = total + gain * upsample(level, size, self.mode)
        return total

    @torch.no_grad()
    def set_raw(self, raw: Tensor) -> None:
        """Set the levels to a Laplacian decomposition of ``raw`` (``forward()`` then returns it).

        From the coarsest level to the finest: the level takes the area-average of what the
        coarser levels leave unexplained; the finest level takes the rest exactly.

        Example:
            >>> basis = LaplacianPyramidImage(1, 1, 8, 8, levels=3)
            >>> target = torch.rand(1, 1, 8, 8)
            >>> basis.set_raw(target); bool(torch.allclose(basis(), target, atol=1e-5))
            True
        """
        size = (self.height, self.width)
        residual = raw.to(self.gains.device, torch.float32).clone()
        for n in reversed(range(len(self.sizes))):
            part = residual if n == 0 else F.interpolate(residual, size=self.sizes[n], mode="area")
            self.tensors[n].copy_(part / self.gains[n])
            residual -= upsample(part, size, self.mode)


class LowResImage(nn.Module):
    """A small learnable tensor upsampled to the image size: an image without fine detail.

    ``forward()`` is ``gain * F.interpolate(low, (H, W), mode=mode, align_corners=False)``.
    Use it for coarse structure (layouts, colours), or as a shared part of several images.
    The default ``gain`` makes the random start's pixel variance that of a
    :class:`FourierImage` with the same ``sd`` (and ``decay``), so that the usual learning
    rate suits it too.

    Args:
        batch, channels, height, width: the shape of the image batch.
        low: the small tensor's ``(height, width)`` (or one number for both).
        factor: alternatively, how many times smaller it is: ``ceil(H / factor), ceil(W / factor)``.
            Give ``low`` or ``factor``, not both; neither means ``factor=4``.
        mode: ``"bilinear"`` or ``"bicubic"``.
        sd: standard deviation of the random start.
        gain: the factor on the upsampled tensor (default: see above).
        decay: the :class:`FourierImage` exponent the default gain is matched to.

    Example:
        >>> basis = LowResImage(1, 3, 32, 32, factor=4)
        >>> basis.low.shape, basis().shape
        (torch.Size([1, 3, 8, 8]), torch.Size([1, 3, 32, 32]))
    """

    row_solver: Tensor
    column_solver: Tensor

    def __init__(
        self,
        batch: int,
        channels: int,
        height: int,
        width: int,
        low: int | tuple[int, int] | None = None,
        factor: float | None = None,
        mode: UpsampleMode = "bilinear",
        sd: float = 0.01,
        gain: float | None = None,
        decay: float = DEFAULT_DECAY,
    ) -> None:
        super().__init__()
        check_size(batch, channels, height, width)
        check_mode(mode)
        if low is not None and factor is not None:
            raise ValueError("give either low=(height, width) or factor, not both")
        if low is None:
            factor = 4 if factor is None else factor
            if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor >= 1:
                raise ValueError(f"factor must be a number >= 1 (how many times smaller), got {factor!r}")
            low = (math.ceil(height / factor), math.ceil(width / factor))
        low_pair = (low, low) if isinstance(low, int) else tuple(low)
        if (
            len(low_pair) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in low_pair)
            or not (1 <= low_pair[0] <= height and 1 <= low_pair[1] <= width)
        ):
            raise ValueError(
                f"low must be a (height, width) pair of whole numbers from 1 to the image's ({height}, {width}), "
                f"got {low!r}"
            )
        self.height, self.width, self.mode = height, width, mode
        self.sd = float(sd)
        self.low = nn.Parameter(torch.empty(batch, channels, *low_pair))
        self.reset_parameters()
        variance = upsampled_noise_variance(low_pair, (height, width), mode)  # type: ignore[arg-type]
        self.gain = math.sqrt(fourier_start_variance(height, width, decay) / variance) if gain is None else float(gain)
        # least squares for set_raw: the upsampling is separable, so its pseudo-inverse is the
        # product of the two axes' pseudo-inverses
        rows = torch.linalg.pinv(_resize_matrix(low_pair[0], height, mode))
        columns = torch.linalg.pinv(_resize_matrix(low_pair[1], width, mode))
        self.register_buffer("row_solver", rows.float(), persistent=False)
        self.register_buffer("column_solver", columns.float(), persistent=False)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Draw the random start anew from ``generator`` (``None``: torch's global one).

        Example:
            >>> basis = LowResImage(1, 3, 16, 16)
            >>> basis.reset_parameters(torch.Generator().manual_seed(0)); basis.low.shape
            torch.Size([1, 3, 4, 4])
        """
        draw_normal([self.low], self.sd, generator)

    def forward(self) -> Tensor:
        return self.gain * upsample(self.low, (self.height, self.width), self.mode)

    @torch.no_grad()
    def set_raw(self, raw: Tensor) -> None:
        """Set the small tensor to the least-squares fit of ``raw`` (exact when ``raw`` is an upsampled one).

        Example:
            >>> basis = LowResImage(1, 1, 8, 8, low=4)
            >>> small = torch.rand(1, 1, 4, 4)
            >>> target = basis.gain * torch.nn.functional.interpolate(small, size=(8, 8), mode="bilinear")
            >>> basis.set_raw(target); bool(torch.allclose(basis.low, small, atol=1e-5))
            True
        """
        raw = raw.to(self.row_solver) / self.gain
        self.low.copy_(torch.einsum("ih,bchw,jw->bcij", self.row_solver, raw, self.column_solver))
