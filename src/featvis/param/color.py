"""Colour and output: the two stages of a parameterisation after the basis.

:class:`ColorDecorrelation` is a fixed ``C x C`` linear map from decorrelated channels to
natural, correlated colours (Lucid's ImageNet matrix by default, or one estimated from your
images); the output function (:data:`OutputKind`) then brings the colours into [0, 1].

Example:
    >>> import torch
    >>> from featvis.param import ColorDecorrelation
    >>> ColorDecorrelation()(torch.zeros(1, 3, 4, 4)).shape
    torch.Size([1, 3, 4, 4])
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

__all__ = [
    "IMAGENET_COLOR_CORRELATION",
    "IMAGENET_COLOR_MEAN",
    "OUTPUT_GAIN",
    "ColorDecorrelation",
    "OutputKind",
    "check_output",
    "make_decorrelation",
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

#: The output function of :class:`~featvis.param.Image`: ``"sigmoid"`` or ``"clamp"``.
OutputKind = Literal["sigmoid", "clamp"]
#: Slope of each output function at the centre: ``output="sigmoid"`` works on the logit scale,
#: 4 times steeper than the image around 0.5.
OUTPUT_GAIN: dict[str, float] = {"sigmoid": 4.0, "clamp": 1.0}


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


def make_decorrelation(decorrelate: bool | ColorDecorrelation, channels: int) -> ColorDecorrelation | None:
    """The colour map a factory's ``decorrelate`` argument asks for, for images of ``channels`` channels.

    ``True``: ImageNet's for 3 channels, the identity otherwise; ``False``: none (``None``);
    a :class:`ColorDecorrelation`: that one, if it works on ``channels`` channels.

    Example:
        >>> make_decorrelation(True, 1).matrix, make_decorrelation(False, 3)
        (tensor([[1.]]), None)
    """
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


def check_output(output: str) -> None:
    """Raise a ``ValueError`` unless ``output`` names an output function (:data:`OutputKind`).

    Example:
        >>> check_output("clamp")
        >>> check_output("tanh")
        Traceback (most recent call last):
        ...
        ValueError: output must be 'sigmoid' or 'clamp', got 'tanh'
    """
    if output not in OUTPUT_GAIN:
        raise ValueError(f"output must be 'sigmoid' or 'clamp', got {output!r}")
