"""Feature accentuation and caricatures: a unit's picture that starts from a photo and stays near it.

:func:`accentuate` (Hamblin et al. 2024, as faccent does it) starts from a photo and raises an
objective while a regulariser keeps the activations at a chosen ``layer`` near the photo's, so
the picture stays on the natural images' side and shows *why this photo* excites the unit. The two
pulls are balanced by their gradients: at each step each is scaled to unit norm (per image), and
``strength`` is the regulariser's share, so that one ``strength`` works across units whose
objectives differ by orders of magnitude. The objective sees the image through the random
transforms, as in :func:`featvis.render_vis`; the regulariser sees it as it is.

:func:`caricature` (Lucid's) starts from noise and maximises, at a layer, the dot product with a
photo's activations (times their cosine similarity): what the network sees in the photo.

Example:
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1)).eval()
    >>> photo = torch.rand(1, 3, 16, 16)
    >>> found = accentuate(model, photo, "2:1", layer="0", steps=4, seed=0, progress=False)
    >>> found.images.shape, found.pixel_distance.shape
    (torch.Size([1, 3, 16, 16]), torch.Size([1]))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from . import param as param_module
from .dream import as_image_batch
from .generators import run_random
from .hooks import ActivationCapture, LayerSpec, model_device_dtype
from .layers import LayerRef
from .loop import optimize
from .models import resolve_preprocess
from .objectives import Objective, ObjectiveLike, as_objective
from .optim import default_schedule, make_optimizer
from .probe import layer_output
from .render import render_vis
from .result import RenderResult
from .state import check_seed, denormals_flushed, rendering_state
from .transforms import TransformSpec, as_transform

__all__ = ["Accentuation", "accentuate", "caricature"]


@dataclass
class Accentuation:
    """What :func:`accentuate` reached, and how far from the photo.

    Attributes:
        images: the accentuated photos, ``(N, C, H, W)`` in [0, 1], on the CPU.
        photos: the photos it started from.
        losses: minus the objective at each step (on the transformed images).
        objective: the objective's value on the final images, untransformed.
        photo_objective: its value on the photos.
        pixel_distance: ``(N,)``: the root mean square difference from each photo, in [0, 1] units.
        layer_distance: ``(N,)``: the distance from each photo's activations at the regularised
            layer, relative to their norm.
        steps: steps done.
        interrupted: whether Ctrl-C stopped it.

    Example:
        >>> found = Accentuation(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4), torch.zeros(2), 1.0, 0.5,
        ...                      torch.zeros(1), torch.zeros(1), 2, False)
        >>> found.side_by_side().images.shape
        torch.Size([2, 3, 4, 4])
    """

    images: Tensor
    photos: Tensor
    losses: Tensor
    objective: float
    photo_objective: float
    pixel_distance: Tensor
    layer_distance: Tensor
    steps: int
    interrupted: bool

    def side_by_side(self) -> RenderResult:
        """Each photo beside its accentuation, as a result to show or save (``.grid(nrow=2)``).

        Example:
            >>> found = Accentuation(torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4), torch.zeros(1), 1.0, 0.5,
            ...                      torch.zeros(2), torch.zeros(2), 1, False)
            >>> found.side_by_side().units
            ['photo', 'accentuated', 'photo', 'accentuated']
        """
        pairs = torch.stack([self.photos, self.images], dim=1).flatten(0, 1)
        units = ["photo", "accentuated"] * len(self.images)
        return RenderResult(pairs, {}, self.losses, "accentuation", self.steps, self.interrupted, units)


def _per_image_norms(gradients: list[Tensor], count: int) -> Tensor:
    """Each image's gradient norm over all the parameters (those whose first axis is the batch), else one norm."""
    if all(g.shape[0] == count for g in gradients):
        return torch.sqrt(sum(g.flatten(1).square().sum(1) for g in gradients))
    return torch.sqrt(sum(g.square().sum() for g in gradients)).expand(count)


def _scaled(gradients: list[Tensor], norms: Tensor, count: int) -> list[Tensor]:
    divisor = norms.clamp_min(1e-12)
    return [
        g / divisor.reshape(-1, *([1] * (g.ndim - 1))) if g.shape[0] == count else g / divisor[0] for g in gradients
    ]


class _AccentStep:
    """One step: both gradients, each scaled to unit norm per image, the regulariser's times ``strength``."""

    def __init__(
        self,
        image: nn.Module,
        objective_of: Callable[[Tensor], Tensor],
        distance_of: Callable[[Tensor], Tensor],
        strength: float,
        count: int,
    ) -> None:
        self.image, self.objective_of, self.distance_of = image, objective_of, distance_of
        self.strength, self.count = strength, count
        self.parameters = [p for p in image.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(None, self.parameters)
        self.schedule = default_schedule(self.optimizer)

    def __call__(self, number: int) -> Tensor:
        images = self.image()
        value = self.objective_of(images)
        distance = self.distance_of(images)
        pull = torch.autograd.grad(value, self.parameters, retain_graph=True)
        hold = torch.autograd.grad(distance, self.parameters)
        pull = _scaled(list(pull), _per_image_norms(list(pull), self.count), self.count)
        hold = _scaled(list(hold), _per_image_norms(list(hold), self.count), self.count)
        for parameter, up, back in zip(self.parameters, pull, hold):
            parameter.grad = -up + self.strength * back  # the optimiser minimises
        self.optimizer.step()
        self.schedule.step()
        return -value.detach().float()


def accentuate(
    model: nn.Module,
    photo: Any,
    objective: ObjectiveLike,
    *,
    layer: LayerSpec,
    strength: float = 1.0,
    steps: int = 128,
    transforms: TransformSpec = None,
    preprocess: Callable[[Tensor], Tensor] | bool | None = None,
    seed: int | None = None,
    progress: bool = True,
) -> Accentuation:
    """Accentuate ``objective`` in ``photo``, keeping the activations at ``layer`` near the photo's.

    Args:
        model: any image model; it comes back as it was.
        photo: ``(C, H, W)`` or ``(N, C, H, W)`` in [0, 1], or a PIL image; each image of a batch on its own.
        objective: what to raise (an :class:`~featvis.objectives.Objective`, ``"layer:channel"`` or a
            function of the activations); give each image its unit with ``batch=`` for several photos.
        layer: the layer whose activations stay near the photo's (an earlier layer keeps more of the
            photo; the objective's own layer lets it change more).
        strength: the regulariser's pull against the objective's, both gradients at unit norm: 0 is a
            plain visualisation started from the photo; 1 (the default) an even balance.
        steps: optimisation steps.
        transforms: the random transforms the objective sees (default: ``render_vis``'s for the size).
        preprocess: as in :func:`featvis.render_vis`.
        seed: fixes the run's random transforms.
        progress: show a progress bar.

    Returns:
        An :class:`Accentuation`: the pictures, and the objective and the distances to the photo.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()).eval()
        >>> found = accentuate(model, torch.rand(3, 12, 12), "1:2", layer="0", steps=8, seed=0, progress=False)
        >>> found.objective > found.photo_objective
        True
    """
    check_seed(seed)
    if not isinstance(strength, (int, float)) or isinstance(strength, bool) or strength < 0:
        raise ValueError(f"strength must be a number >= 0, got {strength!r}")
    objective = as_objective(objective)
    if objective.layers is None:
        raise TypeError(
            "accentuate needs to know the layers the objective reads: give an Objective "
            "(featvis.Objective(function, 'name', layers=[...])), a 'layer:channel' string or a featvis.objectives one"
        )
    reference = LayerRef.parse(layer)
    device, dtype = model_device_dtype(model)
    photos = as_image_batch(photo, model).to(device)
    count, channels, height, width = photos.shape
    prepare = resolve_preprocess(preprocess, model, device)
    transform = as_transform(transforms, size=(height, width))
    if isinstance(transform, nn.Module):
        transform = transform.to(device)
    layers = [*(objective.layers or ()), reference]

    with (
        rendering_state(model),
        run_random(seed, device),
        denormals_flushed(device),
        torch.inference_mode(False),
        torch.enable_grad(),
        ActivationCapture(model, layers) as capture,
    ):

        def acts(pixels: Tensor) -> Any:
            return capture.run(prepare(pixels).to(dtype), image=pixels)

        with torch.no_grad():
            target = acts(photos)[reference].detach().float()
            photo_value = float(objective(acts(photos)))

        def distance_of(pixels: Tensor) -> Tensor:
            return (acts(pixels)[reference].float() - target).square().mean()

        def objective_of(pixels: Tensor) -> Tensor:
            return objective(acts(transform(pixels))).float().reshape(())

        image = param_module.image(width, height, batch=count, channels=channels, init=photos.cpu()).to(device)
        step = _AccentStep(image, objective_of, distance_of, float(strength), count)
        outcome = optimize(
            step, steps, images=lambda: image(), progress=progress, description=f"accentuate {objective}", device=device
        )
        with torch.no_grad():
            final = image().detach()
            final_value = float(objective(acts(final)))
            moved = (acts(final)[reference].float() - target).flatten(1).norm(dim=1)
            layer_distance = moved / target.flatten(1).norm(dim=1).clamp_min(1e-12)
        pixel_distance = (final - photos).flatten(1).square().mean(1).sqrt()
    return Accentuation(
        final.float().cpu(),
        photos.float().cpu(),
        outcome.losses.cpu(),
        final_value,
        photo_value,
        pixel_distance.float().cpu(),
        layer_distance.float().cpu(),
        outcome.done,
        outcome.interrupted,
    )


def caricature(
    model: nn.Module,
    photo: Any,
    layer: LayerSpec,
    *,
    cossim_pow: float = 1.0,
    preprocess: Callable[[Tensor], Tensor] | bool | None = None,
    **render_kwargs: Any,
) -> RenderResult:
    """Lucid's caricature: from noise, maximise at ``layer`` the dot product of the activations with the
    photo's (position by position), times their cosine similarity to the power ``cossim_pow``: what the
    network sees in the photo, exaggerated. The picture has the photo's size.

    Args:
        model: any image model.
        photo: ``(C, H, W)`` or ``(N, C, H, W)`` in [0, 1], or a PIL image: one caricature each.
        layer: the layer whose activations are matched.
        cossim_pow: how much the direction counts beside the magnitude (0: plain dot product).
        preprocess: as in :func:`featvis.render_vis`.
        **render_kwargs: passed to :func:`featvis.render_vis` (``steps``, ``seed``, ``transforms``, ...).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()).eval()
        >>> caricature(model, torch.rand(3, 12, 12), "1", steps=4, seed=0, progress=False).images.shape
        torch.Size([1, 3, 12, 12])
    """
    photos = as_image_batch(photo, model)
    reference = LayerRef.parse(layer)
    target = layer_output(model, reference, photos, preprocess)

    def matched(acts: Any) -> Tensor:
        found = acts[reference].float()
        if found.shape != target.shape:
            raise ValueError(
                f"the caricature's activations at {str(reference)!r} have shape {tuple(found.shape)}, the photo's "
                f"{tuple(target.shape)}: keep the photo's size (no size= or param= of another size)"
            )
        dot = (found * target).flatten(2).sum(1) if found.ndim > 2 else (found * target).sum(1, keepdim=True)
        if cossim_pow:
            norms = found.flatten(2).norm(dim=1) if found.ndim > 2 else found.norm(dim=1, keepdim=True)
            target_norms = target.flatten(2).norm(dim=1) if target.ndim > 2 else target.norm(dim=1, keepdim=True)
            cosine = dot / (norms * target_norms + 1e-8)
            dot = dot * cosine.clamp(min=0.1) ** cossim_pow
        return dot.mean()

    objective = Objective(matched, f"caricature({str(reference)!r})", layers=[reference])
    count, channels, height, width = photos.shape
    seed = render_kwargs.get("seed")
    image = param_module.image(width, height, batch=count, channels=channels, seed=seed)
    return render_vis(model, objective, image, preprocess=preprocess, **render_kwargs)
