"""What makes a step cheap, checked for behaviour (timings live in benchmarks/speed.py).

- the opt-in speed options (channels-last, autocast, torch.compile) reach the same objective
  values as the default path, within the tolerance stated in docs/benchmarks.md, and leave the
  model as it was;
- the loss history stays on the device: no per-step synchronisation;
- render_channels picks a batch that fits the memory it is given, and what it holds at once
  grows with the batch, not with the number of units.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import pytest
import torch
from torch import nn

import featvis
from featvis import objectives as O
from featvis.batching import CPU_BATCH_LIMIT, auto_batch_size, saved_bytes
from featvis.hooks import ActivationCapture
from featvis.state import flushing_denormals

if TYPE_CHECKING:
    from conftest import ModelState

#: an option's pictures must reach at least this share of the default's objective value
OPTION_TOLERANCE = 0.9

UNITS = [0, 3, 5, 9]


def layer2_means(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Each image's mean activation of its own layer2 channel, in float32, without transforms."""
    pre = featvis.models.default_preprocess(model)
    with ActivationCapture(model, ["layer2"]) as capture, torch.no_grad():
        acts = capture.run(pre(images))["layer2"]
    return torch.stack([acts[i, unit].mean() for i, unit in enumerate(UNITS)])


def render_units(model: nn.Module, **options: Any) -> torch.Tensor:
    objective = O.Objective.sum(O.channel("layer2", unit, batch=i) for i, unit in enumerate(UNITS))
    torch.manual_seed(0)
    image = featvis.param.image(32, batch=len(UNITS))
    result = featvis.render_vis(model, objective, image, steps=32, seed=0, progress=False, **options)
    return layer2_means(model, result.images)


@pytest.fixture(scope="module")
def default_means(resnet20: nn.Module) -> torch.Tensor:
    return render_units(resnet20)


@pytest.mark.parametrize(
    "options",
    [
        {"channels_last": True},
        {"autocast": torch.bfloat16},
        pytest.param({"compile": {"backend": "aot_eager"}}, marks=pytest.mark.slow),
        pytest.param({"compile": {"backend": "aot_eager"}, "channels_last": True}, marks=pytest.mark.slow),
    ],
    ids=["channels-last", "autocast-bf16", "compile", "compile+channels-last"],
)
def test_speed_options_reach_the_same_objective_values(
    resnet20: nn.Module, default_means: torch.Tensor, model_state: type[ModelState], options: dict[str, Any]
) -> None:
    state = model_state(resnet20)
    weights = {name: p.data_ptr() for name, p in resnet20.named_parameters()}
    means = render_units(resnet20, **options)
    state.assert_unchanged()
    # channels-last put back the very same weight tensors, in their own layout
    assert {name: p.data_ptr() for name, p in resnet20.named_parameters()} == weights
    assert all(p.is_contiguous() for p in resnet20.parameters())
    start = layer2_means(resnet20, torch.full((len(UNITS), 3, 32, 32), 0.5))
    assert bool((default_means > start + 0.5).all())  # the default run got somewhere
    assert bool((means >= OPTION_TOLERANCE * default_means).all()), (means, default_means)


def test_compiled_runs_repeat_eager_runs_call_after_call() -> None:
    # each render_vis compiles its own step; a graph kept from an earlier call must not leak into a
    # later one (another seed, another unit): with the eager backend the numbers are identical
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3)).eval()
    for seed in (0, 1):
        for unit in ("0:1", "2:3"):
            eager = featvis.render_vis(model, unit, size=12, steps=5, seed=seed, progress=False)
            compiled = featvis.render_vis(
                model, unit, size=12, steps=5, seed=seed, progress=False, compile={"backend": "eager"}
            )
            assert torch.equal(eager.images, compiled.images) and torch.equal(eager.losses, compiled.losses)


def test_speed_option_errors() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3)).eval()
    with pytest.raises(ValueError, match=r"autocast must be torch\.bfloat16, torch\.float16 or None"):
        featvis.render_vis(model, "0:0", size=8, steps=1, autocast=torch.float64, progress=False)
    with pytest.raises(TypeError, match="compile must be True, False or a dict"):
        featvis.render_vis(model, "0:0", size=8, steps=1, compile="yes", progress=False)  # type: ignore[arg-type]


def test_the_loss_is_read_only_at_checks_not_every_step(monkeypatch: pytest.MonkeyPatch) -> None:
    # Reading a loss (item, bool, float) waits for the device; the loop may do it only when it looks
    # for a non-finite loss (every 16 steps, and at the end). SGD: Adam reads its own step counter,
    # a CPU tensor, every step, which waits for nothing. The redirected ReLUs of the first steps ask
    # on a CPU only (where it waits for nothing) whether an image is blocked: they are off here.
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
    reads = []
    original_item, original_bool = torch.Tensor.item, torch.Tensor.__bool__

    def item(self: torch.Tensor) -> Any:
        reads.append("item")
        return original_item(self)

    def as_bool(self: torch.Tensor) -> bool:
        reads.append("bool")
        return original_bool(self)

    objective = O.channel("1", 0)
    featvis.render_vis(model, objective, size=12, steps=2, optimizer=torch.optim.SGD, progress=False)
    monkeypatch.setattr(torch.Tensor, "item", item)
    monkeypatch.setattr(torch.Tensor, "__bool__", as_bool)
    featvis.render_vis(
        model, objective, size=12, steps=64, optimizer=torch.optim.SGD, progress=False, redirected_relu=0
    )
    monkeypatch.undo()
    assert len(reads) <= 64 // 16 + 4, reads


@pytest.mark.parametrize("callers_setting", [False, True])
def test_denormals_are_flushed_during_a_cpu_run_and_the_setting_comes_back(callers_setting: bool) -> None:
    if not torch.set_flush_denormal(callers_setting):
        pytest.skip("this CPU cannot flush denormals")
    try:
        assert flushing_denormals() is callers_setting
        model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
        during: list[bool] = []
        model.register_forward_pre_hook(lambda module, args: during.append(flushing_denormals()))
        featvis.render_vis(model, "1:0", size=8, steps=3, progress=False)
        assert during and all(during)
        assert flushing_denormals() is callers_setting
    finally:
        torch.set_flush_denormal(False)


def per_image_bytes(model: nn.Module, layer: str, size: int) -> int:
    """What one more image adds to the tensors a forward pass keeps for backward."""
    one, two = (saved_bytes(model, layer, n, 3, (size, size), nn.Identity()) for n in (1, 2))
    return two - one


def test_saved_memory_grows_with_the_batch() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU()).eval()
    sizes = [saved_bytes(model, "3", n, 3, (20, 20), nn.Identity()) for n in (1, 2, 4)]
    per_image = sizes[1] - sizes[0]
    assert per_image > 0 and sizes[2] - sizes[1] == 2 * per_image


def test_auto_batch_size_fits_the_memory_it_is_given() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.ReLU()).eval()
    per_image = per_image_bytes(model, "3", 20)
    for images in (1, 3, 7):
        memory = int(2 * 3.0 * per_image * images) + 1  # half of it for 3x the saved bytes of `images` images
        assert auto_batch_size(model, "3", size=20, memory=memory, preprocess=False) == images
    assert auto_batch_size(model, "3", size=20, memory=1, preprocess=False) == 1
    with torch.no_grad():  # the probes measure what a step would keep, whatever the caller's grad mode
        assert auto_batch_size(model, "3", size=20, memory=int(2 * 3.0 * per_image * 3) + 1, preprocess=False) == 3
    assert auto_batch_size(model, "3", size=20, memory=2**40, preprocess=False) == CPU_BATCH_LIMIT
    # a deeper target keeps more for the backward pass: fewer images fit
    memory = int(2 * 3.0 * per_image * 7)
    assert auto_batch_size(model, "1", size=20, memory=memory, preprocess=False) > 7


def test_render_channels_holds_one_batch_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    model = nn.Sequential(nn.Conv2d(3, 12, 3), nn.ReLU()).eval()
    seen: list[int] = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0]))
    # the batch is picked from the memory: pretend that only three images fit
    per_image = per_image_bytes(model, "1", 10)
    monkeypatch.setattr(featvis.batching, "free_memory", lambda device: int(2 * 3.0 * per_image * 3) + 1)
    for units in (range(6), range(12)):
        seen.clear()
        result = featvis.render_channels(model, "1", list(units), size=10, steps=2, progress=False, preprocess=False)
        assert result.units == list(units) and result.images.device.type == "cpu"
        assert max(seen) == 3  # whatever the number of units, at most one batch of three at a time
    seen.clear()
    featvis.render_channels(model, "1", list(range(5)), batch_size=2, size=10, steps=2, progress=False)
    assert max(seen) == 2


@pytest.mark.cuda
def test_a_cuda_run_waits_for_the_device_only_at_its_checks() -> None:
    # CUDA's sync debug mode warns at every operation that makes the host wait for the device. Runs of 17
    # and of 31 steps look for a non-finite loss equally often (at step 16 and at the end), so any wait
    # that comes with every step shows up as more warnings in the longer run.
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3)).eval().cuda()

    def waits(steps: int) -> int:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                featvis.render_vis(model, O.channel("2", 1), size=24, steps=steps, progress=False, seed=0)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        return sum("synchroniz" in str(w.message) for w in caught)

    waits(17)  # first calls: allocations, caches
    assert waits(31) == waits(17)
