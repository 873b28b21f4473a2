"""The CPPN (any resolution), a generator of yours as the prior (pictures stay on its manifold), feature
accentuation (balanced by gradients, measured against the photo) and caricatures."""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
from torch import nn

import featvis
from featvis import param
from featvis.accentuation import accentuate, caricature
from featvis.param.pattern import CPPN_LEARNING_RATE, composite_activation

if TYPE_CHECKING:
    from conftest import ModelState


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1)).eval()


def quietly(*args: object, **kwargs: object) -> featvis.RenderResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return featvis.render_vis(*args, progress=False, **kwargs)


# ---- CPPN ----------------------------------------------------------------------------------
def test_the_composite_activation_is_lucids() -> None:
    values = np.linspace(-3, 3, 7, dtype=np.float32)[None]
    expected = np.concatenate([np.arctan(values) / 0.67, np.arctan(values) ** 2 / 0.6], axis=1)
    assert np.allclose(composite_activation(torch.from_numpy(values)).numpy(), expected, atol=1e-6)


def test_a_cppn_draws_the_same_picture_at_any_size() -> None:
    p = param.cppn(9, 7, batch=2, seed=0)
    with torch.no_grad():
        p.basis.output.normal_()  # a picture that is not flat
        small, large = p(), p.at_size(13, 17)()
    # the coordinates of 9 points are every other one of 17 (and 7 of 13): the same pixels, drawn again
    assert small.shape == (2, 3, 7, 9) and large.shape == (2, 3, 13, 17)
    assert torch.allclose(large[..., ::2, ::2], small, atol=1e-5)
    assert p.at_size(13, 17).basis.output is p.basis.output
    with pytest.raises(TypeError, match="draws at one size only"):
        param.image(8).at_size(16)


def test_a_cppn_renders_a_unit_with_its_own_learning_rate(resnet20: nn.Module) -> None:
    p = param.cppn(32, seed=0)
    assert p.learning_rate == CPPN_LEARNING_RATE
    result = quietly(resnet20, "layer3:5", p, steps=64, seed=0)
    assert float(result.losses[-8:].mean()) < float(result.losses[:4].mean()) - 0.5  # the channel rose
    assert torch.equal(param.cppn(16, seed=3)(), param.cppn(16, seed=3)())


# ---- a generator as the prior ----------------------------------------------------------------
def disks(count: int, generator: torch.Generator) -> torch.Tensor:
    """16x16 pictures of one disk each, of a random colour, place and size, on black."""
    ys, xs = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    centre = torch.rand(count, 2, generator=generator) * 8 + 4
    radius = torch.rand(count, generator=generator) * 2 + 2.5
    colour = torch.rand(count, 3, generator=generator)
    inside = ((ys - centre[:, 0, None, None]) ** 2 + (xs - centre[:, 1, None, None]) ** 2) < radius[:, None, None] ** 2
    return inside[:, None].float() * colour[:, :, None, None]


def trained_autoencoder() -> tuple[nn.Module, nn.Module]:
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(768, 128), nn.ReLU(), nn.Linear(128, 8))
    decoder = nn.Sequential(nn.Linear(8, 128), nn.ReLU(), nn.Linear(128, 768), nn.Tanh(), nn.Unflatten(1, (3, 16, 16)))
    optimiser = torch.optim.Adam([*encoder.parameters(), *decoder.parameters()], lr=3e-3)
    for _ in range(400):
        batch = disks(64, generator)
        loss = ((decoder(encoder(batch)) + 1) / 2 - batch).square().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return encoder.eval(), decoder.eval()


def test_pictures_made_through_a_generator_stay_on_its_manifold(model_state: type[ModelState]) -> None:
    encoder, decoder = trained_autoencoder()
    before = model_state(decoder)
    # the unit: red minus the other colours, a simple 1x1 convolution
    red = nn.Conv2d(3, 1, 1, bias=False)
    with torch.no_grad():
        red.weight.copy_(torch.tensor([1.0, -0.5, -0.5]).reshape(1, 3, 1, 1))
    model = nn.Sequential(red).eval()

    def off_manifold(images: torch.Tensor) -> float:
        """How far the pictures are from what the generator makes: the autoencoder's reconstruction error."""
        with torch.no_grad():
            return float(((decoder(encoder(images)) + 1) / 2 - images).square().mean())

    through = quietly(model, "0:0", param.generator(decoder, (8,), batch=2, seed=0), steps=64, seed=0, transforms=[])
    free = quietly(model, "0:0", param.image(16, batch=2, seed=0), steps=64, seed=0, transforms=[])
    assert float(through.losses[-1]) < float(through.losses[0])  # the unit rose
    assert off_manifold(through.images) < off_manifold(free.images) / 3
    assert off_manifold(through.images) < 0.02
    before.assert_unchanged()  # the generator's weights were never optimised


def test_the_generator_param_has_only_the_latents_and_moves_with_them() -> None:
    decoder = nn.Sequential(nn.Linear(4, 12), nn.Unflatten(1, (3, 2, 2)))
    p = param.generator(decoder, (4,), batch=3, output="sigmoid", seed=0)
    assert [name for name, _ in p.named_parameters()] == ["latent"] and p.latent.shape == (3, 4)
    p.double()
    assert decoder[0].weight.dtype == torch.float64 and p().dtype == torch.float64
    with pytest.raises(ValueError, match="output must be 'tanh', 'sigmoid', 'clamp' or a function"):
        param.generator(decoder, (4,), output="relu")
    with pytest.raises(ValueError, match=r"must make \(N, C, H, W\) images"):
        param.generator(nn.Linear(4, 12), (4,))
    # a seeded run draws latents nobody chose from its seed
    decoder = nn.Sequential(nn.Linear(4, 12), nn.Unflatten(1, (3, 2, 2)))
    model = nn.Sequential(nn.Conv2d(3, 2, 1)).eval()
    first = quietly(model, "0:0", param.generator(decoder, (4,)), steps=2, seed=5, transforms=[])
    again = quietly(model, "0:0", param.generator(decoder, (4,)), steps=2, seed=5, transforms=[])
    assert torch.equal(first.images, again.images)


# ---- accentuation ------------------------------------------------------------------------------
def test_a_stronger_regulariser_keeps_the_picture_nearer_the_photo(model_state: type[ModelState]) -> None:
    model = small_model()
    before = model_state(model)
    photo = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(1)) * 0.6 + 0.2
    found = {
        strength: accentuate(model, photo, "2:1", layer="0", strength=strength, steps=32, seed=0, progress=False)
        for strength in (0.0, 1.0, 3.0)
    }
    before.assert_unchanged()
    distances = [float(found[s].pixel_distance[0]) for s in (0.0, 1.0, 3.0)]
    layers = [float(found[s].layer_distance[0]) for s in (0.0, 1.0, 3.0)]
    assert distances[0] > distances[1] > distances[2] and layers[0] > layers[1] > layers[2]
    assert all(found[s].objective > found[s].photo_objective for s in (0.0, 1.0))
    # the distances are what they say: root mean square pixels, and the relative activation distance
    one = found[1.0]
    assert float(one.pixel_distance[0]) == pytest.approx(
        float((one.images - one.photos).square().mean().sqrt()), rel=1e-4
    )
    with torch.no_grad():
        target, moved = model[0](one.photos), model[0](one.images)
    assert float(one.layer_distance[0]) == pytest.approx(float((moved - target).norm() / target.norm()), rel=1e-3)
    assert one.side_by_side().images.shape == (2, 3, 16, 16)


def test_accentuate_says_what_is_wrong() -> None:
    model = small_model()
    with pytest.raises(ValueError, match="strength must be a number >= 0"):
        accentuate(model, torch.rand(3, 8, 8), "2:1", layer="0", strength=-1)
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        accentuate(model, torch.rand(3, 8, 8) * 4, "2:1", layer="0")
    with pytest.raises(TypeError, match="needs to know the layers the objective reads"):
        accentuate(model, torch.rand(3, 8, 8), lambda acts: acts["2"].mean(), layer="0")


def test_a_caricature_matches_the_photos_activations() -> None:
    model = small_model()
    photo = torch.rand(3, 12, 12, generator=torch.Generator().manual_seed(2))
    result = caricature(model, photo, "1", steps=32, seed=0, progress=False, transforms=[])
    with torch.no_grad():
        target = model[:2](photo[None])
        reached = model[:2](result.images)
        start = model[:2](param.image(12, seed=0)())
    cosine = float(torch.nn.functional.cosine_similarity(reached.flatten(), target.flatten(), dim=0))
    start_cosine = float(torch.nn.functional.cosine_similarity(start.flatten(), target.flatten(), dim=0))
    assert cosine > start_cosine + 0.1 and not math.isnan(cosine)
