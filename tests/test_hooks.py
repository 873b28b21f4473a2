"""Layer names, hooks on targets only, removal in every case, and early stopping."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import featvis
from featvis.hooks import ActivationCapture, LayerNotReachedError, LayerRef, resolve_layer


class Counter(nn.Module):
    """Identity that counts its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return x


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False), nn.ReLU(inplace=True))
        self.after = Counter()
        self.unused = nn.Linear(2, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.after(self.features(x))


class Pair(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return x * 2, {"neg": -x}


class TupleNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = Pair()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, rest = self.block(x)
        return first + rest["neg"]


def hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


def test_layer_names_follow_named_modules() -> None:
    assert featvis.layer_names(Net()) == ["features", "features.0", "features.1", "after", "unused"]


def test_unknown_layer_lists_the_closest_names() -> None:
    model = featvis.models.cifar10_resnet20(pretrained=False)
    with pytest.raises(
        ValueError, match=r"unknown layer 'layer3.1.conv3'.*Closest names: 'layer3.1.conv2', 'layer3.1.conv1'"
    ) as info:
        ActivationCapture(model, ["layer3.1.conv3"])
    assert "featvis.layer_names(model)" in str(info.value)
    with pytest.raises(ValueError, match="is not part of the model"):
        ActivationCapture(model, [nn.Conv2d(1, 1, 1)])


def test_selector_syntax() -> None:
    assert LayerRef.parse("a.b[0]") == LayerRef("a.b", 0)
    assert LayerRef.parse("a['out']") == LayerRef("a", "out")
    assert LayerRef.parse('a["x y"]') == LayerRef("a", "x y")
    assert LayerRef.parse("a[-1]") == LayerRef("a", -1)
    assert LayerRef.parse("plain") == LayerRef("plain")
    assert LayerRef.parse("a[1]['k'][0]") == LayerRef("a", (1, "k", 0))


def test_tuple_and_dict_outputs_are_selected() -> None:
    model, x = TupleNet(), torch.arange(4.0).reshape(1, 1, 2, 2)
    with ActivationCapture(model, ["block"]) as capture:
        acts = capture.run(x)
    assert torch.equal(acts["block[0]"], x * 2)
    assert torch.equal(acts["block[1]['neg']"], -x)
    assert torch.equal(acts[LayerRef(model.block, (1, "neg"))], -x)
    assert str(LayerRef("block", (1, "neg"))) == "block[1]['neg']"
    with pytest.raises(ValueError, match=r"outputs a tuple of 2 items, not a tensor; choose a part of it with a"):
        acts["block"]
    with pytest.raises(ValueError, match=r"cannot select \[5\] from the output of layer 'block'"):
        acts["block[5]"]


def test_hooks_go_only_on_targets_and_are_removed() -> None:
    model = Net()
    with ActivationCapture(model, ["features.0"]) as capture:
        assert hook_count(model) == 1 and len(model.features[0]._forward_hooks) == 1
        capture.run(torch.ones(1, 1, 2, 2))
    assert hook_count(model) == 0


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_hooks_are_removed_after_an_exception(error: BaseException) -> None:
    model = Net()

    def explode(module: nn.Module, args: object, output: object) -> None:
        raise error

    handle = model.after.register_forward_hook(explode)
    with pytest.raises(type(error)), ActivationCapture(model, ["features.1", "after"]) as capture:
        capture.run(torch.ones(1, 1, 2, 2))
    handle.remove()
    assert hook_count(model) == 0


def test_later_layers_are_not_executed() -> None:
    model = Net()
    with ActivationCapture(model, ["features.0"]) as capture:
        capture.run(torch.ones(1, 1, 2, 2))
    assert model.after.calls == 0
    with ActivationCapture(model, ["features.0"], stop_early=False) as capture:
        capture.run(torch.ones(1, 1, 2, 2))
    assert model.after.calls == 1


def test_a_later_inplace_op_does_not_corrupt_an_earlier_capture() -> None:
    model = Net()
    with torch.no_grad():
        model.features[0].weight.fill_(-1.0)
    x = torch.ones(1, 1, 2, 2, requires_grad=True)
    with ActivationCapture(model, ["features.0", "after"]) as capture:
        acts = capture.run(x)
    assert torch.equal(acts["features.0"], -torch.ones(1, 2, 2, 2))  # before the in-place ReLU
    assert torch.equal(acts["after"], torch.zeros(1, 2, 2, 2))
    acts["features.0"].sum().backward()
    assert torch.equal(x.grad, torch.full_like(x, -2.0))


def test_a_layer_the_forward_pass_never_reaches() -> None:
    model = Net()
    with pytest.raises(LayerNotReachedError, match="'unused' did not run during the forward pass"):
        with ActivationCapture(model, ["unused"]) as capture:
            capture.run(torch.ones(1, 1, 2, 2))
    assert hook_count(model) == 0


def test_run_outside_the_with_block_is_refused() -> None:
    with pytest.raises(RuntimeError, match="inside its `with` block"):
        ActivationCapture(Net(), ["after"]).run(torch.ones(1, 1, 2, 2))


def test_a_layer_replaced_after_it_was_found_is_found_again() -> None:
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    first = resolve_layer(model, LayerRef("0"))
    assert first == ("0", model[0]) and resolve_layer(model, LayerRef("0")) is first  # remembered
    model[0] = nn.Linear(2, 5)
    assert resolve_layer(model, LayerRef("0")) == ("0", model[0])
    del model[1]
    with pytest.raises(ValueError, match="unknown layer '1'"):
        resolve_layer(model, LayerRef("1"))
