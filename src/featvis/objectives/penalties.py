"""Penalties: positive amounts, to subtract; they read the image by default.

Example:
    >>> print(-0.05 * total_variation() - l1(constant=0.5))
    -0.05 * total_variation() - l1(constant=0.5)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..hooks import INPUT, Activations, LayerRef, LayerSpec
from .core import ObjectiveFunction, wrap_objective

__all__ = ["blur", "l1", "l2", "total_variation", "transparency"]


def _image_like(acts: Activations, ref: LayerRef) -> Tensor:
    tensor = acts[ref]
    if tensor.ndim != 4:
        raise ValueError(f"this penalty needs (N, C, H, W) values, but {str(ref)!r} has shape {tuple(tensor.shape)}")
    return tensor


@wrap_objective
def total_variation(layer: LayerSpec = INPUT) -> ObjectiveFunction:
    """Penalty: the mean absolute difference between neighbouring pixels.

    A positive amount; subtract it to smooth the image. Being a mean, its weight
    means the same at 32x32 and at 224x224.

    Example:
        >>> from featvis.objectives import channel
        >>> print(channel("layer3", 0) - 0.05 * total_variation())
        channel('layer3', 0) - 0.05 * total_variation()
    """

    def value(acts: Activations) -> Tensor:
        image = _image_like(acts, layer)
        dy = (image[:, :, 1:, :] - image[:, :, :-1, :]).abs().mean()
        dx = (image[:, :, :, 1:] - image[:, :, :, :-1]).abs().mean()
        return dx + dy

    return value


@wrap_objective
def l1(layer: LayerSpec = INPUT, constant: float = 0.0) -> ObjectiveFunction:
    """Penalty: the mean absolute difference from ``constant``.

    Example:
        >>> print(l1(constant=0.5))
        l1(constant=0.5)
    """

    def value(acts: Activations) -> Tensor:
        return (acts[layer] - constant).abs().mean()

    return value


@wrap_objective
def l2(layer: LayerSpec = INPUT, constant: float = 0.0, epsilon: float = 1e-6) -> ObjectiveFunction:
    """Penalty: the root mean square difference from ``constant``.

    Example:
        >>> print(l2())
        l2()
    """

    def value(acts: Activations) -> Tensor:
        return ((acts[layer] - constant).square().mean() + epsilon).sqrt()

    return value


@wrap_objective
def blur(layer: LayerSpec = INPUT) -> ObjectiveFunction:
    """Penalty: half the mean squared distance from a 3x3-blurred copy of the image.

    The blurred copy is held fixed, so a gradient step on ``-blur()`` moves the
    image towards its blur (Lucid's "blur input each step").

    Example:
        >>> from featvis.objectives import channel
        >>> print(channel("layer3", 0) - 0.5 * blur())
        channel('layer3', 0) - 0.5 * blur()
    """

    def value(acts: Activations) -> Tensor:
        image = _image_like(acts, layer)
        with torch.no_grad():
            blurred = F.avg_pool2d(image, 3, stride=1, padding=1, count_include_pad=False)
        return 0.5 * (image - blurred).square().mean()

    return value


@wrap_objective
def transparency(layer: LayerSpec = INPUT) -> ObjectiveFunction:
    """Reward: the mean transparency (one minus the opacity, the last channel) of images with an alpha
    channel (``featvis.param.image(..., alpha=True)``). Add it, weighted, to an objective so that only
    what the unit needs stays opaque; being a mean in [0, 1], its weight means the same at any size.

    Example:
        >>> from featvis.objectives import channel
        >>> print(channel("layer3", 0) + 2 * transparency())
        channel('layer3', 0) + 2 * transparency()
    """

    def value(acts: Activations) -> Tensor:
        image = _image_like(acts, layer)
        if image.shape[1] < 2:
            raise ValueError(
                f"transparency() needs images with an alpha channel (featvis.param.image(..., alpha=True)); "
                f"{str(layer)!r} has {image.shape[1]} channel"
            )
        return 1 - image[:, -1].mean()

    return value
