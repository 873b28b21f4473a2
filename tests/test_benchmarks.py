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


# ---- the ImageNet benchmark ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def imagenet() -> ModuleType:
    spec = importlib.util.spec_from_file_location("featvis_imagenet_benchmark", ROOT / "benchmarks" / "imagenet.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_imagenet_perturbations_match_references(imagenet: ModuleType) -> None:
    from PIL import Image

    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    shifted = imagenet.shift(images, 3)
    assert torch.equal(shifted[..., 3:, 3:], images[..., :-3, :-3])  # moved right and down
    assert torch.equal(shifted[..., :3, 3:], images[..., [3, 2, 1], :-3])  # the gap: the first rows mirrored
    assert torch.equal(shifted[..., 3:, :3], images[..., :-3, [3, 2, 1]])
    blurred = imagenet.box_blur(images)
    assert np.allclose(blurred.numpy(), ndimage.uniform_filter(images.numpy(), size=(1, 1, 5, 5), mode="nearest"))
    plane = images[0, 0].float().numpy()  # PIL's bilinear resize: antialiased down, plain bilinear up
    reference = Image.fromarray(plane, mode="F").resize((8, 8), Image.BILINEAR).resize((16, 16), Image.BILINEAR)
    assert np.allclose(imagenet.down_up(images[:1, :1].float())[0, 0].numpy(), np.asarray(reference), atol=1e-6)
    noisy = imagenet.noise(images)
    assert torch.equal(noisy, imagenet.noise(images)) and 0 <= noisy.min() and noisy.max() <= 1
    assert 0.02 < (noisy - images).std().item() < 0.04


def test_imagenet_colour_statistics_by_hand(imagenet: ModuleType) -> None:
    # four pixels: pure orange (S 1), grey (S 0), black (S 0 by convention), pale red (S 0.5)
    pixels = torch.tensor([[1.0, 0.5, 0.0], [0.5, 0.5, 0.5], [0.0, 0.0, 0.0], [0.8, 0.4, 0.4]], dtype=torch.float64)
    image = pixels.T.reshape(1, 3, 2, 2)
    assert imagenet.saturation(image) == pytest.approx((1 + 0 + 0 + 0.5) / 4)
    # a flat grey image (sd 0) and one half black, half white (luminance 0 and 1: sd 0.5): mean 0.25
    grey = torch.full((1, 3, 2, 2), 0.5, dtype=torch.float64)
    half = torch.zeros(1, 3, 2, 2, dtype=torch.float64)
    half[..., 1] = 1.0
    assert imagenet.contrast(torch.cat([grey, half])) == pytest.approx(0.25)
    assert imagenet.luminance(pixels.T.reshape(1, 3, 1, 4))[0, 0, 0].item() == pytest.approx(0.299 + 0.587 * 0.5)
    # 0, 1/255, 254/255 and 1 are clipped; 0.004 and 0.996 (just inside) and two mid-greys are not
    values = torch.tensor([0, 1 / 255, 254 / 255, 1, 0.004, 0.996, 0.3, 0.7], dtype=torch.float64).view(1, 1, 2, 4)
    assert imagenet.clipped(values) == pytest.approx(0.5)


def test_imagenet_judge_resizes_to_its_own_size(imagenet: ModuleType) -> None:
    seen: list[tuple[int, ...]] = []
    judge = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 4))
    judge.featvis_input_size = 12
    judge.featvis_normalization = ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    judge.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape)))
    probs = imagenet.judge_probabilities(judge, torch.rand(3, 3, 8, 8))
    assert seen == [(3, 3, 12, 12)] and probs.shape == (3, 4)
    assert torch.allclose(probs.sum(-1), torch.ones(3))


def test_imagenet_goals_name_the_bar_and_the_peer(imagenet: ModuleType) -> None:
    row = {"prob": 0.97, "shift8": 0.9, "blur5": 1.2, "resize2": 0.8, "noise": 0.95, "saturation": 0.5}
    row.update({"contrast": 0.2, "clipped": 0.01, "early": 2.0, "middle": 2.0, "late": 1.0, "s_per_image": 1.0})
    peer = {**row, "shift8": 0.95, "resize2": 0.5, "late": 1.5, "s_per_image": 1.2}
    photos = {**row, "shift8": 0.99, "resize2": 0.6, "saturation": 0.45, "contrast": 0.3, "clipped": 0.02}
    lines = imagenet.goals({"featvis": {128: row}, "lucent": {128: peer}}, photos)
    by_goal = {line.split(": ", 1)[1].split(" ")[0]: line.split(" ")[0] for line in lines}
    assert by_goal["judge's"] == "PASS"
    assert by_goal["shift8"] == "FAIL" and "best peer lucent 0.950" in lines[1]  # 0.90 < min(0.99, 0.95)
    assert by_goal["blur5"] == "PASS" and by_goal["resize2"] == "PASS"  # 0.8 >= min(0.6, 0.5)
    assert by_goal["saturation"] == "PASS" and by_goal["contrast"] == "FAIL" and by_goal["clipped"] == "PASS"
    assert by_goal["hidden"] == "FAIL"  # late 1.0 < lucent's 1.5
    speed = [line for line in lines if "per image" in line]
    assert speed[0].startswith("FAIL") and all(line.startswith("SKIP") for line in speed[1:])


def test_imagenet_benchmark_runs_end_to_end(imagenet: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    import featvis.models

    try:
        featvis.models.efficientnet_lite0()
        featvis.models.efficientnet_lite1()
    except (AttributeError, ImportError, OSError, RuntimeError) as error:
        pytest.skip(f"the EfficientNet-Lite weights are not installed: {error}")
    imagenet.main("--methods featvis --steps 2 --classes 1 --channels 1 --size 64 --seed 0 --crops 1".split())
    out = capsys.readouterr().out
    assert "| featvis | " in out and "| photographs | " in out and "early (_blocks.2)" in out
    assert "featvis: judge's mean prob >= 0.95 by 128 steps" in out


def test_figure_stacks_rows_with_the_first_rows_captions_only() -> None:
    spec = importlib.util.spec_from_file_location("featvis_figure_script", ROOT / "benchmarks" / "figure.py")
    assert spec is not None and spec.loader is not None
    figure = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(figure)
    import featvis

    names = ["a", "b", "c", "d"]
    red = featvis.RenderResult(
        torch.zeros(4, 3, 16, 16).index_fill_(1, torch.tensor([0]), 1.0), {}, torch.zeros(1), "", 1
    )
    blue = featvis.RenderResult(
        torch.zeros(4, 3, 16, 16).index_fill_(1, torch.tensor([2]), 1.0), {}, torch.zeros(1), "", 1
    )
    grids = [red.grid(nrow=4, labels=names, scale=1), blue.grid(nrow=4, labels=names, scale=1)]
    made = figure.figure([("red", grids[0]), ("blue", grids[1])], width=200, tiles=4, columns=slice(1, 3))
    pixels = np.asarray(made)
    label = round(200 * figure.LABEL_SHARE)
    caption = figure.caption_height(grids[0], 4)
    assert caption > 0 and made.width == 200
    # two tiles of each row, scaled to the width: the first row keeps its caption strip, the second has none
    scale = (200 - label) / (2 * 18 + 2)
    assert made.height == round(grids[0].height * scale) + round((grids[1].height - caption) * scale)
    middle = pixels[round(10 * scale), label + round(10 * scale)]
    assert middle[0] > 200 and middle[2] < 50  # red on top
    assert pixels[-round(8 * scale), label + round(10 * scale)][2] > 200  # blue below
