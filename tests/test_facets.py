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


def test_the_vit_recipe_raises_a_post_gelu_unit_of_a_small_torchvision_vit() -> None:
    """Ghiasi et al.'s recipe on torchvision's VisionTransformer (random weights, small): the MLP's expanded
    units after the GELU, colour jitter and noise beside the usual transforms, a channel over the patches."""
    from torchvision.models import VisionTransformer

    torch.manual_seed(0)
    vit = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64).eval()
    layer = "encoder.layers.encoder_layer_1.mlp.1"  # Linear(32, 64), GELU: the GELU's output
    transforms = [
        featvis.transforms.ColorJitter(0.1, 0.1, 0.1),
        featvis.transforms.GaussianNoise(0.02),
        featvis.transforms.standard(),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = featvis.render_vis(vit, f"{layer}:7", size=32, steps=32, seed=0, progress=False, transforms=transforms)
    assert result.images.shape == (1, 3, 32, 32)
    assert float(result.losses[-4:].mean()) < float(result.losses[:2].mean())


def test_several_augmented_copies_average_the_objective_over_their_transforms() -> None:
    """With copies=k the loss is the mean of k passes, each with its own transform draw: with a transform
    that adds the pass's number, the first loss is minus the mean of the k shifted objectives."""
    model = nn.Sequential(nn.Conv2d(3, 2, 1)).eval()
    calls: list[int] = []

    def shifted(images: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return images + 0.1 * len(calls)

    image = featvis.param.image(8, seed=0)
    with torch.no_grad():
        start = image()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = featvis.render_vis(
            model, "0:1", image, steps=1, copies=3, transforms=[shifted], preprocess=False, redirected_relu=0
        )
    with torch.no_grad():
        # the checking pass before the steps used one call; the step's three copies the next three
        expected = -torch.stack([model(start + 0.1 * k)[:, 1].mean() for k in (2, 3, 4)]).mean()
    assert float(result.losses[0]) == pytest.approx(float(expected), abs=1e-5)
    with pytest.raises(ValueError, match="copies must be a whole number >= 1"):
        featvis.render_vis(model, "0:1", size=8, steps=1, copies=0, progress=False)
