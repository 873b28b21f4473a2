"""The extension points, used from outside the package as a user would: an objective made with
``wrap_objective``, transforms as plain callables, a stopping criterion, and a loop of one's own
on featvis's step. (A basis of one's own: tests/test_param_protocol.py.)
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import featvis
from featvis import objectives, param
from featvis.hooks import Activations
from featvis.loop import Plateau, optimize
from featvis.step import GradientStep, ObjectiveLoss


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 4, 3)).eval()


@objectives.wrap_objective
def centre_minus_surround(layer, channel, batch=None, weight=1.0):
    """A channel's centre position against its mean: a custom objective."""

    def value(acts: Activations) -> torch.Tensor:
        units = acts.units(layer, batch, channel=channel)  # (N, H, W) of that channel
        height, width = units.shape[-2:]
        return (units[:, height // 2, width // 2] - weight * units.mean(dim=(1, 2))).mean()

    return value


def test_a_custom_objective_reads_like_a_built_in_one() -> None:
    objective = centre_minus_surround("2", 3, weight=0.5) - 0.1 * objectives.total_variation()
    assert str(objective) == "centre_minus_surround('2', 3, weight=0.5) - 0.1 * total_variation()"
    assert str(centre_minus_surround("2", 1)) == "centre_minus_surround('2', 1)"
    assert [str(ref) for ref in centre_minus_surround("2", 1).layers] == ["2"]


def test_a_custom_objective_gets_the_value_by_hand_and_renders() -> None:
    model = tiny_model()
    images = torch.rand(2, 3, 9, 9)
    acts = model[:3](images)[:, 3]  # layer "2", channel 3: (2, 7, 7)
    expected = (acts[:, 3, 3] - 0.5 * acts.mean(dim=(1, 2))).mean()
    with featvis.hooks.ActivationCapture(model, ["2"]) as capture:
        got = centre_minus_surround("2", 3, weight=0.5)(capture.run(images))
    torch.testing.assert_close(got, expected)
    result = featvis.render_vis(model, centre_minus_surround("2", 3), size=12, steps=24, seed=0, progress=False)
    assert result.losses[-3:].mean() < result.losses[:3].mean()  # the loss is minus the objective


def test_a_custom_objective_says_what_a_built_in_one_says() -> None:
    model = tiny_model()
    errors = []
    for objective in (centre_minus_surround("2", 9), objectives.channel("2", 9)):
        with pytest.raises(IndexError) as error:
            featvis.render_vis(model, objective, size=12, steps=1, progress=False)
        errors.append(str(error.value))
    assert errors[0] == errors[1] == "channel 9 is out of range for layer '2', which has 4 channels (valid: 0 to 3)"


def test_transforms_are_any_callables() -> None:
    model = tiny_model()
    seen: list[tuple[int, ...]] = []

    def record(images: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(images.shape))
        return images

    flip = featvis.render_vis(
        model, "2:1", size=12, steps=3, seed=0, progress=False, transforms=[lambda x: x.flip(-1), record]
    )
    assert len(flip) == 1 and seen[-1] == (1, 3, 12, 12)
    # a lone function works too, and a flip before a model with a flipped... is a different run
    plain = featvis.render_vis(model, "2:1", size=12, steps=3, seed=0, progress=False, transforms=record)
    assert not torch.equal(flip.images, plain.images)
    composed = featvis.transforms.Compose(featvis.transforms.Pad(2), lambda x: x[..., 2:-2, 2:-2])
    assert torch.equal(composed(torch.ones(1, 3, 4, 4)), torch.ones(1, 3, 4, 4))


def test_a_stopping_criterion_ends_the_run_early() -> None:
    model = tiny_model()
    calls: list[int] = []

    def after_five(step: int, losses: torch.Tensor) -> bool:
        calls.append(step)
        assert losses.shape == (step,)
        return step == 5

    result = featvis.render_vis(model, "2:1", size=12, steps=50, progress=False, stop=after_five)
    assert result.steps == 5 and result.losses.shape == (5,) and calls == [1, 2, 3, 4, 5]
    assert not result.interrupted


@pytest.mark.parametrize(
    ("losses", "stops"),
    [
        ([5.0, 4.0, 3.0, 2.0, 1.0], False),  # still falling
        ([5.0, 1.0, 1.0, 1.0, 1.0, 1.0], True),  # flat for the last four
        ([1.0, 2.0, 3.0, 4.0, 5.0], True),  # rising
        ([5.0, 4.0, 3.0], False),  # too short to tell
    ],
)
def test_a_plateau_is_no_fall_over_the_patience(losses: list[float], stops: bool) -> None:
    assert Plateau(patience=4, min_delta=0.5, every=1)(len(losses), torch.tensor(losses)) is stops


def test_a_loop_of_ones_own_on_the_shared_step_is_render_vis() -> None:
    """render_vis is the step and the loop: driving them by hand gives the same pictures, bit for bit."""
    model = tiny_model()
    objective = objectives.channel("2", 2) - 0.05 * objectives.total_variation()
    start = param.image(12, batch=2)
    by_render_vis = featvis.render_vis(
        model,
        objective,
        copy.deepcopy(start),
        steps=6,
        transforms=[],
        optimizer=lambda parameters: torch.optim.SGD(parameters, lr=0.5),
        redirected_relu=0,
        progress=False,
    )
    images = copy.deepcopy(start)
    loss = ObjectiveLoss(model, objective, images)
    step = GradientStep(loss, torch.optim.SGD(images.parameters(), lr=0.5))
    with loss:
        outcome = optimize(step, 6, images=step.current_images, parameters=list(images.parameters()), progress=False)
    assert outcome.done == 6 and not outcome.stopped
    assert torch.equal(by_render_vis.images, step.current_images())
    assert torch.equal(by_render_vis.losses, outcome.losses)
