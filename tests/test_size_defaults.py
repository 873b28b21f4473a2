"""The defaults that depend on the image's size: random crops and a steeper 1/f scaling from
``featvis.sizes.LARGE_IMAGE`` pixels a side, the small-image defaults below it (unchanged)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import featvis
from featvis import param, transforms
from featvis.sizes import LARGE_IMAGE, is_large


def test_large_means_the_smaller_side() -> None:
    assert not is_large(LARGE_IMAGE - 1) and is_large(LARGE_IMAGE)
    assert not is_large((LARGE_IMAGE - 1, 4 * LARGE_IMAGE)) and is_large((2 * LARGE_IMAGE, LARGE_IMAGE))


def test_the_default_decay_steepens_for_large_images() -> None:
    assert param.default_decay(32, 32) == param.DEFAULT_DECAY == 1.4
    assert param.default_decay(224, 224) == param.LARGE_IMAGE_DECAY == 1.6
    small, large = param.image(32).basis, param.image(224).basis
    torch.testing.assert_close(small.scale, param.FourierImage(1, 3, 32, 32, decay=1.4).scale)
    torch.testing.assert_close(large.scale, param.FourierImage(1, 3, 224, 224, decay=1.6).scale)
    torch.testing.assert_close(
        param.image(224, decay=1.0).basis.scale, param.FourierImage(1, 3, 224, 224, decay=1.0).scale
    )


def test_for_size_keeps_the_small_recipe_and_crops_large_images() -> None:
    small, large = transforms.for_size(32), transforms.for_size((224, 224))
    assert [type(t).__name__ for t in small] == ["RandomAffine", "RandomBlur"]
    assert repr(small) == repr(transforms.standard())
    assert [type(t).__name__ for t in large] == ["RandomBlur", "RandomCrop"]
    assert repr(large) == repr(transforms.crops())


def test_a_random_crop_is_the_crop_enlarged() -> None:
    """Without rotation, the crop's matrix samples exactly the box it names: check against slicing
    and a plain resize of that box (pixel-aligned, so bilinear sampling is exact at a 2x zoom)."""
    crop = transforms.RandomCrop(size=(0.5, 0.5))
    images = torch.rand(1, 3, 8, 8)
    torch.manual_seed(0)
    matrices = crop.sample_matrices(images)
    side, cx, cy = float(matrices[0, 0, 0]), float(matrices[0, 0, 2]), float(matrices[0, 1, 2])
    assert side == pytest.approx(0.5)
    # the box in pixels: centre (cx, cy) in [-1, 1] units, half-width side
    left, top = (cx - side + 1) / 2 * 8, (cy - side + 1) / 2 * 8
    assert 0 <= left <= 4 and 0 <= top <= 4
    out = F.grid_sample(images, F.affine_grid(matrices, images.shape, align_corners=False), align_corners=False)
    # the output's pixel centres land at left + (i + 0.5) / 2 - 0.5 in the input: compare against np.interp per row
    xs = left + (np.arange(8) + 0.5) / 2 - 0.5
    ys = top + (np.arange(8) + 0.5) / 2 - 0.5
    image = images[0, 0].numpy()
    rows = np.stack([np.interp(xs, np.arange(8), image[r]) for r in range(8)])
    expected = np.stack([np.interp(ys, np.arange(8), rows[:, c]) for c in range(8)], axis=1)
    inside = (xs >= 0) & (xs <= 7)
    np.testing.assert_allclose(out[0, 0].numpy()[np.ix_(inside, inside)], expected[np.ix_(inside, inside)], atol=1e-5)


def test_random_crops_stay_inside_and_cover_the_range() -> None:
    crop = transforms.RandomCrop(size=(0.35, 1.0), degrees=0)
    torch.manual_seed(1)
    matrices = crop.sample_matrices(torch.zeros(4000, 3, 20, 30))
    side = matrices[:, 0, 0]
    assert float(side.min()) >= 0.35 and float(side.max()) <= 1.0
    assert abs(float(side.mean()) - 0.675) < 0.01  # uniform over the range
    assert bool((matrices[:, :, 2].abs() <= (1 - side)[:, None] + 1e-6).all())  # the box stays inside
    assert float(matrices[:, 0, 2].abs().max()) > 0.6  # and goes near the edges


def test_a_turned_crop_keeps_its_side_and_the_image_aspect() -> None:
    crop = transforms.RandomCrop(size=(0.5, 0.5), degrees=30)
    torch.manual_seed(2)
    matrices = crop.sample_matrices(torch.zeros(200, 3, 10, 20))
    # in pixel units a turn is a rotation (no shear): the first column, y scaled by height / width, has length side
    first = torch.stack([matrices[:, 0, 0], matrices[:, 1, 0] * 0.5], dim=1).norm(dim=1)
    torch.testing.assert_close(first, torch.full((200,), 0.5), atol=1e-5, rtol=0)
    angles = torch.atan2(matrices[:, 1, 0] * 0.5, matrices[:, 0, 0])
    assert float(angles.abs().max()) <= math.radians(30) + 1e-5 and float(angles.abs().max()) > math.radians(20)


def test_random_crop_refuses_a_range_outside_the_image() -> None:
    with pytest.raises(ValueError, match="0 < low <= high <= 1"):
        transforms.RandomCrop(size=(0.5, 1.5))


def test_render_vis_uses_the_defaults_for_the_image_size(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[object] = []
    real = transforms.for_size

    def spy(size: object) -> transforms.Compose:
        made.append(size)
        return real(size)  # type: ignore[arg-type]

    monkeypatch.setattr(transforms.defaults, "for_size", spy)  # where as_transform looks it up
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=4), nn.ReLU()).eval()
    featvis.render_vis(model, "1:0", size=(128, 160), steps=1, progress=False)
    featvis.render_vis(model, "1:0", size=32, steps=1, progress=False)
    assert made == [(128, 160), (32, 32)]


@pytest.mark.parametrize(("size", "recipe"), [(32, transforms.standard), (128, transforms.crops)])
def test_the_default_transforms_are_the_recipe_for_the_size(size: int, recipe: object) -> None:
    """The same run, bit for bit, with the transforms left out and with the size's recipe given."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU()).eval()
    start = param.image(size)
    default = featvis.render_vis(model, "1:2", copy.deepcopy(start), steps=3, seed=0, progress=False)
    given = featvis.render_vis(
        model,
        "1:2",
        copy.deepcopy(start),
        steps=3,
        seed=0,
        progress=False,
        transforms=recipe(),  # type: ignore[operator]
    )
    assert torch.equal(default.images, given.images)
