"""The optimizer: the default one and its learning rate, what ``render_vis(optimizer=...)``
takes, and an evolution strategy for black-box models.

:func:`make_optimizer` turns the ``optimizer`` argument into an optimizer on the image
parameters; ``None`` gives Adam at :data:`DEFAULT_LR`, whose learning rate
:func:`default_lr_factor` lowers with the step (:func:`default_schedule`).

:func:`featvis.render_vis` normally differentiates the objective through the model. When the model
or its preprocessing is not differentiable (it goes through NumPy, quantises its input, runs on a
remote service, ...), :class:`EvolutionStrategy` takes its place: at each step it evaluates the
loss at a population of Gaussian perturbations of the image parameters, estimates the gradient from
how the losses rank (natural evolution strategies, as in Salimans et al. 2017, "Evolution
Strategies as a Scalable Alternative to Reinforcement Learning"), and takes an Adam step along that
estimate. It has ``gradient_free = True``, so ``render_vis`` hands it a closure that only computes
the loss, under ``torch.no_grad()``.

Example:
    >>> import torch
    >>> target = torch.tensor([1.0, -2.0, 0.5])
    >>> x = torch.nn.Parameter(torch.zeros(3))
    >>> opt = EvolutionStrategy([x], lr=0.1, sigma=0.1, population=8)
    >>> _ = torch.manual_seed(0)
    >>> for _ in range(100):
    ...     _ = opt.step(lambda: ((x - target) ** 2).sum())
    >>> bool(torch.allclose(x, target, atol=0.1))
    True
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal, Union

import torch
from torch import Tensor, nn

from .generators import RandomState, generator

__all__ = [
    "DEFAULT_LR",
    "DEFAULT_LR_HOLD",
    "DEFAULT_LR_POWER",
    "EvolutionStrategy",
    "FitnessShaping",
    "OptimizerSpec",
    "centred_ranks",
    "default_lr_factor",
    "default_schedule",
    "make_optimizer",
]

#: what ``render_vis(optimizer=...)`` takes: ``None`` (the default Adam), an Optimizer made on the
#: image parameters, an Optimizer class, or a function ``parameters -> Optimizer``
OptimizerSpec = Union[torch.optim.Optimizer, type, Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer], None]

#: the default optimiser: Adam at this learning rate for the first DEFAULT_LR_HOLD steps, lower after them
DEFAULT_LR = 0.1
#: the default learning rate is held for this many steps ...
DEFAULT_LR_HOLD = 64
#: ... and then falls as (DEFAULT_LR_HOLD / step) ** DEFAULT_LR_POWER, steps counted from 1: a quarter at
#: step 128, a sixteenth at step 256
DEFAULT_LR_POWER = 2.0

_FUSED_ADAM_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def default_lr_factor(step: int) -> float:
    """The default learning rate at 0-based ``step``, as a share of :data:`DEFAULT_LR`.

    It depends on the step only, not on the number of steps asked for, so a run of
    k steps returns the picture that a longer run shows at step k. The early steps
    make the picture (a high rate makes it robust soon); the later ones refine it
    instead of piling up fine detail (docs/benchmarks.md says how it was chosen).

    Example:
        >>> [default_lr_factor(k) for k in (0, 63, 127, 255)]
        [1.0, 1.0, 0.25, 0.0625]
    """
    return min(1.0, DEFAULT_LR_HOLD / (step + 1)) ** DEFAULT_LR_POWER


def make_optimizer(
    optimizer: OptimizerSpec, parameters: list[nn.Parameter], lr: float | None = None
) -> torch.optim.Optimizer:
    """The optimizer on ``parameters`` that ``optimizer`` asks for (see :data:`OptimizerSpec`).

    ``None`` gives Adam at ``lr`` (default :data:`DEFAULT_LR`; a parameterisation may say its own,
    as :func:`featvis.param.cppn`'s does), fused (one kernel a step) on CPUs and GPUs.

    Example:
        >>> x = nn.Parameter(torch.zeros(3))
        >>> type(make_optimizer(None, [x])).__name__, type(make_optimizer(torch.optim.SGD, [x])).__name__
        ('Adam', 'SGD')
    """
    if optimizer is None:
        # the fused update is one kernel per step instead of a dozen small operations (CPU and CUDA)
        fused = all(p.device.type in ("cpu", "cuda") and p.dtype in _FUSED_ADAM_DTYPES for p in parameters)
        return torch.optim.Adam(parameters, lr=DEFAULT_LR if lr is None else lr, fused=fused or None)
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    if isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer):
        return optimizer(parameters)
    made = optimizer(parameters)
    if not isinstance(made, torch.optim.Optimizer):
        raise TypeError(
            "optimizer must be a torch.optim.Optimizer, an Optimizer class, or a function taking the "
            f"image parameters and returning an Optimizer; it returned {type(made).__name__}"
        )
    return made


def default_schedule(optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    """The default optimizer's learning-rate schedule: :func:`default_lr_factor` of the step.

    Example:
        >>> opt = make_optimizer(None, [nn.Parameter(torch.zeros(1))])
        >>> schedule = default_schedule(opt)
        >>> for _ in range(127):
        ...     opt.step(); schedule.step()
        >>> opt.param_groups[0]["lr"]
        0.025
    """
    return torch.optim.lr_scheduler.LambdaLR(optimizer, default_lr_factor)


FitnessShaping = Literal["rank", "standardise"]


def _check_positive(name: str, value: float, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number ({what}), got {value!r}")


@contextlib.contextmanager
def _perturbed(parameters: list[Tensor], centres: list[Tensor], offsets: list[Tensor]) -> Iterator[None]:
    """The parameters at ``centre + offset`` inside; at their centres again afterwards, whatever happens."""
    try:
        for parameter, centre, offset in zip(parameters, centres, offsets):
            torch.add(centre, offset, out=parameter.data)
        yield
    finally:
        for parameter, centre in zip(parameters, centres):
            parameter.data.copy_(centre)


def centred_ranks(losses: Tensor) -> Tensor:
    """Each loss's rank scaled to [-0.5, 0.5] (lowest loss -0.5); non-finite losses rank highest.

    Ranks make an evolution strategy blind to the scale of the loss and to outliers: only the order of
    the population's losses counts. Tied losses get the mean of their ranks.

    Example:
        >>> centred_ranks(torch.tensor([3.0, -1.0, 10.0, float("nan")]))
        tensor([-0.1667, -0.5000,  0.1667,  0.5000])
    """
    values = torch.where(torch.isfinite(losses), losses, torch.full_like(losses, float("inf")))
    count = values.numel()
    if count < 2:
        return torch.zeros_like(values)
    order = values.argsort(stable=True)
    ranks = torch.empty_like(values)
    ranks[order] = torch.arange(count, device=values.device, dtype=values.dtype)
    # ties: every member of a group of equal losses gets the group's mean rank
    unique, inverse = torch.unique(values, return_inverse=True)
    if unique.numel() < count:
        sums = torch.zeros_like(unique).index_add_(0, inverse, ranks)
        sizes = torch.zeros_like(unique).index_add_(0, inverse, torch.ones_like(ranks))
        ranks = (sums / sizes)[inverse]
    return ranks / (count - 1) - 0.5


def _standardised(losses: Tensor) -> Tensor:
    """Losses minus their mean, over their standard deviation; non-finite ones set to the largest finite loss."""
    finite = torch.isfinite(losses)
    worst = losses[finite].max() if bool(finite.any()) else torch.zeros((), device=losses.device)
    values = torch.where(finite, losses, worst)
    spread = values.std()
    if not bool(spread > 0):
        return torch.zeros_like(values)
    return (values - values.mean()) / spread


class EvolutionStrategy(torch.optim.Optimizer):
    """A gradient-free optimiser: natural evolution strategies with an Adam step.

    Each :meth:`step` draws ``population`` Gaussian perturbations ``sigma * e`` of all parameters
    (``e`` of every shape, standard normal, from torch's default generator on the parameters'
    device, so ``torch.manual_seed`` or ``render_vis(seed=...)`` makes a run repeat exactly), calls
    ``closure()`` once at each perturbed point, and estimates the loss's gradient as
    ``sum_k w_k e_k / (population * sigma)``, where ``w_k`` is the centred rank of loss ``k`` (or its
    standardised value). With ``antithetic=True`` the perturbations come in pairs ``+e, -e``, which
    cancels the estimate's error from the loss's curvature and from the loss's value itself. The
    parameters then take an Adam step of size about ``lr`` along the estimate.

    ``common_random_numbers=True`` (the default) puts torch's random generators back to the same
    state before each of the step's closure calls, so all of them draw the same random numbers: in
    :func:`featvis.render_vis` every perturbation of one step sees the same random transforms, and
    the ranking compares images, not transforms. Each step still draws new transforms, so the image
    still has to work under all of them. It assumes the closure draws its random numbers from torch's
    default generators (featvis's transforms do).

    :meth:`step` returns the mean loss over the population it evaluated (the points around the
    parameters before the update; non-finite losses left out): with antithetic pairs this is the loss
    at the parameters plus a term of order ``sigma**2``, and it costs no extra evaluation.

    Cost: ``population`` forward passes per step, no backward pass. A batch of images is optimised
    as one point, and each image's gradient estimate then carries the noise of all the others' losses,
    so for a black-box render, a batch of one image per ``render_vis`` call makes the best use of
    each evaluation (docs/blackbox.md).

    Args:
        params: the parameters (or parameter groups) to optimise.
        lr: Adam's learning rate: about the largest change of each parameter in one step.
        sigma: standard deviation of the perturbations, in the parameters' units. It has to be large
            enough for the loss to change measurably (a model that quantises its input to 8 bits
            cannot see smaller changes) and small enough for the loss to be nearly linear within it.
        population: closure calls per step (even when ``antithetic``).
        antithetic: evaluate each perturbation ``e`` together with ``-e``.
        common_random_numbers: the closure calls of one step all see the same random draws.
        fitness_shaping: ``"rank"`` (centred ranks: scale-free, robust to outliers) or
            ``"standardise"`` (losses minus their mean over their standard deviation).
        betas: Adam's decay rates for the running mean and the running square of the estimates.
        eps: Adam's term added to the denominator.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> import featvis
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
        >>> es = lambda params: EvolutionStrategy(params, population=8)
        >>> result = featvis.render_vis(model, "0:1", size=16, steps=3, optimizer=es, progress=False)
        >>> result.losses.shape
        torch.Size([3])
    """

    #: tells :func:`featvis.render_vis` to pass a closure that returns the loss without a backward pass
    gradient_free = True

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 0.05,
        sigma: float = 0.1,
        population: int = 8,
        antithetic: bool = True,
        *,
        common_random_numbers: bool = True,
        fitness_shaping: FitnessShaping = "rank",
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        _check_positive("lr", lr, "the step size")
        _check_positive("sigma", sigma, "the standard deviation of the perturbations")
        _check_positive("eps", eps, "Adam's denominator term")
        if isinstance(population, bool) or not isinstance(population, int) or population < 2:
            raise ValueError(
                f"population must be a whole number of at least 2 (closure calls per step), got {population!r}"
            )
        if antithetic and population % 2:
            raise ValueError(
                f"population must be even with antithetic=True (perturbations come in +e/-e pairs), got "
                f"{population}; use {population - 1} or {population + 1}, or antithetic=False"
            )
        if fitness_shaping not in ("rank", "standardise"):
            raise ValueError(f"fitness_shaping must be 'rank' or 'standardise', got {fitness_shaping!r}")
        if len(betas) != 2 or not all(0.0 <= beta < 1.0 for beta in betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        defaults = {"lr": lr, "sigma": sigma, "betas": tuple(betas), "eps": eps}
        super().__init__(params, defaults)
        self.population = population
        self.antithetic = bool(antithetic)
        self.common_random_numbers = bool(common_random_numbers)
        self.fitness_shaping: FitnessShaping = fitness_shaping

    @property
    def evaluations_per_step(self) -> int:
        """Closure calls (model evaluations) per :meth:`step`.

        Example:
            >>> EvolutionStrategy([torch.nn.Parameter(torch.zeros(2))], population=6).evaluations_per_step
            6
        """
        return self.population

    def _shaped(self, losses: Tensor) -> Tensor:
        return centred_ranks(losses) if self.fitness_shaping == "rank" else _standardised(losses)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Tensor:  # type: ignore[override]
        """Evaluate the population, estimate the gradient, update the parameters; return the mean loss.

        Args:
            closure: computes and returns the loss (a one-element tensor, to be minimised) at the
                parameters' current values. It is called ``population`` times; it needs no
                ``backward()`` and runs under ``torch.no_grad()``.

        Example:
            >>> x = torch.nn.Parameter(torch.zeros(2))
            >>> opt = EvolutionStrategy([x], population=4)
            >>> float(opt.step(lambda: (x - 1).pow(2).sum())) > 0
            True
        """
        if closure is None:
            raise TypeError(
                "EvolutionStrategy.step needs a closure that returns the loss at the parameters' current "
                "values: opt.step(lambda: loss_of(params)); render_vis passes one"
            )
        parameters = [p for group in self.param_groups for p in group["params"]]
        sigmas = [group["sigma"] for group in self.param_groups for _ in group["params"]]
        if not parameters:
            raise ValueError("EvolutionStrategy has no parameters to optimise")
        centres = [p.detach().clone() for p in parameters]
        directions = self.population // 2 if self.antithetic else self.population
        noise = [
            torch.randn((directions, *p.shape), device=p.device, dtype=p.dtype, generator=generator(p.device))
            for p in parameters
        ]
        states = RandomState(p.device for p in parameters) if self.common_random_numbers else None

        losses = []
        for member in range(self.population):
            index, sign = (member // 2, 1.0 - 2.0 * (member % 2)) if self.antithetic else (member, 1.0)
            offsets = [sign * sigma * e[index] for sigma, e in zip(sigmas, noise)]
            if states is not None:
                states.restore()
            with _perturbed(parameters, centres, offsets):
                loss = closure()
            losses.append(self._as_loss(loss))
        values = torch.stack(losses)

        weights = self._shaped(values)
        if self.antithetic:
            weights = weights[0::2] - weights[1::2]  # pair k: w(+e) e + w(-e) (-e)
        position = 0
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                e = noise[position]
                position += 1
                # the closure's losses may live on another device than the parameters (a remote or NumPy model)
                shaped = weights.to(device=e.device, dtype=e.dtype)
                estimate = torch.tensordot(shaped, e, dims=1) / (self.population * group["sigma"])
                self._adam(p, estimate, group["lr"], beta1, beta2, group["eps"])

        finite = torch.isfinite(values)
        return values[finite].mean() if bool(finite.any()) else values.mean()

    def _as_loss(self, loss: Any) -> Tensor:
        if not isinstance(loss, Tensor):
            loss = torch.as_tensor(loss, dtype=torch.float32)
        if loss.numel() != 1:
            raise ValueError(
                f"the closure must return one number (the loss), got a tensor of shape {tuple(loss.shape)}; "
                "reduce it, e.g. with .sum()"
            )
        return loss.detach().reshape(()).float()

    def _adam(self, p: Tensor, estimate: Tensor, lr: float, beta1: float, beta2: float, eps: float) -> None:
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        state["step"] += 1
        step = state["step"]
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.mul_(beta1).add_(estimate, alpha=1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(estimate, estimate, value=1 - beta2)
        denominator = (exp_avg_sq / (1 - beta2**step)).sqrt_().add_(eps)
        p.addcdiv_(exp_avg, denominator, value=-lr / (1 - beta1**step))
