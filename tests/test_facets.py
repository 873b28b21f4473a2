"""Faceted visualisation: a probe fitted on a lower layer tells two image sets apart, and steers a unit's
picture towards its theme."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import featvis
from featvis.facets import faceted, fit_facet, pooled_activations


def colour_sets(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    draw = torch.Generator().manual_seed(seed)
    red, blue = torch.rand(16, 3, 12, 12, generator=draw) * 0.3, torch.rand(16, 3, 12, 12, generator=draw) * 0.3
    red[:, 0] += 0.6
    blue[:, 2] += 0.6
    return red, blue


def colour_model() -> nn.Module:
    """A first layer that sees colour (three 1x1 filters: red, green, blue) and a random second one."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU(), nn.Conv2d(3, 6, 3, padding=1), nn.ReLU()).eval()
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(3).reshape(3, 3, 1, 1))
        model[0].bias.zero_()
    return model


def test_the_probe_tells_the_sets_apart_in_the_layers_own_units() -> None:
    model = colour_model()
    red, blue = colour_sets()
    probe = fit_facet(model, "1", red, blue)
    assert probe.norm().item() == pytest.approx(1.0)
    assert float(probe[0]) > 0 > float(probe[2])  # red for, blue against
    scores_red = pooled_activations(model, "1", red) @ probe
    scores_blue = pooled_activations(model, "1", blue) @ probe
    assert float(scores_red.min()) > float(scores_blue.max())
    assert torch.allclose(pooled_activations(model, "1", red[:2]), model[:2](red[:2]).mean(dim=(2, 3)), atol=1e-6)


def test_the_facet_steers_a_units_picture_towards_the_theme() -> None:
    model = colour_model()
    red, blue = colour_sets()
    probe = fit_facet(model, "1", red, blue)
    unit = featvis.objectives.channel("3", 2)

    def picture(objective: featvis.Objective) -> torch.Tensor:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = featvis.render_vis(model, objective, size=12, steps=48, seed=0, progress=False, transforms=[])
        return result.images

    plain, steered = picture(unit), picture(faceted(unit, "1", probe, strength=4.0))
    redness = lambda images: float((images[:, 0] - images[:, 2]).mean())  # noqa: E731
    assert redness(steered) > redness(plain) + 0.2
    with pytest.raises(ValueError, match="at least 2 images of each set"):
        fit_facet(model, "1", red[:1], blue)
