"""Objectives of single units: a neuron, a channel, a layer, a class, a direction.

Example:
    >>> print(neuron("layer2", 4, x=3, y=5) + class_logit("fc", 1))
    neuron('layer2', 4, x=3, y=5) + class_logit('fc', 1)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..hooks import Activations, LayerRef, LayerSpec, check_index, layer_label, pick_batch, token_grid
from .core import ObjectiveFunction, channel, wrap_objective

__all__ = [
    "channel",
    "class_logit",
    "class_prob",
    "direction",
    "direction_neuron",
    "layer",
    "neuron",
    "token_centre",
    "token_grid",
]


def _logits(acts: Activations, ref: LayerRef, batch: int | None, index: int) -> Tensor:
    logits = pick_batch(acts[ref], batch, ref)
    if logits.ndim != 2:
        raise ValueError(
            f"class objectives need (N, classes) outputs, but layer {str(ref)!r} gives shape "
            f"{tuple(logits.shape)}; target the classifier layer (often 'fc', 'linear' or 'head')"
        )
    check_index(logits, index, ref, what="class")
    return logits


def token_centre(count: int) -> int:
    """The centre token of ``count`` tokens: the centre patch of :func:`token_grid`'s grid (after a
    class token when ``count`` is 1 + k * k), else ``count // 2``.

    Example:
        >>> token_centre(17), token_centre(197), token_centre(16), token_centre(10)
        (11, 106, 10, 5)
    """
    grid = token_grid(count)
    if grid is None:
        return count // 2
    first, side = grid
    return first + (side // 2) * side + side // 2


def _patch_token(count: int, x: int | None, y: int, ref: LayerRef) -> int:
    """The index of the token of patch ``(y, x)`` (row, column; the centre column when ``x`` is None)."""
    grid = token_grid(count)
    if grid is None:
        raise ValueError(
            f"y= picks a patch of a square grid of tokens, but {layer_label(ref)} has {count} tokens (not k*k, "
            "nor 1+k*k with a class token first): give the token's index as x= alone"
        )
    first, side = grid
    column = side // 2 if x is None else x
    for name, at in (("y", y), ("x", column)):
        if not 0 <= at < side:
            raise IndexError(
                f"{name}={at} is out of range for the {side}x{side} grid of patches of {layer_label(ref)} "
                f"(0 to {side - 1})"
            )
    return first + y * side + column


def _at_position(units: Tensor, x: int | None, y: int | None, ref: LayerRef, tokens: bool = False) -> Tensor:
    """``(N, C, *positions)`` activations at one position (the centre by default): ``(N, C)``."""
    positions = units.shape[2:]
    if tokens:
        if y is not None:
            x, y = _patch_token(positions[0], x, y, ref), None
        elif x is None:
            x = token_centre(positions[0])
    elif y is not None and len(positions) == 1:
        raise ValueError(
            f"y={y} has no meaning for {layer_label(ref)}: its activations have one position axis (N, C, L); "
            "give the position as x="
        )
    coordinates = {2: [("y", y), ("x", x)], 1: [("x", x)]}.get(len(positions), [])
    index = []
    for (name, given), size in zip(coordinates, positions):
        at = size // 2 if given is None else given
        if not 0 <= at < size:
            raise IndexError(f"{name}={at} is out of range for {layer_label(ref)}, of size {size} there")
        index.append(at)
    return units[(slice(None), slice(None), *index)]


def _as_vector(vector: Sequence[float] | Tensor) -> Tensor:
    return torch.as_tensor(vector, dtype=torch.float32).detach().flatten()


def _dot_cosine(units: Tensor, vec: Tensor, cossim_pow: float, ref: LayerRef) -> Tensor:
    """Per position: ``units . vec``, times ``max(cos(units, vec), 0.1) ** cossim_pow`` when that is not 0."""
    if units.shape[1] != vec.numel():
        raise ValueError(f"the direction has {vec.numel()} values but layer {str(ref)!r} has {units.shape[1]} channels")
    v = vec.to(units).reshape(1, -1, *([1] * (units.ndim - 2)))
    dot = (units * v).sum(dim=1)
    if cossim_pow:
        cosine = dot / (units.norm(dim=1) * v.norm() + 1e-8)
        dot = dot * cosine.clamp(min=0.1) ** cossim_pow
    return dot


@wrap_objective
def neuron(
    layer: LayerSpec, channel: int, x: int | None = None, y: int | None = None, batch: int | None = None
) -> ObjectiveFunction:
    """One neuron: a channel's activation at one position (the centre by default).

    For ``(N, C, H, W)`` activations the position is ``(y, x)``. For token sequences ``(N, T, C)``
    (a ViT's) ``x`` alone is a token's index; with ``y``, ``(y, x)`` is the row and column of a patch
    in the square grid of patch tokens, after the class token when there is one
    (:func:`token_grid`; ``x`` defaults to the centre column); with neither, the centre patch
    (:func:`token_centre`). For ``(N, C, L)`` signals the position is ``x``; ``(N, C)``
    activations have none.

    Example:
        >>> print(neuron("layer2", 4, x=3, y=5))
        neuron('layer2', 4, x=3, y=5)
        >>> print(neuron("encoder.layers.encoder_layer_3.mlp", 7, x=0, y=13))  # a ViT's bottom-left patch
        neuron('encoder.layers.encoder_layer_3.mlp', 7, x=0, y=13)
    """

    def value(acts: Activations) -> Tensor:
        units = acts.units(layer, batch)
        check_index(units, channel, layer)
        return _at_position(units, x, y, layer, tokens=acts.tokens(layer))[:, channel].mean()

    return value


@wrap_objective
def layer(layer: LayerSpec, batch: int | None = None) -> ObjectiveFunction:
    """DeepDream: the mean of the squared activations of a whole layer.

    Example:
        >>> print(layer("layer3"))
        layer('layer3')
    """

    def value(acts: Activations) -> Tensor:
        return acts.units(layer, batch).square().mean()

    return value


@wrap_objective(unit="index")
def class_logit(layer: LayerSpec, index: int, batch: int | None = None) -> ObjectiveFunction:
    """The logit (pre-softmax score) of one class.

    ``layer`` is the classifier layer, or ``""`` for the model's own output.

    Example:
        >>> print(class_logit("linear", 6))
        class_logit('linear', 6)
    """

    def value(acts: Activations) -> Tensor:
        return _logits(acts, layer, batch, index)[:, index].mean()

    return value


@wrap_objective
def class_prob(layer: LayerSpec, index: int, batch: int | None = None) -> ObjectiveFunction:
    """The softmax probability of one class.

    Example:
        >>> print(class_prob("fc", 1))
        class_prob('fc', 1)
    """

    def value(acts: Activations) -> Tensor:
        return torch.softmax(_logits(acts, layer, batch, index), dim=1)[:, index].mean()

    return value


@wrap_objective
def direction(
    layer: LayerSpec, vector: Sequence[float] | Tensor, batch: int | None = None, cossim_pow: float = 0.0
) -> ObjectiveFunction:
    """A direction in activation space: the dot product with ``vector`` at each position.

    With ``cossim_pow > 0`` the dot product is multiplied by the cosine similarity
    to that power (floored at 0.1), which favours activations that point the same
    way rather than ones that are merely large.

    Example:
        >>> print(direction("layer3", [1.0, -1.0, 0.0]))
        direction('layer3', <3-vector>)
    """
    vec = _as_vector(vector)

    def value(acts: Activations) -> Tensor:
        return _dot_cosine(acts.units(layer, batch), vec, cossim_pow, layer).mean()

    return value


@wrap_objective
def direction_neuron(
    layer: LayerSpec,
    vector: Sequence[float] | Tensor,
    x: int | None = None,
    y: int | None = None,
    batch: int | None = None,
    cossim_pow: float = 0.0,
) -> ObjectiveFunction:
    """A direction in activation space at one position (the centre by default), as :func:`neuron` is to
    :func:`channel`: the dot product of the activation vector there with ``vector``, times the cosine
    similarity to the power ``cossim_pow`` (see :func:`direction`).

    Example:
        >>> print(direction_neuron("layer3", [0.5, 1.0, 0.0], x=2, y=3, cossim_pow=1))
        direction_neuron('layer3', <3-vector>, x=2, y=3, cossim_pow=1)
    """
    vec = _as_vector(vector)

    def value(acts: Activations) -> Tensor:
        units = _at_position(acts.units(layer, batch), x, y, layer, tokens=acts.tokens(layer))
        return _dot_cosine(units, vec, cossim_pow, layer).mean()

    return value
