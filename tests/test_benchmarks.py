"""The quality benchmark's measurements, checked against references (so its table can be trusted)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quality() -> ModuleType:
    spec = importlib.util.spec_from_file_location("featvis_quality_benchmark", ROOT / "benchmarks" / "quality.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def power_law_noise(size: int, slope: float, count: int, seed: int = 0) -> torch.Tensor:
    """Gaussian noise whose power falls as frequency**slope."""
    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.fftfreq(size)[None, :]
    radius = np.sqrt(fx**2 + fy**2)
    radius[0, 0] = 1.0
    amplitude = radius ** (slope / 2)
    spectra = (rng.standard_normal((count, size, size)) + 1j * rng.standard_normal((count, size, size))) * amplitude
    images = np.fft.ifft2(spectra).real
    return torch.from_numpy(images)[:, None]


@pytest.mark.parametrize("slope", [0.0, -1.0, -2.0, -3.0])
def test_spectral_slope_recovers_a_known_power_law(quality: ModuleType, slope: float) -> None:
    measured = quality.spectral_slope(power_law_noise(64, slope, count=16)).median().item()
    assert measured == pytest.approx(slope, abs=0.25)


def test_spectral_slope_ignores_brightness_and_contrast(quality: ModuleType) -> None:
    images = power_law_noise(32, -2.0, count=4)
    assert torch.allclose(quality.spectral_slope(images), quality.spectral_slope(3 * images + 7), atol=1e-6)


def test_perturbations_match_references(quality: ModuleType) -> None:
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    shifted = quality.shift(images, 3)
    assert torch.equal(shifted[..., 3:, 3:], images[..., :-3, :-3])
    assert torch.equal(shifted[..., :3, 3:], images[..., :1, :-3].expand(-1, -1, 3, -1))
    blurred = quality.box_blur(images)
    reference = ndimage.uniform_filter(images.numpy(), size=(1, 1, 3, 3), mode="nearest")
    assert np.allclose(blurred.numpy(), reference)
    flat = torch.full((1, 3, 16, 16), 0.3, dtype=torch.float64)
    assert torch.allclose(quality.down_up(flat), flat)
    assert quality.down_up(images).shape == images.shape
    noisy = quality.noise(images)
    assert torch.equal(noisy, quality.noise(images)) and 0 <= noisy.min() and noisy.max() <= 1
    assert 0.02 < (noisy - images).std().item() < 0.04


def test_channel_means_reads_the_layer_and_leaves_no_hook(quality: ModuleType) -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1, bias=False))
    model.featvis_normalization = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0, 2.0]).view(2, 3, 1, 1))
    images = torch.rand(5, 3, 4, 4)
    means = quality.channel_means(model, "0", images, batch_size=2)
    expected = torch.stack([images[:, 0].mean(dim=(1, 2)), 2 * images[:, 2].mean(dim=(1, 2))], dim=1)
    assert torch.allclose(means, expected, atol=1e-6)
    assert not model[0]._forward_hooks


def test_step_clock_reads_the_time_at_each_threshold(quality: ModuleType) -> None:
    model = torch.nn.Identity()
    clock = quality.StepClock(model)
    for _ in range(5):  # one checking pass, then four steps
        model(torch.zeros(1))
    clock.stamps = [10.0, 11.0, 12.0, 13.0, 14.0]
    assert clock.times(start=9.0, end=15.0, steps=[2, 4]) == {2: 4.0, 4: 6.0}
    assert not model._forward_pre_hooks


# ---- the speed benchmark ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def speed() -> ModuleType:
    spec = importlib.util.spec_from_file_location("featvis_speed_benchmark", ROOT / "benchmarks" / "speed.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_speed_floor_runs_only_to_the_target_and_leaves_the_model_alone(speed: ModuleType) -> None:
    from torch import nn

    class Counted(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
            self.late = nn.Conv2d(4, 4, 3)
            self.late_calls = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.features(x)
            self.late_calls += 1
            return self.late(x)

    model = Counted().eval()
    workload = speed.Workload("tiny", lambda: model, "features", [0, 3], 12)
    times = speed.floor_steps(model, workload, speed.WARMUP + 4, torch.device("cpu"))
    assert len(times) == 4 and all(t >= 0 for t in times)
    assert model.late_calls == 0  # cut at the target
    assert all(p.requires_grad for p in model.parameters())
    assert not model.features._forward_hooks and not model._forward_pre_hooks
    # featvis's side: the same units, one per image, as one objective
    steps = speed.featvis_steps(model, workload, speed.WARMUP + 4, torch.device("cpu"))
    assert len(steps) >= 4 and not model._forward_pre_hooks  # one more forward: the check before step 1
    assert str(speed.featvis_objective(workload)) == "channel('features', 0, batch=0) + channel('features', 3, batch=1)"


def test_pooled_seeds_are_means_step_by_step(quality: ModuleType) -> None:
    tables = [
        {32: {"transfer": 1.0, "slope": -2.0}, 64: {"transfer": 0.5, "slope": -3.0}},
        {32: {"transfer": 0.0, "slope": -1.0}, 64: {"transfer": 0.5, "slope": -2.0}},
    ]
    assert quality.pooled(tables) == {32: {"transfer": 0.5, "slope": -1.5}, 64: {"transfer": 0.5, "slope": -2.5}}
