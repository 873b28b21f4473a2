"""Your own hooks keep working while featvis renders, on the layer it reads too."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import Tensor, nn

import featvis
from featvis import objectives as O


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 5, 3, padding=1), nn.ReLU()).eval()


def render(model: nn.Module, objective: object, steps: int = 3) -> featvis.RenderResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return featvis.render_vis(
            model, objective, size=8, steps=steps, transforms=[], seed=0, redirected_relu=0, progress=False
        )


def test_a_full_backward_hook_on_the_target_layer_fires_each_step_with_the_objectives_gradient() -> None:
    model = small_model()
    seen: list[tuple[tuple[Tensor | None, ...], tuple[Tensor, ...]]] = []
    handle = model[2].register_full_backward_hook(lambda module, grad_in, grad_out: seen.append((grad_in, grad_out)))
    render(model, O.channel("2", 3), steps=3)
    assert len(seen) == 3
    grad_in, grad_out = seen[0]
    # the loss is minus the mean of channel 3 over the 8x8 positions
    expected = torch.zeros(1, 5, 8, 8)
    expected[:, 3] = -1 / 64
    assert torch.allclose(grad_out[0], expected)
    assert grad_in[0].shape == (1, 4, 8, 8)
    # the hook is back on the layer, its handle works, and nothing of featvis's is left
    assert len(model[2]._backward_hooks) == 1 and not model[2]._forward_pre_hooks
    assert not model[2]._forward_hooks
    handle.remove()
    assert not model[2]._backward_hooks


def test_a_backward_hook_that_changes_the_gradient_is_obeyed_and_pre_hooks_fire() -> None:
    model = small_model()
    pre: list[int] = []
    model[2].register_full_backward_pre_hook(lambda module, grad_out: pre.append(1))
    model[2].register_full_backward_hook(lambda module, grad_in, grad_out: (torch.zeros_like(grad_in[0]),))
    with pytest.warns(RuntimeWarning, match="did not change"):
        featvis.render_vis(model, O.channel("2", 3), size=8, steps=3, transforms=[], seed=0, progress=False)
    assert pre == [1, 1, 1]


def test_a_target_read_while_the_pass_goes_on_fires_the_hook_once_with_the_whole_gradient() -> None:
    model = small_model()
    seen: list[Tensor] = []
    model[0].register_full_backward_hook(lambda module, grad_in, grad_out: seen.append(grad_out[0]))
    # the loss reads layer 0 and, through it, layer 2: the gradient at layer 0's output sums both
    objective = O.channel("0", 1) + O.channel("2", 3)
    render(model, objective, steps=2)
    assert len(seen) == 2
    assert float(seen[0][:, 1].mean()) < -1 / 64 * 0.99  # more than the direct -1/64 alone
    assert bool((seen[0][:, 0] != 0).any())  # the path through layer 2 reaches the other channels


def test_forward_hooks_and_hooks_on_earlier_layers_run_as_usual() -> None:
    model = small_model()
    forward: list[int] = []
    backward: list[int] = []
    model[2].register_forward_hook(lambda module, args, out: forward.append(1))
    model[0].register_full_backward_hook(lambda module, grad_in, grad_out: backward.append(1))
    render(model, O.channel("2", 3), steps=2)
    assert len(forward) >= 2 and backward == [1, 1]
