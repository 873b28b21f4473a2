"""Channel factorisation (NMF in torch against scikit-learn's, known parts recovered, PCA), factors
rendered as directions, the semantic dictionary of a photo; the colour-jitter and noise transforms."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from featvis.factorisation import reduce, render_factors, semantic_dictionary
from featvis.generators import run_generators
from featvis.transforms import ColorJitter, GaussianNoise


def known_parts(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    draw = torch.Generator().manual_seed(seed)
    parts = torch.rand(3, 12, generator=draw) ** 3  # sparse-ish non-negative directions
    amounts = torch.rand(400, 3, generator=draw)
    return amounts @ parts, parts


def test_torch_nmf_finds_the_parts_and_fits_as_well_as_scikit_learns() -> None:
    mixed, parts = known_parts()
    ours = reduce(mixed, 3, steps=800, seed=0)
    theirs = reduce(mixed, 3, method="sklearn-nmf", steps=800, seed=0)
    assert ours.relative_error < 0.02 and ours.relative_error <= theirs.relative_error + 0.01
    # each true part has a found direction pointing the same way
    cosine = torch.nn.functional.normalize(parts, dim=1) @ torch.nn.functional.normalize(ours.components, dim=1).T
    assert bool((cosine.max(dim=1).values > 0.97).all())
    assert bool((ours.components >= 0).all() and (ours.weights >= 0).all())
    # largest total weight first
    totals = ours.weights.sum(0)
    assert bool((totals[:-1] >= totals[1:]).all())


def test_pca_of_rank_two_activations_is_exact_and_spatial_weights_fold_back() -> None:
    draw = torch.Generator().manual_seed(1)
    acts = (torch.randn(2, 2, 4, 5, generator=draw).permute(0, 2, 3, 1) @ torch.randn(2, 6, generator=draw)).permute(
        0, 3, 1, 2
    )  # (2, 6, 4, 5), rank 2 over channels
    found = reduce(acts, 2, method="pca")
    assert found.relative_error < 1e-5 and found.weights.shape == (2, 2, 4, 5)
    nmf = reduce(acts.relu(), 2)
    rebuilt = torch.einsum("nkhw,kc->nchw", nmf.weights, nmf.components)
    assert float((rebuilt - acts.relu()).norm() / acts.relu().norm()) == pytest.approx(nmf.relative_error, abs=1e-5)


def test_reduce_says_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="method must be one of"):
        reduce(torch.rand(10, 4), 2, method="ica")
    with pytest.raises(ValueError, match="n must be a whole number from 1 to 4"):
        reduce(torch.rand(10, 4), 5)
    with pytest.raises(ValueError, match=r"for tokens \(N, T, C\), pass activations.reshape\(-1, C\)"):
        reduce(torch.rand(2, 5, 4), 2)


def test_factors_render_as_directions_and_a_photo_gets_its_dictionary() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()).eval()
    with torch.no_grad():
        acts = model(torch.rand(6, 3, 12, 12))
    factors = reduce(acts, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pictures = render_factors(model, "3", factors, size=12, steps=24, seed=0, progress=False)
    assert pictures.images.shape == (3, 3, 12, 12)
    assert float(pictures.losses[-1]) < float(pictures.losses[0])
    # each picture raises its own direction more than the others' pictures do
    with torch.no_grad():
        reached = model(pictures.images)
    scores = torch.einsum("nchw,kc->nk", reached, factors.components)
    assert bool((scores.argmax(dim=0) == torch.arange(3)).all())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        book = semantic_dictionary(model, torch.rand(3, 12, 12), "3", n=2, size=12, steps=4, seed=0, progress=False)
    assert book.maps.shape == (2, 12, 12) and torch.allclose(book.maps.flatten(1).max(1).values, torch.ones(2))
    assert book.pictures.images.shape == (2, 3, 12, 12)


# ---- colour and noise -----------------------------------------------------------------------
def test_brightness_scales_each_image_by_its_own_factor_within_the_range() -> None:
    images = torch.rand(16, 3, 6, 6) + 0.1
    with run_generators(0):
        out = ColorJitter(brightness=0.3, contrast=0, saturation=0)(images)
    ratios = (out / images).flatten(1)
    assert torch.allclose(ratios, ratios[:, :1].expand_as(ratios), atol=1e-5)
    factors = ratios[:, 0]
    assert bool(((factors >= 0.7) & (factors <= 1.3)).all()) and factors.std() > 0.05


def test_contrast_keeps_the_mean_and_saturation_keeps_the_grey() -> None:
    images = torch.rand(8, 3, 6, 6)
    contrasted = ColorJitter(0, 0.5, 0)(images)
    assert torch.allclose(contrasted.mean(dim=(1, 2, 3)), images.mean(dim=(1, 2, 3)), atol=1e-5)
    ratio = contrasted.std(dim=(1, 2, 3)) / images.std(dim=(1, 2, 3))
    assert bool(((ratio >= 0.5 - 1e-4) & (ratio <= 1.5 + 1e-4)).all())
    saturated = ColorJitter(0, 0, 0.5)(images)
    grey = torch.tensor([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1)
    assert torch.allclose((saturated * grey).sum(1), (images * grey).sum(1), atol=1e-5)


def test_noise_has_its_sd_and_repeats_with_the_run_seed() -> None:
    images = torch.zeros(4, 3, 32, 32)
    with run_generators(5):
        first = GaussianNoise(0.1)(images)
    with run_generators(5):
        again = GaussianNoise(0.1)(images)
    assert torch.equal(first, again) and float(first.std()) == pytest.approx(0.1, rel=0.05)
    assert torch.equal(GaussianNoise(0)(images), images)
    with pytest.raises(ValueError, match="sd must be a number >= 0"):
        GaussianNoise(-1)
    with pytest.raises(ValueError, match="brightness must be a number from 0 to 1"):
        ColorJitter(brightness=2)
