"""Matching instead of maximising: make a layer's activations on the picture distributed as they are on
reference images (VITAL, 2025: a unit's natural examples), rather than as large as possible.

Maximising drives a unit far beyond anything a real image does (Geirhos et al. 2023); matching
asks for activations *like* those of the unit's real examples, channel by channel: each channel's
values over the picture's positions, sorted, against the same quantiles of the reference's values
(sort matching, the optimal transport between two sets of numbers on a line).

Example:
    >>> import torch
    >>> print(match_distribution("layer3", torch.rand(4, 8, 5, 5), channels=[2]))
    match_distribution('layer3', <800-vector>, channels=<1-vector>)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..hooks import Activations, LayerSpec
from .core import ObjectiveFunction, wrap_objective

__all__ = ["match_distribution", "reference_quantiles"]


def reference_quantiles(reference: Tensor, count: int) -> Tensor:
    """Each channel's ``count`` evenly spaced quantiles of the reference activations: ``(C, count)``.

    Args:
        reference: ``(M, C, *positions)`` activations (positions of every image pooled per channel), or
            ``(M, C)``.
        count: how many quantiles (the positions of the picture's activations).

    Example:
        >>> reference_quantiles(torch.arange(10.0).reshape(10, 1), 3).tolist()
        [[0.0, 4.5, 9.0]]
    """
    values = reference.detach().float().transpose(0, 1).flatten(1)  # (C, M * positions)
    levels = torch.linspace(0, 1, count, device=values.device)
    return torch.quantile(values, levels, dim=1).T.contiguous()


@wrap_objective
def match_distribution(
    layer: LayerSpec, reference: Tensor, channels: Sequence[int] | None = None, batch: int | None = None
) -> ObjectiveFunction:
    """Minus the mean squared difference between each channel's sorted activations on the picture and
    the same quantiles of its activations on the reference images: largest (zero) when the picture's
    activations are distributed as the reference's. Each image of the batch is matched on its own.

    Args:
        layer: the layer.
        reference: the layer's activations on reference images, ``(M, C, H, W)`` (or ``(M, C)``), e.g. of
            a unit's top natural examples (:func:`featvis.top_activating`).
        channels: the channels to match (default: all).
        batch: as for the other objectives.

    Example:
        >>> print(match_distribution("layer2", torch.rand(2, 4)))
        match_distribution('layer2', <8-vector>)
    """
    cache: dict[tuple[int, str], Tensor] = {}
    chosen = None if channels is None else list(channels)

    def value(acts: Activations) -> Tensor:
        units = acts.units(layer, batch)  # (N, C, *positions)
        if units.shape[1] != reference.shape[1]:
            raise ValueError(
                f"the reference has {reference.shape[1]} channels but {str(layer)!r} has {units.shape[1]}: give the "
                "same layer's activations"
            )
        values = units.flatten(2).float()
        if chosen is not None:
            values = values[:, chosen]
        key = (values.shape[2], str(values.device))
        if key not in cache:
            picked = reference if chosen is None else reference[:, chosen]
            cache[key] = reference_quantiles(picked, values.shape[2]).to(values.device)
        return -(values.sort(dim=2).values - cache[key]).square().mean()

    return value
