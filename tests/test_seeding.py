"""One seed fixes a whole run: in any thread, the start image included, unless the start was chosen."""

from __future__ import annotations

import copy
import threading
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

import featvis
from featvis import param
from featvis.generators import RandomState, generator, run_generators


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1)).eval()


def render(model: nn.Module, p: nn.Module | None = None, seed: int | None = 3, **kwargs: object) -> Tensor:
    options: dict[str, object] = {"steps": 6, "progress": False, "seed": seed, **kwargs}
    if p is None:
        options.setdefault("size", 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return featvis.render_vis(model, "2:1", p, **options).images


def test_seeded_runs_in_threads_repeat_what_they_do_alone() -> None:
    """Four threads, two seeds, the default random transforms: each run's picture is the one it has
    when run alone (before per-run generators, the threads took each other's random numbers)."""
    model = small_model()
    alone = {seed: render(model, seed=seed, steps=12) for seed in (3, 4)}
    assert not torch.equal(alone[3], alone[4])
    got: dict[int, list[Tensor]] = {3: [], 4: []}
    errors: list[BaseException] = []

    def run(seed: int) -> None:
        try:
            images = render(copy.deepcopy(model), seed=seed, steps=12)
            got[seed].append(images)
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)

    workers = [threading.Thread(target=run, args=(seed,)) for seed in (3, 4, 3, 4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    for seed, pictures in got.items():
        assert len(pictures) == 2
        assert all(torch.equal(picture, alone[seed]) for picture in pictures)


def test_a_random_transform_of_yours_repeats_when_it_draws_from_the_run_generator() -> None:
    def shift(images: Tensor) -> Tensor:
        offset = torch.randint(-2, 3, (2,), generator=generator(images.device)).tolist()
        return images.roll(offset, dims=(2, 3))

    model = small_model()
    first = render(model, transforms=[shift])
    assert torch.equal(render(model, transforms=[shift]), first)
    assert not torch.equal(render(model, transforms=[shift], seed=4), first)


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(min_value=-(2**70), max_value=2**70))
def test_one_seed_fixes_the_start_image_whichever_way_the_param_is_made(seed: int) -> None:
    model = small_model()
    by_size = render(model, seed=seed)
    assert torch.equal(render(model, param.image(16), seed=seed), by_size)  # drawn anew from the seed
    assert torch.equal(render(model, param.image(16, seed=seed), seed=seed), by_size)


def test_a_start_that_was_chosen_is_kept() -> None:
    model = small_model()
    from_seed_3 = render(model, param.image(16), seed=3)

    seeded = param.image(16, seed=7)  # seeded by its maker
    assert not torch.equal(render(model, seeded, seed=3), from_seed_3)
    assert seeded.start_seed == 7

    photo = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1
    from_photo = param.image(16, init=photo)
    assert not from_photo.random_start_untouched()
    steps = {"steps": 1, "transforms": [], "redirected_relu": 0}
    first_loss = featvis.render_vis(model, "2:1", from_photo, seed=3, progress=False, **steps).losses[0]
    with torch.no_grad():
        assert float(first_loss) == pytest.approx(-float(model(param.image(16, init=photo)())[:, 1].mean()), abs=1e-5)

    looked_at = param.image(16)
    start = looked_at().detach().clone()  # seen: the run starts from it
    assert not looked_at.random_start_untouched()
    first_loss = featvis.render_vis(model, "2:1", looked_at, seed=3, progress=False, **steps).losses[0]
    with torch.no_grad():
        assert float(first_loss) == pytest.approx(-float(model(start)[:, 1].mean()), abs=1e-5)

    changed = param.image(16)
    with torch.no_grad():
        changed.basis.spectrum.mul_(3)  # changed in place, without a call
    assert not changed.random_start_untouched()
    assert not torch.equal(render(model, changed, seed=3), from_seed_3)


FACTORIES = {
    "fourier": lambda **kw: param.image(12, batch=2, **kw),
    "pixel": lambda **kw: param.image(12, batch=2, basis="pixel", **kw),
    "laplacian": lambda **kw: param.laplacian_pyramid(12, batch=2, **kw),
    "lowres": lambda **kw: param.lowres_image(12, batch=2, **kw),
    "maco": lambda **kw: param.maco(12, batch=2, **kw),
    "interpolation": lambda **kw: param.interpolation_image(12, frames=3, **kw),
}


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_every_built_in_basis_draws_its_start_from_a_seed(name: str) -> None:
    make = FACTORIES[name]
    torch.manual_seed(0)
    state = torch.get_rng_state()
    with torch.no_grad():
        three = make(seed=3)()
        assert torch.equal(torch.get_rng_state(), state)  # the caller's random state is left alone
        assert torch.equal(make(seed=3)(), three) and not torch.equal(make(seed=4)(), three)
        drawn = make()
        assert drawn.random_start_untouched()
        drawn.draw_start(3)
        assert torch.equal(drawn(), three)


def test_a_basis_without_reset_parameters_keeps_its_start_and_says_why_it_cannot_draw_one() -> None:
    class Flat(nn.Module):
        def __init__(self, batch: int, channels: int, height: int, width: int) -> None:
            super().__init__()
            self.values = nn.Parameter(torch.randn(batch, channels, height, width))

        def forward(self) -> Tensor:
            return self.values

    made = param.image(8, basis=Flat)
    assert not made.random_start_untouched()
    with pytest.raises(TypeError, match="Flat has no reset_parameters"):
        made.draw_start(1)
    assert param.image(8, basis=Flat, seed=2).start_seed == 2


def test_render_channels_repeats_with_a_param_of_yours() -> None:
    model = small_model()

    def make(n: int) -> nn.Module:
        return param.image(16, batch=n)

    def run() -> Tensor:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return featvis.render_channels(
                model, "2", [0, 1, 2], batch_size=2, param=make, steps=4, seed=5, progress=False
            ).images

    assert torch.equal(run(), run())


def test_the_run_generator_is_this_threads_and_only_inside_a_run() -> None:
    assert generator("cpu") is None
    seen: list[torch.Generator | None] = []
    with run_generators(1) as outer:
        assert generator("cpu") is outer.get("cpu")
        with run_generators(2) as inner:
            assert generator("cpu") is inner.get("cpu")
            thread = threading.Thread(target=lambda: seen.append(generator("cpu")))
            thread.start()
            thread.join()
        assert generator("cpu") is outer.get("cpu")
    assert seen == [None] and generator("cpu") is None


def test_a_snapshot_repeats_the_global_and_the_run_draws() -> None:
    with run_generators(0):
        saved = RandomState([torch.device("cpu")])
        first = torch.rand(3), torch.rand(3, generator=generator("cpu"))
        saved.restore()
        again = torch.rand(3), torch.rand(3, generator=generator("cpu"))
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
