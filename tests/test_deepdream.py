"""deepdream: it amplifies a layer in a photo, at growing sizes, with band-normalised and tiled gradients."""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy import ndimage
from torch import nn

import featvis
from featvis import objectives as O
from featvis.dream import (
    MIN_TILE_SIZE,
    _blur_halve,
    _normalized_bands,
    _tile_bounds,
    _tiled_gradient,
    deepdream,
    laplacian_merge,
    laplacian_normalize,
    laplacian_split,
)

if TYPE_CHECKING:
    from conftest import ModelState


def scene(height: int = 48, width: int = 64, seed: int = 0) -> torch.Tensor:
    """A small made-up photo in [0, 1]: a sky gradient, a dark hill, a bright disc and some texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    sky = np.stack([0.5 + 0.3 * y, 0.6 + 0.2 * y, 0.9 - 0.2 * y])
    hill = (y > 0.6 + 0.15 * np.sin(6 * x + rng.uniform(0, 6)))[None]
    ground = np.stack([0.2 + 0.1 * x, 0.4 + 0.1 * np.sin(20 * x), 0.15 + 0 * x])
    disc = (((y - 0.3) ** 2 + (x - 0.7) ** 2) < 0.01)[None]
    image = np.where(hill, ground, sky)
    image = np.where(disc, np.array([1.0, 0.9, 0.5])[:, None, None], image)
    image = image + 0.05 * rng.standard_normal(image.shape)
    return torch.from_numpy(np.clip(image, 0, 1)).float()


def quick(model: nn.Module, image: torch.Tensor, objective: object, **kwargs: object) -> featvis.RenderResult:
    kwargs.setdefault("octaves", 2)
    kwargs.setdefault("steps", 2)
    return deepdream(model, image, objective, progress=False, **kwargs)  # type: ignore[arg-type]


def layer2_energy(model: nn.Module, images: torch.Tensor) -> float:
    """ResNet-20's layer2 mean square, written out by hand (the DeepDream objective, independently)."""
    pre = featvis.models.default_preprocess(model)
    with torch.no_grad():
        stem = torch.relu(model.bn1(model.conv1(pre(images))))
        return float(model.layer2(model.layer1(stem)).square().mean())


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(np.corrcoef(a.flatten().numpy(), b.flatten().numpy())[0, 1])


class Pointwise(nn.Module):
    """Only 1x1 convolutions and pointwise functions: every output pixel depends on one input pixel."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.mix = nn.Conv2d(3, 6, 1)
        self.act = nn.Tanh()
        self.out = nn.Conv2d(6, 4, 1)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.act(self.mix(x)))


class Recorder(nn.Module):
    """A 3x3 convolution that records the shape and the values of every input it sees."""

    def __init__(self, channels: int = 3, kernel: int = 3) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(channels, 5, kernel, padding=kernel // 2)
        self.inputs: list[torch.Tensor] = []
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.detach().clone())
        return torch.relu(self.conv(x))


# ---- it does what it is for --------------------------------------------------------------------
def test_dream_raises_the_layer_and_keeps_the_photo(resnet20: nn.Module, model_state: type[ModelState]) -> None:
    photo = scene()
    before = model_state(resnet20)
    result = deepdream(resnet20, photo, "layer2", octaves=3, steps=6, progress=False)
    before.assert_unchanged()
    dream = result.images
    assert dream.shape == (1, 3, 48, 64)
    assert dream.min() >= 0 and dream.max() <= 1
    start, reached = layer2_energy(resnet20, photo[None]), layer2_energy(resnet20, dream)
    assert reached > 1.5 * start, (start, reached)
    # a dream, not a new picture: it changed the pixels visibly, yet still looks like the photo
    assert (dream[0] - photo).abs().mean() > 0.02
    assert correlation(dream[0], photo) > 0.8
    assert correlation(dream[0], photo) > correlation(dream[0], scene(seed=5)) + 0.05
    # within each octave the objective climbs (losses are minus the objective)
    for octave in result.losses.reshape(3, 6):
        assert octave[-1] < octave[0]
    assert result.steps == 18 and result.objective == "deepdream layer('layer2')"


def test_octaves_run_at_growing_sizes_and_carry_the_dream_up() -> None:
    model = Recorder()
    photo = torch.rand(1, 3, 40, 60)
    result = quick(model, photo, "conv", octaves=3, octave_scale=1.5, steps=4, preprocess=False)
    # 40 / 1.5**2 = 17.8, 60 / 1.5**2 = 26.7; 40 / 1.5 = 26.7, 60 / 1.5 = 40
    expected = [(18, 27), (27, 40), (40, 60)]
    seen = [tuple(x.shape[-2:]) for x in model.inputs[1:]]  # the first pass checks the objective
    assert seen == [size for size in expected for _ in range(4)]
    assert [tuple(s.shape[-2:]) for s in result.snapshots.values()] == expected
    assert list(result.snapshots) == [4, 8, 12]
    assert result.images.shape == photo.shape and result.losses.shape == (12,)
    # each octave starts from the photo at its size plus the previous octave's dream, enlarged
    small_photo = F.interpolate(photo, size=expected[0], mode="bilinear", antialias=True, align_corners=False)
    added = result.snapshots[4] - small_photo
    start_of_second = model.inputs[1 + 4]
    photo_27 = F.interpolate(photo, size=expected[1], mode="bilinear", antialias=True, align_corners=False)
    carried = (photo_27 + F.interpolate(added, size=expected[1], mode="bilinear", align_corners=False)).clamp(0, 1)
    torch.testing.assert_close(start_of_second, carried, atol=1e-6, rtol=0)


def test_octaves_make_larger_patterns(resnet20: nn.Module) -> None:
    """What octaves are for: with the same number of steps, the dream's changes are coarser."""
    photo = scene(64, 64)

    def coarse_share(octaves: int) -> float:
        result = deepdream(resnet20, photo, "layer2", octaves=octaves, steps=12 // octaves, progress=False)
        change = (result.images[0] - photo).mean(dim=0).numpy()
        power = np.abs(np.fft.fft2(change - change.mean())) ** 2
        frequency = np.hypot(*np.meshgrid(np.fft.fftfreq(64), np.fft.fftfreq(64), indexing="ij"))
        return float(power[frequency < 0.125].sum() / power.sum())

    single, multi = coarse_share(1), coarse_share(4)
    assert multi > 1.5 * single, (single, multi)


# ---- the Laplacian pyramid ---------------------------------------------------------------
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 17, 9), (1, 2, 32, 32), (1, 3, 5, 40)])
@pytest.mark.parametrize("levels", [1, 2, 5])
def test_split_then_merge_gives_the_input_back(shape: tuple[int, ...], levels: int) -> None:
    x = torch.randn(shape, dtype=torch.float64, generator=torch.Generator().manual_seed(levels))
    bands = laplacian_split(x, levels)
    assert len(bands) == levels
    assert (laplacian_merge(bands) - x).abs().max() < 1e-12


def test_pyramid_halves_and_blurs_like_a_reference() -> None:
    x = torch.randn(1, 2, 17, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    taps = np.array([1, 4, 6, 4, 1]) / 16
    for c in range(2):
        reference = ndimage.convolve(x[0, c].numpy(), np.outer(taps, taps), mode="nearest")[::2, ::2]
        np.testing.assert_allclose(_blur_halve(x)[0, c].numpy(), reference, atol=1e-12)
    bands = laplacian_split(x, 3)
    assert [tuple(b.shape[-2:]) for b in bands] == [(17, 10), (9, 5), (5, 3)]
    torch.testing.assert_close(bands[2], _blur_halve(_blur_halve(x)))
    # the fine band is what the blurred half-size copy misses: little of a smooth ramp
    ramp = torch.linspace(0, 1, 32, dtype=torch.float64).expand(1, 1, 32, 32)
    for size in (32, 31):  # even and odd sides
        fine = laplacian_split(ramp[..., :size, :size], 2)[0]
        assert fine[..., 5:-5, 5:-5].abs().max() < 1e-12
        assert fine.abs().max() < 0.05  # near the borders, where the filter is cut, a little


def test_each_band_is_normalised_to_unit_scale() -> None:
    gradient = torch.randn(3, 3, 32, 32) * torch.tensor([1.0, 1e-4, 50.0])[:, None, None, None]
    gradient = gradient + 20 * torch.linspace(-1, 1, 32)  # a strong low-frequency part
    bands = _normalized_bands(gradient, 4)
    for band in bands:
        torch.testing.assert_close(band.square().mean(dim=(1, 2, 3)).sqrt(), torch.ones(3))
    normalized = laplacian_normalize(gradient, 4)
    torch.testing.assert_close(normalized.square().mean(dim=(1, 2, 3)).sqrt(), torch.ones(3))
    plain = gradient / gradient.square().mean(dim=(1, 2, 3), keepdim=True).sqrt()
    torch.testing.assert_close(laplacian_normalize(gradient, 0), plain)
    torch.testing.assert_close(laplacian_normalize(gradient, 1), plain)
    assert torch.equal(laplacian_normalize(torch.zeros(1, 3, 8, 8)), torch.zeros(1, 3, 8, 8))


def high_frequency_share(tensor: torch.Tensor) -> float:
    power = torch.fft.fft2(tensor).abs().square().sum(dim=(0, 1))
    frequency = torch.hypot(*torch.meshgrid(torch.fft.fftfreq(64), torch.fft.fftfreq(64), indexing="ij"))
    return float(power[frequency > 0.25].sum() / power.sum())


def test_band_normalisation_lifts_the_fine_detail_that_a_strong_coarse_gradient_drowns() -> None:
    generator = torch.Generator().manual_seed(0)
    y, x = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    coarse = 100 * torch.sin(2 * math.pi * x) * torch.cos(2 * math.pi * y)
    gradient = (coarse + torch.randn(3, 64, 64, generator=generator))[None]
    original = high_frequency_share(gradient)
    plain = high_frequency_share(laplacian_normalize(gradient, 0))
    banded = high_frequency_share(laplacian_normalize(gradient, 4))
    assert plain == pytest.approx(original, rel=1e-4)  # plain normalisation only rescales
    assert banded > 50 * original, (original, banded)


# ---- tiles -------------------------------------------------------------------------------
@pytest.mark.parametrize(("length", "tile"), [(64, 16), (100, 64), (65, 32), (10, 16), (33, 8)])
def test_tiles_cover_the_image_and_are_neither_too_large_nor_slivers(length: int, tile: int) -> None:
    bounds = _tile_bounds(length, tile)
    assert bounds[0][0] == 0 and bounds[-1][1] == length
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    sizes = [stop - start for start, stop in bounds]
    assert max(sizes) <= tile and (len(sizes) == 1 or min(sizes) >= tile // 2)


def test_tiled_gradient_equals_the_whole_image_gradient_for_a_pointwise_model() -> None:
    model = Pointwise().double()
    image = torch.rand(2, 3, 37, 50, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    objective = O.layer("act") - 0.5 * O.channel("out", 2)

    def objective_of(pixels: torch.Tensor) -> torch.Tensor:
        with featvis.hooks.ActivationCapture(model, objective.layers) as capture:
            return objective(capture.run(pixels, image=pixels))

    whole_value, whole = _tiled_gradient(objective_of, image, None, (0, 0))
    tiled_value, tiled = _tiled_gradient(objective_of, image, 16, (11, 29))
    assert tiled.abs().max() > 0
    torch.testing.assert_close(tiled, whole, atol=1e-15, rtol=1e-12)
    torch.testing.assert_close(tiled_value, whole_value, atol=0, rtol=1e-12)
    # a 3x3 convolution sees across the seams: there the tiles' gradient differs (the check can fail)
    conv = nn.Conv2d(3, 4, 3, padding=1).double().eval()
    seam_of = lambda pixels: conv(pixels).square().mean()  # noqa: E731
    assert not torch.allclose(
        _tiled_gradient(seam_of, image, 16, (11, 29))[1], _tiled_gradient(seam_of, image, None, (0, 0))[1]
    )


def test_dream_with_tiles_equals_the_untiled_dream_for_a_pointwise_model() -> None:
    model = Pointwise()
    photo = scene(40, 52)
    whole = quick(model, photo, "act", octaves=3, steps=3, preprocess=False, seed=0)
    tiled = quick(model, photo, "act", octaves=3, steps=3, preprocess=False, seed=0, tile_size=12)
    torch.testing.assert_close(tiled.images, whole.images, atol=2e-5, rtol=0)
    assert (whole.images[0] - photo).abs().max() > 0.01


def largest_saved(model: nn.Module, photo: torch.Tensor, tile_size: int | None) -> int:
    largest = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal largest
        largest = max(largest, tensor.numel())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        quick(model, photo, "conv", octaves=1, steps=2, preprocess=False, tile_size=tile_size, seed=0)
    return largest


def test_tiles_bound_what_the_backward_pass_keeps() -> None:
    model = Recorder()
    whole, tiled = (largest_saved(model, torch.rand(3, 96, 96), tile) for tile in (None, 24))
    assert whole >= 5 * 96 * 96  # the 5-channel convolution's output at the image's size
    assert tiled <= 5 * 24 * 24  # ... and at one tile's size
    model_bigger = Recorder()
    assert largest_saved(model_bigger, torch.rand(3, 192, 192), 24) == tiled  # the image grows, the tiles do not


def test_the_roll_changes_from_step_to_step_and_repeats_with_the_seed() -> None:
    height, width = 32, 48
    index = torch.arange(height * width, dtype=torch.float32).reshape(1, 1, height, width)
    photo = ((index + 0.5) / (height * width)).expand(1, 3, height, width).contiguous()
    shifts_of_runs = []
    for seed in (0, 0, 1):
        model = Recorder()
        quick(model, photo, "conv", octaves=1, steps=6, step_size=1e-7, preprocess=False, tile_size=16, seed=seed)
        first_tiles = model.inputs[2::6]  # the first tile (rolled image's top left) of each step
        assert len(first_tiles) == 6
        shifts = []
        for tile in first_tiles:
            position = round(float(tile[0, 0, 0, 0]) * height * width - 0.5)
            shift = ((-(position // width)) % height, (-(position % width)) % width)
            rolled = photo.roll(shift, dims=(2, 3))
            torch.testing.assert_close(tile, rolled[:, :, : tile.shape[2], : tile.shape[3]], atol=1e-5, rtol=0)
            shifts.append(shift)
        assert len(set(shifts)) >= 4, shifts
        shifts_of_runs.append(shifts)
    assert shifts_of_runs[0] == shifts_of_runs[1] != shifts_of_runs[2]


def test_the_roll_keeps_seams_from_showing(resnet20: nn.Module, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tile borders see zero padding instead of their neighbours: fixed seams dream less; rolled ones do not show."""
    photo = scene(64, 64)

    def seam_strength(images: torch.Tensor) -> float:
        """How much the pixels next to the tile borders of a 16-pixel grid changed, relative to all of them."""
        change = (images[0] - photo).abs().mean(dim=0)
        columns, rows = change.mean(dim=0), change.mean(dim=1)
        borders = [15, 16, 31, 32, 47, 48]
        return float((columns[borders].mean() / columns[4:-4].mean() + rows[borders].mean() / rows[4:-4].mean()) / 2)

    def dream(tile_size: int | None) -> torch.Tensor:
        return quick(resnet20, photo, "layer1", octaves=1, steps=6, tile_size=tile_size, seed=0).images

    whole, rolled = seam_strength(dream(None)), seam_strength(dream(16))
    monkeypatch.setattr(featvis.dream, "_random_shift", lambda height, width, tile_size: (0, 0))
    fixed = seam_strength(dream(16))
    assert abs(rolled - whole) < 0.1 and fixed < whole - 0.15, (whole, rolled, fixed)


# ---- inputs, state, errors ----------------------------------------------------------------------
def test_a_pil_image_and_each_image_of_a_batch(resnet20: nn.Module) -> None:
    pixels = (scene(32, 40) * 255).round().to(torch.uint8)
    picture = Image.fromarray(pixels.permute(1, 2, 0).numpy())
    as_tensor = pixels.float() / 255
    from_pil = quick(resnet20, picture, "layer1", seed=0)
    from_tensor = quick(resnet20, as_tensor, "layer1", seed=0)
    torch.testing.assert_close(from_pil.images, from_tensor.images)
    # a batch: each image is dreamt as it would be alone (the gradient is normalised per image)
    other = scene(32, 40, seed=3)
    both = quick(resnet20, torch.stack([as_tensor, other]), "layer1", seed=0)
    torch.testing.assert_close(both.images[:1], from_tensor.images, atol=1e-4, rtol=0)


def test_objective_forms(resnet20: nn.Module) -> None:
    photo = scene(32, 32)
    assert quick(resnet20, photo, "layer1.0.conv1:3").objective == "deepdream channel('layer1.0.conv1', 3)"
    custom = O.layer("layer1") - 0.1 * O.total_variation()
    assert quick(resnet20, photo, custom).objective == f"deepdream {custom}"
    result = quick(resnet20, photo, lambda acts: acts["layer1.1"].mean(), octaves=1, steps=3)
    assert result.losses[-1] < result.losses[0]


def test_model_state_comes_back_after_success_and_failure(resnet20: nn.Module, model_state: type[ModelState]) -> None:
    before = model_state(resnet20)
    quick(resnet20, scene(32, 32), "layer3", tile_size=16, seed=0)
    before.assert_unchanged()
    with pytest.raises(IndexError):
        quick(resnet20, scene(32, 32), "layer1:99")
    before.assert_unchanged()
    model = Recorder().train()
    with pytest.warns(UserWarning, match="training mode"):
        quick(model, scene(16, 16), "conv")
    assert model.training and model.conv.weight.requires_grad


class Interrupting(Recorder):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.inputs) == 4:
            raise KeyboardInterrupt
        return super().forward(x)


def test_ctrl_c_returns_the_dream_so_far_at_full_size() -> None:
    photo = scene(30, 30)
    with pytest.warns(UserWarning, match="interrupted after 3 of 6"):
        result = quick(Interrupting(), photo, "conv", octaves=2, steps=3, preprocess=False)
    assert result.interrupted and result.steps == 3 and result.images.shape == (1, 3, 30, 30)
    assert (result.images[0] - photo).abs().max() > 0


@pytest.mark.parametrize(
    ("image", "options", "error", "words"),
    [
        (torch.rand(8, 8), {}, ValueError, "(C, H, W) or (N, C, H, W)"),
        (torch.rand(1, 1, 3, 8, 8), {}, ValueError, "(C, H, W) or (N, C, H, W)"),
        (torch.randint(0, 255, (3, 8, 8), dtype=torch.uint8), {}, ValueError, "float() / 255"),
        (torch.rand(3, 8, 8) * 255, {}, ValueError, "must lie in [0, 1]"),
        (torch.rand(4, 8, 8), {}, ValueError, "the image has 4 channels but the model takes 3"),
        ([[0.5]], {}, TypeError, "or a PIL image"),
        (torch.rand(3, 16, 16), {"tile_size": MIN_TILE_SIZE - 1}, ValueError, "tile_size must be None"),
        (torch.rand(3, 16, 16), {"octave_scale": 1.0}, ValueError, "octave_scale must be a number greater than 1"),
        (torch.rand(3, 16, 16), {"octave_scale": 0.7}, ValueError, "greater than 1"),
        (torch.rand(3, 16, 16), {"steps": 0}, ValueError, "steps must be a positive integer"),
        (torch.rand(3, 16, 16), {"octaves": 0}, ValueError, "octaves must be a positive integer"),
        (torch.rand(3, 16, 16), {"step_size": -1.0}, ValueError, "step_size must be a positive number"),
        (torch.rand(3, 16, 16), {"laplacian_levels": -1}, ValueError, "laplacian_levels must be"),
    ],
)
def test_clear_errors(image: object, options: dict[str, object], error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=__import__("re").escape(words)):
        deepdream(Recorder(), image, "conv", progress=False, **options)  # type: ignore[arg-type]


def test_errors_about_layers_and_sizes(resnet20: nn.Module) -> None:
    with pytest.raises(ValueError, match="unknown layer 'layer9'"):
        quick(resnet20, scene(16, 16), "layer9")
    unpadded = nn.Sequential(nn.Conv2d(3, 4, 5), nn.ReLU(), nn.Conv2d(4, 4, 5)).eval()
    with pytest.raises(ValueError, match=r"smallest octave \(4x4 pixels\) is too small.*fewer octaves"):
        quick(unpadded, torch.rand(3, 16, 16), "2", octaves=3, octave_scale=2.0, preprocess=False)
    with pytest.raises(ValueError, match=r"smallest tile \(8x8 pixels\) is too small.*larger tile_size"):
        quick(unpadded, torch.rand(3, 16, 16), "2", octaves=1, tile_size=8, preprocess=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quick(unpadded, torch.rand(3, 40, 40), "2", octaves=2, tile_size=20, preprocess=False)
