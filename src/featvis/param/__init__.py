"""Image parameterisations: the learnable thing that ``render_vis`` optimises.

A parameterisation is an :class:`torch.nn.Module` whose ``forward()`` takes no
argument and returns a batch of images ``(N, C, H, W)`` with values in ``[0, 1]``.
It is built from three parts, applied in this order:

1. a *basis* (the :class:`Basis` protocol) that holds the learnable numbers and returns an
   unbounded image: :class:`PixelImage` (one number per pixel), :class:`FourierImage`
   (a real-FFT spectrum scaled by ``1 / f**decay``), :class:`LaplacianPyramidImage`
   (a sum of ever coarser upsampled tensors), :class:`LowResImage` (one small
   upsampled tensor), :class:`MacoImage` (only the Fourier phase is learnt; the
   amplitude is fixed to a natural image's), :class:`InterpolationImage` (frames
   that share low-resolution parts with their neighbours) or your own;
2. an optional :class:`ColorDecorrelation`, a fixed ``C x C`` linear map that turns
   decorrelated channels into natural, correlated colours;
3. an output function: ``"sigmoid"`` (default) or ``"clamp"``.

:class:`Image` chains them, and :func:`image` builds the usual one in one call, from a basis
named (``basis="laplacian"``), a basis class of your own (``basis=MyBasis``, called as
``MyBasis(batch, channels, height, width)``) or a basis module already built.

The package is split by concern; everything above is importable from ``featvis.param``:

- ``featvis.param.basis``: the :class:`Basis` protocol;
- ``featvis.param.color``: :class:`ColorDecorrelation` and the output functions;
- ``featvis.param.spatial``: :class:`PixelImage`, :class:`FourierImage`,
  :class:`LaplacianPyramidImage`, :class:`LowResImage`;
- ``featvis.param.magnitude``: MACO, :class:`MacoImage` and its amplitude spectra;
- ``featvis.param.interpolation``: :class:`InterpolationImage`;
- ``featvis.param.pattern``: :class:`CPPNImage` and :func:`cppn`, a picture at any resolution;
- ``featvis.param.prior``: :class:`GeneratorImage` and :func:`generator`, the latents of a
  generator of yours (a learned prior);
- ``featvis.param.compose``: :class:`Image` and the factories.

Example:
    >>> import featvis
    >>> p = featvis.param.image(32, batch=2)
    >>> p().shape
    torch.Size([2, 3, 32, 32])
"""

from __future__ import annotations

from .basis import Basis
from .color import IMAGENET_COLOR_CORRELATION, IMAGENET_COLOR_MEAN, ColorDecorrelation
from .color import OutputKind as OutputKind
from .compose import BasisKind as BasisKind
from .compose import Image, image, interpolation_image, laplacian_pyramid, lowres_image, maco
from .interpolation import DEFAULT_SHARED as DEFAULT_SHARED
from .interpolation import InterpolationImage
from .magnitude import MACO_PHASE_SCALE as MACO_PHASE_SCALE
from .magnitude import MACO_SLOPE as MACO_SLOPE
from .magnitude import NATURAL_CONTRAST_DECORRELATED as NATURAL_CONTRAST_DECORRELATED
from .magnitude import NATURAL_CONTRAST_PLAIN as NATURAL_CONTRAST_PLAIN
from .magnitude import MacoImage, natural_amplitude_spectrum, power_law_amplitude
from .pattern import CPPNImage, composite_activation, cppn
from .prior import GeneratorImage, generator
from .spatial import DEFAULT_DECAY as DEFAULT_DECAY
from .spatial import LARGE_IMAGE_DECAY as LARGE_IMAGE_DECAY
from .spatial import FourierImage, LaplacianPyramidImage, LowResImage, PixelImage, default_decay, fourier_frequencies
from .spatial import UpsampleMode as UpsampleMode

__all__ = [
    "IMAGENET_COLOR_CORRELATION",
    "IMAGENET_COLOR_MEAN",
    "Basis",
    "CPPNImage",
    "ColorDecorrelation",
    "FourierImage",
    "GeneratorImage",
    "Image",
    "InterpolationImage",
    "LaplacianPyramidImage",
    "LowResImage",
    "MacoImage",
    "PixelImage",
    "composite_activation",
    "cppn",
    "default_decay",
    "fourier_frequencies",
    "generator",
    "image",
    "interpolation_image",
    "laplacian_pyramid",
    "lowres_image",
    "maco",
    "natural_amplitude_spectrum",
    "power_law_amplitude",
]
