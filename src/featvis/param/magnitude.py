"""MACO (magnitude-constrained optimisation, Fel et al. 2023): only the Fourier phase is learnt.

:class:`MacoImage` fixes each channel's amplitude spectrum and learns the phase, so every image
it returns has that spectrum. :func:`natural_amplitude_spectrum` measures the amplitude of your
own images; :func:`power_law_amplitude` makes a natural-looking one without data.

Example:
    >>> from featvis.param import MacoImage
    >>> MacoImage(1, 3, 16, 16)().shape
    torch.Size([1, 3, 16, 16])
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..sizes import Size, size_pair
from .basis import check_size
from .color import OUTPUT_GAIN, ColorDecorrelation, OutputKind, check_output, make_decorrelation
from .spatial import fourier_frequencies, half_spectrum_weights

__all__ = [
    "MACO_PHASE_SCALE",
    "MACO_SLOPE",
    "NATURAL_CONTRAST_DECORRELATED",
    "NATURAL_CONTRAST_PLAIN",
    "MacoImage",
    "natural_amplitude_spectrum",
    "power_law_amplitude",
]

#: Slope of the default amplitude spectrum, ``amplitude ~ 1 / f**MACO_SLOPE`` (the measurements
#: behind it: docs/benchmarks.md).
MACO_SLOPE = 1.25
#: Pixel standard deviation of natural images, mean removed, in each ImageNet-decorrelated
#: channel: the largest column norm of :data:`~featvis.param.IMAGENET_COLOR_CORRELATION`, because
#: :class:`~featvis.param.ColorDecorrelation` divides the matrix by it, so pixels with ImageNet's
#: colour covariance come out with this deviation in every channel. (Whole sample photographs
#: resized to 32x32 give 0.43, 0.57, 0.35.)
NATURAL_CONTRAST_DECORRELATED = 0.4623
#: The same for plain channels: the mean of ImageNet's per-channel deviations (0.229, 0.224, 0.225).
NATURAL_CONTRAST_PLAIN = 0.226
#: The phase is ``phase_scale`` times its parameter: an Adam step of 0.05 turns it by up to a quarter radian
#: (render_vis's default 0.1 of the first 64 steps: half a radian).
MACO_PHASE_SCALE = 5.0


def _fit_to(images: Tensor, size: tuple[int, int]) -> Tensor:
    """Resize (antialiased) so that the images cover ``size``, then crop the centre."""
    height, width = images.shape[-2:]
    scale = max(size[0] / height, size[1] / width)
    covering = (max(size[0], round(height * scale)), max(size[1], round(width * scale)))
    if covering != (height, width):
        images = F.interpolate(images, size=covering, mode="bilinear", align_corners=False, antialias=scale < 1)
    top, left = (covering[0] - size[0]) // 2, (covering[1] - size[1]) // 2
    return images[..., top : top + size[0], left : left + size[1]]


def natural_amplitude_spectrum(
    images: Tensor,
    size: Size,
    *,
    decorrelate: bool | ColorDecorrelation = True,
    output: OutputKind = "sigmoid",
) -> Tensor:
    """The mean amplitude spectrum of your own images, to fix a :class:`MacoImage`'s amplitude.

    Each image is resized (antialiased) to cover ``size`` and its centre cropped, its mean
    colour removed, mapped into the decorrelated space the basis works in
    (``ColorDecorrelation.inverse``), multiplied by the output's slope at the centre (4 for
    ``"sigmoid"``, whose logit is 4 times steeper than the image around 0.5; 1 for
    ``"clamp"``), and transformed with ``rfft2(norm="ortho")``; the result is the mean of the
    absolute values over the images. The zero frequency is 0. Use the same ``decorrelate``
    and ``output`` for :func:`maco`.

    Args:
        images: ``(N, C, H, W)`` or ``(C, H, W)`` images with values in [0, 1], any size.
        size: the image size ``H`` or ``(H, W)`` the spectrum is for.
        decorrelate: ``True`` for ImageNet's colour decorrelation with 3 channels (the identity
            otherwise), ``False`` for none, or your own :class:`ColorDecorrelation`.
        output: the ``output`` of the :class:`Image` it will be used in.

    Returns:
        ``(C, H, W // 2 + 1)`` float32 amplitudes.

    Example:
        >>> photos = torch.rand(4, 3, 40, 50)
        >>> natural_amplitude_spectrum(photos, 16).shape
        torch.Size([3, 16, 9])
    """
    pair = size_pair(size)
    check_output(output)
    images = torch.as_tensor(images).detach().to("cpu", torch.float64)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[0] < 1:
        raise ValueError(f"images must have shape (N, C, H, W) or (C, H, W), got {tuple(images.shape)}")
    if not bool(torch.isfinite(images).all()) or float(images.min()) < 0 or float(images.max()) > 1:
        raise ValueError("images must have finite values in [0, 1]; divide 8-bit images by 255")
    decorrelation = make_decorrelation(decorrelate, images.shape[1])
    fitted = _fit_to(images, pair)
    centred = fitted - fitted.mean(dim=(-2, -1), keepdim=True)
    if decorrelation is not None:
        centred = torch.einsum("ck,bkhw->bchw", torch.linalg.inv(decorrelation.matrix.double()), centred)
    amplitude = torch.fft.rfft2(centred * OUTPUT_GAIN[output], norm="ortho").abs().mean(dim=0)
    amplitude[:, 0, 0] = 0.0
    return amplitude.float()


def power_law_amplitude(
    height: int,
    width: int,
    channels: int = 3,
    *,
    slope: float = MACO_SLOPE,
    contrast: float | Sequence[float] | None = None,
    decorrelate: bool = True,
    output: OutputKind = "sigmoid",
) -> Tensor:
    """A natural-looking amplitude spectrum that needs no data: ``1 / f**slope``, scaled to natural contrast.

    Each channel's amplitude is ``k / (f * max(H, W)) ** slope`` (0 at the zero frequency),
    with ``k`` chosen so that every image with this amplitude, whatever its phase, has pixel
    standard deviation ``contrast`` (Parseval's theorem). The default contrast is natural
    photographs' (:data:`NATURAL_CONTRAST_DECORRELATED` for 3 decorrelated channels,
    :data:`NATURAL_CONTRAST_PLAIN` otherwise) times the output's slope (4 for ``"sigmoid"``),
    consistent with :func:`natural_amplitude_spectrum`.

    Args:
        height, width, channels: the image size and channel count.
        slope: the spectrum's exponent (natural images: about 1).
        contrast: the pixel standard deviation in the basis's space: one number or one per channel.
        decorrelate, output: how the basis is used, to pick the default contrast.

    Returns:
        ``(channels, height, width // 2 + 1)`` float32 amplitudes.

    Example:
        >>> amplitude = power_law_amplitude(16, 16, 1, contrast=0.5)
        >>> basis = MacoImage(1, 1, 16, 16, amplitude)  # any phase: the same contrast
        >>> round(float(basis().detach().std(unbiased=False)), 3)
        0.5
    """
    check_size(1, channels, height, width)
    check_output(output)
    if contrast is None:
        base = NATURAL_CONTRAST_DECORRELATED if (decorrelate and channels == 3) else NATURAL_CONTRAST_PLAIN
        contrast = base * OUTPUT_GAIN[output]
    contrasts = torch.as_tensor(contrast, dtype=torch.float64).reshape(-1)
    if contrasts.numel() == 1:
        contrasts = contrasts.expand(channels)
    if contrasts.numel() != channels or not bool((contrasts >= 0).all()):
        raise ValueError(f"contrast must be one non-negative number or {channels} of them, got {contrast!r}")
    cycles = fourier_frequencies(height, width).double() * max(height, width)
    shape = torch.where(cycles > 0, cycles.clamp(min=1e-12) ** -float(slope), torch.zeros_like(cycles))
    energy = float((half_spectrum_weights(height, width) * shape**2).sum()) / (height * width)
    if energy == 0:  # a 1x1 image has only the zero frequency
        return torch.zeros(channels, height, width // 2 + 1)
    return (contrasts[:, None, None] * shape / math.sqrt(energy)).float()


class MacoImage(nn.Module):
    """Magnitude-constrained image (MACO, Fel et al. 2023): only the Fourier phase is learnt.

    ``forward()`` is ``irfft2(A * exp(i * phase), norm="ortho")`` with a fixed amplitude
    ``A`` (a buffer, per channel) and a learnable phase. Every image it can return has
    exactly the amplitude spectrum ``A``, so a natural ``A`` keeps the picture's energy at
    each scale natural: the optimiser can only move structure around, not add high-frequency
    noise or blow up the contrast. In the zero-frequency column (and the Nyquist column of
    even widths) the phase is made odd (``phase(-k) = -phase(k)``), so that the spectrum is
    that of a real image and the amplitude is kept there too.

    Args:
        batch, channels, height, width: the shape of the image batch.
        amplitude: ``(C, H, W // 2 + 1)`` or ``(H, W // 2 + 1)`` amplitudes, e.g. from
            :func:`natural_amplitude_spectrum`; default :func:`power_law_amplitude`.
        phase_scale: the phase is ``phase_scale`` times the parameter (a larger value turns it faster).

    Example:
        >>> basis = MacoImage(1, 3, 16, 16)
        >>> spectrum = torch.fft.rfft2(basis().detach(), norm="ortho")
        >>> bool(torch.allclose(spectrum.abs()[0], basis.amplitude, atol=1e-5))
        True
    """

    amplitude: Tensor
    mirror: Tensor
    edges: Tensor

    def __init__(
        self,
        batch: int,
        channels: int,
        height: int,
        width: int,
        amplitude: Tensor | None = None,
        phase_scale: float = MACO_PHASE_SCALE,
    ) -> None:
        super().__init__()
        check_size(batch, channels, height, width)
        bins = (height, width // 2 + 1)
        if amplitude is None:
            amplitude = power_law_amplitude(height, width, channels)
        amplitude = torch.as_tensor(amplitude).detach().to(torch.float32)
        if amplitude.ndim == 2:
            amplitude = amplitude.expand(channels, *amplitude.shape)
        if tuple(amplitude.shape) != (channels, *bins):
            raise ValueError(
                f"amplitude must have shape ({channels}, {bins[0]}, {bins[1]}) (channels, H, W // 2 + 1) for a "
                f"{height}x{width} image, got {tuple(amplitude.shape)}; "
                "natural_amplitude_spectrum(images, (H, W)) makes one"
            )
        if not bool(torch.isfinite(amplitude).all()) or bool((amplitude < 0).any()):
            raise ValueError("amplitude must be finite and non-negative")
        if not isinstance(phase_scale, (int, float)) or not phase_scale > 0:
            raise ValueError(f"phase_scale must be a positive number, got {phase_scale!r}")
        self.height, self.width, self.phase_scale = height, width, float(phase_scale)
        mirror = (-torch.arange(height)) % height
        edges = torch.tensor([0, width // 2] if width % 2 == 0 and width > 1 else [0])
        amplitude = amplitude.clone()
        # a real image's zero-frequency (and Nyquist) column is symmetric: A(-k) = A(k)
        amplitude[..., edges] = (amplitude[..., edges] + amplitude[..., edges][..., mirror, :]) / 2
        self.register_buffer("amplitude", amplitude.contiguous())
        self.register_buffer("mirror", mirror, persistent=False)
        self.register_buffer("edges", edges, persistent=False)
        self.phase = nn.Parameter(torch.empty(batch, channels, *bins))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Draw the random start phase anew (uniform in [-pi, pi]) from ``generator`` (``None``: torch's
        global one), on the CPU.

        Example:
            >>> basis = MacoImage(1, 3, 8, 8)
            >>> basis.reset_parameters(torch.Generator().manual_seed(0)); basis.phase.shape
            torch.Size([1, 3, 8, 5])
        """
        start = (torch.rand(self.phase.shape, generator=generator) * 2 - 1) * math.pi
        self.phase.copy_(start / self.phase_scale)

    def full_phase(self) -> Tensor:
        """The phase used: the parameter times ``phase_scale``, odd in the edge columns.

        Example:
            >>> MacoImage(2, 3, 8, 8).full_phase().shape
            torch.Size([2, 3, 8, 5])
        """
        phase = self.phase * self.phase_scale
        edge = phase.index_select(-1, self.edges)
        odd = (edge - edge.index_select(-2, self.mirror)) / 2
        return phase.index_copy(-1, self.edges, odd)

    def forward(self) -> Tensor:
        phase = self.full_phase()
        spectrum = torch.complex(self.amplitude * torch.cos(phase), self.amplitude * torch.sin(phase))
        return torch.fft.irfft2(spectrum, s=(self.height, self.width), norm="ortho")

    @torch.no_grad()
    def set_raw(self, raw: Tensor) -> None:
        """Take the phase of ``raw``; the amplitude stays fixed, so ``forward()`` returns ``raw``'s
        structure with this basis's amplitude (``raw`` itself only if their amplitudes agree,
        and up to the sign of the real bins that are their own mirror, such as ``(H/2, 0)``,
        whose phase is always 0).

        Example:
            >>> basis = MacoImage(1, 1, 8, 8)
            >>> target = basis().detach() + 0  # an image with the basis's amplitude
            >>> _ = basis.phase.data.uniform_(-1, 1)
            >>> basis.set_raw(target); bool(torch.allclose(basis(), target, atol=1e-5))
            True
        """
        spectrum = torch.fft.rfft2(raw.to(self.amplitude), norm="ortho")
        self.phase.copy_(torch.angle(spectrum) / self.phase_scale)
