"""Channel factorisation: a layer's activations as a few directions (Olah et al. 2018, *The Building
Blocks of Interpretability*).

:func:`reduce` factorises activations ``(N, C, H, W)`` (or ``(samples, C)``) into ``n`` directions in
channel space and each position's weight on them: non-negative matrix factorisation by default (the
activations after a ReLU are non-negative, and so are the parts it finds), in torch (multiplicative
updates, on the activations' device), or scikit-learn's NMF (``method="sklearn-nmf"``, where it is
installed), or PCA. Each direction is an objective's direction
(:func:`featvis.objectives.direction`): :func:`render_factors` renders them all, one picture each.
:func:`semantic_dictionary` does it for one photo: the factors of its activations, each with its
picture and where in the photo it is.

Example:
    >>> import torch
    >>> parts = torch.rand(3, 8)  # three non-negative directions over eight channels
    >>> mixed = torch.rand(200, 3) @ parts
    >>> found = reduce(mixed, 3, seed=0)
    >>> found.components.shape, bool(found.relative_error < 0.05)
    (torch.Size([3, 8]), True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from . import param as param_module
from .dream import as_image_batch
from .generators import run_generators
from .hooks import LayerSpec
from .models import default_input_size
from .objectives import Objective
from .objectives import direction as direction_objective
from .probe import layer_output
from .render import render_vis
from .result import RenderResult
from .sizes import size_pair

__all__ = ["Factorisation", "SemanticDictionary", "reduce", "render_factors", "semantic_dictionary"]

#: the methods :func:`reduce` knows
METHODS = ("nmf", "sklearn-nmf", "pca")


@dataclass
class Factorisation:
    """Activations ``X`` (samples x channels) as ``weights @ components``.

    Attributes:
        components: ``(n, C)``: each factor's direction in channel space.
        weights: ``(samples, n)``, or ``(N, n, H, W)`` when the activations were ``(N, C, H, W)``:
            each position's amount of each factor.
        relative_error: ``|X - weights @ components| / |X|`` (Frobenius norms).
        method: how it was found.

    Example:
        >>> found = Factorisation(torch.eye(2), torch.ones(3, 2), 0.0, "nmf")
        >>> found.direction(1).tolist()
        [0.0, 1.0]
    """

    components: Tensor
    weights: Tensor
    relative_error: float
    method: str

    def direction(self, index: int) -> Tensor:
        """Factor ``index``'s direction, ``(C,)``, for :func:`featvis.objectives.direction`.

        Example:
            >>> Factorisation(torch.eye(3), torch.ones(1, 3), 0.0, "nmf").direction(2).shape
            torch.Size([3])
        """
        return self.components[index]


def _as_samples(activations: Tensor) -> tuple[Tensor, tuple[int, ...] | None]:
    """``(samples, C)``, and the ``(N, H, W)`` to fold the weights back into (``None`` for samples already)."""
    if activations.ndim == 2:
        return activations, None
    if activations.ndim == 4:
        count, channels, height, width = activations.shape
        return activations.permute(0, 2, 3, 1).reshape(-1, channels), (count, height, width)
    raise ValueError(
        f"activations must be (N, C, H, W) or (samples, C), got shape {tuple(activations.shape)}; for tokens "
        "(N, T, C), pass activations.reshape(-1, C)"
    )


def _nmf(samples: Tensor, n: int, steps: int, seed: int) -> tuple[Tensor, Tensor]:
    """Lee and Seung's multiplicative updates for the Frobenius norm, from a random non-negative start."""
    with run_generators(seed) as generators:
        draw = generators.get(samples.device)
        scale = (samples.mean() / n).clamp_min(1e-12).sqrt()
        weights = torch.rand(samples.shape[0], n, device=samples.device, generator=draw, dtype=samples.dtype) * scale
        components = torch.rand(n, samples.shape[1], device=samples.device, generator=draw, dtype=samples.dtype) * scale
    tiny = torch.finfo(samples.dtype).eps
    for _ in range(steps):
        components *= (weights.T @ samples) / (weights.T @ weights @ components + tiny)
        weights *= (samples @ components.T) / (weights @ (components @ components.T) + tiny)
    return weights, components


def reduce(activations: Tensor, n: int, method: str = "nmf", *, steps: int = 500, seed: int = 0) -> Factorisation:
    """Factorise ``activations`` into ``n`` directions in channel space.

    Args:
        activations: ``(N, C, H, W)`` (every position of every image is a sample) or ``(samples, C)``.
        n: how many factors.
        method: ``"nmf"`` (torch, non-negative: negative activations are set to 0 first),
            ``"sklearn-nmf"`` (scikit-learn's, ``pip install "featvis[sklearn]"``), or ``"pca"`` (the top
            principal directions of the centred activations; any sign).
        steps: the NMF's iterations.
        seed: the NMF's random start.

    Returns:
        A :class:`Factorisation`; NMF's factors are ordered by their total weight, largest first.

    Example:
        >>> acts = torch.rand(2, 8, 5, 5)
        >>> found = reduce(acts, 3)
        >>> found.components.shape, found.weights.shape
        (torch.Size([3, 8]), torch.Size([2, 3, 5, 5]))
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    samples, fold = _as_samples(activations.detach().float())
    if not isinstance(n, int) or not 1 <= n <= min(samples.shape):
        raise ValueError(f"n must be a whole number from 1 to {min(samples.shape)} for these activations, got {n!r}")
    if method == "pca":
        mean = samples.mean(0, keepdim=True)
        _, _, basis = torch.linalg.svd(samples - mean, full_matrices=False)
        components = basis[:n]
        weights = (samples - mean) @ components.T
        error = float((samples - mean - weights @ components).norm() / (samples - mean).norm().clamp_min(1e-12))
    else:
        samples = samples.clamp_min(0)
        if method == "sklearn-nmf":
            try:
                from sklearn.decomposition import NMF
            except ImportError:
                raise ImportError("method='sklearn-nmf' needs scikit-learn: pip install 'featvis[sklearn]'") from None
            model = NMF(n_components=n, init="nndsvda", max_iter=steps, random_state=seed)
            weights = torch.from_numpy(model.fit_transform(samples.cpu().numpy())).to(samples)
            components = torch.from_numpy(model.components_).to(samples)
        else:
            weights, components = _nmf(samples, n, steps, seed)
        order = weights.sum(0).argsort(descending=True)
        weights, components = weights[:, order], components[order]
        error = float((samples - weights @ components).norm() / samples.norm().clamp_min(1e-12))
    if fold is not None:
        count, height, width = fold
        weights = weights.reshape(count, height, width, n).permute(0, 3, 1, 2)
    return Factorisation(components.cpu(), weights.cpu(), error, method)


def render_factors(
    model: nn.Module, layer: LayerSpec, factors: Factorisation, *, cossim_pow: float = 0.0, **render_kwargs: Any
) -> RenderResult:
    """One picture per factor: ``render_vis`` of the sum over factors ``i`` of
    ``direction(layer, components[i], batch=i)`` (a spritemap of the layer's factors).

    Example:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
        >>> found = reduce(torch.rand(50, 4), 2)
        >>> render_factors(model, "1", found, size=12, steps=2, progress=False).images.shape
        torch.Size([2, 3, 12, 12])
    """
    count = factors.components.shape[0]
    objective = Objective.sum(
        direction_objective(layer, factors.direction(i), batch=i, cossim_pow=cossim_pow) for i in range(count)
    )
    if "param" not in render_kwargs:  # one image per factor
        size = render_kwargs.pop("size", None)
        height, width = size_pair(size if size is not None else default_input_size(model))
        render_kwargs["param"] = param_module.image(width, height, batch=count, seed=render_kwargs.get("seed"))
    return render_vis(model, objective, **render_kwargs)


@dataclass
class SemanticDictionary:
    """One photo's activations at a layer as factors: each factor's picture and where it is in the photo.

    Attributes:
        factors: the :class:`Factorisation` of the photo's activations.
        pictures: one rendered picture per factor (:func:`render_factors`).
        maps: ``(n, H, W)``: each factor's weight at each position of the layer, scaled to [0, 1].

    Example:
        >>> SemanticDictionary.__dataclass_fields__.keys() >= {"factors", "pictures", "maps"}
        True
    """

    factors: Factorisation
    pictures: RenderResult
    maps: Tensor


def semantic_dictionary(
    model: nn.Module, photo: Tensor, layer: LayerSpec, n: int = 6, *, preprocess: Any = None, **render_kwargs: Any
) -> SemanticDictionary:
    """Building Blocks' semantic dictionary of ``photo`` at ``layer``: the NMF of its activations (each
    position a sample) into ``n`` factors, a picture of each, and each one's map over the photo.

    Args:
        model: any image model.
        photo: ``(C, H, W)`` or ``(1, C, H, W)`` in [0, 1], or a PIL image.
        layer: a layer with ``(N, C, H, W)`` outputs.
        n: how many factors.
        preprocess: as in :func:`featvis.render_vis`.
        **render_kwargs: for the pictures (:func:`featvis.render_vis`'s ``steps``, ``seed``, ``size``...).

    Example:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
        >>> found = semantic_dictionary(model, torch.rand(3, 12, 12), "1", n=2, size=12, steps=2, progress=False)
        >>> found.maps.shape
        torch.Size([2, 10, 10])
    """
    acts = layer_output(model, layer, as_image_batch(photo, model)[:1], preprocess)
    factors = reduce(acts, n)
    maps = factors.weights[0]
    maps = maps / maps.flatten(1).max(1).values.clamp_min(1e-12)[:, None, None]
    pictures = render_factors(model, layer, factors, preprocess=preprocess, **render_kwargs)
    return SemanticDictionary(factors, pictures, maps)
