"""Objectives over the whole batch: interpolation between units, diversity, alignment.

Example:
    >>> print(diversity("layer2", group_size=4) + alignment("layer3"))
    diversity('layer2', group_size=4) + alignment('layer3')
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..hooks import Activations, LayerSpec
from .core import ObjectiveFunction, wrap_objective

__all__ = ["alignment", "channel_interpolate", "diversity"]


@wrap_objective
def channel_interpolate(layer1: LayerSpec, channel1: int, layer2: LayerSpec, channel2: int) -> ObjectiveFunction:
    """Interpolate across the batch from one channel to another.

    Image ``i`` of ``N`` maximises ``(1 - t) * channel1 + t * channel2`` with
    ``t = i / (N - 1)``: the first image shows ``channel1``, the last ``channel2``.
    Pair it with :func:`alignment` to keep neighbouring images alike.

    Example:
        >>> print(channel_interpolate("layer3", 1, "layer3", 9))
        channel_interpolate('layer3', 1, 'layer3', 9)
    """

    def value(acts: Activations) -> Tensor:
        first, second = acts.units(layer1, channel=channel1), acts.units(layer2, channel=channel2)
        n = first.shape[0]
        t = torch.linspace(0.0, 1.0, n, device=first.device, dtype=first.dtype) if n > 1 else first.new_zeros(1)
        means1 = first.reshape(n, -1).mean(dim=1)
        means2 = second.reshape(n, -1).mean(dim=1)
        return ((1 - t) * means1 + t * means2).sum()

    return value


@wrap_objective
def diversity(layer: LayerSpec, group_size: int | None = None) -> ObjectiveFunction:
    """Make the images of a batch differ: minus the mean Gram-matrix cosine between them.

    Each image's style is its channel Gram matrix at ``layer``; the value is
    ``-(sum over pairs i != j of cos(G_i, G_j)) / N``, 0 for a single image.
    Add it to a unit objective with a weight (Lucid uses around 1e-2 to 1e2,
    depending on the unit's scale). With ``group_size=k`` the batch is read as
    consecutive groups of ``k`` images (say, ``k`` images of each class) and only
    images of the same group are pushed apart.

    Example:
        >>> from featvis.objectives import channel
        >>> print(channel("layer3", 2) + 0.5 * diversity("layer2"))
        channel('layer3', 2) + 0.5 * diversity('layer2')
        >>> print(diversity("layer2", group_size=4))
        diversity('layer2', group_size=4)
    """
    if group_size is not None and (int(group_size) != group_size or group_size < 1):
        raise ValueError(f"group_size must be a positive whole number, got {group_size!r}")

    def value(acts: Activations) -> Tensor:
        units = acts.units(layer)
        n, c = units.shape[:2]
        size = n if group_size is None else group_size
        if n % size:
            raise ValueError(
                f"diversity({layer}, group_size={group_size}): a batch of {n} images does not split into groups "
                f"of {group_size}; make the batch a multiple of the group size"
            )
        if size < 2:
            return units.new_zeros(())
        flat = units.reshape(n, c, -1)
        grams = flat @ flat.transpose(1, 2) / flat.shape[2]
        grams = F.normalize(grams.reshape(n // size, size, -1), dim=-1, eps=1e-10)
        similarity = grams @ grams.transpose(1, 2)  # (groups, size, size)
        off_diagonal = similarity.sum() - similarity.diagonal(dim1=1, dim2=2).sum()
        return -off_diagonal / n

    return value


@wrap_objective
def alignment(layer: LayerSpec, decay_ratio: float = 2.0) -> ObjectiveFunction:
    """Keep neighbouring images of a batch alike (for interpolations).

    Minus the mean squared difference of the activations of images ``i`` and
    ``i + d``, for ``d`` = 1 to 4, weighted by ``1 / decay_ratio**d``.

    Example:
        >>> print(alignment("layer2"))
        alignment('layer2')
    """

    def value(acts: Activations) -> Tensor:
        units = acts[layer]
        total = units.new_zeros(())
        for d in range(1, min(5, units.shape[0])):
            differences = (units[:-d] - units[d:]).square().reshape(units.shape[0] - d, -1).mean(dim=1)
            total = total + differences.sum() / decay_ratio**d
        return -total

    return value
