"""Activation atlases: the vectors collected (against hand-gathered ones), a layout that keeps clusters
apart, each cell's mean, the pictures and the page."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from featvis.atlas import activation_atlas, collect_activations, layout_2d
from featvis.generators import run_generators


def identity_model() -> nn.Module:
    """A 1x1 convolution that passes the image through: the activations are the pixels."""
    conv = nn.Conv2d(3, 3, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(3).reshape(3, 3, 1, 1))
    return nn.Sequential(conv).eval()


def test_the_vectors_are_the_activations_at_the_drawn_positions() -> None:
    images = torch.rand(10, 3, 4, 5)
    vectors = collect_activations(identity_model(), "0", images, per_image=3, seed=7)
    with run_generators(7) as generators:
        picks = torch.randint(20, (10, 3), generator=generators.get("cpu"))
    flat = images.flatten(2)
    expected = torch.stack([flat[i, :, picks[i, j]] for i in range(10) for j in range(3)])
    assert torch.allclose(vectors, expected)
    assert collect_activations(identity_model(), "0", [images[:4], (images[4:], None)], limit=5).shape == (5, 3)


def test_the_layout_keeps_two_clusters_apart_and_each_cell_is_its_vectors_mean() -> None:
    draw = torch.Generator().manual_seed(0)
    red = torch.tensor([1.0, 0.0, 0.0]) + 0.05 * torch.randn(40, 3, generator=draw)
    blue = torch.tensor([0.0, 0.0, 1.0]) + 0.05 * torch.randn(40, 3, generator=draw)
    layout = layout_2d(torch.cat([red, blue]), method="tsne")
    gap = (layout[:40].mean(0) - layout[40:].mean(0)).norm()
    spread = max(float(layout[:40].std(0).norm()), float(layout[40:].std(0).norm()))
    assert float(gap) > 2 * spread and float(layout.min()) >= 0 and float(layout.max()) <= 1

    # images that are flat red or flat blue: every vector is one of two colours
    images = torch.zeros(24, 3, 6, 6)
    images[:12, 0] = 0.9
    images[12:, 2] = 0.9
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        atlas = activation_atlas(
            identity_model(), "0", images, grid=3, min_count=1, method="tsne", size=6, steps=4, progress=False
        )
    assert sum(atlas.counts) == 24 and len(atlas.cells) == len(atlas.counts) == atlas.pictures.images.shape[0]
    cells = (atlas.layout * 3).long().clamp(0, 2)
    vectors = torch.where(torch.arange(24)[:, None] < 12, torch.tensor([0.9, 0, 0]), torch.tensor([0, 0, 0.9]))
    for (row, column), direction in zip(atlas.cells, atlas.directions):
        inside = (cells[:, 1] == row) & (cells[:, 0] == column)
        assert torch.allclose(direction, vectors[inside].mean(0))


def test_the_atlas_saves_its_picture_and_page(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        atlas = activation_atlas(model, "1", torch.rand(30, 3, 8, 8), grid=2, min_count=1, method="tsne",
                                 size=8, steps=2, progress=False)  # fmt: skip
    index = atlas.save(tmp_path)
    page = index.read_text()
    assert (tmp_path / "atlas.png").exists() and page.count('class="cell"') == len(atlas.cells)
    assert atlas.image().size == (16, 16)
