"""Image parameterisations: the learnable thing that ``render_vis`` optimises.

A parameterisation is an :class:`torch.nn.Module` whose ``forward()`` takes no
argument and returns a batch of images ``(N, C, H, W)`` with values in ``[0, 1]``.
It is built from three parts, applied in this order:

1. a *basis* that holds the learnable numbers and returns an unbounded image:
   :class:`PixelImage` (one number per pixel), :class:`FourierImage`
   (a real-FFT spectrum scaled by ``1 / f**decay``), :class:`LaplacianPyramidImage`
   (a sum of ever coarser upsampled tensors), :class:`LowResImage` (one small
   upsampled tensor), :class:`MacoImage` (only the Fourier phase is learnt; the
   amplitude is fixed to a natural image's) or :class:`InterpolationImage` (frames
   that share low-resolution parts with their neighbours);
2. an optional :class:`ColorDecorrelation`, a fixed ``C x C`` linear map that turns
   decorrelated channels into natural, correlated colours;
3. an output function: ``"sigmoid"`` (default) or ``"clamp"``.

:class:`Image` chains them, and :func:`image` builds the usual one in one call.

Example:
    >>> import featvis
    >>> p = featvis.param.image(32, batch=2)
    >>> p().shape
    torch.Size([2, 3, 32, 32])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "IMAGENET_COLOR_CORRELATION",
    "IMAGENET_COLOR_MEAN",
    "ColorDecorrelation",
    "FourierImage",
    "Image",
    "InterpolationImage",
    "LaplacianPyramidImage",
    "LowResImage",
    "MacoImage",
    "PixelImage",
    "fourier_frequencies",
    "image",
    "interpolation_image",
    "laplacian_pyramid",
    "lowres_image",
    "maco",
    "natural_amplitude_spectrum",
    "power_law_amplitude",
]

#: Square root of the colour covariance of ImageNet pixels (rows: R, G, B), as
#: published with Lucid. Maps decorrelated channels to correlated RGB.
IMAGENET_COLOR_CORRELATION: tuple[tuple[float, float, float], ...] = (
    (0.26, 0.09, 0.02),
    (0.27, 0.00, -0.05),
    (0.27, -0.09, 0.03),
)
#: Mean RGB colour of ImageNet pixels, used as the centre for ``output="clamp"``.
IMAGENET_COLOR_MEAN: tuple[float, float, float] = (0.48, 0.46, 0.41)

OutputKind = Literal["sigmoid", "clamp"]
# The default 1/f exponent. Lucid uses 1.0; 1.25 gave CIFAR-10 class images that stay
# recognisable under blur and down-and-up resizing, with pictures at 224 as clear as with 1.0;
# with render_vis's learning rate of 0.1, 1.4 keeps the spectral slope natural over a whole run
# (benchmarks/quality.py, benchmarks/schedules.py, docs/benchmarks.md).
DEFAULT_DECAY = 1.4


def _check_size(batch: int, channels: int, height: int, width: int) -> None:
    for name, value in (("batch", batch), ("channels", channels), ("height", height), ("width", width)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


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
        _check_size(batch, channels, height, width)
        self.pixels = nn.Parameter(torch.randn(batch, channels, height, width) * sd)

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
        _check_size(batch, channels, height, width)
        self.height, self.width, self.decay = height, width, float(decay)
        freqs = fourier_frequencies(height, width)
        longest = max(height, width)
        scale = longest / torch.clamp(freqs * longest, min=1.0) ** self.decay
        self.register_buffer("scale", scale, persistent=False)
        # real and imaginary parts, last dimension
        self.spectrum = nn.Parameter(torch.randn(batch, channels, *freqs.shape, 2) * sd)

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


class ColorDecorrelation(nn.Module):
    """A fixed linear map between decorrelated channels and natural colours.

    Optimising in a space where the colour channels are decorrelated keeps the
    optimiser from spending its steps on colour combinations that natural images
    rarely have. ``forward`` maps decorrelated values to colours:
    ``colour[c] = sum_k matrix[c, k] * value[k]``.

    The default is Lucid's ImageNet matrix for 3 channels and the identity for any
    other number of channels. :meth:`from_images` estimates one from your own data.

    Args:
        matrix: ``(C, C)`` square root of the colour covariance. It is divided by its
            largest column norm, as in Lucid, so that its scale does not matter.
        mean: per-channel mean colour, used by ``output="clamp"``.

    Example:
        >>> decorrelate = ColorDecorrelation()
        >>> decorrelate(torch.zeros(1, 3, 4, 4)).shape
        torch.Size([1, 3, 4, 4])
    """

    matrix: Tensor
    mean: Tensor

    def __init__(self, matrix: Tensor | None = None, mean: Tensor | None = None) -> None:
        super().__init__()
        matrix = torch.tensor(IMAGENET_COLOR_CORRELATION) if matrix is None else torch.as_tensor(matrix)
        matrix = matrix.detach().to(torch.float32)
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"the colour matrix must be square (C, C), got shape {tuple(matrix.shape)}")
        if not bool(torch.isfinite(matrix).all()) or torch.linalg.matrix_rank(matrix) < matrix.shape[0]:
            raise ValueError("the colour matrix must be finite and invertible")
        matrix = matrix / matrix.norm(dim=0).max()
        channels = matrix.shape[0]
        if mean is None:
            mean = torch.tensor(IMAGENET_COLOR_MEAN) if channels == 3 else torch.full((channels,), 0.5)
        mean = torch.as_tensor(mean, dtype=torch.float32).detach()
        if mean.shape != (channels,):
            raise ValueError(f"mean must have {channels} values, got shape {tuple(mean.shape)}")
        self.register_buffer("matrix", matrix)
        self.register_buffer("mean", mean)

    @property
    def channels(self) -> int:
        """Number of colour channels this map works on."""
        return int(self.matrix.shape[0])

    @classmethod
    def identity(cls, channels: int) -> ColorDecorrelation:
        """No decorrelation: the identity map on ``channels`` channels.

        Example:
            >>> ColorDecorrelation.identity(1).matrix
            tensor([[1.]])
        """
        return cls(torch.eye(channels))

    @classmethod
    def from_images(cls, images: Tensor, method: Literal["svd", "cholesky"] = "svd") -> ColorDecorrelation:
        """Estimate the map from your own images.

        The colour covariance ``S`` of all pixels is computed, and its square root
        ``M`` (with ``M @ M.T == S``) becomes the map: ``"svd"`` gives
        ``U @ diag(sqrt(s))`` from the eigendecomposition, ``"cholesky"`` the
        lower-triangular factor.

        Args:
            images: ``(N, C, H, W)`` or ``(C, H, W)`` images with values in [0, 1].
            method: ``"svd"`` or ``"cholesky"``.

        Example:
            >>> images = torch.rand(4, 3, 16, 16)
            >>> ColorDecorrelation.from_images(images).matrix.shape
            torch.Size([3, 3])
        """
        images = torch.as_tensor(images, dtype=torch.float64)
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4:
            raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
        pixels = images.permute(1, 0, 2, 3).reshape(images.shape[1], -1)
        if pixels.shape[1] < 2:
            raise ValueError("need at least two pixels to estimate a colour covariance")
        mean = pixels.mean(dim=1)
        covariance = torch.cov(pixels)
        if method == "svd":
            eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
            matrix = eigenvectors * eigenvalues.clamp(min=0).sqrt()
        elif method == "cholesky":
            matrix, info = torch.linalg.cholesky_ex(covariance)
            if int(info) != 0:
                raise ValueError("the colour covariance of these images is singular: the map must be invertible")
        else:
            raise ValueError(f"method must be 'svd' or 'cholesky', got {method!r}")
        return cls(matrix.float(), mean.float())

    def forward(self, values: Tensor) -> Tensor:
        # (C, C) @ (N, C, H*W): a batched matrix product on the image as it lies, no permuted copies
        return torch.matmul(self.matrix.to(values.dtype), values.flatten(2)).view(values.shape)

    def inverse(self, colours: Tensor) -> Tensor:
        """Map colours back to decorrelated values (``forward``'s inverse).

        Example:
            >>> d = ColorDecorrelation(); x = torch.randn(1, 3, 2, 2)
            >>> bool(torch.allclose(d.inverse(d(x)), x, atol=1e-5))
            True
        """
        return torch.einsum("ck,bkhw->bchw", torch.linalg.inv(self.matrix), colours)


class Image(nn.Module):
    """A complete parameterisation: basis, colour decorrelation and output function.

    Calling it returns images of shape ``(N, C, H, W)`` with values in [0, 1].

    Args:
        basis: a :class:`PixelImage`, :class:`FourierImage` or any module with a
            ``forward()`` returning an unbounded ``(N, C, H, W)`` tensor (and, to
            support :meth:`set_image`, a ``set_raw(raw)`` method).
        decorrelation: a :class:`ColorDecorrelation`, or ``None`` for none.
        output: ``"sigmoid"`` squashes smoothly into (0, 1); ``"clamp"`` adds the
            mean colour and clamps to [0, 1], letting gradients through unchanged.

    Example:
        >>> p = Image(FourierImage(1, 3, 16, 16), ColorDecorrelation())
        >>> images = p().detach()
        >>> float(images.min()) >= 0 and float(images.max()) <= 1
        True
    """

    def __init__(
        self,
        basis: nn.Module,
        decorrelation: ColorDecorrelation | None = None,
        output: OutputKind = "sigmoid",
    ) -> None:
        super().__init__()
        if output not in ("sigmoid", "clamp"):
            raise ValueError(f"output must be 'sigmoid' or 'clamp', got {output!r}")
        self.basis = basis
        self.decorrelation = decorrelation
        self.output = output
        shape = tuple(basis().shape)
        if len(shape) != 4:
            raise ValueError(f"the basis must return (N, C, H, W) images, got shape {shape}")
        self.shape: tuple[int, int, int, int] = shape  # type: ignore[assignment]
        if decorrelation is not None and decorrelation.channels != shape[1]:
            raise ValueError(
                f"the colour decorrelation works on {decorrelation.channels} channels but the image has {shape[1]}"
            )

    @property
    def batch(self) -> int:
        """Number of images."""
        return self.shape[0]

    @property
    def channels(self) -> int:
        """Number of channels of each image."""
        return self.shape[1]

    @property
    def height(self) -> int:
        """Image height in pixels."""
        return self.shape[2]

    @property
    def width(self) -> int:
        """Image width in pixels."""
        return self.shape[3]

    def _mean(self, like: Tensor) -> Tensor:
        if self.decorrelation is not None:
            mean = self.decorrelation.mean
        else:
            mean = torch.full((self.channels,), 0.5, device=like.device)
        return mean.to(like)[None, :, None, None]

    def forward(self) -> Tensor:
        raw = self.basis()
        colours = self.decorrelation(raw) if self.decorrelation is not None else raw
        if self.output == "sigmoid":
            return torch.sigmoid(colours)
        shifted = colours + self._mean(colours)
        # straight-through clamp: valid values forward, the raw gradient backward
        return shifted + (shifted.clamp(0.0, 1.0) - shifted).detach()

    @torch.no_grad()
    def set_image(self, images: Tensor) -> None:
        """Set the parameters so that the parameterisation returns ``images``.

        ``images`` has values in [0, 1] and shape ``(N, C, H, W)``, or ``(C, H, W)``
        to use one image for every batch element. With ``output="sigmoid"``, values
        are kept a little inside (0, 1) so that they stay reachable.

        Example:
            >>> p = image(8, batch=1)
            >>> target = torch.rand(1, 3, 8, 8) * 0.8 + 0.1
            >>> p.set_image(target); bool(torch.allclose(p(), target, atol=1e-3))
            True
        """
        device = next(iter(self.parameters())).device
        images = torch.as_tensor(images, dtype=torch.float32, device=device)
        given = tuple(images.shape)
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or images.shape[1:] != torch.Size(self.shape[1:]) or images.shape[0] not in (1, self.batch):
            raise ValueError(
                f"the starting image must have shape ({self.batch}, {self.channels}, {self.height}, {self.width}) "
                f"or ({self.channels}, {self.height}, {self.width}) to match this parameterisation, got {given}"
            )
        images = images.expand(self.batch, -1, -1, -1)
        if self.output == "sigmoid":
            colours = torch.logit(images.clamp(1e-3, 1 - 1e-3))
        else:
            colours = images - self._mean(images)
        raw = self.decorrelation.inverse(colours) if self.decorrelation is not None else colours
        set_raw = getattr(self.basis, "set_raw", None)
        if set_raw is None:
            raise TypeError(f"{type(self.basis).__name__} has no set_raw(raw) method to start from an image")
        set_raw(raw)


def image(
    w: int,
    h: int | None = None,
    batch: int = 1,
    channels: int = 3,
    fft: bool = True,
    decorrelate: bool = True,
    *,
    decay: float = DEFAULT_DECAY,
    sd: float = 0.01,
    output: OutputKind = "sigmoid",
    init: Tensor | None = None,
    basis: BasisKind | None = None,
) -> Image:
    """Build the usual parameterisation in one call.

    Args:
        w: width in pixels.
        h: height in pixels (defaults to ``w``).
        batch: number of images.
        channels: channels per image (1 for grayscale, 3 for RGB, or more).
        fft: use the Fourier basis (:class:`FourierImage`) instead of pixels.
        decorrelate: use a :class:`ColorDecorrelation` (ImageNet's for 3 channels,
            the identity for other counts).
        decay: ``1/f`` exponent of the Fourier basis.
        sd: standard deviation of the random start.
        output: ``"sigmoid"`` or ``"clamp"``.
        init: optional starting image(s) in [0, 1], ``(N, C, H, W)`` or ``(C, H, W)``,
            instead of noise.
        basis: pick the basis by name instead of ``fft``: ``"fourier"``, ``"pixel"``,
            ``"laplacian"`` (:class:`LaplacianPyramidImage`), ``"lowres"``
            (:class:`LowResImage`, 4 times smaller) or ``"maco"`` (:class:`MacoImage`, with
            :func:`power_law_amplitude`), each with its defaults. :func:`laplacian_pyramid`,
            :func:`lowres_image` and :func:`maco` take their own settings.

    Example:
        >>> p = image(64, 48, batch=4, channels=1)
        >>> p().shape
        torch.Size([4, 1, 48, 64])
        >>> type(image(32, basis="laplacian").basis).__name__
        'LaplacianPyramidImage'
    """
    h = w if h is None else h
    _check_size(batch, channels, h, w)
    kind = basis if basis is not None else ("fourier" if fft else "pixel")
    chosen: nn.Module
    if kind == "fourier":
        chosen = FourierImage(batch, channels, h, w, decay=decay, sd=sd)
    elif kind == "pixel":
        chosen = PixelImage(batch, channels, h, w, sd=sd)
    elif kind == "laplacian":
        chosen = LaplacianPyramidImage(batch, channels, h, w, decay=decay, sd=sd)
    elif kind == "lowres":
        chosen = LowResImage(batch, channels, h, w, sd=sd)
    elif kind == "maco":
        amplitude = power_law_amplitude(h, w, channels, decorrelate=decorrelate, output=output)
        chosen = MacoImage(batch, channels, h, w, amplitude)
    else:
        raise ValueError(f"basis must be 'fourier', 'pixel', 'laplacian', 'lowres' or 'maco', got {basis!r}")
    decorrelation = None
    if decorrelate:
        decorrelation = ColorDecorrelation() if channels == 3 else ColorDecorrelation.identity(channels)
    result = Image(chosen, decorrelation, output=output)
    if init is not None:
        result.set_image(init)
    return result


# ---- more bases: Laplacian pyramid, low resolution, MACO, frames with shared parts ----------
UpsampleMode = Literal["bilinear", "bicubic"]
BasisKind = Literal["fourier", "pixel", "laplacian", "lowres", "maco"]


def _check_mode(mode: str) -> None:
    if mode not in ("bilinear", "bicubic"):
        raise ValueError(f"mode must be 'bilinear' or 'bicubic', got {mode!r}")


def _resize_matrix(size_in: int, size_out: int, mode: str = "bilinear") -> Tensor:
    """The ``(size_out, size_in)`` float64 matrix that ``F.interpolate`` (``align_corners=False``)
    applies along one axis: column ``i`` is the resized unit impulse at ``i``."""
    impulses = torch.eye(size_in, dtype=torch.float64).reshape(size_in, 1, size_in, 1)
    resized = F.interpolate(impulses, size=(size_out, 1), mode=mode, align_corners=False)
    return resized[:, 0, :, 0].T.contiguous()


def _upsample(values: Tensor, size: tuple[int, int], mode: str) -> Tensor:
    if tuple(values.shape[-2:]) == size:
        return values
    return F.interpolate(values, size=size, mode=mode, align_corners=False)


def _upsampled_noise_variance(small: tuple[int, int], size: tuple[int, int], mode: str) -> float:
    """Mean variance per pixel of unit white noise of shape ``small`` once upsampled to ``size``."""
    variance = 1.0
    for size_in, size_out in zip(small, size):
        matrix = _resize_matrix(size_in, size_out, mode)
        variance *= float((matrix**2).sum(dim=1).mean())
    return variance


def _half_spectrum_weights(height: int, width: int) -> Tensor:
    """How many bins of the full spectrum each real-FFT bin stands for in an image's energy:
    2 for the inner columns, 1 for the zero-frequency column (and the Nyquist one for even widths)."""
    weights = torch.full((height, width // 2 + 1), 2.0, dtype=torch.float64)
    weights[:, 0] = 1.0
    if width % 2 == 0:
        weights[:, -1] = 1.0
    return weights


def _fourier_start_variance(height: int, width: int, decay: float, sd: float = 1.0) -> float:
    """Expected mean square pixel of a :class:`FourierImage` whose spectrum is drawn with ``sd``.

    Parseval, with the inverse real FFT keeping the Hermitian part of the zero-frequency and
    Nyquist columns: an inner bin's real and imaginary parts count twice each, an edge-column
    bin once in all."""
    scale = FourierImage(1, 1, height, width, decay=decay).scale.double()
    weights = _half_spectrum_weights(height, width) ** 2  # 4 inside, 1 in the edge columns
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
        _check_size(batch, channels, height, width)
        _check_mode(mode)
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
            g * g * _upsampled_noise_variance(s, (height, width), mode) for g, s in zip(shape_gains, self.sizes)
        )
        c = math.sqrt(_fourier_start_variance(height, width, self.decay) / variance)
        self.register_buffer("gains", torch.tensor([c * g for g in shape_gains]), persistent=False)
        self.tensors = nn.ParameterList(nn.Parameter(torch.randn(batch, channels, *s) * sd) for s in self.sizes)

    def forward(self) -> Tensor:
        size = (self.height, self.width)
        total = self.gains[0] * _upsample(self.tensors[0], size, self.mode)
        for gain, level in zip(self.gains[1:], self.tensors[1:]):
            total = total + gain * _upsample(level, size, self.mode)
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
            residual -= _upsample(part, size, self.mode)


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
        _check_size(batch, channels, height, width)
        _check_mode(mode)
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
        self.low = nn.Parameter(torch.randn(batch, channels, *low_pair) * sd)
        variance = _upsampled_noise_variance(low_pair, (height, width), mode)  # type: ignore[arg-type]
        self.gain = math.sqrt(_fourier_start_variance(height, width, decay) / variance) if gain is None else float(gain)
        # least squares for set_raw: the upsampling is separable, so its pseudo-inverse is the
        # product of the two axes' pseudo-inverses
        rows = torch.linalg.pinv(_resize_matrix(low_pair[0], height, mode))
        columns = torch.linalg.pinv(_resize_matrix(low_pair[1], width, mode))
        self.register_buffer("row_solver", rows.float(), persistent=False)
        self.register_buffer("column_solver", columns.float(), persistent=False)

    def forward(self) -> Tensor:
        return self.gain * _upsample(self.low, (self.height, self.width), self.mode)

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


# --- MACO ----------------------------------------------------------------------------------
#: Slope of the default amplitude spectrum, ``amplitude ~ 1 / f**MACO_SLOPE``. Natural
#: photographs' amplitude falls a little faster than ``1/f`` (about ``1/f**1.1``, Field 1987,
#: van der Schaaf & van Hateren 1996); :func:`natural_amplitude_spectrum` gives 1.12, 1.51 and
#: 1.24 for the three decorrelated channels (1.29 on average, least squares over all
#: frequencies) on the 670 32x32 tiles of scikit-learn's two sample photographs at full, half
#: and quarter size, and 1.5 to 1.7 on the two whole photographs shrunk to 32x32 (which a
#: shallow depth of field makes blurrier than most). 1.25 is also the exponent of
#: :class:`FourierImage`'s default scaling.
MACO_SLOPE = 1.25
#: Pixel standard deviation of natural images, mean removed, in each ImageNet-decorrelated
#: channel: the largest column norm of :data:`IMAGENET_COLOR_CORRELATION`, because
#: :class:`ColorDecorrelation` divides the matrix by it, so pixels with ImageNet's colour
#: covariance come out with this deviation in every channel. (Whole sample photographs
#: resized to 32x32 give 0.43, 0.57, 0.35.)
NATURAL_CONTRAST_DECORRELATED = 0.4623
#: The same for plain channels: the mean of ImageNet's per-channel deviations (0.229, 0.224, 0.225).
NATURAL_CONTRAST_PLAIN = 0.226
#: ``output="sigmoid"`` works on the logit scale, 4 times steeper than the image around 0.5.
_OUTPUT_GAIN = {"sigmoid": 4.0, "clamp": 1.0}
#: The phase is ``phase_scale`` times its parameter: an Adam step of 0.05 turns it by up to a quarter radian
#: (render_vis's default 0.1 of the first 64 steps: half a radian).
MACO_PHASE_SCALE = 5.0


def _make_decorrelation(decorrelate: bool | ColorDecorrelation, channels: int) -> ColorDecorrelation | None:
    if isinstance(decorrelate, ColorDecorrelation):
        if decorrelate.channels != channels:
            raise ValueError(
                f"the colour decorrelation works on {decorrelate.channels} channels but the images have {channels}"
            )
        return decorrelate
    if decorrelate is True:
        return ColorDecorrelation() if channels == 3 else ColorDecorrelation.identity(channels)
    if decorrelate is False:
        return None
    raise TypeError(f"decorrelate must be True, False or a ColorDecorrelation, got {type(decorrelate).__name__}")


def _check_output(output: str) -> None:
    if output not in _OUTPUT_GAIN:
        raise ValueError(f"output must be 'sigmoid' or 'clamp', got {output!r}")


def _size_of(size: int | tuple[int, int]) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in pair):
        raise ValueError(f"size must be a positive whole number or a (height, width) pair of them, got {size!r}")
    return pair  # type: ignore[return-value]


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
    size: int | tuple[int, int],
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
    size = _size_of(size)
    _check_output(output)
    images = torch.as_tensor(images).detach().to("cpu", torch.float64)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[0] < 1:
        raise ValueError(f"images must have shape (N, C, H, W) or (C, H, W), got {tuple(images.shape)}")
    if not bool(torch.isfinite(images).all()) or float(images.min()) < 0 or float(images.max()) > 1:
        raise ValueError("images must have finite values in [0, 1]; divide 8-bit images by 255")
    decorrelation = _make_decorrelation(decorrelate, images.shape[1])
    fitted = _fit_to(images, size)
    centred = fitted - fitted.mean(dim=(-2, -1), keepdim=True)
    if decorrelation is not None:
        centred = torch.einsum("ck,bkhw->bchw", torch.linalg.inv(decorrelation.matrix.double()), centred)
    amplitude = torch.fft.rfft2(centred * _OUTPUT_GAIN[output], norm="ortho").abs().mean(dim=0)
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
    _check_size(1, channels, height, width)
    _check_output(output)
    if contrast is None:
        base = NATURAL_CONTRAST_DECORRELATED if (decorrelate and channels == 3) else NATURAL_CONTRAST_PLAIN
        contrast = base * _OUTPUT_GAIN[output]
    contrasts = torch.as_tensor(contrast, dtype=torch.float64).reshape(-1)
    if contrasts.numel() == 1:
        contrasts = contrasts.expand(channels)
    if contrasts.numel() != channels or not bool((contrasts >= 0).all()):
        raise ValueError(f"contrast must be one non-negative number or {channels} of them, got {contrast!r}")
    cycles = fourier_frequencies(height, width).double() * max(height, width)
    shape = torch.where(cycles > 0, cycles.clamp(min=1e-12) ** -float(slope), torch.zeros_like(cycles))
    energy = float((_half_spectrum_weights(height, width) * shape**2).sum()) / (height * width)
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
        _check_size(batch, channels, height, width)
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
        start = (torch.rand(batch, channels, *bins) * 2 - 1) * math.pi
        self.phase = nn.Parameter(start / self.phase_scale)

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


# --- frames with shared parts, for interpolations ------------------------------------------
#: Lucid's shared parts for interpolation: ``(keyframes, factor)``: a tensor ``factor`` times
#: smaller than the image, with ``keyframes`` values along the frames (1: the same for all frames;
#: 2: one at each end, blended linearly in between).
DEFAULT_SHARED: tuple[tuple[int, int], ...] = ((1, 2), (1, 4), (1, 8), (2, 8), (1, 16), (2, 16))


def _frame_weights(keyframes: int, frames: int) -> Tensor:
    """``(frames, keyframes)`` linear blending: frame 0 is keyframe 0, the last frame the last keyframe."""
    weights = torch.zeros(frames, keyframes, dtype=torch.float64)
    positions = torch.linspace(0, keyframes - 1, frames, dtype=torch.float64) if frames > 1 else torch.zeros(1)
    for frame, position in enumerate(positions.tolist()):
        below = min(math.floor(position), keyframes - 1)
        fraction = position - below
        weights[frame, below] += 1 - fraction
        if fraction > 0:
            weights[frame, below + 1] += fraction
    return weights


class InterpolationImage(nn.Module):
    """A batch of frames, each its own image plus low-resolution parts shared with its neighbours.

    Frame ``f`` is ``unique[f] + sum_i gain_i * blend_i(f)``: ``unique`` is a per-frame basis
    (a :class:`FourierImage` by default) and each shared part ``(keyframes, factor)`` is a
    learnable ``(keyframes, C, ceil(H / factor), ceil(W / factor))`` tensor, upsampled to the
    image size and blended linearly across the frames (a part with 1 keyframe is the same in
    every frame). Neighbouring frames share most of their coarse structure, so an
    interpolation between two units (``objectives.channel_interpolate``) changes smoothly
    from frame to frame instead of showing unrelated pictures (as in Lucid). The gains are
    ``c * factor ** (decay - 1)`` (as in :class:`LaplacianPyramidImage`), with ``c`` making the
    shared parts' start as strong as the unique part's.

    Args:
        frames, channels, height, width: the shape of the batch (``frames`` images).
        shared: the shared parts, ``(keyframes, factor)`` pairs, ``1 <= keyframes <= frames``
            (default :data:`DEFAULT_SHARED`, Lucid's).
        unique: the per-frame basis (default ``FourierImage(frames, channels, height, width, decay, sd)``).
        decay: ``1/f`` exponent of the default unique part and of the shared gains.
        sd: standard deviation of the random starts.
        mode: ``"bilinear"`` or ``"bicubic"`` spatial upsampling.

    Example:
        >>> basis = InterpolationImage(5, 3, 32, 32)
        >>> basis().shape, len(basis.shared)
        (torch.Size([5, 3, 32, 32]), 6)
    """

    gains: Tensor

    def __init__(
        self,
        frames: int,
        channels: int,
        height: int,
        width: int,
        shared: Sequence[tuple[int, int]] = DEFAULT_SHARED,
        unique: nn.Module | None = None,
        decay: float = DEFAULT_DECAY,
        sd: float = 0.01,
        mode: UpsampleMode = "bilinear",
        shared_weight: float = 3.0,
    ) -> None:
        super().__init__()
        _check_size(frames, channels, height, width)
        _check_mode(mode)
        self.height, self.width, self.mode = height, width, mode
        if unique is None:
            unique = FourierImage(frames, channels, height, width, decay=decay, sd=sd)
            target = _fourier_start_variance(height, width, decay, sd)
        else:
            with torch.no_grad():
                start = unique()
            if tuple(start.shape) != (frames, channels, height, width):
                raise ValueError(
                    f"the unique basis must return ({frames}, {channels}, {height}, {width}) images, "
                    f"got {tuple(start.shape)}"
                )
            target = float(start.double().pow(2).mean())
        self.unique = unique
        parts = []
        for part in shared:
            if (
                not isinstance(part, (tuple, list))
                or len(part) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in part)
                or not 1 <= part[0] <= frames
                or part[1] < 1
            ):
                raise ValueError(
                    f"each shared part must be a (keyframes, factor) pair of whole numbers with 1 <= keyframes <= "
                    f"frames={frames} and factor >= 1, got {part!r}"
                )
            parts.append((int(part[0]), int(part[1])))
        self.parts = parts
        sizes = [(math.ceil(height / factor), math.ceil(width / factor)) for _, factor in parts]
        self.shared = nn.ParameterList(
            nn.Parameter(torch.randn(k, channels, *s) * sd) for (k, _), s in zip(parts, sizes)
        )
        weights = [_frame_weights(k, frames) for k, _ in parts]
        for i, w in enumerate(weights):
            self.register_buffer(f"blend{i}", w.float(), persistent=False)
        shape_gains = [float(factor) ** (float(decay) - 1.0) for _, factor in parts]
        variance = sum(
            g * g * sd * sd * _upsampled_noise_variance(s, (height, width), mode) * float((w**2).sum(dim=1).mean())
            for g, s, w in zip(shape_gains, sizes, weights)
        )
        c = shared_weight * math.sqrt(target / variance) if variance > 0 and target > 0 else 1.0
        self.register_buffer("gains", torch.tensor([c * g for g in shape_gains]), persistent=False)

    def forward(self) -> Tensor:
        total = self.unique()
        size = (self.height, self.width)
        for i, (gain, part) in enumerate(zip(self.gains, self.shared)):
            blend = getattr(self, f"blend{i}")
            upsampled = _upsample(part, size, self.mode)
            total = total + gain * torch.einsum("fk,kchw->fchw", blend, upsampled)
        return total

    @torch.no_grad()
    def set_raw(self, raw: Tensor) -> None:
        """Put ``raw`` in the unique part and zero the shared parts (``forward()`` then returns ``raw``).

        Example:
            >>> basis = InterpolationImage(3, 1, 8, 8, shared=[(1, 2), (2, 4)])
            >>> target = torch.rand(3, 1, 8, 8)
            >>> basis.set_raw(target); bool(torch.allclose(basis(), target, atol=1e-5))
            True
        """
        set_raw = getattr(self.unique, "set_raw", None)
        if set_raw is None:
            raise TypeError(f"{type(self.unique).__name__} has no set_raw(raw) method to start from an image")
        set_raw(raw)
        for part in self.shared:
            part.zero_()


# ---- factories for the bases above ----------------------------------------------------------
def _finish(basis: nn.Module, decorrelate: bool | ColorDecorrelation, output: OutputKind, init: Tensor | None) -> Image:
    decorrelation = _make_decorrelation(decorrelate, int(basis().shape[1]))
    result = Image(basis, decorrelation, output=output)
    if init is not None:
        result.set_image(init)
    return result


def laplacian_pyramid(
    w: int,
    h: int | None = None,
    batch: int = 1,
    channels: int = 3,
    decorrelate: bool | ColorDecorrelation = True,
    *,
    levels: int | None = None,
    decay: float = DEFAULT_DECAY,
    sd: float = 0.01,
    mode: UpsampleMode = "bilinear",
    output: OutputKind = "sigmoid",
    init: Tensor | None = None,
) -> Image:
    """A :class:`LaplacianPyramidImage` with colour decorrelation and an output function.

    Arguments as in :func:`image` and :class:`LaplacianPyramidImage`; ``decorrelate`` may
    also be your own :class:`ColorDecorrelation`.

    Example:
        >>> p = laplacian_pyramid(32, batch=2, levels=4)
        >>> p().shape, len(p.basis.tensors)
        (torch.Size([2, 3, 32, 32]), 4)
    """
    h = w if h is None else h
    basis = LaplacianPyramidImage(batch, channels, h, w, levels=levels, decay=decay, sd=sd, mode=mode)
    return _finish(basis, decorrelate, output, init)


def lowres_image(
    w: int,
    h: int | None = None,
    batch: int = 1,
    channels: int = 3,
    decorrelate: bool | ColorDecorrelation = True,
    *,
    low: int | tuple[int, int] | None = None,
    factor: float | None = None,
    mode: UpsampleMode = "bilinear",
    sd: float = 0.01,
    output: OutputKind = "sigmoid",
    init: Tensor | None = None,
) -> Image:
    """A :class:`LowResImage` (a small tensor upsampled) with colour decorrelation and an output function.

    Example:
        >>> p = lowres_image(32, factor=8)
        >>> p.basis.low.shape[-2:], p().shape[-2:]
        (torch.Size([4, 4]), torch.Size([32, 32]))
    """
    h = w if h is None else h
    basis = LowResImage(batch, channels, h, w, low=low, factor=factor, mode=mode, sd=sd)
    return _finish(basis, decorrelate, output, init)


def maco(
    w: int,
    h: int | None = None,
    batch: int = 1,
    channels: int = 3,
    spectrum: Tensor | None = None,
    decorrelate: bool | ColorDecorrelation = True,
    *,
    output: OutputKind = "sigmoid",
    phase_scale: float = MACO_PHASE_SCALE,
    init: Tensor | None = None,
) -> Image:
    """A MACO parameterisation (:class:`MacoImage`): learnt phase, fixed natural amplitude.

    Args:
        w, h, batch, channels: as in :func:`image`.
        spectrum: the fixed amplitude, ``(C, H, W // 2 + 1)``: from
            ``natural_amplitude_spectrum(your_images, (h, w), decorrelate=..., output=...)``
            with the same ``decorrelate`` and ``output``; default
            :func:`power_law_amplitude` (no data needed).
        decorrelate: ``True`` (ImageNet's for 3 channels), ``False``, or a :class:`ColorDecorrelation`.
        output: ``"sigmoid"`` or ``"clamp"``.
        phase_scale: see :class:`MacoImage`.
        init: optional starting image(s); only their phase is kept (see :meth:`MacoImage.set_raw`).

    Example:
        >>> p = maco(32, batch=2)
        >>> p().shape
        torch.Size([2, 3, 32, 32])
    """
    h = w if h is None else h
    _check_size(batch, channels, h, w)
    if spectrum is None:
        plain = decorrelate is False or (decorrelate is True and channels != 3)
        spectrum = power_law_amplitude(h, w, channels, decorrelate=not plain, output=output)
    basis = MacoImage(batch, channels, h, w, spectrum, phase_scale=phase_scale)
    return _finish(basis, decorrelate, output, init)


def interpolation_image(
    w: int,
    h: int | None = None,
    frames: int = 6,
    channels: int = 3,
    decorrelate: bool | ColorDecorrelation = True,
    *,
    shared: Sequence[tuple[int, int]] = DEFAULT_SHARED,
    decay: float = DEFAULT_DECAY,
    sd: float = 0.01,
    mode: UpsampleMode = "bilinear",
    shared_weight: float = 3.0,
    output: OutputKind = "sigmoid",
) -> Image:
    """Frames for an interpolation between two units, with low-resolution parts shared between neighbours.

    Use it with :func:`featvis.objectives.channel_interpolate` (frame ``i`` of ``frames``
    blends from the first unit to the second) so that consecutive frames stay aligned. See
    :class:`InterpolationImage`.

    Example:
        >>> from featvis import objectives
        >>> p = interpolation_image(32, frames=5)
        >>> objective = objectives.channel_interpolate("layer3", 1, "layer3", 9)
        >>> p().shape
        torch.Size([5, 3, 32, 32])
    """
    h = w if h is None else h
    basis = InterpolationImage(
        frames, channels, h, w, shared=shared, decay=decay, sd=sd, mode=mode, shared_weight=shared_weight
    )
    return _finish(basis, decorrelate, output, None)
