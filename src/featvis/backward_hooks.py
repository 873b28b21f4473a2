"""Your full backward hooks on a layer featvis reads, kept working.

Torch runs a module's full backward hooks (``register_full_backward_hook`` and
``register_full_backward_pre_hook``) by wrapping the module's output *after* its forward
hooks have run; featvis reads the output in a forward hook, before that wrapping, and its
loss then never passes through the wrapped output, so such a hook would not fire (and when
featvis cuts the forward pass at that layer, the wrapping never happens at all).

:class:`MovedBackwardHooks` takes those hooks off the module for a run and does torch's
wrapping itself, with torch's own ``torch.utils.hooks.BackwardHook``: the inputs in a forward
pre-hook, the output in featvis's forward hook, so that the output featvis reads is the wrapped
one and the hooks fire once per backward pass, with the whole gradient. The hooks go back on
the module afterwards, in their order, with their handles still working.

Example:
    >>> import torch
    >>> from torch import nn
    >>> layer = nn.Linear(2, 2)
    >>> fired = []
    >>> _ = layer.register_full_backward_hook(lambda module, grad_in, grad_out: fired.append(1))
    >>> moved = MovedBackwardHooks.take(layer)
    >>> len(layer._backward_hooks), fired
    (0, [])
    >>> x = torch.ones(1, 2, requires_grad=True)
    >>> out = moved.wrap_output(layer(x))  # what featvis's forward hook does
    >>> out.sum().backward(); fired
    [1]
    >>> moved.restore(); len(layer._backward_hooks)
    1
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from torch import Tensor, nn
from torch.utils.hooks import BackwardHook, RemovableHandle

__all__ = ["MovedBackwardHooks"]


class MovedBackwardHooks:
    """A module's full backward hooks and backward pre-hooks, off the module and run by featvis.

    Make one with :meth:`take` (``None`` when the module has none); call :meth:`wrap_output` on
    the module's output in a forward hook, and :meth:`restore` at the end, whatever happens.

    Example:
        >>> from torch import nn
        >>> MovedBackwardHooks.take(nn.ReLU()) is None
        True
    """

    def __init__(self, module: nn.Module, hooks: OrderedDict[int, Any], pre_hooks: OrderedDict[int, Any]) -> None:
        self.module = module
        self.hooks, self.pre_hooks = hooks, pre_hooks
        self._pending: BackwardHook | None = None
        self._handle: RemovableHandle | None = module.register_forward_pre_hook(self._wrap_inputs)

    @classmethod
    def take(cls, module: nn.Module) -> MovedBackwardHooks | None:
        """Take ``module``'s full backward hooks and backward pre-hooks off it, or ``None`` if it has none
        (old-style ``register_backward_hook`` hooks are left where they are).

        Example:
            >>> import torch
            >>> from torch import nn
            >>> layer = nn.Linear(2, 2)
            >>> _ = layer.register_full_backward_pre_hook(lambda module, grad_out: None)
            >>> moved = MovedBackwardHooks.take(layer)
            >>> len(layer._backward_pre_hooks), len(moved.pre_hooks)
            (0, 1)
            >>> moved.restore()
        """
        full = getattr(module, "_is_full_backward_hook", None) is True
        hooks = OrderedDict(module._backward_hooks) if full else OrderedDict()
        pre_hooks = OrderedDict(module._backward_pre_hooks)
        if not hooks and not pre_hooks:
            return None
        if full:
            module._backward_hooks.clear()
        module._backward_pre_hooks.clear()
        return cls(module, hooks, pre_hooks)

    def _wrap_inputs(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        self._pending = BackwardHook(module, list(self.hooks.values()), list(self.pre_hooks.values()))
        return self._pending.setup_input_hook(args)

    def wrap_output(self, output: Any) -> Any:
        """``output`` as torch would pass it on with the hooks in place: the gradient that reaches it
        fires them. An output that is neither a tensor nor a tuple is returned as it is, as torch does
        (with a warning there).

        Example:
            >>> import torch
            >>> from torch import nn
            >>> layer = nn.Linear(2, 2)
            >>> _ = layer.register_full_backward_hook(lambda module, grad_in, grad_out: None)
            >>> moved = MovedBackwardHooks.take(layer)
            >>> out = moved.wrap_output(layer(torch.ones(1, 2, requires_grad=True)))
            >>> out.grad_fn.name()
            'BackwardHookFunctionBackward'
            >>> moved.restore()
        """
        pending, self._pending = self._pending, None
        if pending is None or not isinstance(output, (Tensor, tuple)):
            return output
        return pending.setup_output_hook(output)

    def restore(self) -> None:
        """Put the hooks back on the module, after any it got meanwhile, and remove featvis's pre-hook.

        Example:
            >>> from torch import nn
            >>> layer = nn.Linear(2, 2)
            >>> handle = layer.register_full_backward_hook(lambda module, grad_in, grad_out: None)
            >>> MovedBackwardHooks.take(layer).restore()
            >>> handle.remove(); len(layer._backward_hooks)
            0
        """
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        self.module._backward_hooks.update(self.hooks)
        self.module._backward_pre_hooks.update(self.pre_hooks)
        self._pending = None
