"""EvolutionStrategy: it finds known optima without gradients, repeats, and renders black-box models."""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
from scipy.stats import rankdata
from torch import nn

import featvis
from featvis import objectives as O
from featvis.optim import EvolutionStrategy, centred_ranks

if TYPE_CHECKING:
    from conftest import ModelState


# ---- helpers ------------------------------------------------------------------------
def quadratic(parameters: list[nn.Parameter], targets: list[torch.Tensor], curvatures: list[torch.Tensor]):
    """``sum c * (x - t)**2``: its minimum is at ``x = t``, its gradient ``2 c (x - t)``."""

    def loss() -> torch.Tensor:
        return sum(((c * (x - t) ** 2).sum() for x, t, c in zip(parameters, targets, curvatures)), torch.zeros(()))

    return loss


def quadratic_problem(seed: int = 0) -> tuple[list[nn.Parameter], list[torch.Tensor], list[torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    shapes = [(3, 5, 2), (7,)]  # any shapes: a spectrum-like (..., 2) tensor and a vector
    parameters = [nn.Parameter(torch.zeros(shape)) for shape in shapes]
    targets = [torch.randn(shape, generator=generator) for shape in shapes]
    curvatures = [0.5 + torch.rand(shape, generator=generator) for shape in shapes]  # 0.5 to 1.5
    return parameters, targets, curvatures


def distance(parameters: list[nn.Parameter], targets: list[torch.Tensor]) -> float:
    return max(float((x.detach() - t).abs().max()) for x, t in zip(parameters, targets))


def run_quadratic(
    steps: int, seed: int, noise: float = 0.0, final_steps: int = 0, **options: object
) -> tuple[list[nn.Parameter], list[torch.Tensor], list[float]]:
    """``steps`` steps at the given lr, then ``final_steps`` at lr 0.01: Adam's steps are about lr long
    whatever the estimate's size, so a smaller lr lets the parameters settle closer to the optimum.
    ``noise`` adds that much standard normal noise, drawn at each closure call, to the loss."""
    parameters, targets, curvatures = quadratic_problem()
    opt = EvolutionStrategy(parameters, **options)  # type: ignore[arg-type]
    clean = quadratic(parameters, targets, curvatures)
    torch.manual_seed(seed)
    returned = [float(opt.step(lambda: clean() + noise * torch.randn(()))) for _ in range(steps)]
    for group in opt.param_groups:
        group["lr"] = 0.01
    returned += [float(opt.step(lambda: clean() + noise * torch.randn(()))) for _ in range(final_steps)]
    return parameters, targets, returned


class Quantised(nn.Module):
    """A model behind a black box: the input goes through NumPy and is rounded to 8 bits, as a remote
    API would receive a PNG. Nothing that happens here reaches the caller's autograd graph."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        array = np.round(images.detach().cpu().numpy() * 255.0) / 255.0
        return self.net(torch.from_numpy(array.astype(np.float32)).to(images.device))


def template_model(size: int = 16) -> Quantised:
    """One 16x16 filter over a 16x16 image: the output is the image's dot product with a colour
    pattern of waves of one and two cycles, whose absolute values sum to 1. Its maximum over images in
    [0, 1] is known: the sum of the pattern's positive values (0.5), reached by 1 where the pattern is
    positive and 0 elsewhere."""
    y, x = torch.meshgrid(torch.arange(size) / size, torch.arange(size) / size, indexing="ij")
    pattern = torch.stack(
        [torch.cos(4 * math.pi * x), torch.sin(4 * math.pi * y), -torch.cos(2 * math.pi * (x + 2 * y))]
    )
    conv = nn.Conv2d(3, 1, size)
    with torch.no_grad():
        conv.weight.copy_(pattern[None] / pattern.abs().sum())
        conv.bias.zero_()
    return Quantised(nn.Sequential(conv))


def template_maximum(model: Quantised) -> float:
    return float(model.net[0].weight.detach().clamp(min=0).sum())


@torch.no_grad()
def response(model: Quantised, images: torch.Tensor) -> float:
    return float(model(images).mean())


# ---- the optimiser on known functions ---------------------------------------------------
def test_converges_to_the_analytic_optimum_of_a_quadratic() -> None:
    parameters, targets, returned = run_quadratic(150, seed=0, final_steps=50, lr=0.05, sigma=0.05, population=16)
    start = max(float(t.abs().max()) for t in targets)  # the parameters start at 0
    assert start > 1.5
    assert distance(parameters, targets) < 0.05, distance(parameters, targets)
    # the returned loss is the population's mean: near the minimum it is about the perturbations' own
    # contribution, sum c * sigma**2 (c averages 1, 37 numbers, so about 0.09), far below the start's
    assert returned[-1] < 0.2 and returned[0] > 20


def test_a_seeded_run_repeats_exactly_and_another_seed_differs() -> None:
    first, _, losses_first = run_quadratic(5, seed=3)
    again, _, losses_again = run_quadratic(5, seed=3)
    other, _, _ = run_quadratic(5, seed=4)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert losses_first == losses_again
    assert not all(torch.equal(a, b) for a, b in zip(first, other))


@pytest.mark.parametrize("shaping", ["rank", "standardise"])
@pytest.mark.parametrize("antithetic", [True, False])
def test_the_first_step_follows_the_true_gradient(shaping: str, antithetic: bool) -> None:
    # Adam's first step is lr * sign(estimate); with a large population the estimate points along the
    # true gradient, so the step's cosine with minus the analytic gradient is high
    parameters, targets, curvatures = quadratic_problem()
    opt = EvolutionStrategy(
        parameters, lr=0.01, sigma=0.01, population=1000, antithetic=antithetic, fitness_shaping=shaping
    )  # type: ignore[arg-type]
    torch.manual_seed(0)
    opt.step(quadratic(parameters, targets, curvatures))
    estimate = torch.cat([opt.state[x]["exp_avg"].flatten() for x in parameters])
    gradient = torch.cat([(2 * c * (0 - t)).flatten() for t, c in zip(targets, curvatures)])
    cosine = float(torch.nn.functional.cosine_similarity(estimate, gradient, dim=0))
    assert cosine > 0.9, cosine


def test_common_random_numbers_give_every_call_of_a_step_the_same_draws() -> None:
    x = nn.Parameter(torch.zeros(4))
    seen: list[float] = []

    def loss() -> torch.Tensor:
        seen.append(float(torch.rand(())))
        return (x**2).sum()

    torch.manual_seed(0)
    EvolutionStrategy([x], population=4).step(loss)
    EvolutionStrategy([x], population=4).step(loss)
    assert len(set(seen[:4])) == 1 and len(set(seen[4:])) == 1 and seen[0] != seen[4]
    seen.clear()
    EvolutionStrategy([x], population=4, common_random_numbers=False).step(loss)
    assert len(set(seen)) == 4


def test_common_random_numbers_cancel_noise_that_each_call_draws() -> None:
    # the loss carries noise drawn from torch's generator at each call, ten times larger than the
    # loss differences between the perturbations: with common random numbers the noise is the same
    # for the whole population and drops out of the ranking; without, it drowns the signal
    def noisy_run(common: bool) -> float:
        parameters, targets, _ = run_quadratic(
            100, seed=0, noise=1.0, final_steps=40, population=16, common_random_numbers=common
        )
        return distance(parameters, targets)

    with_common, without = noisy_run(True), noisy_run(False)
    assert with_common < 0.05, with_common
    assert without > 0.3, without


def test_centred_ranks_match_scipy_ranks_with_ties_and_nan_last() -> None:
    losses = torch.tensor([0.3, -2.0, 0.3, 7.0, float("nan"), 1.0, float("inf")])
    reference = rankdata(np.where(np.isfinite(losses.numpy()), losses.numpy(), np.inf), method="average")
    expected = (reference - 1) / (len(reference) - 1) - 0.5
    np.testing.assert_allclose(centred_ranks(losses).numpy(), expected, rtol=1e-6)


def test_a_non_finite_loss_at_some_perturbations_counts_as_the_worst() -> None:
    x = nn.Parameter(torch.zeros(3))
    opt = EvolutionStrategy([x], lr=0.1, sigma=0.2, population=8)

    def loss() -> torch.Tensor:  # undefined (nan) where x[0] > 0.1, else minimal towards x[0] = 0.1
        return torch.where(x[0] > 0.1, torch.tensor(float("nan")), (x[0] - 0.1) ** 2)

    torch.manual_seed(0)
    returned = [float(opt.step(loss)) for _ in range(5)]
    assert all(np.isfinite(returned))
    assert torch.isfinite(x).all() and 0.0 < float(x[0].detach()) <= 0.1 + 1e-6


def test_state_dict_round_trip_continues_the_same_run() -> None:
    parameters, targets, curvatures = quadratic_problem()
    opt = EvolutionStrategy(parameters, lr=0.03, sigma=0.1, population=6)
    torch.manual_seed(0)
    for _ in range(3):
        opt.step(quadratic(parameters, targets, curvatures))
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)  # a copy, as on disk (state_dict() shares the live tensors)
    buffer.seek(0)
    saved = torch.load(buffer)

    copies = [nn.Parameter(x.detach().clone()) for x in parameters]
    restored = EvolutionStrategy(copies, lr=0.03, sigma=0.1, population=6)
    restored.load_state_dict(saved)
    assert restored.state[copies[0]]["step"] == 3
    for optimizer, params in ((opt, parameters), (restored, copies)):
        torch.manual_seed(1)
        optimizer.step(quadratic(params, targets, curvatures))
    assert all(torch.equal(a, b) for a, b in zip(parameters, copies))
    assert restored.param_groups[0]["sigma"] == 0.1


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"population": 1}, "population must be a whole number of at least 2"),
        ({"population": 2.0}, "population must be a whole number"),
        ({"population": 5}, "population must be even with antithetic=True"),
        ({"sigma": 0.0}, "sigma must be a positive number"),
        ({"sigma": -0.1}, "sigma must be a positive number"),
        ({"lr": 0}, "lr must be a positive number"),
        ({"eps": -1.0}, "eps must be a positive number"),
        ({"betas": (0.9, 1.0)}, "betas must be two numbers in [0, 1)"),
        ({"fitness_shaping": "raw"}, "fitness_shaping must be 'rank' or 'standardise'"),
    ],
)
def test_bad_arguments_say_what_is_wrong(options: dict[str, object], words: str) -> None:
    with pytest.raises(ValueError) as error:
        EvolutionStrategy([nn.Parameter(torch.zeros(2))], **options)  # type: ignore[arg-type]
    assert words in str(error.value)


def test_odd_population_without_antithetic_pairs_is_fine() -> None:
    assert EvolutionStrategy([nn.Parameter(torch.zeros(2))], population=5, antithetic=False).evaluations_per_step == 5


def test_step_without_closure_or_with_a_vector_loss_says_what_to_do() -> None:
    x = nn.Parameter(torch.zeros(3))
    opt = EvolutionStrategy([x], population=2)
    with pytest.raises(TypeError, match="needs a closure that returns the loss"):
        opt.step()
    with pytest.raises(ValueError, match=r"must return one number \(the loss\).*shape \(3,\)"):
        opt.step(lambda: x * 2)
    assert torch.equal(x, torch.zeros(3))  # a failed step leaves the parameters where they were


# ---- black-box models through render_vis --------------------------------------------------
def test_a_gradient_render_cannot_move_the_black_box() -> None:
    model = template_model()
    image = featvis.param.image(16)
    loss = -model(image()).mean()
    # the loss depends on the model's weights, but no gradient reaches the image's parameters
    assert torch.autograd.grad(loss, [image.basis.spectrum], allow_unused=True) == (None,)
    before = image.basis.spectrum.detach().clone()
    with pytest.raises((RuntimeError, ValueError)):
        featvis.render_vis(model, O.channel("net.0", 0), image, steps=2, progress=False, preprocess=False)
    assert torch.equal(image.basis.spectrum, before)


@pytest.mark.slow
def test_evolution_strategy_renders_a_black_box_beyond_random_search(model_state: type[ModelState]) -> None:
    model = template_model()
    before = model_state(model)
    steps, population, sigma = 60, 8, 0.1
    torch.manual_seed(0)
    start = response(model, featvis.param.image(16)().detach())
    es = featvis.render_vis(
        model,
        O.channel("net.0", 0),
        optimizer=lambda p: EvolutionStrategy(p, sigma=sigma, population=population),
        size=16,
        steps=steps,
        transforms=[],
        preprocess=False,
        seed=0,
        progress=False,
    )
    before.assert_unchanged()
    reached, maximum = response(model, es.images), template_maximum(model)
    assert abs(start) < 0.01 and reached > 0.3 * maximum, (start, reached, maximum)
    assert -float(es.losses[-1]) > 0.25 * maximum  # the loss history follows the image

    # random search with as many evaluations: images drawn around the start at several scales
    # (up to spectra 64 times larger than sigma, which fill [0, 1]); the best one is kept
    torch.manual_seed(1)
    candidate = featvis.param.image(16)
    spectrum = candidate.basis.spectrum
    centre = spectrum.detach().clone()
    best = start
    with torch.no_grad():
        for scale in (sigma, 4 * sigma, 16 * sigma, 64 * sigma):
            for _ in range(steps * population // 4):
                spectrum.copy_(centre + scale * torch.randn_like(centre))
                best = max(best, response(model, candidate()))
    assert reached - start > 1.5 * (best - start), (start, reached, best)


def test_a_seeded_black_box_render_repeats_exactly() -> None:
    model = template_model()

    def render() -> featvis.RenderResult:
        return featvis.render_vis(
            model,
            O.channel("net.0", 0),
            size=16,
            optimizer=lambda p: EvolutionStrategy(p, population=4),
            steps=3,
            preprocess=False,
            seed=5,
            progress=False,
        )

    first, second = render(), render()
    assert torch.equal(first.images, second.images) and torch.equal(first.losses, second.losses)


@pytest.mark.slow
def test_black_boxed_resnet20_class_logit_rises(resnet20: nn.Module, model_state: type[ModelState]) -> None:
    before = model_state(resnet20)
    normalise = featvis.models.default_preprocess(resnet20)

    def quantised(images: torch.Tensor) -> torch.Tensor:  # what an API taking 8-bit images does
        array = np.round(images.detach().cpu().numpy() * 255.0).astype(np.uint8)
        return normalise(torch.from_numpy(array.astype(np.float32) / 255.0))

    car = featvis.models.CIFAR10_CLASSES.index("automobile")
    torch.manual_seed(0)
    image = featvis.param.image(32)
    with torch.no_grad():
        start = resnet20(quantised(image()))[0]
    result = featvis.render_vis(
        resnet20,
        O.class_logit("linear", car),
        image,
        optimizer=EvolutionStrategy,  # its defaults: 8 evaluations per step
        steps=128,
        preprocess=quantised,
        seed=0,
        progress=False,
    )
    before.assert_unchanged()
    with torch.no_grad():
        reached = resnet20(quantised(result.images))[0]
    assert float(reached[car]) > float(start[car]) + 5.0, (start[car], reached[car])
    start_probability, reached_probability = (float(torch.softmax(x, 0)[car]) for x in (start, reached))
    assert reached_probability > 20 * start_probability, (start_probability, reached_probability)


@pytest.mark.cuda
def test_runs_and_repeats_on_cuda() -> None:
    def run() -> list[torch.Tensor]:
        parameters = [nn.Parameter(torch.zeros(3, 4, 2, device="cuda"))]
        opt = EvolutionStrategy(parameters, population=8)
        torch.manual_seed(0)
        for _ in range(3):
            opt.step(lambda: (parameters[0] - 1).pow(2).sum() + torch.rand((), device="cuda"))
        return parameters

    first, second = run(), run()
    assert first[0].device.type == "cuda" and torch.equal(first[0], second[0])
