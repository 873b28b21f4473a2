"""Image parameterisations: the learnable thing that ``render_vis`` optimises.

A parameterisation is an :class:`torch.nn.Module` whose ``forward()`` takes no
argument and returns a batch of images ``(N, C, H, W)`` with values in ``[0, 1]``.
It is built from three parts, applied in this order:

1. a *basis* that holds the learnable numbers and returns an unbounded image:
   :class:`PixelImage` (one number per pixel) or :class:`FourierImage`
   (a real-FFT spectrum scaled by ``1 / f**decay``);
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

from typing import Literal

import torch
from torch import Tensor, nn

__all__ = [
    "IMAGENET_COLOR_CORRELATION",
    "IMAGENET_COLOR_MEAN",
    "ColorDecorrelation",
    "FourierImage",
    "Image",
    "PixelImage",
    "fourier_frequencies",
    "image",
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
# recognisable under blur and down-and-up resizing, with a natural spectral slope, and
# pictures at 224 as clear as with 1.0 (benchmarks/quality.py, docs/benchmarks.md).
DEFAULT_DECAY = 1.25


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

    Example:
        >>> p = image(64, 48, batch=4, channels=1)
        >>> p().shape
        torch.Size([4, 1, 48, 64])
    """
    h = w if h is None else h
    _check_size(batch, channels, h, w)
    basis: nn.Module
    if fft:
        basis = FourierImage(batch, channels, h, w, decay=decay, sd=sd)
    else:
        basis = PixelImage(batch, channels, h, w, sd=sd)
    decorrelation = None
    if decorrelate:
        decorrelation = ColorDecorrelation() if channels == 3 else ColorDecorrelation.identity(channels)
    result = Image(basis, decorrelation, output=output)
    if init is not None:
        result.set_image(init)
    return result
