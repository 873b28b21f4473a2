"""A learned prior: the images a generator of yours makes, optimised through its latent.

:class:`GeneratorImage` holds a batch of latents and calls your generator (any ``nn.Module``,
latent -> image) on them; only the latents are optimised, never the generator's weights, so the
pictures stay among the images the generator can make (its "manifold"). Its output is mapped to
[0, 1] (``"tanh"`` for a generator that ends in a tanh, ``"sigmoid"``, ``"clamp"``, or a function
of yours), and ``render_vis``'s transforms apply after it, as to any parameterisation.

Example:
    >>> import torch
    >>> from torch import nn
    >>> decoder = nn.Sequential(nn.Linear(8, 3 * 4 * 4), nn.Tanh(), nn.Unflatten(1, (3, 4, 4)))
    >>> p = generator(decoder, (8,), batch=2, seed=0)
    >>> p().shape, [name for name, _ in p.named_parameters()]
    (torch.Size([2, 3, 4, 4]), ['latent'])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Union

import torch
from torch import Tensor, nn

from ..state import check_seed

__all__ = ["GeneratorImage", "GeneratorOutput", "generator"]

#: how a generator's output becomes [0, 1] images: a name, or a function of yours
GeneratorOutput = Union[str, Callable[[Tensor], Tensor]]


def _to_unit(output: GeneratorOutput) -> Callable[[Tensor], Tensor]:
    if callable(output):
        return output
    if output == "tanh":
        return lambda values: (values + 1) / 2
    if output == "sigmoid":
        return torch.sigmoid
    if output == "clamp":  # straight through: valid values forward, the raw gradient backward
        return lambda values: values + (values.clamp(0.0, 1.0) - values).detach()
    raise ValueError(f"output must be 'tanh', 'sigmoid', 'clamp' or a function, got {output!r}")


class GeneratorImage(nn.Module):
    """Images ``output(generator(latent))``, with the latent the only parameter.

    The generator is kept outside the module's parameters (so that no optimiser of the
    parameterisation can change it), but moves with it (``.to(device)``). Give it in eval mode
    (a BatchNorm in training mode would normalise over the few pictures of a batch).

    Args:
        generator: your generator, latent ``(batch, *latent_shape)`` -> images ``(batch, C, H, W)``.
        latent_shape: one latent's shape, e.g. ``(128,)`` or ``(128, 1, 1)``.
        batch: how many images.
        output: ``"tanh"`` (the default: ``(x + 1) / 2``), ``"sigmoid"``, ``"clamp"`` or a function.
        sd: the random latents' standard deviation (the generator's prior, usually 1).
        bound: keep each latent value within ``(-bound, bound)`` (``bound * tanh(latent / bound)``), where
            the generator was trained; ``None`` for no bound.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> p = GeneratorImage(nn.Sequential(nn.Linear(4, 12), nn.Unflatten(1, (3, 2, 2))), (4,), output="sigmoid")
        >>> float(p().min()) >= 0
        True
    """

    def __init__(
        self,
        generator: nn.Module,
        latent_shape: Sequence[int],
        batch: int = 1,
        output: GeneratorOutput = "tanh",
        sd: float = 1.0,
        bound: float | None = None,
    ) -> None:
        super().__init__()
        if bound is not None and not bound > 0:
            raise ValueError(f"bound must be a positive number or None, got {bound!r}")
        self.bound = None if bound is None else float(bound)
        if not isinstance(generator, nn.Module):
            raise TypeError(f"generator must be a torch.nn.Module (latent -> images), got {type(generator).__name__}")
        shape = tuple(int(size) for size in latent_shape)
        if not shape or any(size < 1 for size in shape) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"latent_shape must be positive sizes and batch >= 1, got {latent_shape!r} and {batch!r}")
        self._generator = [generator]  # a list: not a submodule, so its weights are no parameters of ours
        self.latent_shape, self.sd, self.output = shape, float(sd), output
        self._to_unit = _to_unit(output)
        self.latent = nn.Parameter(torch.empty(batch, *shape))
        self.reset_parameters()
        made = self()
        if made.ndim != 4:
            raise ValueError(
                f"the generator must make (N, C, H, W) images from ({batch}, {', '.join(map(str, shape))}) latents, "
                f"got shape {tuple(made.shape)}"
            )
        self.alpha = False
        self.learning_rate: float | None = None
        self.start_seed: int | None = None
        self._drawn: Tensor | None = self.latent.detach().clone()  # None once looked at or set

    @property
    def generator(self) -> nn.Module:
        """The generator (not a submodule: its weights are not optimised)."""
        return self._generator[0]

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Draw the latents anew, normal with standard deviation ``sd``, from ``generator`` (``None``:
        torch's global one), on the CPU.

        Example:
            >>> from torch import nn
            >>> p = GeneratorImage(nn.Sequential(nn.Linear(2, 12), nn.Unflatten(1, (3, 2, 2))), (2,))
            >>> p.reset_parameters(torch.Generator().manual_seed(0)); tuple(p.latent.shape)
            (1, 2)
        """
        with torch.no_grad():
            self.latent.copy_(torch.randn(self.latent.shape, generator=generator) * self.sd)

    def draw_start(self, seed: int) -> None:
        """Draw the latents from a generator seeded with ``seed`` (what ``render_vis(..., seed=)`` does
        to latents nobody chose).

        Example:
            >>> from torch import nn
            >>> p = GeneratorImage(nn.Sequential(nn.Linear(2, 12), nn.Unflatten(1, (3, 2, 2))), (2,))
            >>> p.draw_start(0); p.start_seed
            0
        """
        seed = check_seed(seed)
        if seed is None:
            raise TypeError("draw_start needs a seed (a whole number), got None")
        self.reset_parameters(torch.Generator().manual_seed(seed % 2**64))
        self.start_seed, self._drawn = seed, self.latent.detach().clone()

    def random_start_untouched(self) -> bool:
        """Whether the latents are random from torch's global generator (no ``seed=``), not looked at
        (called) and not changed: ``render_vis(..., seed=)`` then draws them from its seed.

        Example:
            >>> from torch import nn
            >>> p = GeneratorImage(nn.Sequential(nn.Linear(2, 12), nn.Unflatten(1, (3, 2, 2))), (2,))
            >>> p.random_start_untouched()
            True
        """
        drawn = getattr(self, "_drawn", None)
        return self.start_seed is None and drawn is not None and torch.equal(self.latent.detach().cpu(), drawn.cpu())

    def forward(self) -> Tensor:
        self._drawn = None  # looked at: a start chosen
        latent = self.latent if self.bound is None else self.bound * torch.tanh(self.latent / self.bound)
        return self._to_unit(self.generator(latent))

    def _apply(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> GeneratorImage:
        super()._apply(fn, *args, **kwargs)
        self.generator._apply(fn, *args, **kwargs)  # the generator moves with the latents
        return self


def generator(
    model: nn.Module,
    latent_shape: Sequence[int],
    batch: int = 1,
    *,
    output: GeneratorOutput = "tanh",
    sd: float = 1.0,
    bound: float | None = None,
    seed: int | None = None,
) -> GeneratorImage:
    """A parameterisation by your generator: optimise the latents of ``model`` (latent -> image), so that
    the pictures are images it can make. See :class:`GeneratorImage`.

    Args:
        model: the generator, in eval mode.
        latent_shape: one latent's shape.
        batch: how many images.
        output: how its output becomes [0, 1]: ``"tanh"``, ``"sigmoid"``, ``"clamp"`` or a function.
        sd: the latents' standard deviation.
        bound: keep the latent values within ``(-bound, bound)`` (e.g. 3 for a generator trained on
            standard normal latents); ``None`` for no bound.
        seed: draw the latents from a generator seeded with this (``render_vis(..., seed=)`` also
            draws latents nobody chose from its seed).

    Example:
        >>> from torch import nn
        >>> decoder = nn.Sequential(nn.Linear(16, 3 * 8 * 8), nn.Tanh(), nn.Unflatten(1, (3, 8, 8))).eval()
        >>> generator(decoder, (16,), batch=4, seed=1)().shape
        torch.Size([4, 3, 8, 8])
    """
    made = GeneratorImage(model, latent_shape, batch=batch, output=output, sd=sd, bound=bound)
    if check_seed(seed) is not None:
        made.draw_start(seed)
    return made
