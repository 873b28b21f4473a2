"""Gradient tricks for units that start dead: redirected ReLU and gradient normalisation.

A unit that is inactive for the starting image gives no gradient when every
ReLU between it and the image blocks it: the image never changes and the
picture stays grey. Two remedies from the Lucid work:

- **Redirected ReLU** (:func:`redirected_relu`): while it is on, a ReLU whose
  gradient would be zero for a whole image lets through the part of the
  gradient that would raise its negative inputs, so the optimisation can wake
  the unit up. ``render_vis`` turns it on for its first steps
  (``redirected_relu=16`` by default); live units are unaffected.
- **Gradient normalisation** (:func:`normalize_gradients`): each image's
  gradient is scaled to unit norm, and a little noise is added so that a
  parameter with no gradient at all still moves (``render_vis(...,
  normalize_gradients=True)``).

Example:
    >>> import torch
    >>> x = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    >>> with redirected_relu():
    ...     y = torch.relu(x)
    >>> (-y.sum()).backward()     # minimising -y asks to raise x: the plain ReLU gives no gradient
    >>> x.grad
    tensor([[-1., -1.]])
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode

__all__ = ["IN_PLACE", "RELU_LIKE", "normalize_gradients", "redirected_relu"]

#: ReLU-like calls, whose gradient is zero where they clip (the ReLU family and ``hardtanh``, of which
#: ``nn.ReLU6`` is one), each with the out-of-place function that computes its value. The one table of
#: them: :func:`redirected_relu` redirects their gradients, and ``featvis.receptive`` linearises them
#: (with other clipping functions) to find receptive fields.
RELU_LIKE: dict[Callable[..., Any], Callable[..., Tensor]] = {
    F.relu: F.relu,
    torch.relu: torch.relu,
    Tensor.relu: torch.relu,
    torch.relu_: torch.relu,
    Tensor.relu_: torch.relu,
    F.relu_: torch.relu,
    F.relu6: F.relu6,
    F.hardtanh: F.hardtanh,
    F.hardtanh_: F.hardtanh,
}
#: the in-place calls among :data:`RELU_LIKE`
IN_PLACE = frozenset({torch.relu_, Tensor.relu_, F.relu_, F.hardtanh_})


def _per_image(tensor: Tensor) -> Tensor:
    """``tensor`` as (images, values): dim 0 is the batch (a 0-d or 1-d tensor is one image)."""
    return tensor.reshape(tensor.shape[0], -1) if tensor.ndim > 1 else tensor.reshape(1, -1)


def _broadcast(per_image: Tensor, like: Tensor) -> Tensor:
    return per_image.reshape(-1, *([1] * (like.ndim - 1))) if like.ndim > 1 else per_image.reshape(())


class _RedirectedClamp(torch.autograd.Function):
    """``clamp(x, lower, upper)`` whose backward pass lets the gradient through where the plain
    clamp would block it for a whole image, in the direction that brings ``x`` back inside."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, lower: float, upper: float | None, inplace: bool) -> Tensor:
        if inplace:
            ctx.mark_dirty(x)
            out = x.clamp_(min=lower, max=upper)
        else:
            out = x.clamp(min=lower, max=upper)
        ctx.lower, ctx.upper = lower, upper
        # the output alone says which inputs were clamped (at the bounds) and which passed
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None, None]:
        (out,) = ctx.saved_tensors
        inside = out > ctx.lower
        if ctx.upper is not None:
            inside &= out < ctx.upper
        plain = grad * inside
        passing = _per_image(plain).any(dim=1)
        # On a CPU, asking whether any image is blocked costs nothing and spares the rest in the usual
        # case; on an accelerator the answer would wait for the device at every ReLU, so it is not asked.
        if grad.device.type == "cpu" and bool(passing.all()):
            return plain, None, None, None
        # gradient descent moves x by -grad: keep what raises a clamped-low input (grad < 0) and what
        # lowers a clamped-high one (grad > 0); drop what would push it further out
        outward = (out <= ctx.lower) & (grad > 0)
        if ctx.upper is not None:
            outward |= (out >= ctx.upper) & (grad < 0)
        redirected = grad.masked_fill(outward, 0.0)
        return torch.where(_broadcast(passing, grad), plain, redirected), None, None, None


def _relu(x: Tensor, inplace: bool = False) -> Tensor:
    return _RedirectedClamp.apply(x, 0.0, None, inplace)


def _relu6(x: Tensor, inplace: bool = False) -> Tensor:
    return _RedirectedClamp.apply(x, 0.0, 6.0, inplace)


def _hardtanh(input: Tensor, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> Tensor | None:
    if min_val != 0.0:  # nn.ReLU6 is hardtanh(0, 6); other hardtanhs are left alone
        return None
    return _RedirectedClamp.apply(input, 0.0, float(max_val), inplace)


#: the redirected form of each out-of-place function of RELU_LIKE
_REDIRECTED_FORM: dict[Callable[..., Any], Callable[..., Tensor | None]] = {
    F.relu: _relu,
    torch.relu: _relu,
    F.relu6: _relu6,
    F.hardtanh: _hardtanh,
}


def _redirected(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Tensor | None:
    """The redirected value of a ReLU-like call, or ``None`` where the call is left alone."""
    plain = RELU_LIKE.get(func)
    if plain is None:
        return None
    if func in IN_PLACE:
        kwargs = {**kwargs, "inplace": True}
    return _REDIRECTED_FORM[plain](*args, **kwargs)


class _RedirectReLUMode(TorchFunctionMode):
    def __torch_function__(
        self, func: Callable[..., Any], types: Any, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = kwargs or {}
        result = _redirected(func, args, kwargs)
        return func(*args, **kwargs) if result is None else result


@contextmanager
def redirected_relu(enabled: bool = True) -> Iterator[None]:
    """Within this block, ReLUs and ReLU6s pass gradient through for images they would block entirely.

    Forward values are unchanged. In the backward pass, a ReLU whose ordinary
    gradient is zero for every value of an image passes instead the gradient
    components that would move its clamped inputs back into the active range
    (Lucid's ``redirected_relu_grad``). Images for which the ReLU passes some
    gradient get the ordinary gradient. Dim 0 is taken as the batch.

    Covers ``nn.ReLU``, ``nn.ReLU6``, ``F.relu``, ``F.relu6``, ``torch.relu``,
    ``Tensor.relu`` and their in-place forms, in any model, through a
    ``torch.overrides.TorchFunctionMode`` active only inside the block: nothing in
    the model is changed. Graphs built inside the block keep the redirection
    when their backward pass runs later.

    Args:
        enabled: ``False`` makes the block do nothing (handy in loops).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(2, 2), nn.ReLU())
        >>> with torch.no_grad():
        ...     _ = net[0].bias.fill_(-10.0)     # the ReLU's inputs are all negative
        >>> x = torch.ones(1, 2, requires_grad=True)
        >>> with redirected_relu():
        ...     loss = -net(x).sum()
        >>> loss.backward()
        >>> bool(x.grad.abs().sum() > 0)
        True
    """
    if not enabled:
        yield
        return
    with _RedirectReLUMode():
        yield


@torch.no_grad()
def normalize_gradients(
    parameters: Iterable[Tensor],
    noise: float = 1e-2,
    batch: int | None = None,
    generator: torch.Generator | None = None,
) -> None:
    """Scale each image's gradient to unit norm and add a little noise, in place.

    For each parameter with a gradient, the values of each image (dim 0, when its
    size equals ``batch``; otherwise the whole tensor) are divided by their L2
    norm, and Gaussian noise of total norm ``noise`` is added, so that a parameter
    whose gradient is exactly zero still moves a little. A parameter without a
    ``.grad`` gets the noise alone.

    Args:
        parameters: the image parameters (after ``backward()``).
        noise: norm of the noise added to each image's unit gradient (0 for none).
        batch: number of images; dim 0 of a parameter of that size is read as
            the batch. ``None`` reads dim 0 as the batch for every parameter.
        generator: random generator for the noise (default: torch's global one).

    Example:
        >>> import torch
        >>> p = torch.nn.Parameter(torch.zeros(2, 3))
        >>> p.grad = torch.tensor([[3.0, 0.0, 4.0], [0.0, 0.0, 0.0]])
        >>> normalize_gradients([p], noise=0.0)
        >>> p.grad
        tensor([[0.6000, 0.0000, 0.8000],
                [0.0000, 0.0000, 0.0000]])
    """
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    for parameter in parameters:
        if parameter.grad is None:
            parameter.grad = torch.zeros_like(parameter)
        grad = parameter.grad
        by_image = parameter.ndim > 1 and (batch is None or parameter.shape[0] == batch)
        rows = _per_image(grad) if by_image else grad.reshape(1, -1)
        norms = rows.norm(dim=1, keepdim=True)
        rows = torch.where(norms > 0, rows / norms.clamp(min=torch.finfo(rows.dtype).tiny), rows)
        if noise:
            kick = torch.randn(rows.shape, generator=generator, device=rows.device, dtype=rows.dtype)
            rows = rows + noise * kick / kick.norm(dim=1, keepdim=True).clamp(min=1e-12)
        grad.copy_(rows.reshape(grad.shape))
