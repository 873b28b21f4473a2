"""The render loop: optimise an image so that an objective is maximised.

One step is: parameterisation -> transforms -> preprocessing -> model (with
hooks on the targeted layers only, stopped after the deepest one) -> objective
-> loss -> optimizer step. :func:`render_vis` sets the run's state
(``featvis.state``), builds the step (``featvis.step``), drives it
(:func:`featvis.loop.optimize`) and returns a :class:`~featvis.result.RenderResult`;
:func:`render_channels` renders many units of a layer, one image each, in chunks
sized by :func:`~featvis.batching.auto_batch_size`.

Example:
    >>> import torch
    >>> from torch import nn
    >>> import featvis
    >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
    >>> result = featvis.render_vis(model, "0:1", size=16, steps=4, progress=False)
    >>> result.images.shape
    torch.Size([1, 3, 16, 16])
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from . import param as param_module
from .batching import auto_batch_size, check_memory
from .generators import run_random
from .hooks import LayerRef, LayerSpec, model_device_dtype, resolve_layer
from .loop import StopCriterion, check_steps, optimize
from .models import default_input_channels, default_input_size, resolve_preprocess
from .objectives import Objective, ObjectiveLike, as_objective
from .objectives import channel as channel_objective
from .optim import OptimizerSpec, default_schedule, make_optimizer
from .probe import layer_width, memory_error, out_of_memory
from .result import RenderResult
from .sizes import Size, size_pair
from .state import check_seed, denormals_flushed, memory_format, rendering_state, seeded
from .step import GradientStep, ObjectiveLoss
from .threads import check_threads
from .transforms import Compose, RandomBackground, TransformSpec, as_transform

__all__ = ["RenderResult", "auto_batch_size", "render_channels", "render_vis"]


def _compile_options(compile: bool | dict[str, Any]) -> dict[str, Any] | None:
    if compile is False:
        return None
    if compile is True:
        return {}
    if isinstance(compile, dict):
        return dict(compile)
    raise TypeError(f"compile must be True, False or a dict of torch.compile options, got {type(compile).__name__}")


def _gradient_noise(normalize_gradients: bool | float) -> float | None:
    noise = 1e-2 if normalize_gradients is True else float(normalize_gradients)
    if noise < 0:
        raise ValueError(f"normalize_gradients must be True, False or a noise norm >= 0, got {normalize_gradients!r}")
    return None if normalize_gradients is False else noise


def _check_run_options(redirected_relu: int, autocast: torch.dtype | None) -> None:
    if isinstance(redirected_relu, bool) or not isinstance(redirected_relu, int) or redirected_relu < 0:
        raise ValueError(f"redirected_relu must be a number of steps >= 0 (0 turns it off), got {redirected_relu!r}")
    if autocast is not None and autocast not in (torch.bfloat16, torch.float16):
        raise ValueError(f"autocast must be torch.bfloat16, torch.float16 or None, got {autocast!r}")


def _make_param(param: nn.Module | None, model: nn.Module, size: Size | None, seed: int | None) -> nn.Module:
    """``param``, or the default one for ``size``; with ``seed``, a random start nobody chose or changed
    is drawn again from it (see :meth:`featvis.param.Image.draw_start`), so that ``seed`` fixes the run."""
    if param is None:
        height, width = size_pair(size if size is not None else default_input_size(model))
        return param_module.image(width, height, channels=default_input_channels(model), seed=seed)
    if not isinstance(param, nn.Module):
        raise TypeError(
            f"param must be a torch.nn.Module returning images (e.g. featvis.param.image(224)), "
            f"got {type(param).__name__}"
        )
    if size is not None:
        raise ValueError("give either param or size, not both: the parameterisation fixes the size")
    untouched = getattr(param, "random_start_untouched", None)  # featvis's parameterisations have it
    if seed is not None and callable(untouched) and untouched():
        param.draw_start(seed)
    return param


def _warn_if_unchanged(start: Tensor, final: Tensor, steps: int, objective: str) -> None:
    """A warning naming the images that no step changed: their objective's gradient was exactly zero."""
    unchanged = torch.eq(start, final).flatten(1).all(1).nonzero().flatten().tolist()
    if not unchanged:
        return
    if len(start) == 1:
        which = "the image"
    else:
        which = f"images {unchanged}" if len(unchanged) > 1 else f"image {unchanged[0]}"
        which += " of the batch"
    warnings.warn(
        f"{which} did not change in {steps} steps: the gradient of the objective {objective} with respect to "
        "it was exactly zero at every step. A unit behind ReLUs that are all off for the start image is "
        "dead: keep redirected_relu on (the default) or try normalize_gradients=True or another seed; a "
        "layer that multiplies by zero (a classifier head initialised to zeros) means untrained weights",
        RuntimeWarning,
        stacklevel=3,
    )


def render_vis(
    model: nn.Module,
    objective: ObjectiveLike,
    param: nn.Module | None = None,
    *,
    optimizer: OptimizerSpec = None,
    transforms: TransformSpec = None,
    steps: int = 256,
    thresholds: Iterable[int] | None = None,
    snapshot_every: int | None = None,
    preprocess: Callable[[Tensor], Tensor] | bool | None = None,
    seed: int | None = None,
    progress: bool = True,
    size: Size | None = None,
    channels_last: bool = False,
    autocast: torch.dtype | None = None,
    compile: bool | dict[str, Any] = False,
    redirected_relu: int = 16,
    normalize_gradients: bool | float = False,
    stop: StopCriterion | None = None,
    importance: bool = False,
    copies: int = 1,
) -> RenderResult:
    """Optimise an image so that ``objective`` is maximised, and return it.

    Args:
        model: any ``torch.nn.Module`` taking image batches. It comes back as it
            was: same weights, train/eval mode and ``requires_grad`` flags, no hooks.
            It runs in eval mode, without weight gradients, and only up to the
            deepest layer the objective needs. On a CPU, denormal floats (below
            1.2e-38) are flushed to zero during the run, which spares the slow
            path x86 takes on them; the caller's setting comes back after.
        objective: an :class:`~featvis.objectives.Objective`, a ``"layer:channel"``
            string, or a function of the activations returning a scalar.
        param: the image parameterisation (default: ``featvis.param.image(size)``,
            Fourier basis with decorrelated colours). It is moved to the model's
            device; its own dtype is kept (float32 by default) and images are cast
            to the model's dtype.
        optimizer: ``None`` for Adam with learning rate 0.1 for 64 steps, then
            ``0.1 * (64 / step) ** 2`` (0.025 at step 128): the picture at step k
            does not depend on ``steps``, survives resizing early, and keeps a
            natural spectrum later (measured in docs/benchmarks.md); an Optimizer class,
            a function ``parameters -> Optimizer``, or an Optimizer made on
            ``param.parameters()``. LBFGS works (each step calls a closure). An
            optimizer with ``gradient_free = True`` (such as
            :class:`featvis.optim.EvolutionStrategy`) gets a closure that only
            computes the loss, without gradients, for models that are not
            differentiable.
        transforms: random transforms applied at every step (default
            :func:`featvis.transforms.for_size` of the image's size: a small shift, zoom
            and rotation with a slight blur, and, from 128 pixels a side, random crops
            after a blur); a module, a callable, or a list (composed). ``[]`` applies none.
        steps: number of optimisation steps.
        thresholds: steps at which to keep a copy of the images (in
            :attr:`RenderResult.snapshots`).
        snapshot_every: also keep a copy every this many steps (steps ``k``,
            ``2k``, ... up to ``steps``), for animations
            (:meth:`RenderResult.save_gif`). Each copy is a float32 CPU tensor of
            the whole batch, ``N*C*H*W*4`` bytes: 12 KB for one 32x32 RGB image,
            but 4.8 MB for 8 images of 224x224, so every 4 steps of 512 keeps
            616 MB; snapshot less often for large batches and long runs.
        preprocess: what turns [0, 1] images into the model's input. ``None``
            uses the model's own normalisation when featvis knows it (featvis's
            models, torchvision's ImageNet models), else none; ``False`` none.
        seed: a whole number that fixes the whole run, so that it repeats exactly on a CPU,
            in any thread: the run draws from generators of its own seeded from it
            (``featvis.generators``), and torch's global generators are seeded too for
            the run (the caller's states are given back after). The start image too: the
            default ``param``, and a ``featvis.param.Image`` you pass whose random start you
            neither seeded nor changed, start from ``param.image(..., seed=seed)``'s start
            (:meth:`~featvis.param.Image.draw_start`); one made with ``seed=``, given a start
            image (``init=``, ``set_image``) or already optimised is kept as it is.
        progress: show a tqdm progress bar (a widget in notebooks).
        size: image size ``H`` or ``(H, W)`` when ``param`` is not given
            (default: the model's usual input size, or 224).
        channels_last: run the model in the channels-last memory layout (its 4-D
            weights are converted for the run and the originals put back after).
            Often faster for convolutions on GPUs with tensor cores and on CPUs.
        autocast: ``torch.bfloat16`` or ``torch.float16`` runs the preprocessing,
            the model and the objective under ``torch.autocast`` (mixed precision;
            meant for CUDA). The image and the optimiser stay in float32.
        compile: ``True`` (or a dict of ``torch.compile`` options, such as
            ``{"mode": "max-autotune"}``) compiles one whole step, from the
            parameterisation to the objective, with ``torch.compile``. The
            layers after the deepest target are dropped by the compiler instead
            of cut by a hook. The first step pays the compilation (seconds to a
            minute); it pays off on GPUs and long runs.
        redirected_relu: for this many first steps, ReLUs that would block the
            whole gradient of an image let through the part that raises their
            inputs (:func:`featvis.gradients.redirected_relu`), so that units that
            start inactive still render; other images and units get the ordinary
            gradient. ``0`` turns it off. These steps run uncompiled.
        normalize_gradients: scale each image's gradient to unit norm and add a
            little noise before each optimiser step
            (:func:`featvis.gradients.normalize_gradients`); a float sets the
            noise's norm (``True`` is 0.01). Useful with SGD; Adam already
            normalises per value.
        stop: a stopping criterion, called after each step with the step number and the
            losses so far, that may end the run early (such as
            :class:`featvis.loop.Plateau`; see :class:`featvis.loop.StopCriterion`).
        importance: keep, in :attr:`RenderResult.importance`, where in each image the objective
            looked: the absolute gradient with respect to the image, summed over the channels and
            the steps, ``(N, H, W)`` (MACO's importance maps; shown by
            :meth:`RenderResult.importance_overlay`). Needs gradients: not with a gradient-free
            optimiser or ``compile``.
        copies: each step's loss is the mean over this many forward passes, each through its own draw
            of the random transforms (several augmented copies per step; costs as many passes).

    A parameterisation with an opacity channel (``featvis.param.image(..., alpha=True)``) gives
    transparent pictures: each step composites its images over random backgrounds
    (:class:`featvis.transforms.RandomBackground`, before the other transforms), and the result
    keeps the opacity (``result.alpha``: RGBA PNGs, grids over a checkerboard). Add
    :func:`featvis.objectives.transparency` to the objective to reward transparency.

    Returns:
        A :class:`RenderResult`. Ctrl-C stops the run early and still returns
        what was reached (``interrupted=True``).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from featvis import objectives
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3)).eval()
        >>> objective = objectives.channel("2", 3) - 0.1 * objectives.total_variation()
        >>> result = render_vis(model, objective, size=24, steps=8, seed=0, progress=False)
        >>> result.images.shape, result.losses.shape
        (torch.Size([1, 3, 24, 24]), torch.Size([8]))
    """
    check_seed(seed)
    objective = as_objective(objective)
    snapshot_at = check_steps(steps, thresholds, snapshot_every)
    device = model_device_dtype(model)[0]
    check_threads(device)  # warns once if torch's CPU threads are far slower than one
    transform = None if transforms is None else as_transform(transforms)
    prepare = resolve_preprocess(preprocess, model, device)
    compile_options = _compile_options(compile)
    _check_run_options(redirected_relu, autocast)
    gradient_noise = _gradient_noise(normalize_gradients)
    layout = torch.channels_last if channels_last else None

    # the model first: a model another thread renders is refused before anything else changes; gradients
    # on, also when called inside torch.no_grad() or torch.inference_mode()
    with (
        rendering_state(model),
        torch.inference_mode(False),
        torch.enable_grad(),
        run_random(seed, device),
        memory_format(model, layout),
        denormals_flushed(device),
    ):
        image_param = _make_param(param, model, size, seed).to(device)
        with torch.no_grad():  # the start images: their size, and what the run changed in them
            start = image_param().detach()
        if transform is None:  # the defaults depend on the image's size
            transform = as_transform(None, size=tuple(start.shape[-2:]))
        alpha = bool(getattr(image_param, "alpha", False))
        if alpha:  # transparent images: onto a random background first, then the usual transforms
            transform = Compose(RandomBackground(), transform)
        if isinstance(transform, nn.Module):
            transform = transform.to(device)
        model_shape = (start.shape[0], start.shape[1] - alpha, *start.shape[2:])  # what the model takes
        parameters = [p for p in image_param.parameters() if p.requires_grad]
        if not parameters:
            raise ValueError("the parameterisation has no parameters that require gradients")
        check_memory(model, list(objective.layers or ()), model_shape, prepare)  # only large runs
        if any(p.is_inference() for p in parameters):
            raise ValueError(
                "the parameterisation was made inside torch.inference_mode(), whose tensors can never be "
                "optimised: make it outside (render_vis itself may be called inside)"
            )
        # a parameterisation may name its own learning rate (a CPPN's): kept constant, since the default
        # schedule is the Fourier basis's
        own_rate = getattr(image_param, "learning_rate", None)
        opt = make_optimizer(optimizer, parameters, lr=own_rate)
        loss = ObjectiveLoss(
            model,
            objective,
            image_param,
            transform=transform,
            preprocess=prepare,
            layout=layout,
            autocast=autocast,
            compile_options=compile_options,
            importance=importance,
            copies=copies,
        )
        # the default optimiser's learning rate follows the step; one you pass is left alone
        step = GradientStep(
            loss,
            opt,
            schedule=default_schedule(opt) if optimizer is None and own_rate is None else None,
            redirected_relu=redirected_relu,
            gradient_noise=gradient_noise,
        )
        if importance and step.gradient_free:
            raise ValueError("importance=True adds up gradients, and a gradient-free optimiser has none")
        try:
            with loss:
                outcome = optimize(
                    step,
                    steps,
                    images=step.current_images,
                    snapshot_at=snapshot_at,
                    parameters=parameters,
                    progress=progress,
                    description=str(objective),
                    stop=stop,
                    device=device,
                )
        except RuntimeError as error:  # torch.OutOfMemoryError is one
            if out_of_memory(error):  # said as what it is, never as a size problem
                raise memory_error(error, model_shape, "a step (the forward and backward passes)") from error
            raise
        final = step.current_images()
        if outcome.done and not step.gradient_free:
            _warn_if_unchanged(start, final, outcome.done, str(objective))
        images = final.float().cpu()
        found = None
        if importance:
            found = (
                loss.importance.cpu() if loss.importance is not None else torch.zeros(len(images), *images.shape[2:])
            )
    return RenderResult(
        images,
        outcome.snapshots,
        outcome.losses.cpu(),
        str(objective),
        outcome.done,
        outcome.interrupted,
        alpha=alpha,
        importance=found,
    )


def render_channels(
    model: nn.Module,
    layer: LayerSpec,
    channels: Sequence[int] | None = None,
    *,
    batch_size: int | None = None,
    size: Size | None = None,
    image_channels: int | None = None,
    unit: Callable[[LayerSpec, int, int], Objective] | None = None,
    param: Callable[[int], nn.Module] | None = None,
    seed: int | None = None,
    **render_kwargs: Any,
) -> RenderResult:
    """Render many units of one layer, one image per unit, ``batch_size`` at a time.

    Each chunk is one :func:`render_vis` call whose objective gives batch element
    ``i`` its own unit (``channel(layer, unit_i, batch=i)``), and its images go to
    the CPU before the next chunk starts, so memory grows with ``batch_size``,
    not with the number of units.

    Args:
        model: the network.
        layer: the layer whose units to render.
        channels: the units (default: every channel of the layer).
        batch_size: images optimised together (default: :func:`auto_batch_size`,
            which picks what fits the device's free memory).
        size: image size (default: the model's usual input size, or 224).
        image_channels: channels of the rendered images (default: what the model
            takes, see :func:`featvis.models.default_input_channels`).
        unit: ``(layer, index, batch) -> Objective`` for each unit
            (default :func:`featvis.objectives.channel`).
        param: ``batch -> parameterisation`` (default ``featvis.param.image``).
        seed: base seed; chunk ``k`` uses ``seed + k``.
        **render_kwargs: passed to :func:`render_vis` (steps, transforms, ...).

    Example:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
        >>> result = render_channels(model, "0", batch_size=3, size=12, steps=2, progress=False)
        >>> result.images.shape, result.units
        (torch.Size([4, 3, 12, 12]), [0, 1, 2, 3])
    """
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    check_seed(seed)
    height, width = size_pair(size if size is not None else default_input_size(model))
    if image_channels is None:
        image_channels = default_input_channels(model)
    ref = LayerRef.parse(layer)  # parsed once, and checked against the model here, before any work
    resolve_layer(model, ref)
    make_unit = unit or (lambda lay, index, batch: channel_objective(lay, index, batch=batch))
    device = model_device_dtype(model)[0]
    preprocess = render_kwargs.get("preprocess")
    results = []
    # warn about training mode once, not once per chunk; the memory probes need gradients on
    with rendering_state(model), torch.inference_mode(False), torch.enable_grad():
        if channels is None:
            channels = range(layer_width(model, ref, (height, width), image_channels, preprocess))
        units = list(channels)
        if not units:
            raise ValueError("no channels to render")
        if batch_size is None:
            batch_size = auto_batch_size(
                model, ref, (height, width), image_channels=image_channels, preprocess=preprocess
            )
        for chunk_index, start in enumerate(range(0, len(units), batch_size)):
            chunk = units[start : start + batch_size]
            chunk_seed = None if seed is None else seed + chunk_index
            objective = Objective.sum(make_unit(ref, u, i) for i, u in enumerate(chunk))
            if param is None:
                chunk_param = param_module.image(
                    width, height, batch=len(chunk), channels=image_channels, seed=chunk_seed
                )
            else:  # your param() draws from torch's global generator, seeded with chunk_seed here
                with seeded(chunk_seed, device, mix=False):
                    chunk_param = param(len(chunk))
            result = render_vis(model, objective, chunk_param, seed=chunk_seed, **render_kwargs)
            result.units = chunk
            results.append(result)
            if result.interrupted:
                break
    return RenderResult.concatenate(results)
