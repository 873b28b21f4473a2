"""Laplacian pyramid, low resolution, MACO and shared-parameter interpolation: values against
NumPy references, what each is for, round trips, error messages and renders of a trained model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import featvis
from featvis import objectives, param
from featvis.param import (
    DEFAULT_SHARED,
    MACO_SLOPE,
    FourierImage,
    InterpolationImage,
    LaplacianPyramidImage,
    LowResImage,
    MacoImage,
    natural_amplitude_spectrum,
    power_law_amplitude,
)
from featvis.param.interpolation import frame_weights

SIZES = [(8, 8), (7, 9), (6, 5), (16, 12), (5, 16)]


def numpy_bilinear_matrix(size_in: int, size_out: int) -> np.ndarray:
    """Bilinear resizing along one axis with align_corners=False, written out by hand."""
    matrix = np.zeros((size_out, size_in))
    for out in range(size_out):
        source = max((out + 0.5) * size_in / size_out - 0.5, 0.0)
        below = min(int(np.floor(source)), size_in - 1)
        above = min(below + 1, size_in - 1)
        fraction = source - below
        matrix[out, below] += 1 - fraction
        matrix[out, above] += fraction
    return matrix


def numpy_upsample(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    rows = numpy_bilinear_matrix(values.shape[-2], size[0])
    columns = numpy_bilinear_matrix(values.shape[-1], size[1])
    return np.einsum("ih,...hw,jw->...ij", rows, values, columns)


def neighbour_similarity(images: torch.Tensor) -> float:
    """Mean cosine similarity of consecutive images, each with its mean removed."""
    flat = images.detach().double().flatten(1)
    flat = flat - flat.mean(dim=1, keepdim=True)
    flat = flat / flat.norm(dim=1, keepdim=True)
    return float((flat[:-1] * flat[1:]).sum(dim=1).mean())


def radial_log_slope(amplitude: torch.Tensor) -> torch.Tensor:
    """Per-channel least-squares slope of log amplitude against log frequency, over every
    non-zero bin up to the Nyquist radius (square images)."""
    height = amplitude.shape[-2]
    cycles = param.fourier_frequencies(height, height).double() * height
    keep = (cycles > 0) & (cycles <= height / 2)
    x = torch.log(cycles[keep])
    y = torch.log(amplitude[..., keep].double())
    x = x - x.mean()
    return ((y - y.mean(dim=-1, keepdim=True)) * x).sum(dim=-1) / (x**2).sum()


# ---------------------------------------------------------------------------
# Laplacian pyramid


@pytest.mark.parametrize(("h", "w"), SIZES)
def test_pyramid_is_the_sum_of_upsampled_levels(h, w):
    torch.manual_seed(0)
    basis = LaplacianPyramidImage(2, 3, h, w, levels=3)
    for level in basis.tensors:
        level.data.normal_()
    expected = sum(
        float(gain) * numpy_upsample(level.detach().double().numpy(), (h, w))
        for gain, level in zip(basis.gains, basis.tensors)
    )
    np.testing.assert_allclose(basis().detach().numpy(), expected, atol=1e-5)
    assert [tuple(t.shape[-2:]) for t in basis.tensors] == [
        (h, w),
        (math.ceil(h / 2), math.ceil(w / 2)),
        (math.ceil(h / 4), math.ceil(w / 4)),
    ]


def test_pyramid_gains_follow_the_decay_and_the_start_matches_fourier_in_scale():
    basis = LaplacianPyramidImage(1, 1, 32, 32, decay=1.25)
    ratios = basis.gains[1:] / basis.gains[:-1]
    np.testing.assert_allclose(ratios.numpy(), 2**0.25, rtol=1e-5)
    assert len(basis.tensors) == 5  # 32 .. 2 pixels
    torch.manual_seed(0)
    pyramid = LaplacianPyramidImage(256, 3, 32, 32)().detach()
    fourier = FourierImage(256, 3, 32, 32)().detach()
    rms_pyramid, rms_fourier = pyramid.pow(2).mean().sqrt(), fourier.pow(2).mean().sqrt()
    assert abs(float(rms_pyramid / rms_fourier) - 1) < 0.1
    # Lucid's equal gains are the decay=1 case
    assert torch.allclose(LaplacianPyramidImage(1, 1, 16, 16, decay=1.0).gains.diff(), torch.zeros(3), atol=1e-6)


@pytest.mark.parametrize(("h", "w"), SIZES)
def test_pyramid_set_raw_is_a_laplacian_decomposition(h, w):
    basis = LaplacianPyramidImage(2, 3, h, w, levels=2)
    target = torch.rand(2, 3, h, w)
    basis.set_raw(target)
    assert torch.allclose(basis(), target, atol=1e-5)
    # the coarse level holds the area average, the fine level what it leaves
    coarse = basis.gains[1] * basis.tensors[1]
    assert torch.allclose(coarse, F.interpolate(target, size=basis.sizes[1], mode="area"), atol=1e-5)


def test_pyramid_errors():
    with pytest.raises(ValueError, match=r"levels must be a whole number from 1 to 6 for a 32x32 image"):
        LaplacianPyramidImage(1, 3, 32, 32, levels=7)
    with pytest.raises(ValueError, match="levels must be"):
        LaplacianPyramidImage(1, 3, 32, 32, levels=0)
    with pytest.raises(ValueError, match="mode must be 'bilinear' or 'bicubic'"):
        LaplacianPyramidImage(1, 3, 32, 32, mode="nearest")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------
# low resolution


@pytest.mark.parametrize(("h", "w"), SIZES)
def test_lowres_is_the_upsampled_tensor(h, w):
    basis = LowResImage(2, 3, h, w, factor=2)
    basis.low.data.normal_()
    assert basis.low.shape[-2:] == (math.ceil(h / 2), math.ceil(w / 2))
    expected = basis.gain * numpy_upsample(basis.low.detach().double().numpy(), (h, w))
    np.testing.assert_allclose(basis().detach().numpy(), expected, atol=1e-5)
    cubic = LowResImage(1, 1, h, w, low=(3, 2), mode="bicubic")
    reference = cubic.gain * F.interpolate(cubic.low, size=(h, w), mode="bicubic", align_corners=False)
    assert torch.equal(cubic(), reference)


@pytest.mark.parametrize("mode", ["bilinear", "bicubic"])
def test_lowres_set_raw_is_the_least_squares_fit(mode):
    basis = LowResImage(1, 2, 9, 7, low=(4, 3), mode=mode)
    target = torch.randn(1, 2, 9, 7, dtype=torch.float64)
    basis.set_raw(target.float())
    upsample = np.kron(
        F.interpolate(torch.eye(4, dtype=torch.float64)[:, None, :, None], size=(9, 1), mode=mode)[:, 0, :, 0].T,
        F.interpolate(torch.eye(3, dtype=torch.float64)[:, None, :, None], size=(7, 1), mode=mode)[:, 0, :, 0].T,
    )
    for channel in range(2):
        best, *_ = np.linalg.lstsq(upsample, target[0, channel].numpy().ravel(), rcond=None)
        np.testing.assert_allclose(basis.gain * basis.low[0, channel].detach().numpy().ravel(), best, atol=1e-4)
    # an upsampled tensor comes back exactly
    small = torch.randn(1, 2, 4, 3)
    basis.set_raw(basis.gain * F.interpolate(small, size=(9, 7), mode=mode))
    assert torch.allclose(basis.low, small, atol=1e-4)


def test_lowres_errors():
    with pytest.raises(ValueError, match=r"give either low=.* or factor, not both"):
        LowResImage(1, 3, 32, 32, low=8, factor=4)
    with pytest.raises(ValueError, match=r"low must be a \(height, width\) pair .* from 1 to the image's \(32, 16\)"):
        LowResImage(1, 3, 32, 16, low=(8, 20))
    with pytest.raises(ValueError, match="factor must be a number >= 1"):
        LowResImage(1, 3, 32, 32, factor=0.5)


# ---------------------------------------------------------------------------
# MACO


@pytest.mark.parametrize(("h", "w"), SIZES)
def test_maco_amplitude_is_fixed_whatever_the_phase(h, w):
    torch.manual_seed(0)
    amplitude = torch.rand(3, h, w // 2 + 1) + 0.1
    basis = MacoImage(2, 3, h, w, amplitude)
    # the zero-frequency (and Nyquist) column is made symmetric, as a real image's is
    expected = basis.amplitude.expand(2, -1, -1, -1)
    for _ in range(3):
        basis.phase.data.uniform_(-3, 3)
        measured = torch.fft.rfft2(basis().detach().double(), norm="ortho").abs()
        np.testing.assert_allclose(measured.numpy(), expected.numpy(), rtol=1e-4, atol=1e-5)
    assert torch.allclose(basis.amplitude[:, :, 1:-1], amplitude[:, :, 1:-1])  # inner columns untouched


def test_maco_optimisation_changes_only_the_phase():
    torch.manual_seed(0)
    basis = MacoImage(1, 3, 12, 12)
    before_image, before_phase = basis().detach().clone(), basis.full_phase().detach().clone()
    optimizer = torch.optim.Adam(basis.parameters(), lr=0.05)
    target = torch.randn(1, 3, 12, 12)
    for _ in range(10):
        optimizer.zero_grad()
        loss = (basis() - target).pow(2).mean()
        loss.backward()
        optimizer.step()
    after = basis().detach()
    assert [name for name, _ in basis.named_parameters()] == ["phase"]
    assert (after - before_image).abs().max() > 0.1  # the image moved ...
    assert (basis.full_phase().detach() - before_phase).abs().max() > 0.1
    spectrum = torch.fft.rfft2(after.double(), norm="ortho").abs()[0]
    np.testing.assert_allclose(spectrum.numpy(), basis.amplitude.numpy(), rtol=1e-4, atol=1e-5)  # ... its amplitude not


def test_maco_set_raw_keeps_the_phase():
    torch.manual_seed(1)
    basis = MacoImage(1, 1, 8, 8)
    raw = torch.randn(1, 1, 8, 8)
    basis.set_raw(raw)
    ours = torch.fft.rfft2(basis().detach(), norm="ortho")
    theirs = torch.fft.rfft2(raw, norm="ortho")
    inside = basis.amplitude[None] > 0
    # the zero frequency and the three other bins that are their own mirror carry a real value:
    # their phase is 0 (a sign, not a phase, could be kept there)
    for row, column in [(0, 0), (4, 0), (0, 4), (4, 4)]:
        inside[..., row, column] = False
    cosine = torch.cos(torch.angle(ours) - torch.angle(theirs))[inside]
    assert bool((cosine > 1 - 1e-4).all())


def test_power_law_amplitude_has_its_slope_and_contrast():
    amplitude = power_law_amplitude(32, 32, 3, slope=1.5, contrast=[0.1, 0.2, 0.3])
    np.testing.assert_allclose(radial_log_slope(amplitude).numpy(), -1.5, atol=0.02)
    assert float(amplitude[:, 0, 0].abs().max()) == 0.0
    basis = MacoImage(4, 3, 32, 32, amplitude)
    image = basis().detach().double()
    np.testing.assert_allclose(image.std(dim=(-2, -1), unbiased=False).numpy(), [[0.1, 0.2, 0.3]] * 4, rtol=1e-4)
    # defaults: natural contrast on the output's scale (4x for the sigmoid's logit)
    default = MacoImage(1, 3, 16, 16)().detach().std(dim=(-2, -1), unbiased=False)
    np.testing.assert_allclose(default.numpy(), 4 * param.NATURAL_CONTRAST_DECORRELATED, rtol=1e-4)
    plain = power_law_amplitude(16, 16, 1, decorrelate=False, output="clamp")
    plain_std = MacoImage(1, 1, 16, 16, plain)().detach().std(unbiased=False)
    assert abs(float(plain_std) - param.NATURAL_CONTRAST_PLAIN) < 1e-4


@pytest.mark.parametrize("decorrelate", [False, True])
def test_natural_amplitude_spectrum_gives_back_a_known_spectrum(decorrelate):
    torch.manual_seed(0)
    known = power_law_amplitude(16, 16, 3, contrast=[0.2, 0.1, 0.15], decorrelate=decorrelate)
    raw = MacoImage(12, 3, 16, 16, known)().detach()  # 12 images with amplitude `known`, random phases
    colours = param.ColorDecorrelation()(raw) if decorrelate else raw
    images = 0.5 + colours / 4  # the sigmoid's slope at the centre
    assert 0 < float(images.min()) and float(images.max()) < 1
    measured = natural_amplitude_spectrum(images, 16, decorrelate=decorrelate, output="sigmoid")
    np.testing.assert_allclose(measured.numpy(), known.numpy(), atol=2e-5)
    clamp = natural_amplitude_spectrum(images, 16, decorrelate=decorrelate, output="clamp")
    np.testing.assert_allclose(clamp.numpy(), known.numpy() / 4, atol=2e-5)


def test_natural_amplitude_spectrum_crops_the_centre():
    images = torch.rand(2, 1, 16, 24)
    direct = torch.fft.rfft2(images[..., 4:20] - images[..., 4:20].mean(dim=(-2, -1), keepdim=True), norm="ortho")
    measured = natural_amplitude_spectrum(images, 16, decorrelate=False, output="clamp")
    np.testing.assert_allclose(measured.numpy(), direct.abs().mean(dim=0).numpy(), atol=1e-5)
    assert natural_amplitude_spectrum(images, (8, 10), decorrelate=False).shape == (1, 8, 6)


def test_default_slope_matches_the_sample_photographs():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    from PIL import Image as PILImage

    patches = []
    for photo in sklearn_datasets.load_sample_images().images:
        for factor in (1, 2, 4):  # 32x32 patches at three scales, as in benchmarks/quality.py
            image = PILImage.fromarray(photo)
            image = image.resize((image.width // factor, image.height // factor), PILImage.LANCZOS)
            tensor = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)
            tiles = tensor.unfold(1, 32, 32).unfold(2, 32, 32)
            patches.append(tiles.permute(1, 2, 0, 3, 4).reshape(-1, 3, 32, 32))
    spectrum = natural_amplitude_spectrum(torch.cat(patches), 32)
    measured = float(radial_log_slope(spectrum).mean())
    default = float(radial_log_slope(power_law_amplitude(32, 32)).mean())
    assert abs(default + MACO_SLOPE) < 0.02
    assert abs(measured - default) < 0.15, (measured, default)


def test_maco_errors():
    with pytest.raises(ValueError, match=r"amplitude must have shape \(3, 8, 5\) .*natural_amplitude_spectrum"):
        MacoImage(1, 3, 8, 8, torch.ones(3, 8, 8))
    with pytest.raises(ValueError, match="finite and non-negative"):
        MacoImage(1, 1, 8, 8, -torch.ones(1, 8, 5))
    with pytest.raises(ValueError, match=r"values in \[0, 1\]; divide 8-bit images by 255"):
        natural_amplitude_spectrum(torch.full((1, 3, 8, 8), 255.0), 8)
    with pytest.raises(ValueError, match="the colour decorrelation works on 3 channels but the images have 1"):
        natural_amplitude_spectrum(torch.rand(1, 1, 8, 8), 8, decorrelate=param.ColorDecorrelation())
    with pytest.raises(ValueError, match="size must be a positive whole number"):
        natural_amplitude_spectrum(torch.rand(1, 3, 8, 8), 0)
    with pytest.raises(ValueError, match="contrast must be one non-negative number or 3 of them"):
        power_law_amplitude(8, 8, 3, contrast=[1.0, 2.0])


# ---------------------------------------------------------------------------
# shared parameters for interpolation


def test_frame_weights_blend_linearly_from_end_to_end():
    weights = frame_weights(2, 5)
    np.testing.assert_allclose(weights.numpy(), [[1, 0], [0.75, 0.25], [0.5, 0.5], [0.25, 0.75], [0, 1]])
    np.testing.assert_allclose(frame_weights(1, 4).numpy(), np.ones((4, 1)))
    np.testing.assert_allclose(frame_weights(3, 3).numpy(), np.eye(3))


def test_interpolation_frames_are_unique_plus_blended_shared_parts():
    torch.manual_seed(0)
    basis = InterpolationImage(4, 2, 12, 10, shared=[(1, 2), (2, 4)])
    for part in basis.shared:
        part.data.normal_()
    unique = basis.unique().detach().double().numpy()
    blends = [np.ones((4, 1)), np.array([[1, 0], [2 / 3, 1 / 3], [1 / 3, 2 / 3], [0, 1]])]
    expected = unique.copy()
    for gain, part, blend in zip(basis.gains, basis.shared, blends):
        upsampled = numpy_upsample(part.detach().double().numpy(), (12, 10))
        expected += float(gain) * np.einsum("fk,kchw->fchw", blend, upsampled)
    np.testing.assert_allclose(basis().detach().numpy(), expected, atol=1e-5)
    assert [tuple(p.shape) for p in basis.shared] == [(1, 2, 6, 5), (2, 2, 3, 3)]
    target = torch.rand(4, 2, 12, 10)
    basis.set_raw(target)
    assert torch.allclose(basis(), target, atol=1e-5)


def test_interpolation_start_frames_are_more_alike_than_independent_ones():
    shared, independent = [], []
    for seed in range(4):
        torch.manual_seed(seed)
        shared.append(neighbour_similarity(param.interpolation_image(32, frames=6)()))
        independent.append(neighbour_similarity(param.image(32, batch=6)()))
    assert np.mean(shared) > 0.5
    assert abs(np.mean(independent)) < 0.2
    # the last frame shares less with the first than with its neighbour
    torch.manual_seed(0)
    frames = param.interpolation_image(32, frames=6)().detach()
    assert neighbour_similarity(frames[[0, 5]]) < neighbour_similarity(frames[[4, 5]])


def test_interpolation_render_keeps_neighbouring_frames_aligned(resnet20, model_state):
    before = model_state(resnet20)
    objective = objectives.channel_interpolate("layer3", 1, "layer3", 9)
    torch.manual_seed(0)
    shared = featvis.render_vis(
        resnet20, objective, param.interpolation_image(32, frames=5), steps=32, seed=0, progress=False
    )
    torch.manual_seed(0)
    independent = featvis.render_vis(resnet20, objective, param.image(32, batch=5), steps=32, seed=0, progress=False)
    before.assert_unchanged()
    assert neighbour_similarity(shared.images) > neighbour_similarity(independent.images) + 0.2
    assert -shared.losses[-1] > -shared.losses[0] + 20  # and the interpolation is still optimised


def test_interpolation_errors():
    with pytest.raises(ValueError, match=r"\(keyframes, factor\) pair .* 1 <= keyframes <= frames=3"):
        InterpolationImage(3, 3, 16, 16, shared=[(4, 2)])
    with pytest.raises(ValueError, match="the unique basis must return \\(3, 3, 16, 16\\) images"):
        InterpolationImage(3, 3, 16, 16, unique=FourierImage(2, 3, 16, 16))
    assert len(InterpolationImage(3, 3, 16, 16).shared) == len(DEFAULT_SHARED)


# ---------------------------------------------------------------------------
# factories and renders of a trained model


def test_image_picks_a_basis_by_name_and_keeps_the_old_calls():
    assert type(param.image(16).basis) is FourierImage
    assert type(param.image(16, fft=False).basis).__name__ == "PixelImage"
    for name, kind in [("laplacian", LaplacianPyramidImage), ("lowres", LowResImage), ("maco", MacoImage)]:
        made = param.image(16, 12, batch=2, basis=name)  # type: ignore[arg-type]
        assert type(made.basis) is kind and made().shape == (2, 3, 12, 16)
    with pytest.raises(ValueError, match="basis must be 'fourier', 'pixel', 'laplacian', 'lowres' or 'maco'"):
        param.image(16, basis="wavelet")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "make",
    [
        lambda: param.laplacian_pyramid(32),
        lambda: param.lowres_image(32, factor=2),
        lambda: param.maco(32),
        lambda: param.laplacian_pyramid(32, init=torch.full((3, 32, 32), 0.5)),
    ],
    ids=["laplacian", "lowres", "maco", "laplacian-from-grey"],
)
def test_each_parameterisation_renders_a_trained_unit(resnet20, model_state, make):
    before = model_state(resnet20)
    torch.manual_seed(0)
    result = featvis.render_vis(resnet20, objectives.class_logit("linear", 3), make(), steps=24, seed=0, progress=False)
    before.assert_unchanged()
    start, end = -float(result.losses[0]), -float(result.losses[-1])
    assert end > start + 15, (start, end)
    assert result.images.min() >= 0 and result.images.max() <= 1
