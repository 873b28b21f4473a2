"""Transparent pictures (an opacity channel, random backgrounds, a transparency reward, RGBA files, a
checkerboard in grids) and importance maps (the accumulated absolute gradient), against references."""

from __future__ import annotations

import io
import warnings
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from torch import nn

import featvis
from featvis import objectives as O
from featvis import param
from featvis.generators import generator, run_generators
from featvis.grid import over_checkerboard
from featvis.param import ColorDecorrelation, FourierImage, Image
from featvis.transforms import RandomBackground

if TYPE_CHECKING:
    from conftest import ModelState


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1)).eval()


def quietly(*args: object, **kwargs: object) -> featvis.RenderResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return featvis.render_vis(*args, progress=False, **kwargs)


# ---- the opacity channel -----------------------------------------------------------------
def test_the_opacity_channel_skips_the_colour_map_and_goes_through_the_sigmoid() -> None:
    basis = FourierImage(2, 4, 8, 8)
    with_alpha = Image(basis, ColorDecorrelation(), alpha=True)
    images = with_alpha().detach()
    raw = basis().detach()
    expected_colours = torch.sigmoid(ColorDecorrelation()(raw[:, :3]))
    assert images.shape == (2, 4, 8, 8)
    assert torch.allclose(images[:, :3], expected_colours) and torch.allclose(images[:, 3:], torch.sigmoid(raw[:, 3:]))
    made = param.image(8, batch=2, alpha=True, seed=0)
    assert made.alpha and made().shape == (2, 4, 8, 8) and made.basis().shape[1] == 4
    with pytest.raises(ValueError, match="alpha=True works with the 'fourier', 'pixel'"):
        param.image(8, basis="maco", alpha=True)


def test_a_start_image_sets_the_colours_and_the_opacity() -> None:
    rgba = torch.rand(1, 4, 8, 8) * 0.8 + 0.1
    made = param.image(8, alpha=True, init=rgba)
    assert torch.allclose(made(), rgba, atol=1e-3)
    opaque = param.image(8, alpha=True, init=rgba[:, :3])  # colours only: opaque
    assert torch.allclose(opaque()[:, 3], torch.full((1, 8, 8), 0.999), atol=1e-3)


# ---- backgrounds -------------------------------------------------------------------------
def test_random_background_composites_over_the_background_it_draws() -> None:
    images = torch.rand(6, 4, 8, 8)
    with run_generators(3):
        state = generator("cpu").get_state()
        out = RandomBackground()(images)
        generator("cpu").set_state(state)
        background = RandomBackground().backgrounds(6, 3, 8, 8, images)
    alpha = images[:, 3:]
    assert torch.allclose(out, images[:, :3] * alpha + background * (1 - alpha))
    flat = RandomBackground(["flat"]).backgrounds(5, 3, 8, 8, images)
    assert (
        torch.equal(flat, flat[:, :, :1, :1].expand_as(flat))
        and len({tuple(c.flatten(1)[:, 0].tolist()) for c in flat}) == 5
    )
    blurred = RandomBackground(["blurred"]).backgrounds(2, 3, 32, 32, images)
    noise = RandomBackground(["noise"]).backgrounds(2, 3, 32, 32, images)
    # blurred noise is smooth: neighbours differ far less than in plain noise
    assert (blurred.diff(dim=-1).abs().mean() * 5) < noise.diff(dim=-1).abs().mean()
    with pytest.raises(ValueError, match="kinds must be some of"):
        RandomBackground(["stripes"])
    with pytest.raises(ValueError, match="opacity last"):
        RandomBackground()(torch.rand(2, 1, 4, 4))


# ---- rendering transparent pictures -----------------------------------------------------
def test_a_transparent_render_keeps_the_opacity_and_the_reward_makes_it_clearer(
    model_state: type[ModelState], tmp_path: object
) -> None:
    model = small_model()
    before = model_state(model)
    plain = quietly(model, O.channel("2", 1), param.image(16, alpha=True, seed=0), steps=48, seed=0)
    rewarded = quietly(
        model, O.channel("2", 1) + 3 * O.transparency(), param.image(16, alpha=True, seed=0), steps=48, seed=0
    )
    before.assert_unchanged()
    assert plain.alpha and plain.images.shape == (1, 4, 16, 16)
    assert float(rewarded.images[:, 3].mean()) < float(plain.images[:, 3].mean()) - 0.1
    # the reward's value is one minus the mean opacity of the image
    value = O.transparency()(featvis.hooks.Activations(model, {}, rewarded.images))
    assert float(value) == pytest.approx(1 - float(rewarded.images[:, 3].mean()), abs=1e-6)
    # the file keeps the opacity; the grid shows it over a checkerboard
    buffer = io.BytesIO()
    rewarded.pil()[0].save(buffer, format="PNG")
    saved = np.asarray(PILImage.open(buffer))
    assert saved.shape == (16, 16, 4)
    assert np.abs(saved[:, :, 3] / 255 - rewarded.images[0, 3].numpy()).max() <= 0.5 / 255 + 1e-6
    shown = np.asarray(rewarded.grid(scale=1, padding=0)).astype(float) / 255
    expected = over_checkerboard(rewarded.images)[0].permute(1, 2, 0).numpy()
    assert np.abs(shown - expected).max() <= 0.5 / 255 + 1e-6


def test_the_checkerboard_shows_through_where_the_image_is_clear() -> None:
    half = torch.zeros(1, 4, 8, 8)
    half[:, :3] = 1.0
    half[:, 3, :, :4] = 1.0  # the left half opaque white, the right half clear
    shown = over_checkerboard(half, square=2)
    assert bool((shown[:, :, :, :4] == 1).all())
    assert sorted(set(shown[0, 0, :, 4:].flatten().tolist())) == pytest.approx([0.6, 0.8])
    with pytest.raises(ValueError, match="needs images with an alpha channel"):
        O.transparency()(featvis.hooks.Activations(nn.Identity(), {}, torch.rand(1, 1, 4, 4)))


# ---- importance --------------------------------------------------------------------------
def test_importance_adds_up_the_absolute_gradient_of_each_step() -> None:
    """A 1x1 convolution: the objective's gradient with respect to each pixel is the weight over the
    number of positions, so each step adds sum(|w|) / (H * W) everywhere."""
    conv = nn.Conv2d(3, 2, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[0.5, -1.0, 2.0], [1.0, 1.0, 1.0]]).reshape(2, 3, 1, 1))
    model = nn.Sequential(conv).eval()
    result = quietly(
        model, "0:0", param.image(6, 4, seed=0), steps=5, transforms=[], preprocess=False, importance=True, seed=0
    )
    assert result.importance is not None and result.importance.shape == (1, 4, 6)
    assert torch.allclose(result.importance, torch.full((1, 4, 6), 5 * 3.5 / 24))


def test_importance_is_zero_where_the_unit_does_not_look() -> None:
    class LeftHalf(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.conv(x[:, :, :, :4])

    result = quietly(LeftHalf().eval(), "conv:1", param.image(8, seed=0), steps=4, transforms=[], importance=True)
    assert float(result.importance[:, :, 4:].abs().max()) == 0 and float(result.importance[:, :, :4].min()) > 0
    overlay = result.importance_overlay()
    assert overlay.alpha and overlay.images.shape == (1, 4, 8, 8) and float(overlay.images[0, 3, :, 4:].max()) == 0
    heat = result.importance_overlay("heat")
    assert not heat.alpha and heat.images.shape == (1, 3, 8, 8)
    with pytest.raises(ValueError, match="no importance maps"):
        quietly(LeftHalf().eval(), "conv:1", size=8, steps=1).importance_overlay()


def test_importance_is_refused_where_there_is_no_gradient_and_kept_by_render_channels() -> None:
    model = small_model()
    with pytest.raises(ValueError, match="gradient-free optimiser has none"):
        quietly(model, "2:0", size=8, steps=1, importance=True, optimizer=featvis.optim.EvolutionStrategy)
    with pytest.raises(ValueError, match="not available with compile"):
        quietly(model, "2:0", size=8, steps=1, importance=True, compile=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        many = featvis.render_channels(
            model, "2", [0, 1, 2], batch_size=2, size=8, steps=2, importance=True, progress=False
        )
    assert many.importance is not None and many.importance.shape == (3, 8, 8)


def test_a_gallery_of_transparent_units_writes_rgba_pictures_and_measures_them_over_grey(tmp_path: object) -> None:
    from pathlib import Path

    from featvis.gallery import render_gallery, unit_activations

    model = small_model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gallery = render_gallery(
            model, "2", Path(str(tmp_path)), [0, 1], size=12, steps=3, seed=0,
            param=lambda n: param.image(12, batch=n, alpha=True),
        )  # fmt: skip
    assert [PILImage.open(p).mode for p in gallery.images] == ["RGBA", "RGBA"]
    rgba = gallery.result.images
    over_grey = rgba[:, :3] * rgba[:, 3:] + 0.5 * (1 - rgba[:, 3:])
    assert torch.allclose(gallery.activations, unit_activations(model, "2", over_grey, [0, 1]))
