"""What a basis is: the :class:`Basis` protocol, and the size check every built-in basis makes.

A *basis* is the first stage of a parameterisation: an :class:`torch.nn.Module` that holds the
learnable numbers and whose ``forward()`` takes no argument and returns an unbounded
``(N, C, H, W)`` tensor. :class:`~featvis.param.Image` turns it into colours in [0, 1], and
:func:`~featvis.param.image` builds one from a name, a class or a ready module.

Example:
    >>> from featvis.param import Basis, PixelImage
    >>> isinstance(PixelImage(1, 3, 8, 8), Basis)
    True
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = ["Basis", "check_size", "draw_normal"]


@runtime_checkable
class Basis(Protocol):
    """The protocol every basis follows, built in or your own.

    A basis is an :class:`torch.nn.Module` (so that its parameters are found and optimised)
    whose ``forward()`` takes no argument and returns an unbounded ``(N, C, H, W)`` tensor:
    ``N`` images of ``C`` channels, ``H`` by ``W`` pixels, any real values (the colour map and
    the output function of :class:`~featvis.param.Image` come after it). To start from an image
    (``init=``, :meth:`~featvis.param.Image.set_image`) it may also have a method
    ``set_raw(raw)`` that sets its parameters so that ``forward()`` returns ``raw`` (or the
    nearest it can); without it, starting from an image raises a ``TypeError``. To have its
    random start drawn from a seed (``render_vis(..., seed=)`` and
    :meth:`~featvis.param.Image.draw_start`) it may have a method
    ``reset_parameters(generator=None)`` that draws its start anew from ``generator``, as
    torch's own layers have; every built-in basis has one.

    A basis *class* given to :func:`~featvis.param.image` (``image(32, basis=MyBasis)``) is
    called as ``cls(batch, channels, height, width, **options)``: the four sizes positionally,
    then ``sd=`` and ``decay=`` by keyword, each only if the class's signature has that argument
    (or ``**kwargs``). A basis *module* given to :func:`~featvis.param.image` is used as it is,
    and must return images of the size asked for.

    ``isinstance(module, Basis)`` checks that ``module`` can be called and has a ``forward``
    method (every :class:`torch.nn.Module` has); it does not call it.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> class OneColour(nn.Module):
        ...     '''One learnable colour per image: the simplest basis.'''
        ...     def __init__(self, batch, channels, height, width):
        ...         super().__init__()
        ...         self.size = (height, width)
        ...         self.colour = nn.Parameter(torch.zeros(batch, channels, 1, 1))
        ...     def forward(self):
        ...         return self.colour.expand(-1, -1, *self.size)
        >>> isinstance(OneColour(1, 3, 4, 4), Basis)
        True
        >>> from featvis import param
        >>> param.image(8, batch=2, basis=OneColour)().shape
        torch.Size([2, 3, 8, 8])
    """

    def __call__(self) -> Tensor: ...

    def forward(self) -> Tensor:
        """The unbounded ``(N, C, H, W)`` images this basis stands for now.

        Example:
            >>> from featvis.param import PixelImage
            >>> PixelImage(2, 3, 4, 5).forward().shape
            torch.Size([2, 3, 4, 5])
        """
        ...


def check_size(batch: int, channels: int, height: int, width: int) -> None:
    """Raise a ``ValueError`` naming the first of the four sizes that is not a positive integer.

    Every built-in basis and factory calls it first, so that they all say the same thing
    about a wrong size.

    Example:
        >>> check_size(1, 3, 8, 8)
        >>> check_size(1, 3, 0, 8)
        Traceback (most recent call last):
        ...
        ValueError: height must be a positive integer, got 0
    """
    for name, value in (("batch", batch), ("channels", channels), ("height", height), ("width", width)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


@torch.no_grad()
def draw_normal(parameters: Iterable[Tensor], sd: float, generator: torch.Generator | None = None) -> None:
    """Fill each of ``parameters`` in turn with normal noise of standard deviation ``sd``, drawn on the
    CPU from ``generator`` (``None``: torch's global one), so that a seed gives the same start on every
    device. The bases' ``reset_parameters`` use it.

    Example:
        >>> import torch
        >>> t = torch.zeros(2, 3)
        >>> draw_normal([t], 0.5, torch.Generator().manual_seed(0))
        >>> torch.equal(t, torch.randn(2, 3, generator=torch.Generator().manual_seed(0)) * 0.5)
        True
    """
    for parameter in parameters:
        parameter.copy_(torch.randn(parameter.shape, generator=generator) * sd)
