"""Faceted visualisation (Goh et al. 2021, *Multimodal Neurons in Artificial Neural Networks*): steer a
unit's picture towards a theme with a linear probe on a lower layer.

A unit may respond to many things; a *facet* picks one. :func:`fit_facet` fits a logistic-regression
probe on a lower layer's activations (averaged over positions) that tells two sets of images apart
(pictures of the theme, and others); its weights are a direction in that layer's channel space.
:func:`faceted` adds that direction, weighted, to a unit's objective, so the picture raises the unit
*through* features of the theme.

Example:
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3)).eval()
    >>> red, blue = torch.rand(8, 3, 12, 12) * 0.2, torch.rand(8, 3, 12, 12) * 0.2
    >>> red[:, 0] += 0.8; blue[:, 2] += 0.8
    >>> probe = fit_facet(model, "1", red, blue)
    >>> probe.shape
    torch.Size([4])
    >>> print(faceted("2:1", "1", probe, strength=2))
    channel('2', 1) + 2 * facet('1')
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .hooks import LayerSpec
from .layers import LayerRef
from .objectives import Objective, ObjectiveLike, as_objective
from .objectives import direction as direction_objective
from .trust import activation_patterns

__all__ = ["faceted", "fit_facet", "pooled_activations"]


def pooled_activations(
    model: nn.Module, layer: LayerSpec, images: Tensor, *, preprocess: Any = None, batch_size: int = 64
) -> Tensor:
    """Each image's activations at ``layer``, averaged over the positions: ``(N, C)``.

    Example:
        >>> from torch import nn
        >>> pooled_activations(nn.Sequential(nn.Conv2d(3, 5, 3)), "0", torch.rand(2, 3, 8, 8)).shape
        torch.Size([2, 5])
    """
    return activation_patterns(
        model, [str(LayerRef.parse(layer))], images, preprocess=preprocess, batch_size=batch_size
    )[0]


def fit_facet(
    model: nn.Module,
    layer: LayerSpec,
    theme: Tensor,
    others: Tensor,
    *,
    l2: float = 1e-3,
    steps: int = 200,
    preprocess: Any = None,
) -> Tensor:
    """A probe's weights, ``(C,)`` of unit norm, that tell ``theme`` images from ``others`` by their
    activations at ``layer`` (logistic regression on the standardised, position-averaged activations,
    L-BFGS with an L2 penalty ``l2``), expressed in the layer's own units.

    Args:
        model: any image model.
        layer: the lower layer the probe reads.
        theme: ``(N, C, H, W)`` images of the theme, in [0, 1].
        others: ``(M, C, H, W)`` other images.
        l2: the penalty on the weights.
        steps: the optimiser's iterations.
        preprocess: as in :func:`featvis.render_vis`.

    Example:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 3, 1)).eval()
        >>> round(fit_facet(model, "0", torch.rand(4, 3, 6, 6), torch.rand(4, 3, 6, 6)).norm().item(), 5)
        1.0
    """
    if len(theme) < 2 or len(others) < 2:
        raise ValueError(f"fit_facet needs at least 2 images of each set, got {len(theme)} and {len(others)}")
    features = torch.cat(
        [
            pooled_activations(model, layer, theme, preprocess=preprocess),
            pooled_activations(model, layer, others, preprocess=preprocess),
        ]
    ).double()
    labels = torch.cat([torch.ones(len(theme)), torch.zeros(len(others))]).double()
    mean, scale = features.mean(0), features.std(0).clamp_min(1e-8)
    standard = (features - mean) / scale
    weights = torch.zeros(features.shape[1], dtype=torch.float64, requires_grad=True)
    bias = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([weights, bias], max_iter=steps, line_search_fn="strong_wolfe")

    def loss() -> Tensor:
        optimiser.zero_grad()
        value = nn.functional.binary_cross_entropy_with_logits(standard @ weights + bias, labels)
        value = value + l2 * weights.square().sum()
        value.backward()
        return value

    optimiser.step(loss)
    direction = (weights.detach() / scale).float()  # in the layer's own units
    return direction / direction.norm().clamp_min(1e-12)


def faceted(unit: ObjectiveLike, layer: LayerSpec, probe: Tensor, strength: float = 1.0) -> Objective:
    """``unit`` plus ``strength`` times the facet: the mean over positions of the activations at
    ``layer`` along ``probe`` (:func:`fit_facet`).

    Example:
        >>> print(faceted("layer3:5", "layer1", torch.ones(16), strength=0.5))
        channel('layer3', 5) + 0.5 * facet('layer1')
    """
    facet = direction_objective(layer, probe)
    named = Objective(facet.function, f"facet({str(LayerRef.parse(layer))!r})", facet.layers)
    return as_objective(unit) + strength * named
