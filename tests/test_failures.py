"""Bad input gets a clear error before any step, a run that goes wrong stops cleanly, and in every
case the model comes back as it was (weights, modes, requires_grad flags, no hooks)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import featvis
from featvis import objectives as O
from featvis import param
from featvis.hooks import LayerNotReachedError

if TYPE_CHECKING:
    from conftest import ModelState


class Shrinking(nn.Module):
    """conv 5x5 -> pool 2 -> conv 5x5 -> pool 2 -> linear: small inputs fail inside the network
    (``smallest_working_size`` finds the limit by trying every size)."""

    def __init__(self, channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 4, 5)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 4, 5)
        self.pool2 = nn.MaxPool2d(2)
        self.head = nn.Linear(4, 3)
        self.calls = 0
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        x = self.pool2(torch.relu(self.conv2(self.pool1(torch.relu(self.conv1(x))))))
        return self.head(x.mean(dim=(2, 3)))


def smallest_working_size(model: nn.Module, channels: int = 3) -> int:
    """The smallest square size the model accepts, by trying every size."""
    for size in range(1, 200):
        try:
            with torch.no_grad():
                model(torch.zeros(1, channels, size, size))
        except RuntimeError:
            continue
        return size
    raise AssertionError("no size works")


def quick(model: nn.Module, objective: object, **kwargs: object) -> featvis.RenderResult:
    kwargs.setdefault("steps", 3)
    if "param" not in kwargs:
        kwargs.setdefault("size", 32)
    return featvis.render_vis(model, objective, progress=False, **kwargs)  # type: ignore[arg-type]


# ---- clear errors, before any step ----------------------------------------------------------
def test_an_image_too_small_names_the_smallest_size_that_works() -> None:
    model = Shrinking()
    smallest = smallest_working_size(model)
    assert smallest > 8
    with pytest.raises(ValueError, match=r"the image \(8x8\) is too small for this model") as caught:
        quick(model, O.class_logit("head", 0), size=8)
    message = str(caught.value)
    assert f"The smallest size that works is {smallest}x{smallest}" in message
    assert "RuntimeError" in message and "render at that size or larger" in message
    assert isinstance(caught.value.__cause__, RuntimeError)  # the original error is kept
    quick(model, O.class_logit("head", 0), size=smallest)  # and that size really works


def test_a_non_square_image_too_small_keeps_its_aspect_ratio() -> None:
    model = Shrinking()
    with pytest.raises(ValueError, match=r"the image \(6x12\) is too small") as caught:
        quick(model, O.class_logit("head", 0), size=(6, 12))
    smallest = smallest_working_size(model)
    height = int(str(caught.value).split("works is ")[1].split("x")[0])
    width = math.ceil(height * 2)
    assert f"works is {height}x{width}" in str(caught.value)
    assert height == smallest  # the height is the binding side: width is twice as large


def test_wrong_number_of_image_channels_says_how_many_the_model_takes() -> None:
    model = Shrinking(channels=1)
    with pytest.raises(ValueError, match="the model expects 1-channel images") as caught:
        quick(model, O.class_logit("head", 0), param=param.image(32))
    assert "first convolution 'conv1' has in_channels=1" in str(caught.value)
    assert "but the image has 3" in str(caught.value)
    assert "featvis.param.image(..., channels=1)" in str(caught.value)


def test_without_a_param_the_image_takes_the_models_channel_count() -> None:
    for channels in (1, 4):
        model = Shrinking(channels=channels)
        assert quick(model, O.class_logit("head", 0)).images.shape == (1, channels, 32, 32)
        many = featvis.render_channels(model, "conv2", [0, 1], size=32, steps=2, progress=False)
        assert many.images.shape == (2, channels, 32, 32)
    declared = nn.Sequential(nn.Flatten(), nn.LazyLinear(2))
    declared.featvis_input_channels = 2  # a model without a convolution says so itself
    assert featvis.models.default_input_channels(declared) == 2


def test_an_objective_that_is_not_finite_at_the_start_is_refused() -> None:
    model = Shrinking()
    with pytest.raises(ValueError, match=r"is -inf on the start image, before any step") as caught:
        quick(model, lambda acts: torch.log(acts["head"][:, 0] * 0).mean())
    assert "guard divisions and logarithms" in str(caught.value)
    assert model.calls == 2  # finding the layer the function reads, then checking it: no step


def test_an_error_that_is_not_about_size_or_channels_is_passed_through() -> None:
    class Picky(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("the model refuses every input")

    with pytest.raises(RuntimeError, match="the model refuses every input"):
        quick(Picky().eval(), lambda acts: acts["input"].mean())


# ---- a run that turns non-finite stops and returns the last finite images ---------------------
def test_a_non_finite_objective_stops_warns_and_returns_the_last_finite_images() -> None:
    model = Shrinking()
    calls = {"n": 0}

    def breaks_at_step_21(acts: dict[str, torch.Tensor]) -> torch.Tensor:
        value = acts["head"][:, 0].mean()  # (the first call, which finds the layer, stops here)
        calls["n"] += 1  # call 1 is the checking pass, call k + 1 is step k
        return value * float("nan") if calls["n"] > 21 else value

    with pytest.warns(RuntimeWarning, match="became non-finite") as caught:
        result = quick(model, breaks_at_step_21, steps=40, seed=0, thresholds=[10, 30])
    message = str(caught[0].message)
    # step 21's loss is that of the images after 20 steps: those after 19 are the last with a finite loss
    # (step 20's), not those of the last check (step 16)
    assert "(nan) at step 21" in message and "returned the images of step 19" in message
    assert result.steps == 19 and result.losses.shape == (19,) and bool(torch.isfinite(result.losses).all())
    assert bool(torch.isfinite(result.images).all())
    assert sorted(result.snapshots) == [10]  # the snapshot of step 30 came after the breakdown
    # the images are those of step 19 of the same run without the breakdown (same seed, same 40-step schedule)
    calls["n"] = -1000
    clean = quick(model, breaks_at_step_21, steps=40, seed=0, thresholds=[19])
    assert torch.equal(result.images, clean.snapshots[19])


@pytest.mark.parametrize("breaks_at", [1, 2, 16, 17, 33])
def test_the_images_returned_are_always_those_before_the_first_non_finite_loss(breaks_at: int) -> None:
    model = Shrinking()
    calls = {"n": 0}

    def breaks(acts: dict[str, torch.Tensor]) -> torch.Tensor:
        value = acts["head"][:, 0].mean()
        calls["n"] += 1
        return value * float("nan") if calls["n"] > breaks_at else value

    with pytest.warns(RuntimeWarning, match=f"at step {breaks_at}; stopped"):
        result = quick(model, breaks, steps=40, seed=0)
    assert result.steps == max(breaks_at - 2, 0) and bool(torch.isfinite(result.images).all())


# ---- nothing changes, whatever happens ---------------------------------------------------------
class Exploding(Shrinking):
    def __init__(self, error: type[BaseException], after: int) -> None:
        super().__init__()
        self.error, self.after = error, after

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.calls >= self.after:
            self.calls += 1
            raise self.error("failure inside the model")
        return super().forward(x)


def with_an_unused_layer() -> nn.Module:
    model = Shrinking()
    model.unused = nn.Conv2d(4, 4, 1)  # registered, never called by forward
    return model


FAILURES: dict[str, tuple[Callable[[], nn.Module], Callable[[nn.Module], object], type[BaseException] | None]] = {
    "unknown layer": (Shrinking, lambda m: quick(m, O.channel("conv3", 0)), ValueError),
    "channel out of range": (Shrinking, lambda m: quick(m, O.channel("conv2", 4)), IndexError),
    "layer never reached": (with_an_unused_layer, lambda m: quick(m, "unused:0"), LayerNotReachedError),
    "wrong channels": (lambda: Shrinking(channels=1), lambda m: quick(m, "conv1:0", param=param.image(32)), ValueError),
    "image too small": (Shrinking, lambda m: quick(m, "head:0", size=8), ValueError),
    "steps not positive": (Shrinking, lambda m: quick(m, "conv1:0", steps=0), ValueError),
    "threshold past the end": (Shrinking, lambda m: quick(m, "conv1:0", thresholds=[4]), ValueError),
    "non-scalar objective": (Shrinking, lambda m: quick(m, lambda a: a["conv1"].mean(dim=1)), ValueError),
    "non-finite at the start": (Shrinking, lambda m: quick(m, lambda a: a["conv1"].mean() / 0), ValueError),
    "error inside the model": (lambda: Exploding(RuntimeError, 3), lambda m: quick(m, "conv1:0"), RuntimeError),
    "Ctrl-C inside the model": (lambda: Exploding(KeyboardInterrupt, 3), lambda m: quick(m, "conv1:0"), None),
    "non-finite mid-run": (
        Shrinking,
        lambda m: quick(m, lambda a: a["conv1"].mean() * (1 if m.calls < 20 else float("inf")), steps=40),
        None,
    ),
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_the_model_comes_back_unchanged_after_every_failure(case: str, model_state: type[ModelState]) -> None:
    make, run, error = FAILURES[case]
    model = make()
    model.conv2.weight.requires_grad_(False)  # a mixed set of flags to restore
    model.pool1.train()  # and a mixed set of modes
    before = model_state(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # training-mode, interruption and non-finite warnings
        if error is None:
            run(model)
        else:
            with pytest.raises(error):
                run(model)
    before.assert_unchanged()


@settings(max_examples=16, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    after=st.integers(min_value=0, max_value=8),
    error=st.sampled_from([KeyboardInterrupt, RuntimeError]),
    where=st.sampled_from(["forward", "backward"]),
)
def test_any_interruption_point_leaves_the_model_as_it_was(
    after: int, error: type[BaseException], where: str, model_state: type[ModelState]
) -> None:
    """Ctrl-C or an error at any forward pass (the checks, the probes, the steps) or inside any backward
    pass (a backward hook of the user's on the target layer): the model comes back as it was, the
    user's hook on it included."""
    model = Exploding(error, after if where == "forward" else 10**6)
    model.conv2.weight.requires_grad_(False)
    model.pool1.train()
    before = model_state(model)
    backward_calls = {"n": 0}

    def hook(module: nn.Module, grad_in: object, grad_out: object) -> None:
        backward_calls["n"] += 1
        if where == "backward" and backward_calls["n"] > after:
            raise error("failure in a backward hook")

    handle = model.conv1.register_full_backward_hook(hook)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            quick(model, "conv1:0", steps=6, seed=0)
        except error:
            pass
    assert list(model.conv1._backward_hooks.values()) == [hook] and not model.conv1._forward_pre_hooks
    handle.remove()
    before.assert_unchanged()


def test_running_out_of_memory_in_a_step_is_said_as_that(model_state: type[ModelState]) -> None:
    model = Exploding(torch.OutOfMemoryError, 4)  # the checking pass works; a later pass runs out
    before = model_state(model)
    with pytest.raises(MemoryError) as raised:
        quick(model, "conv1:0", steps=6, seed=0)
    message = str(raised.value)
    assert message.startswith("a step (the forward and backward passes) ran out of memory on 1 image(s) of 32x32")
    assert "Render fewer images at a time" in message and "too small" not in message
    assert isinstance(raised.value.__cause__, torch.OutOfMemoryError)
    before.assert_unchanged()


def test_a_layer_never_reached_is_reported_without_probing_other_sizes() -> None:
    model = with_an_unused_layer()
    with pytest.raises(LayerNotReachedError):
        quick(model, "unused:0")
    assert model.calls == 1  # the checking pass only, no probe images


# ---- a gradient of exactly zero: the picture cannot change, and featvis says so -------------------
def test_a_zero_gradient_warns_which_images_did_not_change() -> None:
    class ZeroHead(nn.Module):  # a classifier head initialised to zeros, as torchvision's ViT's
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.head = nn.Linear(4, 3)
            nn.init.zeros_(self.head.weight)
            with torch.no_grad():
                self.head.weight[1, 0] = 1.0  # class 1 alone depends on the image

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.conv(x).mean((2, 3)))

    model = ZeroHead().eval()
    objective = O.Objective.sum(O.class_logit("head", index, batch=index) for index in range(3))
    with pytest.warns(RuntimeWarning, match=r"images \[0, 2\] of the batch did not change in 4 steps: the gradient"):
        featvis.render_vis(model, objective, featvis.param.image(8, batch=3), steps=4, progress=False)
    with pytest.warns(RuntimeWarning, match=r"^the image did not change in 3 steps"):
        featvis.render_vis(model, O.class_logit("head", 2), size=8, steps=3, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        featvis.render_vis(model, O.class_logit("head", 1), size=8, steps=3, progress=False)


# ---- messages that say what is really wrong --------------------------------------------------------
def test_a_render_inside_inference_mode_or_no_grad_works() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
    with torch.inference_mode():
        inside = featvis.render_vis(model, "1:0", size=8, steps=3, seed=0, progress=False)
        channels = featvis.render_channels(model, "1", [0, 1], size=8, steps=2, progress=False)
        made_inside = param.image(8)
    outside = featvis.render_vis(model, "1:0", size=8, steps=3, seed=0, progress=False)
    assert torch.equal(inside.images, outside.images) and channels.images.shape == (2, 3, 8, 8)
    with pytest.raises(ValueError, match=r"made inside torch.inference_mode\(\), whose tensors can never be optimised"):
        featvis.render_vis(model, "1:0", made_inside, steps=2, progress=False)


def test_a_traced_models_inner_layer_is_explained() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.trace is deprecated, and still used
        traced = torch.jit.trace(model, torch.rand(1, 3, 8, 8))
    with pytest.raises(LayerNotReachedError, match=r"ran inside its TorchScript graph: a model made by torch\.jit"):
        featvis.render_vis(traced, "1:0", size=8, steps=2, progress=False)


def test_a_layer_used_only_in_training_is_explained() -> None:
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.extra = nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.conv(x)
            return self.extra(x) if self.training else x

    with pytest.raises(LayerNotReachedError, match=r"featvis runs the model in eval mode: .* `if self.training`"):
        featvis.render_vis(Branchy().eval(), "extra:0", size=8, steps=2, progress=False)


def test_running_out_of_memory_is_reported_as_that_not_as_a_size_problem() -> None:
    class Hungry(nn.Module):  # fails as a CPU allocator does when an input is too large for memory
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.tries = nn.Conv2d(3, 4, 3), 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.tries += 1
            if x.shape[0] * x.shape[-1] * x.shape[-2] > 100:
                raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")
            return self.conv(x)

    model = Hungry().eval()
    with pytest.raises(MemoryError, match=r"ran out of memory on 4 image\(s\) of 16x16 .* Render fewer images"):
        featvis.render_vis(model, "conv:0", param.image(16, batch=4), steps=2, progress=False)
    assert model.tries == 1  # no larger images were tried


def test_a_run_that_cannot_fit_in_memory_is_refused_before_its_first_step(monkeypatch: pytest.MonkeyPatch) -> None:
    from featvis import batching

    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3)).eval()
    monkeypatch.setattr(batching, "free_memory", lambda device: 3_000_000)  # 3 MB free
    steps: list[int] = []
    with pytest.raises(
        MemoryError,
        match=r"this run needs about .* MB \(32 images of 3x48x48, up to layer '2'\), .* a batch of \d+ fits",
    ):
        featvis.render_vis(
            model, "2:0", param.image(48, batch=32), steps=4, progress=False, stop=lambda n, _: steps.append(n)
        )
    assert steps == []  # not a single step
    measured: list[object] = []
    monkeypatch.setattr(batching, "free_memory", lambda device: 24 << 30)
    monkeypatch.setattr(batching, "saved_bytes", lambda *args: measured.append(args) or 0)
    featvis.render_vis(model, "2:0", param.image(48, batch=4), steps=2, progress=False)
    assert measured == []  # a small run is not measured
