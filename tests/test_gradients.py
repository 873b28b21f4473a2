"""Redirected ReLU and gradient normalisation: values against NumPy, the model left alone, and dead units
of the trained ResNet-20 that stay grey without the tricks and render with them."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import featvis
from featvis import objectives
from featvis.gradients import normalize_gradients, redirected_relu
from featvis.hooks import ActivationCapture

if TYPE_CHECKING:
    from conftest import ModelState


def reference_redirected_grad(x: np.ndarray, grad: np.ndarray, lower: float = 0.0, upper: float | None = None):
    """Lucid's rule, image by image: the clamp's own gradient, unless it is zero for the whole image;
    then the gradient minus what would push a clamped input further out."""
    result = np.empty_like(grad)
    for i in range(x.shape[0]):
        low, high = x[i] <= lower, (x[i] >= upper) if upper is not None else np.zeros_like(x[i], bool)
        plain = np.where(low | high, 0.0, grad[i])
        if np.any(plain != 0):
            result[i] = plain
        else:
            result[i] = np.where((low & (grad[i] > 0)) | (high & (grad[i] < 0)), 0.0, grad[i])
    return result


def redirected_grad(call: Callable[[torch.Tensor], torch.Tensor], x: np.ndarray, grad: np.ndarray) -> np.ndarray:
    leaf = torch.tensor(x, requires_grad=True)
    with redirected_relu():
        out = call(leaf.clone())
    out.backward(torch.tensor(grad))
    return leaf.grad.numpy()


CALLS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "F.relu": F.relu,
    "F.relu inplace": lambda t: F.relu(t, inplace=True),
    "torch.relu": torch.relu,
    "torch.relu_": torch.relu_,
    "Tensor.relu": lambda t: t.relu(),
    "Tensor.relu_": lambda t: t.relu_(),
    "nn.ReLU": nn.ReLU(),
    "nn.ReLU inplace": nn.ReLU(inplace=True),
}


@pytest.mark.parametrize("name", list(CALLS))
def test_every_relu_form_is_redirected_and_keeps_its_forward_value(name: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 4, 5)).astype(np.float32)
    x[1] = -np.abs(x[1]) - 0.1  # image 1: every input negative, its plain gradient is zero
    grad = rng.normal(size=x.shape).astype(np.float32)
    np.testing.assert_allclose(redirected_grad(CALLS[name], x, grad), reference_redirected_grad(x, grad))
    with redirected_relu():
        out = CALLS[name](torch.tensor(x))
    np.testing.assert_array_equal(out.numpy(), np.maximum(x, 0))


@pytest.mark.parametrize("call", [nn.ReLU6(), F.relu6, lambda t: F.hardtanh(t, 0.0, 6.0)])
def test_relu6_is_redirected_at_both_bounds(call: Callable[[torch.Tensor], torch.Tensor]) -> None:
    x = np.array([[-1.0, -2.0], [7.0, 8.0], [-1.0, 3.0]], dtype=np.float32)
    grad = np.array([[-1.0, 1.0], [-1.0, 1.0], [-1.0, 1.0]], dtype=np.float32)
    expected = reference_redirected_grad(x, grad, upper=6.0)
    # image 0 (all below): only the gradient that raises x; image 1 (all above): only what lowers it
    np.testing.assert_array_equal(expected, [[-1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    np.testing.assert_array_equal(redirected_grad(call, x, grad), expected)


def test_other_hardtanh_and_activations_are_left_alone() -> None:
    x = torch.tensor([[-3.0, -2.0]], requires_grad=True)
    with redirected_relu():
        (F.hardtanh(x) + F.leaky_relu(x, 0.0) + torch.sigmoid(x) * 0).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0.0, 0.0]])


@settings(max_examples=40, deadline=None)
@given(
    values=st.lists(st.floats(-3, 3, allow_nan=False, width=32), min_size=12, max_size=12),
    grads=st.lists(st.floats(-3, 3, allow_nan=False, width=32), min_size=12, max_size=12),
)
def test_law_redirected_gradient_matches_the_reference(values: list[float], grads: list[float]) -> None:
    x = np.array(values, dtype=np.float32).reshape(3, 4)
    grad = np.array(grads, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(redirected_grad(F.relu, x, grad), reference_redirected_grad(x, grad))


def test_live_relus_give_the_ordinary_gradient_and_the_mode_ends_with_the_block() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3), nn.ReLU())
    x = torch.rand(2, 3, 9, 9, requires_grad=True)
    net(x)[:, 1].sum().backward()
    plain = x.grad.clone()
    x.grad = None
    with redirected_relu():
        out = net(x)
    out[:, 1].sum().backward()
    torch.testing.assert_close(x.grad, plain, rtol=0, atol=0)
    # after the block, a dead ReLU blocks the gradient again
    y = torch.full((1, 3), -1.0, requires_grad=True)
    y.relu().sum().backward()
    assert y.grad.abs().sum() == 0


def test_normalize_gradients_against_numpy() -> None:
    grad = np.array([[[3.0, 4.0]], [[0.0, 0.0]], [[1.0, 1.0]]], dtype=np.float32)
    p = nn.Parameter(torch.zeros(3, 1, 2))
    p.grad = torch.tensor(grad)
    normalize_gradients([p], noise=0.0)
    norms = np.linalg.norm(grad.reshape(3, -1), axis=1)
    expected = np.where(norms[:, None, None] > 0, grad / np.maximum(norms, 1e-30)[:, None, None], 0.0)
    np.testing.assert_allclose(p.grad.numpy(), expected, rtol=1e-6)


def test_normalize_gradients_noise_moves_a_parameter_without_gradient() -> None:
    p, q = nn.Parameter(torch.zeros(4, 10)), nn.Parameter(torch.zeros(4, 10))
    q.grad = torch.zeros(4, 10)
    normalize_gradients([p, q], noise=0.05, generator=torch.Generator().manual_seed(0))
    for grad in (p.grad, q.grad):
        np.testing.assert_allclose(grad.norm(dim=1).numpy(), np.full(4, 0.05), rtol=1e-5)
    # a parameter whose dim 0 is not the batch is normalised as a whole
    r = nn.Parameter(torch.zeros(3, 2))
    r.grad = torch.tensor([[3.0, 0.0], [0.0, 0.0], [4.0, 0.0]])
    normalize_gradients([r], noise=0.0, batch=5)
    np.testing.assert_allclose(r.grad.numpy(), [[0.6, 0.0], [0.0, 0.0], [0.8, 0.0]], rtol=1e-6)
    with pytest.raises(ValueError, match="noise must be >= 0"):
        normalize_gradients([r], noise=-1.0)


def dead_unit_model() -> nn.Module:
    """Two conv + ReLU layers, all dead for a grey image (0.5 everywhere, as the optimisation starts)
    but alive for brighter ones: no gradient reaches the start image."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 2, 3, padding=1), nn.ReLU())
    with torch.no_grad():
        model[0].weight.abs_()
        model[0].bias.copy_(-0.5 * model[0].weight.sum(dim=(1, 2, 3)) - 0.1)
        model[2].weight.abs_()
        model[2].bias.fill_(-0.05)
    return model.eval()


def test_a_dead_unit_stays_grey_without_the_tricks_and_renders_with_them(model_state: type[ModelState]) -> None:
    model = dead_unit_model()
    state = model_state(model)
    run = dict(size=12, steps=24, seed=0, progress=False, transforms=[], preprocess=False)
    with pytest.warns(RuntimeWarning, match="the image did not change in 24 steps.* is dead: keep redirected_relu on"):
        plain = featvis.render_vis(model, "3:1", redirected_relu=0, **run)
    redirected = featvis.render_vis(model, "3:1", **run)
    assert plain.losses.tolist() == [0.0] * 24  # dead from start to end
    assert (plain.images - 0.5).abs().max() < 0.05  # grey: the start noise
    assert redirected.losses[-1] < -0.5  # the unit is active: loss = -activation
    assert (redirected.images - 0.5).abs().max() > 0.3  # a picture, not grey
    state.assert_unchanged()


#: steps of each render of grey_channels: at 32 every value clears its threshold by 2.7 times or more over
#: seeds 0-4 (live channel 8.8 to 16.7 against 3 and 5, std 0.23 to 0.29 against 0.1)
GREY_STEPS = 32


@pytest.fixture(scope="module")
def grey_channels(resnet20: nn.Module) -> dict[str, torch.Tensor]:
    """layer3 channels 6 and 9 of the trained ResNet-20 start dead; channel 0 is alive. Mean activation of
    each rendered image at its channel, for each way of rendering."""
    channels = [6, 9, 0]
    objective = objectives.Objective.sum(objectives.channel("layer3", c, batch=i) for i, c in enumerate(channels))
    runs = {
        "plain": dict(redirected_relu=0),
        "redirected": dict(),
        "normalised": dict(redirected_relu=0, normalize_gradients=True),
    }
    reached: dict[str, torch.Tensor] = {}
    for name, options in runs.items():
        param = featvis.param.image(32, batch=len(channels))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = featvis.render_vis(resnet20, objective, param, steps=GREY_STEPS, seed=0, progress=False, **options)
        said = [str(w.message) for w in caught if "did not change" in str(w.message)]
        reached[name + " unchanged"] = torch.tensor([bool(said) and said[0].startswith("images [0, 1] of the batch")])
        with torch.no_grad(), ActivationCapture(resnet20, ["layer3"]) as capture:
            acts = capture.run(featvis.models.default_preprocess(resnet20)(result.images))["layer3"]
        reached[name] = torch.stack([acts[i, c].mean() for i, c in enumerate(channels)])
        reached[name + " std"] = result.images.flatten(1).std(dim=1)
    return reached


@pytest.mark.slow
def test_trained_resnet_dead_channels_stay_grey_without_tricks(grey_channels: dict[str, torch.Tensor]) -> None:
    assert grey_channels["plain"][:2].tolist() == [0.0, 0.0]
    assert (grey_channels["plain std"][:2] < 0.02).all()  # grey: the start noise, unchanged
    assert bool(grey_channels["plain unchanged"])  # and featvis said which images did not change
    assert grey_channels["plain"][2] > 5


@pytest.mark.slow
@pytest.mark.parametrize("trick", ["redirected", "normalised"])
def test_trained_resnet_dead_channels_render_with_each_trick(
    grey_channels: dict[str, torch.Tensor], trick: str
) -> None:
    assert (grey_channels[trick] > 3).all(), grey_channels[trick]
    assert not bool(grey_channels[trick + " unchanged"])
    assert (grey_channels[trick + " std"] > 0.1).all()


def test_redirection_leaves_live_units_exactly_as_they_were(resnet20: nn.Module) -> None:
    objective = objectives.channel("layer3", 0)
    run = dict(size=32, steps=6, seed=1, progress=False)
    plain = featvis.render_vis(resnet20, objective, redirected_relu=0, **run)
    redirected = featvis.render_vis(resnet20, objective, redirected_relu=6, **run)
    torch.testing.assert_close(redirected.images, plain.images, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"redirected_relu": -1}, "redirected_relu must be a number of steps >= 0"),
        ({"redirected_relu": True}, "redirected_relu must be a number of steps >= 0"),
        ({"normalize_gradients": -0.5}, "normalize_gradients must be True, False or a noise norm >= 0"),
    ],
)
def test_option_errors(options: dict[str, object], words: str) -> None:
    model = nn.Sequential(nn.Conv2d(3, 2, 3)).eval()
    with pytest.raises(ValueError, match=words):
        featvis.render_vis(model, "0:1", size=8, steps=1, progress=False, **options)


class NotDifferentiable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.from_numpy(x.detach().numpy()))


def test_a_model_without_gradients_gets_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match=r"no gradient with respect to the image.*EvolutionStrategy"):
        featvis.render_vis(NotDifferentiable().eval(), "conv:1", size=8, steps=2, progress=False)
