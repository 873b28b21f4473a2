"""Putting transforms together: :class:`Compose`, :class:`Lambda` for plain functions, and
:func:`set_step`, which tells transforms that change over a run which step is next.

Example:
    >>> import torch
    >>> Compose(lambda images: images * 2)(torch.ones(1, 1, 1, 1)).item()
    2.0
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

__all__ = ["Compose", "Lambda", "set_step", "step_setters"]


class Lambda(nn.Module):
    """A plain function of an image batch as a transform module (so that it composes and moves
    with the others). :class:`Compose` wraps any callable that is not a module in one.

    Example:
        >>> import torch
        >>> flip = Lambda(lambda images: images.flip(-1))
        >>> flip(torch.arange(3.0).reshape(1, 1, 1, 3)).flatten().tolist()
        [2.0, 1.0, 0.0]
    """

    def __init__(self, function: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        if not callable(function):
            raise TypeError(
                f"a transform is a callable taking and returning an image batch, got {type(function).__name__}"
            )
        self.function = function

    def forward(self, images: Tensor) -> Tensor:
        return self.function(images)

    def extra_repr(self) -> str:
        return getattr(self.function, "__name__", type(self.function).__name__)


class Compose(nn.Sequential):
    """Apply transforms one after the other: modules, or any callables taking and returning an
    image batch (each wrapped in a :class:`Lambda`).

    Example:
        >>> import torch
        >>> from featvis.transforms import Jitter, Pad
        >>> Compose(Pad(4), Jitter(2))(torch.rand(1, 3, 8, 8)).shape
        torch.Size([1, 3, 16, 16])
        >>> Compose(Pad(1), lambda images: images.flip(-1))(torch.rand(1, 3, 8, 8)).shape
        torch.Size([1, 3, 10, 10])
    """

    def __init__(self, *transforms: Callable[[Tensor], Tensor]) -> None:
        super().__init__(*(t if isinstance(t, nn.Module) else Lambda(t) for t in transforms))


def set_step(transform: Callable[[Tensor], Tensor], step: int) -> None:
    """Tell ``transform`` and every module inside it that has a ``set_step(step)`` method which
    optimisation step comes next (counted from 1). ``render_vis`` calls it before each step, so a
    transform may change over a run (as :class:`~featvis.transforms.RandomCrop` does with
    ``final_size``); transforms without the method are left alone.

    Example:
        >>> class Counting(nn.Module):
        ...     def set_step(self, step: int) -> None:
        ...         self.step = step
        ...     def forward(self, images: Tensor) -> Tensor:
        ...         return images
        >>> counting = Counting()
        >>> set_step(Compose(counting, lambda images: images), 7)
        >>> counting.step
        7
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 1:
        raise ValueError(f"step must be a whole number from 1, got {step!r}")
    for tell in step_setters(transform):
        tell(step)


def step_setters(transform: Callable[[Tensor], Tensor]) -> list[Callable[[int], None]]:
    """The ``set_step`` methods of ``transform`` and the modules inside it: what :func:`set_step`
    calls. A loop may find them once and call them every step.

    Example:
        >>> from featvis.transforms import RandomBlur, RandomCrop
        >>> len(step_setters(Compose(RandomBlur(1.0), RandomCrop(final_size=(1.0, 1.0)))))
        1
    """
    parts = transform.modules() if isinstance(transform, nn.Module) else (transform,)
    methods = (getattr(part, "set_step", None) for part in parts)
    return [method for method in methods if callable(method)]
