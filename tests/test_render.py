"""render_vis end to end: it renders, it repeats, and the model comes back untouched."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import featvis
from featvis import objectives as O
from featvis import param, transforms

if TYPE_CHECKING:
    from conftest import ModelState


class Small(nn.Module):
    def __init__(self, fail_after: int | None = None, error: type[BaseException] = RuntimeError) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.head = nn.Linear(6, 4)
        self.calls, self.fail_after, self.error = 0, fail_after, error
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise self.error("failure inside the model")
        return self.head(torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))


def quick(model: nn.Module, objective: object, **kwargs: object) -> featvis.RenderResult:
    kwargs.setdefault("size", 16)
    kwargs.setdefault("steps", 3)
    return featvis.render_vis(model, objective, progress=False, **kwargs)  # type: ignore[arg-type]


def test_trained_unit_rises_well_above_its_start(resnet20: nn.Module) -> None:
    objective = O.channel("layer3", 11)
    torch.manual_seed(0)
    image = featvis.param.image(32)
    with torch.no_grad():
        start = image()  # the faint noise it starts from
    result = featvis.render_vis(resnet20, objective, image, steps=48, seed=0, progress=False)
    first, last = -result.losses[0].item(), -result.losses[-1].item()
    assert last > 5 * max(first, 0.1), (first, last)
    pre = featvis.models.default_preprocess(resnet20)
    with torch.no_grad():
        reached = resnet20.layer3(
            resnet20.layer2(resnet20.layer1(torch.relu(resnet20.bn1(resnet20.conv1(pre(result.images))))))
        )
        grey = resnet20.layer3(resnet20.layer2(resnet20.layer1(torch.relu(resnet20.bn1(resnet20.conv1(pre(start)))))))
    assert reached[:, 11].mean() > 5 * max(grey[:, 11].mean().item(), 0.1)


@pytest.mark.slow
def test_class_visualisations_transfer_to_another_network(resnet20: nn.Module, resnet32: nn.Module) -> None:
    classes = [2, 6, 8]
    objective = sum(O.class_logit("linear", c, batch=i) for i, c in enumerate(classes))
    result = featvis.render_vis(resnet20, objective, param.image(32, batch=3), steps=64, seed=1, progress=False)
    with torch.no_grad():
        probs = resnet32(featvis.models.default_preprocess(resnet32)(result.images)).softmax(dim=1)
    assert probs.argmax(dim=1).tolist() == classes


def test_model_state_is_restored_after_success(model_state: type[ModelState]) -> None:
    model = Small()
    model.train()
    model.conv.weight.requires_grad_(False)
    before = model_state(model)
    with pytest.warns(UserWarning, match="training mode; featvis renders in eval mode"):
        quick(model, O.channel("bn", 1))
    before.assert_unchanged()
    assert model.training and model.bn.training


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_model_state_is_restored_after_a_failure_inside_the_model(
    error: type[BaseException], model_state: type[ModelState]
) -> None:
    model = Small(fail_after=3, error=error).eval()
    model.head.train()
    before = model_state(model)
    if error is KeyboardInterrupt:
        with pytest.warns(UserWarning, match="interrupted after 2 of 5 steps"):
            result = quick(model, O.class_logit("head", 0), steps=5)
        assert result.interrupted and result.steps == 2 and result.losses.shape == (2,)
        assert result.images.shape == (1, 3, 16, 16)
    else:
        with pytest.raises(RuntimeError, match="failure inside the model"):
            quick(model, O.class_logit("head", 0), steps=5)
    before.assert_unchanged()


def test_errors_before_any_step_leave_the_model_alone(model_state: type[ModelState]) -> None:
    model = Small()
    before = model_state(model)
    with pytest.raises(ValueError, match="unknown layer 'cnv'"):
        quick(model, O.channel("cnv", 0))
    with pytest.raises(IndexError, match="channel 6 is out of range for layer 'conv', which has 6 channels"):
        quick(model, O.channel("conv", 6))
    with pytest.raises(ValueError, match="must return a scalar, got a tensor of shape"):
        quick(model, lambda acts: acts["conv"].mean(dim=(2, 3)))
    assert model.calls == 3  # one checking forward pass each, no optimisation step
    before.assert_unchanged()


def test_argument_errors() -> None:
    model = Small()
    with pytest.raises(ValueError, match="steps must be a positive integer, got 0"):
        quick(model, "conv:0", steps=0)
    with pytest.raises(ValueError, match="thresholds must be step numbers from 1 to steps=3, got 9"):
        quick(model, "conv:0", thresholds=[9])
    with pytest.raises(TypeError, match=r"param must be a torch\.nn\.Module"):
        featvis.render_vis(model, "conv:0", torch.zeros(1, 3, 8, 8), progress=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="either param or size"):
        featvis.render_vis(model, "conv:0", param.image(8), size=8, progress=False)


def test_only_layers_up_to_the_target_run() -> None:
    model = Small()
    seen: list[str] = []
    for name in ("conv", "bn", "head"):
        getattr(model, name).register_forward_hook(lambda m, a, o, name=name: seen.append(name))
    quick(model, O.channel("conv", 0), steps=2)
    assert set(seen) == {"conv"}


def test_no_weight_gradients_are_computed() -> None:
    model = Small()
    quick(model, O.class_logit("head", 1))
    assert all(p.grad is None for p in model.parameters())


def test_seed_repeats_and_leaves_the_global_generator_alone() -> None:
    model = Small()
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = quick(model, O.channel("conv", 2), steps=4, seed=7)
    assert torch.equal(torch.rand(3), expected_next)
    second = quick(model, O.channel("conv", 2), steps=4, seed=7)
    third = quick(model, O.channel("conv", 2), steps=4, seed=8)
    assert torch.equal(first.images, second.images) and torch.equal(first.losses, second.losses)
    assert not torch.equal(first.images, third.images)


def test_thresholds_losses_and_custom_objective_discovery() -> None:
    model = Small()

    def score(acts: object) -> torch.Tensor:
        return acts["bn"][:, 1].mean() - 0.1 * acts["conv"].abs().mean()  # type: ignore[index]

    result = quick(model, score, steps=6, thresholds=[2, 6])
    assert sorted(result.snapshots) == [2, 6]
    assert torch.equal(result.snapshots[6], result.images)
    assert not torch.equal(result.snapshots[2], result.images)
    assert result.losses.shape == (6,) and bool(torch.isfinite(result.losses).all())
    assert result.objective == "score" and result.steps == 6


@pytest.mark.parametrize(
    "optimizer",
    [
        lambda ps: torch.optim.SGD(ps, lr=0.5),
        lambda ps: torch.optim.LBFGS(ps, lr=0.5, max_iter=3),
        torch.optim.AdamW,
    ],
)
def test_any_optimizer_improves_the_objective(optimizer: object) -> None:
    torch.manual_seed(0)
    model = Small()
    result = quick(model, O.class_logit("head", 2), steps=8, transforms=[], optimizer=optimizer, seed=3)
    assert result.losses[-1] < result.losses[0]


def test_transforms_are_applied_per_step() -> None:
    model = Small()
    shapes: list[tuple[int, ...]] = []
    model.conv.register_forward_pre_hook(lambda m, args: shapes.append(tuple(args[0].shape)))
    quick(model, "conv:0", transforms=[transforms.Pad(2)], steps=2)
    assert shapes == [(1, 3, 20, 20)] * 3  # checking pass + 2 steps


def test_default_preprocessing_knows_the_model() -> None:
    from torchvision.models import resnet18

    imagenet = featvis.models.default_preprocess(resnet18(weights=None))
    assert torch.allclose(imagenet.mean.flatten(), torch.tensor(transforms.IMAGENET_MEAN))
    assert isinstance(featvis.models.default_preprocess(Small()), nn.Identity)
    model = Small()
    model.featvis_normalization = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    model.featvis_input_size = 12
    inputs: list[torch.Tensor] = []
    model.conv.register_forward_pre_hook(lambda m, args: inputs.append(args[0]))
    featvis.render_vis(model, "conv:0", steps=1, transforms=[], progress=False)
    assert inputs[-1].shape[-1] == 12 and inputs[-1].min() < 0  # normalised: [0, 1] -> [-1, 1]


def test_render_channels_gives_one_image_per_unit(resnet20: nn.Module) -> None:
    result = featvis.render_channels(
        resnet20, "layer2", channels=[0, 5, 9], batch_size=2, steps=24, seed=0, progress=False
    )
    assert result.images.shape == (3, 3, 32, 32) and result.units == [0, 5, 9]
    assert result.losses.shape == (2, 24)
    pre = featvis.models.default_preprocess(resnet20)
    with torch.no_grad():
        acts = resnet20.layer2(resnet20.layer1(torch.relu(resnet20.bn1(resnet20.conv1(pre(result.images))))))
    means = acts.mean(dim=(2, 3))  # (units, channels)
    for row, unit in enumerate(result.units):
        assert means[row, unit] > means[:, unit].mean() - 1e-6
        assert means[row, unit] == means[row, [0, 5, 9]].max() or means[row, unit] > 1.0
    everything = featvis.render_channels(Small(), "conv", batch_size=4, size=8, steps=1, progress=False)
    assert everything.units == list(range(6)) and everything.images.shape[0] == 6


def test_result_helpers(tmp_path: Path) -> None:
    images = torch.rand(3, 3, 8, 10)
    result = featvis.RenderResult(images, {}, torch.zeros(1), "x", 1)
    array = result.numpy()
    assert array.shape == (3, 8, 10, 3) and np.allclose(array[1], images[1].permute(1, 2, 0).numpy())
    pictures = result.pil()
    assert pictures[0].size == (10, 8)
    assert np.array_equal(np.asarray(pictures[2]), (images[2].permute(1, 2, 0) * 255).round().byte().numpy())
    result.save(tmp_path / "one.png", index=1)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "one.png")), np.asarray(pictures[1]))
    result.save_grid(tmp_path / "grid.png", nrow=3, padding=2, scale=1)
    assert Image.open(tmp_path / "grid.png").size == (2 + 3 * 12, 2 + 10)
    # by default, 8x10 images are enlarged 8 times (towards 128 pixels, 8 at most), like the notebook's display
    result.save_grid(tmp_path / "readable.png", nrow=3, padding=2)
    assert Image.open(tmp_path / "readable.png").size == (2 + 3 * (80 + 2), 2 + 64 + 2) == result.grid(nrow=3).size
    assert result._repr_png_().startswith(b"\x89PNG")
    gray = featvis.RenderResult(torch.rand(2, 1, 4, 4), {}, torch.zeros(1), "x", 1)
    assert gray.pil()[0].mode == "L"
    four = featvis.RenderResult(torch.rand(1, 4, 4, 4), {}, torch.zeros(1), "x", 1)
    assert np.array_equal(np.asarray(four.pil()[0]), np.asarray(four.pil(four.images[:, :3])[0]))


def test_grid_places_scaled_images_and_captions() -> None:
    images = torch.rand(4, 3, 8, 10)
    result = featvis.RenderResult(images, {}, torch.zeros(1), "x", 1, units=[3, 5, 7, 9])
    plain = np.asarray(result.grid(nrow=2, padding=2, scale=1))
    assert plain.shape == (2 + 2 * 10, 2 + 2 * 12, 3)
    # image 3 (second row, second column) sits at (2 + 10, 2 + 12), pixel for pixel
    assert np.array_equal(plain[12:20, 14:24], np.asarray(result.pil()[3]))
    assert (plain[:2] == 255).all() and (plain[:, :2] == 255).all()

    labelled = result.grid(nrow=2, padding=2, labels=True, scale=3)
    width, height = labelled.size
    assert width == 2 + 2 * (30 + 2) and height > 2 + 2 * (24 + 2)  # a caption strip under each row
    array = np.asarray(labelled)
    enlarged = np.asarray(result.pil()[0].resize((30, 24), Image.NEAREST))
    assert np.array_equal(array[2:26, 2:32], enlarged)
    strip = array[26 : 26 + (height - 2 - 2 * 26) // 2, 2:32]
    assert (strip < 128).any(), "the caption is drawn in dark ink under the image"
    unlabelled_strip = np.asarray(result.grid(nrow=2, padding=2, scale=3))[26:28, 2:32]
    assert (unlabelled_strip == 255).all()


def test_grid_label_errors_say_what_to_pass() -> None:
    result = featvis.RenderResult(torch.rand(2, 3, 8, 8), {}, torch.zeros(1), "x", 1)
    with pytest.raises(ValueError, match="got 3 labels for 2 images"):
        result.grid(labels=["a", "b", "c"])
    with pytest.raises(ValueError, match="labels=True shows the rendered units, but this result has none"):
        result.grid(labels=True)
    with pytest.raises(ValueError, match="scale must be a positive whole number"):
        result.grid(scale=0)
    long_label = result.grid(labels=["a very long caption that cannot fit", "b"], scale=2)
    assert long_label.size[0] == 2 + 2 * 18


def test_grayscale_and_four_channel_models() -> None:
    for channels in (1, 4):
        model = nn.Sequential(nn.Conv2d(channels, 3, 3), nn.ReLU()).eval()
        p = param.image(12, 10, channels=channels)
        result = featvis.render_vis(model, O.channel("1", 2), p, steps=3, progress=False)
        assert result.images.shape == (1, channels, 10, 12)


def test_import_is_light() -> None:
    import subprocess
    import sys

    code = "import sys, featvis; print(any(m.split('.')[0] in ('torchvision', 'scipy') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_no_warnings_on_an_eval_model() -> None:
    model = Small().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quick(model, "conv:1")


def test_the_default_learning_rate_is_held_then_falls_and_a_given_optimizer_is_left_alone() -> None:
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    seen: list[float] = []
    handle = register_optimizer_step_pre_hook(
        lambda optimizer, args, kwargs: seen.append(optimizer.param_groups[0]["lr"])
    )
    try:
        featvis.render_vis(Small().eval(), "conv:1", size=12, steps=130, progress=False)
        default = list(seen)
        seen.clear()
        given = lambda ps: torch.optim.Adam(ps, lr=0.02)  # noqa: E731
        featvis.render_vis(Small().eval(), "conv:1", size=12, steps=5, progress=False, optimizer=given)
    finally:
        handle.remove()
    # 0.1 for steps 1 to 64, then 0.1 * (64 / step) ** 2: by hand, step 65 -> 0.096947, 128 -> 0.025, 130 -> 0.02424
    assert default[:64] == pytest.approx([0.1] * 64, abs=1e-12)
    assert [default[64], default[127], default[129]] == pytest.approx([0.096947, 0.025, 0.024237], abs=1e-6)
    assert seen == [0.02] * 5


def test_a_run_of_k_steps_gives_the_picture_a_longer_run_shows_at_step_k() -> None:
    # the default schedule depends on the step only: render_vis(steps=k) is the snapshot at k of any longer run
    model = Small().eval()
    short = featvis.render_vis(model, "conv:1", size=12, steps=70, seed=3, progress=False)
    longer = featvis.render_vis(model, "conv:1", size=12, steps=90, thresholds=[70], seed=3, progress=False)
    assert torch.equal(short.images, longer.snapshots[70])
    assert torch.equal(short.losses, longer.losses[:70])


def test_a_run_seed_is_mixed_and_a_start_image_seed_is_not() -> None:
    import numpy as np

    from featvis.state import run_seed, seeded

    cpu = torch.device("cpu")
    torch.manual_seed(5)
    plain = torch.rand(4)
    with seeded(5, cpu, mix=False):  # a starting image: the numbers torch.manual_seed(5) gives
        start = torch.rand(4)
    with seeded(5, cpu):  # a run: other numbers, so its transforms do not replay the start image's
        run = torch.rand(4)
    assert torch.equal(start, plain) and not torch.equal(run, plain)
    assert run_seed(np.int64(5)) == run_seed(5) and 0 <= run_seed(-7) < 2**63


@pytest.mark.parametrize(
    ("seed", "words"),
    [
        ("42", "seed must be a whole number or None, got '42' (a str); write seed=42"),
        (1.5, "seed must be a whole number or None, got 1.5 (a float)"),
        (2.0, "got 2.0 (a float); write seed=2"),
        (True, "seed must be a whole number or None, got True (a bool)"),
    ],
)
def test_a_seed_that_is_not_a_whole_number_is_refused_by_name(seed: object, words: str) -> None:
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU()).eval()
    for call in (
        lambda: featvis.render_vis(model, "1:0", size=8, steps=1, seed=seed, progress=False),
        lambda: featvis.render_channels(model, "1", [0], size=8, steps=1, seed=seed, progress=False),
        lambda: featvis.deepdream(model, torch.rand(3, 8, 8), "1", steps=1, seed=seed, progress=False),
        lambda: featvis.param.image(8, seed=seed),
    ):
        with pytest.raises(TypeError, match=re.escape(words.split(";")[0])):
            call()


def test_any_whole_number_seeds_a_run_and_repeats_it() -> None:
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU()).eval()
    for seed in (2**70, -5, np.int64(3)):
        runs = [featvis.render_channels(model, "1", [0, 1], size=8, steps=2, seed=seed, progress=False) for _ in "ab"]
        assert torch.equal(runs[0].images, runs[1].images)


def test_an_interrupted_render_channels_keeps_each_chunks_loss_history() -> None:
    class StopsLater(nn.Module):  # Ctrl-C during the second chunk's third step
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.act, self.calls = nn.Conv2d(3, 4, 3), nn.ReLU(), 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            if self.calls == 13:  # 1 probe + 8 steps for the first chunk, 1 probe + 3 for the second
                raise KeyboardInterrupt
            return self.act(self.conv(x))

    model = StopsLater().eval()
    with pytest.warns(UserWarning, match="interrupted"):
        result = featvis.render_channels(model, "act", [0, 1, 2, 3], batch_size=2, size=8, steps=8, progress=False)
    assert result.interrupted and result.losses.shape == (2, 8)
    first, second = result.losses
    assert bool(torch.isfinite(first).all())  # the first chunk's whole history
    done = int(torch.isfinite(second).sum())
    assert 0 < done < 8 and bool(torch.isnan(second[done:]).all()) and result.steps == done
    assert "final loss" in repr(result)
