"""One optimisation step, shared by every loop: forward -> objective -> loss, then the optimizer.

:class:`ObjectiveLoss` is the loss (captum's ``loss()``, apart from the optimisation): it
runs parameterisation -> transforms -> preprocessing -> the model, with forward hooks on
the objective's layers only and the forward pass cut after the deepest of them, then the
objective, under autocast and redirected ReLU when asked; its ``with`` block puts the hooks
on and takes them off. :class:`GradientStep` is one optimizer step on that loss: zero the
gradients, backward, normalise the gradients when asked, step, and follow the learning-rate
schedule. :func:`featvis.loop.optimize` drives a step for a number of steps.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from featvis import param, transforms
    >>> from featvis.objectives import channel
    >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval().requires_grad_(False)
    >>> image = param.image(16)
    >>> loss = ObjectiveLoss(model, channel("1", 2), image, transform=transforms.standard())
    >>> step = GradientStep(loss, torch.optim.Adam(image.parameters(), lr=0.05))
    >>> with loss:
    ...     first = [float(step(k).detach()) for k in range(1, 9)]
    >>> first[-1] < first[0]
    True
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from .gradients import normalize_gradients, redirected_relu
from .hooks import ActivationCapture, model_device_dtype
from .objectives import ObjectiveLike, as_objective
from .probe import prepare_capture
from .transforms import set_step, step_setters

__all__ = ["GradientStep", "ObjectiveLoss"]


class ObjectiveLoss:
    """Minus the objective, from the parameterisation's images through the model.

    Made once per run: it checks the objective on one forward pass of the start image
    (finding the layers a plain function reads, explaining a forward pass that fails)
    before any step, and keeps the hooks it needs.

    Args:
        model: the network, already in the state the run wants (eval mode, no weight gradients).
        objective: what to maximise.
        images: the parameterisation: a module whose ``forward()`` returns ``(N, C, H, W)`` images.
        transform: random transforms applied before the model.
        preprocess: what turns [0, 1] images into the model's input.
        layout: a memory format for the model's input (``torch.channels_last``), or ``None``.
        autocast: ``torch.bfloat16`` or ``torch.float16`` to run the model and objective under
            ``torch.autocast``, or ``None``.
        compile_options: ``torch.compile`` options to compile the whole loss (the hooks then
            record without cutting the forward pass: the compiler drops the unused layers), or
            ``None``.
        importance: add up, in :attr:`importance`, the absolute gradient of each backward pass with
            respect to the parameterisation's images, summed over the channels: ``(N, H, W)``.
        copies: the loss is the mean over this many forward passes, each through its own draw of the
            random transforms (several augmented copies per step, as Ghiasi et al. do for ViTs).

    Example:
        >>> from torch import nn
        >>> from featvis import param
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3)).eval()
        >>> loss = ObjectiveLoss(model, "0:1", param.image(8))
        >>> with loss:
        ...     loss().shape
        torch.Size([])
    """

    def __init__(
        self,
        model: nn.Module,
        objective: ObjectiveLike,
        images: nn.Module,
        *,
        transform: Callable[[Tensor], Tensor] = nn.Identity(),  # noqa: B008
        preprocess: Callable[[Tensor], Tensor] = nn.Identity(),  # noqa: B008
        layout: torch.memory_format | None = None,
        autocast: torch.dtype | None = None,
        compile_options: dict[str, Any] | None = None,
        importance: bool = False,
        copies: int = 1,
    ) -> None:
        if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
            raise ValueError(f"copies must be a whole number >= 1, got {copies!r}")
        self.copies = copies
        if importance and compile_options is not None:
            raise ValueError("importance=True needs the eager loss: it is not available with compile=")
        self.model = model
        self.record_importance = importance
        #: the absolute gradients with respect to the images, added up (with ``importance=True``)
        self.importance: Tensor | None = None
        self.objective = as_objective(objective)
        self.images = images
        self.transform = transform
        set_step(transform, 1)  # until a GradientStep says otherwise
        self.preprocess = preprocess
        self.layout = layout
        self.device, self.dtype = model_device_dtype(model)
        self.autocast = autocast
        with torch.no_grad():
            self.image_shape = tuple(images().shape)
        self.capture: ActivationCapture = prepare_capture(model, self.objective, self.activations, self.image_shape)
        self._compiled: Callable[[], Tensor] | None = None
        if compile_options is not None:
            # one graph from the parameterisation to the loss: the hooks record without stopping the
            # pass, and the compiler drops the layers whose outputs the loss does not use
            self.capture.stop_early = False
            self._compiled = torch.compile(self._loss, **compile_options)

    def mixed_precision(self) -> contextlib.AbstractContextManager[Any]:
        """``torch.autocast`` with the run's dtype, or nothing.

        Example:
            >>> from torch import nn
            >>> from featvis import param
            >>> loss = ObjectiveLoss(nn.Sequential(nn.Conv2d(3, 2, 1)), "0:0", param.image(4))
            >>> type(loss.mixed_precision()).__name__
            'nullcontext'
        """
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast)

    def activations(self, capture: ActivationCapture, probe: Tensor | None = None, redirect: bool = False) -> Any:
        """One forward pass of the current images (or of ``probe``, an image batch to try instead),
        through the transforms and preprocessing, returning what ``capture`` recorded.

        Example:
            >>> from torch import nn
            >>> from featvis import param
            >>> loss = ObjectiveLoss(nn.Sequential(nn.Conv2d(3, 2, 1)), "0:0", param.image(4))
            >>> with loss.capture:
            ...     loss.activations(loss.capture)["0"].shape
            torch.Size([1, 2, 4, 4])
        """
        images = self.images() if probe is None else probe.to(self.device)
        if self.record_importance and probe is None and images.requires_grad:
            images.register_hook(self._add_importance)
        transformed = self.transform(images)
        with self.mixed_precision():
            inputs = self.preprocess(transformed).to(self.dtype)
            if self.layout is not None:
                inputs = inputs.contiguous(memory_format=self.layout)
            with redirected_relu(redirect):
                return capture.run(inputs, image=images)

    def _add_importance(self, gradient: Tensor) -> None:
        value = gradient.detach().abs().sum(dim=1).float()
        self.importance = value if self.importance is None else self.importance + value

    def _loss(self, redirect: bool = False) -> Tensor:
        values = []
        for _ in range(self.copies):  # each copy through its own draw of the transforms
            activations = self.activations(self.capture, redirect=redirect)
            with self.mixed_precision():
                values.append(-self.objective(activations).float().reshape(()))
        return values[0] if self.copies == 1 else torch.stack(values).mean()

    def __call__(self, redirect: bool = False) -> Tensor:
        """The loss of the current images, a 0-d float32 tensor (compiled when asked, except with
        ``redirect``: redirected ReLU runs eagerly).

        Example:
            >>> from torch import nn
            >>> from featvis import param
            >>> loss = ObjectiveLoss(nn.Sequential(nn.Conv2d(3, 2, 1)), "0:0", param.image(4))
            >>> with loss:
            ...     loss().dtype
            torch.float32
        """
        if self._compiled is not None and not redirect:
            return self._compiled()
        return self._loss(redirect)

    def __enter__(self) -> ObjectiveLoss:
        self.capture.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.capture.__exit__(*exc_info)


class GradientStep:
    """One optimizer step on an :class:`ObjectiveLoss`; calling it with the step number (from 1)
    returns the loss before the step. It first tells the loss's transforms the step
    (:func:`featvis.transforms.set_step`), so that those that change over a run can.

    Args:
        loss: the loss to minimise.
        optimizer: an optimizer on the parameterisation's parameters. One with
            ``gradient_free = True`` (:class:`featvis.optim.EvolutionStrategy`) gets a closure that
            only computes the loss, without gradients.
        schedule: a learning-rate scheduler stepped after each optimizer step, or ``None``.
        redirected_relu: the first this many steps run with redirected ReLU
            (:func:`featvis.gradients.redirected_relu`).
        gradient_noise: ``None``, or normalise each image's gradient to unit norm and add noise of
            this norm (:func:`featvis.gradients.normalize_gradients`).

    Example:
        >>> from torch import nn
        >>> from featvis import param
        >>> image = param.image(8)
        >>> loss = ObjectiveLoss(nn.Sequential(nn.Conv2d(3, 2, 1)), "0:1", image)
        >>> step = GradientStep(loss, torch.optim.SGD(image.parameters(), lr=1.0))
        >>> with loss:
        ...     before, after = float(step(1).detach()), float(step(2).detach())
        >>> after < before
        True
    """

    def __init__(
        self,
        loss: ObjectiveLoss,
        optimizer: torch.optim.Optimizer,
        *,
        schedule: Any = None,
        redirected_relu: int = 0,
        gradient_noise: float | None = None,
    ) -> None:
        self.loss = loss
        self.optimizer = optimizer
        self.schedule = schedule
        self.redirected_relu = redirected_relu
        self.gradient_noise = gradient_noise
        self.parameters = [p for group in optimizer.param_groups for p in group["params"]]
        self.gradient_free = bool(getattr(optimizer, "gradient_free", False))
        # found once, called every step
        self.step_setters = step_setters(loss.transform)

    def _closure(self, step: int) -> Callable[[], Tensor]:
        if self.gradient_free:
            # an evolution strategy only reads the loss, possibly many times per step with its own
            # perturbations of the parameters: no graph, no backward pass
            def loss_only() -> Tensor:
                with torch.no_grad():
                    return self.loss()

            return loss_only

        def closure() -> Tensor:
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.loss(redirect=step <= self.redirected_relu)
            if not loss.requires_grad:
                raise RuntimeError(
                    f"the objective {self.loss.objective} has no gradient with respect to the image: the model "
                    "or its preprocessing is not differentiable (it detaches its input, or goes through NumPy). "
                    "Use a gradient-free optimiser: render_vis(..., optimizer=featvis.optim.EvolutionStrategy)"
                )
            loss.backward()
            if self.gradient_noise is not None:
                normalize_gradients(self.parameters, noise=self.gradient_noise, batch=self.loss.image_shape[0])
            return loss

        return closure

    def __call__(self, step: int) -> Tensor:
        for tell in self.step_setters:  # transforms that change over a run (crops with final_size)
            tell(step)
        loss = self.optimizer.step(self._closure(step))
        if self.schedule is not None:
            self.schedule.step()
        return loss

    def current_images(self) -> Tensor:
        """The parameterisation's images now, without gradients.

        Example:
            >>> from torch import nn
            >>> from featvis import param
            >>> image = param.image(8)
            >>> loss = ObjectiveLoss(nn.Sequential(nn.Conv2d(3, 2, 1)), "0:1", image)
            >>> GradientStep(loss, torch.optim.SGD(image.parameters(), lr=1.0)).current_images().shape
            torch.Size([1, 3, 8, 8])
        """
        with torch.no_grad():
            return self.loss.images().detach()
