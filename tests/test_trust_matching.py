"""Trust scores (alike a unit's natural examples at the earlier layers) and the distribution-matching
objective (sort matching against reference activations), against references."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import featvis
from featvis import objectives as O
from featvis.gallery import render_gallery
from featvis.hooks import Activations
from featvis.objectives.matching import reference_quantiles
from featvis.trust import activation_patterns, earlier_layers, trust_scores


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 4, 3)
    ).eval()


def test_the_quantiles_are_numpys() -> None:
    reference = torch.rand(5, 3, 4, 4)
    ours = reference_quantiles(reference, 7).numpy()
    values = reference.transpose(0, 1).reshape(3, -1).numpy()
    expected = np.quantile(values, np.linspace(0, 1, 7), axis=1).T
    assert np.allclose(ours, expected, atol=1e-6)


def test_matching_is_zero_on_the_reference_itself_and_its_value_is_the_sorted_distance() -> None:
    acts = torch.rand(1, 3, 4, 4)
    layer = {"x": acts}

    class Fixed(Activations):
        def units(self, name: object, batch: object = None, channel: object = None) -> torch.Tensor:
            return layer["x"]

    fixed = Fixed(nn.Identity(), {}, None)
    assert float(O.match_distribution("x", acts)(fixed)) == pytest.approx(0.0, abs=1e-10)
    shifted = acts + 0.5
    assert float(O.match_distribution("x", shifted)(fixed)) == pytest.approx(-0.25, abs=1e-6)
    with pytest.raises(ValueError, match="the reference has 5 channels but 'x' has 3"):
        O.match_distribution("x", torch.rand(1, 5, 4, 4))(fixed)


def test_a_matched_picture_has_the_reference_distribution_nearer_than_a_maximised_one() -> None:
    model = small_model()
    references = torch.rand(4, 3, 12, 12) * 0.5 + 0.25
    with torch.no_grad():
        target = model[:4](references)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        matched = featvis.render_vis(
            model, O.match_distribution("3", target), size=12, steps=64, seed=0, progress=False
        )
        maximised = featvis.render_vis(model, "3:1", size=12, steps=64, seed=0, progress=False)

    def distance(images: torch.Tensor) -> float:
        with torch.no_grad():
            acts = model[:4](images)
        quantiles = reference_quantiles(target, 144)
        return float((acts.flatten(2).sort(dim=2).values - quantiles).square().mean())

    assert distance(matched.images) < distance(maximised.images) / 2
    assert float(matched.losses[-1]) < float(matched.losses[0])


def test_trust_compares_patterns_at_the_earlier_layers() -> None:
    model = small_model()
    assert earlier_layers(model, "4") == ["0", "2"]
    pictures = torch.rand(2, 3, 10, 10)
    examples = torch.rand(2, 5, 3, 10, 10)
    patterns = activation_patterns(model, ["0", "2"], pictures)
    natural = activation_patterns(model, ["0", "2"], examples.flatten(0, 1))
    expected = torch.stack(
        [nn.functional.cosine_similarity(p, n.reshape(2, 5, -1).mean(1), dim=1) for p, n in zip(patterns, natural)]
    ).mean(0)
    assert torch.allclose(trust_scores(model, "4", pictures, examples), expected)
    # the examples' own mean pattern scores higher than a picture of another kind
    flat = torch.zeros(2, 3, 10, 10)
    assert bool((trust_scores(model, "4", examples[:, 0], examples) > trust_scores(model, "4", flat, examples)).all())
    with pytest.raises(ValueError, match=r"examples must be \(N, K, C, H, W\)"):
        trust_scores(model, "4", pictures, examples[0])
    with pytest.raises(ValueError, match="no layers before '0' to compare at"):
        trust_scores(model, "0", pictures, examples)


def test_the_gallery_shows_each_pictures_trust(tmp_path: object) -> None:
    from pathlib import Path

    model = small_model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gallery = render_gallery(
            model, "4", Path(str(tmp_path)), [0, 1], size=10, steps=4, seed=0,
            trust_data=torch.rand(20, 3, 10, 10), trust_k=3,
        )  # fmt: skip
    assert gallery.trust is not None and gallery.trust.shape == (2,)
    page = gallery.index.read_text()
    assert page.count('class="trust"') == 2 and f"trust {float(gallery.trust[0]):.2f}" in page
