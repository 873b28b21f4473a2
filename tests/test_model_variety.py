"""render_vis on many kinds of models.

Covered here: grayscale and 4-channel inputs; non-square, odd and tiny image sizes;
layers whose output is a tuple (``nn.MultiheadAttention``) or a dict, targeted with
selectors; in-place ReLUs (module and functional) after the targeted layer; models
left in training mode (with BatchNorm and Dropout); float16 and bfloat16 models on
the CPU; ``nn.DataParallel`` and ``torch.compile`` wrappers; torchvision's ViT-B/16
with a token-sequence (N, T, D) MLP target; and, where CUDA exists, image parameters
following the model onto the GPU.

Every test also checks that the model comes back as it was: same weights and
buffers, same train/eval flags and ``requires_grad`` flags, and no hooks left.
"""

from __future__ import annotations

import copy
import re
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
import torch
from torch import Tensor, nn

import featvis
from featvis import objectives as O
from featvis import param

if TYPE_CHECKING:
    from conftest import ModelState


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """One intra-op thread: these models are tiny, and on a busy machine two spinning threads make
    every small op about 50 times slower (0.02 s against 1 s for an 8-step render)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---- helpers ------------------------------------------------------------------------
class Probe(nn.Module):
    """Identity that records, at each call, the mode it runs in and what it receives."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict[str, Any]] = []

    def forward(self, x: Tensor) -> Tensor:
        self.seen.append(
            {
                "training": self.training,
                "shape": tuple(x.shape),
                "dtype": x.dtype,
                "device": x.device,
                "min": float(x.detach().min()),
                "max": float(x.detach().max()),
            }
        )
        return x


class ConvNet(nn.Module):
    """probe -> conv -> bn -> relu -> conv2 -> pool -> head; works at any size from 5x5."""

    def __init__(self, channels: int = 3, width: int = 6) -> None:
        super().__init__()
        self.probe = Probe()
        self.conv = nn.Conv2d(channels, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=2)
        self.head = nn.Linear(width, 4)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.relu(self.bn(self.conv(self.probe(x))))
        return self.head(self.conv2(x).mean(dim=(2, 3)))


def made(model: nn.Module, seed: int = 0) -> nn.Module:
    """``model`` with weights drawn from ``seed`` and BatchNorm statistics that are not the identity."""
    torch.manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.uniform_(module.bias, -0.1, 0.1)
        elif isinstance(module, (nn.Conv2d, nn.Linear)):
            module.reset_parameters()
    return model.eval()


def render(model: nn.Module, objective: Any, p: nn.Module | None = None, **kwargs: Any) -> featvis.RenderResult:
    kwargs.setdefault("steps", 8)
    kwargs.setdefault("seed", 0)
    return featvis.render_vis(model, objective, p, progress=False, **kwargs)


def assert_images(result: featvis.RenderResult, shape: tuple[int, ...]) -> None:
    assert result.images.shape == shape
    assert result.images.dtype == torch.float32 and result.images.device.type == "cpu"
    assert bool(torch.isfinite(result.images).all())
    assert float(result.images.min()) >= 0.0 and float(result.images.max()) <= 1.0
    assert bool(torch.isfinite(result.losses).all())


def assert_rises(result: featvis.RenderResult) -> None:
    first, last = result.losses[0].item(), result.losses[-1].item()
    assert last < first, result.losses.tolist()


# ---- 1. channels of the input -----------------------------------------------------------
@pytest.mark.parametrize("channels", [1, 4])
def test_grayscale_and_four_channel_inputs_render_and_rise(channels: int, model_state: type[ModelState]) -> None:
    model = made(ConvNet(channels=channels))
    before = model_state(model)
    torch.manual_seed(1)
    p = param.image(14, 10, channels=channels)
    result = render(model, O.channel("bn", 2), p, steps=16)
    assert_images(result, (1, channels, 10, 14))
    assert_rises(result)
    # the model saw images of its own channel count, at the requested size, every step
    assert {s["shape"] for s in model.probe.seen} == {(1, channels, 10, 14)}
    assert len(model.probe.seen) == 1 + 16  # the checking pass, then one per step
    before.assert_unchanged()


# ---- 2. image sizes -----------------------------------------------------------------------
@pytest.mark.parametrize(("height", "width"), [(31, 17), (15, 40), (8, 8)])
def test_non_square_odd_and_tiny_sizes(height: int, width: int, model_state: type[ModelState]) -> None:
    model = made(ConvNet())
    before = model_state(model)
    by_size = render(model, O.channel("conv2", 1), size=(height, width), steps=4, thresholds=[1])
    assert_images(by_size, (1, 3, height, width))
    assert {s["shape"] for s in model.probe.seen} == {(1, 3, height, width)}
    assert not torch.allclose(by_size.snapshots[1], by_size.images)  # steps 2 to 4 changed the image
    torch.manual_seed(2)
    p = param.image(width, height, batch=2, fft=height != 8)  # the tiny one with the pixel basis
    start = p().detach().clone()
    by_param = render(model, O.class_logit("head", 3), p, steps=4, thresholds=[1])
    assert_images(by_param, (2, 3, height, width))
    assert by_param.snapshots[1].shape == (2, 3, height, width)
    assert not torch.allclose(by_param.images, start)  # the image did change
    before.assert_unchanged()


# ---- 3. tuple and dict outputs ------------------------------------------------------------
class AttentionNet(nn.Module):
    """Patches -> tokens -> self-attention (returns (output, weights)) -> head."""

    def __init__(self) -> None:
        super().__init__()
        self.patches = nn.Conv2d(3, 8, 4, stride=4)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.patches(x).flatten(2).transpose(1, 2)  # (N, T, D)
        out, _ = self.attn(tokens, tokens, tokens)
        return self.head(out.mean(dim=1))


class Features(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 3, padding=1)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        y = self.conv(x)
        return {"feat": torch.tanh(y), "aux": y.mean(dim=(2, 3))}


class DictNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = Features()
        self.head = nn.Linear(5, 2)

    def forward(self, x: Tensor) -> Tensor:
        out = self.block(x)
        return self.head(out["feat"].mean(dim=(2, 3)) + out["aux"])


def test_tuple_output_of_multihead_attention_is_selected(model_state: type[ModelState]) -> None:
    model = made(AttentionNet())
    before = model_state(model)
    later: list[int] = []
    handle = model.head.register_forward_hook(lambda *args: later.append(1))
    torch.manual_seed(3)
    p = param.image(16)
    start = p().detach().clone()
    result = render(model, O.channel("attn[0]", 1), p, steps=12, transforms=[])
    assert_images(result, (1, 3, 16, 16))
    assert_rises(result)
    assert later == []  # stopped right after the attention layer
    handle.remove()
    # the first step's objective is channel 1 of the attention output on the starting image
    with torch.no_grad():
        tokens = model.patches(start).flatten(2).transpose(1, 2)
        expected = model.attn(tokens, tokens, tokens)[0][:, :, 1].mean()
    assert torch.allclose(-result.losses[0], expected, atol=1e-5)
    # the attention weights, (N, T, T), are the second element
    weights = render(model, O.neuron("attn[1]", 0), param.image(16), steps=2, transforms=[])
    assert_images(weights, (1, 3, 16, 16))
    before.assert_unchanged()


def test_dict_output_is_selected_by_key(model_state: type[ModelState]) -> None:
    model = made(DictNet())
    before = model_state(model)
    result = render(model, O.channel("block['feat']", 4), size=12, steps=12, transforms=[])
    assert_images(result, (1, 3, 12, 12))
    assert_rises(result)
    aux = render(model, O.class_logit('block["aux"]', 0), size=12, steps=12, transforms=[])
    assert_rises(aux)
    with pytest.raises(ValueError, match=r"outputs a dict with keys \['feat', 'aux'\], not a tensor"):
        render(model, O.channel("block", 0), size=12, steps=1)
    before.assert_unchanged()


# ---- 4. in-place operations after the target ------------------------------------------------
class ModuleInplace(nn.Module):
    """conv -> bn (target) -> ReLU(inplace=True) -> conv2 -> ReLU(inplace=True)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(6, 4, 3)
        self.relu2 = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu2(self.conv2(self.relu(self.bn(self.conv(x)))))


class FunctionalInplace(ModuleInplace):
    """The same network, with ``x.relu_()`` written in forward() instead of ReLU modules."""

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn(self.conv(x))
        y.relu_()
        return self.conv2(y).relu_()


def clean_values(model: ModuleInplace, image: Tensor) -> tuple[Tensor, Tensor]:
    """bn and conv2 outputs computed without any in-place operation."""
    with torch.no_grad():
        bn = model.bn(model.conv(image))
        return bn.clone(), model.conv2(torch.relu(bn))


@pytest.mark.parametrize("kind", [ModuleInplace, FunctionalInplace])
@pytest.mark.parametrize("both", [False, True], ids=["bn-only", "bn-and-conv2"])
def test_inplace_relu_after_the_target(kind: type[ModuleInplace], both: bool, model_state: type[ModelState]) -> None:
    model = made(kind())
    before = model_state(model)
    # channel 0 of bn is mostly negative on grey images: an in-place ReLU would visibly clip it
    objective = O.channel("bn", 0) - O.channel("bn", 1)
    if both:
        objective = objective + O.channel("conv2", 2)
    seen: list[Tensor] = []

    def record(acts: featvis.hooks.Activations) -> Tensor:
        seen.append(acts["bn"].detach().clone())
        return acts["bn"].sum() * 0

    objective = objective + featvis.Objective(record, "record", layers=["bn"])
    torch.manual_seed(4)
    p = param.image(12)
    start = p().detach().clone()
    result = render(model, objective, p, steps=6, transforms=[], preprocess=False)
    assert_images(result, (1, 3, 12, 12))
    assert_rises(result)
    bn, conv2 = clean_values(model, start)
    assert float(bn[:, 0].min()) < 0  # the ReLU really would change what is read
    expected = bn[:, 0].mean() - bn[:, 1].mean() + (conv2[:, 2].mean() if both else 0)
    assert torch.allclose(-result.losses[0], expected, atol=1e-5), (result.losses[0], expected)
    assert torch.allclose(seen[0], bn, atol=1e-6)  # the checking pass saw the un-clipped values
    assert torch.allclose(seen[1], bn, atol=1e-6)  # and so did the first step
    before.assert_unchanged()


# ---- 5. training mode ---------------------------------------------------------------------
class TrainNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.frozen = nn.BatchNorm2d(6)
        self.drop = nn.Dropout(0.5)
        self.probe = Probe()
        self.head = nn.Conv2d(6, 3, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.probe(self.drop(torch.relu(self.frozen(self.bn(self.conv(x)))))))


TRAINING_WARNING = "TrainNet is in training mode; featvis renders in eval mode and puts training mode back afterwards"


@pytest.mark.parametrize("how", ["render_vis", "render_channels"])
def test_training_mode_warns_once_renders_in_eval_and_is_restored(how: str, model_state: type[ModelState]) -> None:
    model = made(TrainNet())
    model.train()
    model.frozen.eval()  # a submodule the user keeps in eval mode inside a training model
    model.conv.weight.requires_grad_(False)
    before = model_state(model)
    torch.manual_seed(5)
    p = param.image(10)
    start = p().detach().clone()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if how == "render_vis":
            result = render(model, O.channel("head", 1), p, steps=4, transforms=[])
        else:
            result = featvis.render_channels(
                model, "head", batch_size=2, size=10, steps=4, transforms=[], seed=0, progress=False
            )
    messages = [str(w.message) for w in caught]
    assert messages == [TRAINING_WARNING]
    assert caught[0].category is UserWarning
    assert caught[0].filename == __file__  # attributed to the caller's line
    assert model.probe.seen and not any(s["training"] for s in model.probe.seen)
    assert model.training and model.bn.training and model.drop.training and not model.frozen.training
    before.assert_unchanged()  # includes BatchNorm running statistics and num_batches_tracked
    if how == "render_vis":
        # dropout was off and BatchNorm used its running statistics: the first step's value is the eval-mode one
        model.eval()
        with torch.no_grad():
            expected = model(start)[:, 1].mean()
        model.train()
        model.frozen.eval()
        assert torch.allclose(-result.losses[0], expected, atol=1e-5)
    else:
        assert result.images.shape == (3, 3, 10, 10) and result.units == [0, 1, 2]


# ---- 6. half precision on the CPU ---------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_model_on_cpu(dtype: torch.dtype, model_state: type[ModelState]) -> None:
    model = made(ConvNet()).to(dtype)
    before = model_state(model)
    torch.manual_seed(6)
    p = param.image(12)
    result = render(model, O.channel("bn", 3), p, steps=12)
    assert_images(result, (1, 3, 12, 12))
    assert_rises(result)
    # the model is fed images of its own dtype, on its device; the parameterisation stays float32
    assert {(s["dtype"], s["device"].type) for s in model.probe.seen} == {(dtype, "cpu")}
    assert all(t.dtype == torch.float32 and t.device.type == "cpu" for t in p.parameters())
    assert result.losses.dtype == torch.float32
    before.assert_unchanged()


# ---- 7. wrappers: DataParallel and torch.compile ---------------------------------------------
def test_data_parallel_wrapper(model_state: type[ModelState]) -> None:
    inner = made(ConvNet())
    inner.featvis_input_size = 11
    inner.featvis_normalization = ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    wrapped = nn.DataParallel(inner).eval()  # a new wrapper is in training mode: .eval() it too
    assert "module.conv" in featvis.layer_names(wrapped)
    before = model_state(wrapped)
    result = featvis.render_vis(wrapped, "module.bn:2", steps=8, seed=0, progress=False, transforms=[])
    assert_images(result, (1, 3, 11, 11))  # the inner model's input size
    assert_rises(result)
    seen = inner.probe.seen
    assert {s["shape"] for s in seen} == {(1, 3, 11, 11)}
    assert min(s["min"] for s in seen) < 0  # the inner model's normalisation maps [0, 1] to [-2, 2]
    assert max(s["max"] for s in seen) <= 2.0 + 1e-6 and min(s["min"] for s in seen) >= -2.0 - 1e-6
    by_module = render(wrapped, O.channel(inner.bn, 2), steps=2, transforms=[])
    assert by_module.images.shape == (1, 3, 11, 11)
    # the inner model's own names work too, and a fresh wrapper (training mode) around an eval model is quiet
    fresh = nn.DataParallel(inner)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        by_inner_name = featvis.render_vis(fresh, "bn:2", steps=8, seed=0, progress=False, transforms=[])
    assert torch.allclose(by_inner_name.losses, result.losses)
    assert fresh.training
    before.assert_unchanged()


@pytest.fixture
def dynamo_reset() -> Iterator[None]:
    yield
    torch._dynamo.reset()


@pytest.mark.slow
def test_torch_compile_wrapper(dynamo_reset: None, model_state: type[ModelState]) -> None:
    inner = made(ConvNet())
    inner.featvis_input_size = 10
    compiled = torch.compile(inner, backend="eager")  # inductor needs ~25 s to compile on this CPU
    names = featvis.layer_names(compiled)
    assert names[0] == "_orig_mod" and "_orig_mod.bn" in names
    before = model_state(compiled)
    later: list[int] = []
    handle = inner.conv2.register_forward_hook(lambda *args: later.append(1))
    result = featvis.render_vis(compiled, "_orig_mod.bn:2", steps=8, seed=0, progress=False, transforms=[])
    assert_images(result, (1, 3, 10, 10))  # featvis_input_size read through the wrapper
    assert_rises(result)
    assert later == []  # early stopping works under dynamo too
    by_module = featvis.render_vis(compiled, O.channel(inner.bn, 2), steps=8, seed=0, progress=False, transforms=[])
    assert torch.allclose(by_module.losses, result.losses)
    handle.remove()
    # the name in the uncompiled model works on the wrapper too
    by_inner_name = featvis.render_vis(compiled, "bn:2", steps=8, seed=0, progress=False, transforms=[])
    assert torch.allclose(by_inner_name.losses, result.losses)
    with pytest.raises(ValueError, match=re.escape("unknown layer 'bm' in OptimizedModule. Closest names:")) as info:
        featvis.render_vis(compiled, "bm:2", steps=1, progress=False)
    assert "'_orig_mod.bn'" in str(info.value)
    before.assert_unchanged()


# ---- 8. torchvision ViT --------------------------------------------------------------------
@pytest.mark.slow
def test_vit_b_16_mlp_neuron_stops_after_the_first_encoder_layer(model_state: type[ModelState]) -> None:
    from torchvision.models import vit_b_16

    torch.manual_seed(7)
    model = vit_b_16(weights=None).eval()
    layer = "encoder.layers.encoder_layer_0.mlp"
    assert layer in featvis.layer_names(model)
    before = model_state(model)
    inputs: list[Tensor] = []
    fired: list[str] = []
    handles = [
        model.conv_proj.register_forward_pre_hook(lambda m, args: inputs.append(args[0].detach())),
        model.encoder.layers.encoder_layer_1.register_forward_hook(lambda *args: fired.append("layer 1")),
        model.heads.register_forward_hook(lambda *args: fired.append("heads")),
    ]
    # token 98 of 197, feature 5 of 768, on the (N, T, D) output of the first MLP (by default a neuron is
    # at the centre patch, token 1 + 7 * 14 + 7 = 106, after the class token)
    result = featvis.render_vis(model, O.neuron(layer, 5, x=98), steps=2, seed=0, progress=False)
    for handle in handles:
        handle.remove()
    assert fired == []
    assert_images(result, (1, 3, 224, 224))  # torchvision's default size
    assert all(x.shape == (1, 3, 224, 224) for x in inputs) and len(inputs) == 3
    assert min(float(x.min()) for x in inputs) < -0.5  # ImageNet normalisation was applied
    assert_rises(result)
    before.assert_unchanged()


# ---- 9. CUDA -------------------------------------------------------------------------------
@pytest.mark.cuda
def test_image_parameters_follow_the_model_to_cuda(model_state: type[ModelState]) -> None:
    model = made(ConvNet()).cuda()
    before = model_state(model)
    torch.manual_seed(8)
    p = param.image(12)
    result = render(model, O.channel("bn", 1), p, steps=8, transforms=[])
    assert all(t.device.type == "cuda" for t in p.parameters())
    assert all(t.device.type == "cuda" for t in p.buffers())
    assert {s["device"].type for s in model.probe.seen} == {"cuda"}
    assert_images(result, (1, 3, 12, 12))  # results come back on the CPU
    assert_rises(result)
    before.assert_unchanged()
    half = copy.deepcopy(model).half()
    half.probe.seen.clear()
    half_result = render(half, O.channel("bn", 1), size=12, steps=4, transforms=[])
    assert_images(half_result, (1, 3, 12, 12))
    assert {(s["dtype"], s["device"].type) for s in half.probe.seen} == {(torch.float16, "cuda")}
