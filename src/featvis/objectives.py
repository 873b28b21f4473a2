"""Objectives: what the optimisation maximises, and how to combine them.

An :class:`Objective` is a differentiable score of one forward pass, to be
*maximised*. It receives the captured :class:`~featvis.hooks.Activations`
(layer outputs, and the image itself under ``"input"``) and returns a scalar.
Objectives combine like the maths they stand for:

```python
channel("layer3", 5) + 0.5 * neuron("layer2", 3) - 1e-2 * total_variation()
```

``+``, ``-``, unary ``-``, ``*`` and ``/`` by numbers (or by other objectives)
return new objectives and never change their operands. Penalties
(:func:`total_variation`, :func:`l1`, :func:`l2`, :func:`blur`) are positive
amounts: subtract them.

Every unit objective takes ``batch=i`` to act on batch element ``i`` only, so
that one run renders a different unit in each image:

```python
channel("layer3", 0, batch=0) + channel("layer3", 1, batch=1)
```

Activations are read channels-first: ``(N, C, H, W)`` for convolutions,
``(N, C)`` for linear layers, and ``(N, T, D)`` token sequences (transformers)
are read as ``D`` channels over ``T`` positions.

Example:
    >>> from featvis import objectives
    >>> objective = objectives.channel("layer3", 5) - 1e-3 * objectives.total_variation()
    >>> print(objective)
    channel('layer3', 5) - 0.001 * total_variation()
"""

from __future__ import annotations

import functools
import inspect
import numbers
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from .hooks import INPUT, Activations, LayerRef, LayerSpec, channels_first, check_index, layer_label, pick_batch

__all__ = [
    "Objective",
    "ObjectiveLike",
    "alignment",
    "as_objective",
    "blur",
    "channel",
    "channel_interpolate",
    "class_logit",
    "class_prob",
    "direction",
    "direction_neuron",
    "diversity",
    "l1",
    "l2",
    "layer",
    "neuron",
    "total_variation",
    "wrap_objective",
]

ObjectiveFunction = Callable[[Activations], Tensor]
_ATOM, _PRODUCT, _SUM = 2, 1, 0  # precedence of a description, for parentheses


def _layers_union(*groups: tuple[LayerRef, ...] | None) -> tuple[LayerRef, ...] | None:
    if any(group is None for group in groups):
        return None
    seen: dict[LayerRef, None] = {}
    for group in groups:
        for ref in group or ():
            seen.setdefault(ref)
    return tuple(seen)


def _format_number(value: float) -> str:
    return f"{value:g}"


class _Unit(NamedTuple):
    """What a single-unit objective reads: channel ``index`` of batch element ``batch`` of ``ref``."""

    ref: LayerRef
    index: int
    batch: int


def _sum_parts(terms: Sequence[Objective]) -> list[ObjectiveFunction]:
    """The functions whose values add up to the sum of ``terms``.

    Single units of the same layer (``channel(layer, c_i, batch=i)``, as rendering a
    layer's channels or a model's classes writes them) become one gather instead of
    one slice per term: with K terms that saves K - 1 full-size zero tensors in the
    backward pass.
    """
    groups: dict[LayerRef, list[int]] = {}
    for position, term in enumerate(terms):
        if term._unit is not None:
            groups.setdefault(term._unit.ref, []).append(position)
    together = {members[0]: members for members in groups.values() if len(members) > 1}
    absorbed = {position for members in together.values() for position in members[1:]}
    parts: list[ObjectiveFunction] = []
    for position, term in enumerate(terms):
        if position in together:
            parts.append(_units_together([terms[i] for i in together[position]]))
        elif position not in absorbed:
            parts.append(term.function)
    return parts


def _units_together(terms: Sequence[Objective]) -> ObjectiveFunction:
    """One function for the sum of single-unit objectives on one layer.

    The first time a shape is seen the terms run one by one, so that each checks its
    own batch and channel and raises its own error; after that, one gather.
    """
    units = [term._unit for term in terms if term._unit is not None]
    ref = units[0].ref
    seen: dict[tuple[tuple[int, ...], torch.device], tuple[Tensor, Tensor]] = {}

    def value(acts: Activations) -> Tensor:
        tensor = channels_first(acts[ref], ref)
        key = (tuple(tensor.shape), tensor.device)
        where = seen.get(key)
        if where is None:
            total = terms[0].function(acts)
            for term in terms[1:]:
                total = total + term.function(acts)
            batches = torch.tensor([unit.batch for unit in units], device=tensor.device)
            channels = torch.tensor([unit.index for unit in units], device=tensor.device)
            seen[key] = (batches, channels)
            return total
        picked = tensor[where]  # (K, *positions)
        return picked.reshape(len(units), -1).mean(dim=1).sum()

    return value


class Objective:
    """A scalar function of the captured activations, to be maximised.

    Args:
        function: takes :class:`~featvis.hooks.Activations`, returns a scalar tensor.
        description: a readable name, shown by ``print`` and progress bars.
        layers: the layers ``function`` reads (names, modules or
            :class:`~featvis.hooks.LayerRef`). ``None`` means unknown: the render
            loop then finds them by asking the function once before optimising.

    Example:
        >>> def mean_of_conv(acts):
        ...     return acts["conv"].mean()
        >>> objective = Objective(mean_of_conv, "mean of conv", layers=["conv"])
        >>> print(2 * objective - objective / 4)
        2 * mean of conv - mean of conv / 4
    """

    def __init__(
        self,
        function: ObjectiveFunction,
        description: str = "objective",
        layers: Iterable[LayerSpec] | None = (),
        *,
        _precedence: int = _ATOM,
        _unit: _Unit | None = None,
        _terms: tuple[Objective, ...] | None = None,
    ) -> None:
        self.function = function
        self.description = description
        self.layers: tuple[LayerRef, ...] | None = (
            None if layers is None else tuple(dict.fromkeys(LayerRef.parse(spec) for spec in layers))
        )
        self._precedence = _precedence
        self._unit = _unit  # set on single-unit objectives that Objective.sum can evaluate together
        self._terms = _terms  # set on sums, so that a sum of sums is flattened

    def __call__(self, activations: Activations) -> Tensor:
        return self.function(activations)

    def __repr__(self) -> str:
        return f"Objective({self.description})"

    def __str__(self) -> str:
        return self.description

    def _wrapped(self, precedence: int) -> str:
        return f"({self.description})" if self._precedence < precedence else self.description

    # ---- algebra -------------------------------------------------------------
    @staticmethod
    def sum(objectives: Iterable[ObjectiveLike]) -> Objective:
        """One objective for the sum of many, evaluated in one flat loop.

        Example:
            >>> total = Objective.sum(channel("conv", c, batch=c) for c in range(3))
            >>> print(total)
            channel('conv', 0, batch=0) + channel('conv', 1, batch=1) + channel('conv', 2, batch=2)
        """
        terms: list[Objective] = []
        for item in objectives:
            term = as_objective(item)
            terms.extend(term._terms if term._terms is not None else (term,))
        if not terms:
            raise ValueError("Objective.sum needs at least one objective")
        if len(terms) == 1:
            return terms[0]
        parts = _sum_parts(terms)

        def total(acts: Activations) -> Tensor:
            value = parts[0](acts)
            for part in parts[1:]:
                value = value + part(acts)
            return value

        shown = [term._wrapped(_SUM) for term in terms]
        if len(shown) > 8:
            shown = [*shown[:3], f"... ({len(shown)} terms) ...", shown[-1]]
        layers = _layers_union(*(t.layers for t in terms))
        return Objective(total, " + ".join(shown), layers, _precedence=_SUM, _terms=tuple(terms))

    def __add__(self, other: ObjectiveLike | float) -> Objective:
        if isinstance(other, numbers.Real):
            if other == 0:
                return self
            constant = float(other)
            return Objective(
                lambda acts: self(acts) + constant,
                f"{self.description} + {_format_number(constant)}",
                self.layers,
                _precedence=_SUM,
            )
        return Objective.sum([self, other])

    def __radd__(self, other: ObjectiveLike | float) -> Objective:
        if isinstance(other, numbers.Real):
            return self + other  # so that sum([...]) works
        return Objective.sum([other, self])

    def __neg__(self) -> Objective:
        return Objective(lambda acts: -self(acts), f"-{self._wrapped(_ATOM)}", self.layers)

    def __sub__(self, other: ObjectiveLike | float) -> Objective:
        if isinstance(other, numbers.Real):
            return self + (-float(other))
        other = as_objective(other)
        return Objective(
            lambda acts: self(acts) - other(acts),
            f"{self.description} - {other._wrapped(_PRODUCT)}",
            _layers_union(self.layers, other.layers),
            _precedence=_SUM,
        )

    def __rsub__(self, other: ObjectiveLike | float) -> Objective:
        return -self + other

    def __mul__(self, other: ObjectiveLike | float) -> Objective:
        if isinstance(other, numbers.Real):
            factor = float(other)
            return Objective(
                lambda acts: factor * self(acts),
                f"{_format_number(factor)} * {self._wrapped(_PRODUCT)}",
                self.layers,
                _precedence=_PRODUCT,
            )
        other = as_objective(other)
        return Objective(
            lambda acts: self(acts) * other(acts),
            f"{self._wrapped(_PRODUCT)} * {other._wrapped(_ATOM)}",
            _layers_union(self.layers, other.layers),
            _precedence=_PRODUCT,
        )

    def __rmul__(self, other: ObjectiveLike | float) -> Objective:
        if isinstance(other, numbers.Real):
            return self * other
        return as_objective(other) * self

    def __truediv__(self, other: ObjectiveLike | float) -> Objective:
        if isinstance(other, numbers.Real):
            if other == 0:
                raise ZeroDivisionError("cannot divide an objective by zero")
            divisor = float(other)
            return Objective(
                lambda acts: self(acts) / divisor,
                f"{self._wrapped(_PRODUCT)} / {_format_number(divisor)}",
                self.layers,
                _precedence=_PRODUCT,
            )
        other = as_objective(other)
        return Objective(
            lambda acts: self(acts) / other(acts),
            f"{self._wrapped(_PRODUCT)} / {other._wrapped(_ATOM)}",
            _layers_union(self.layers, other.layers),
            _precedence=_PRODUCT,
        )


ObjectiveLike = Union[Objective, str, ObjectiveFunction]


def as_objective(spec: ObjectiveLike) -> Objective:
    """Turn what a user may pass as an objective into an :class:`Objective`.

    - an :class:`Objective` is returned as it is;
    - a string ``"layer:n"`` means ``channel("layer", n)``;
    - a plain callable taking the activations is wrapped (its layers are found
      when rendering).

    Example:
        >>> print(as_objective("layer3.1.conv2:7"))
        channel('layer3.1.conv2', 7)
    """
    if isinstance(spec, Objective):
        return spec
    if isinstance(spec, str):
        name, sep, unit = spec.rpartition(":")
        if not sep or not name or not unit.strip().lstrip("-").isdigit():
            raise ValueError(
                f"an objective string is 'layer:channel', such as 'layer3:5', got {spec!r}; "
                "for other objectives use featvis.objectives (e.g. objectives.layer('layer3'))"
            )
        return channel(name, int(unit))
    if callable(spec):
        description = getattr(spec, "__name__", None) or type(spec).__name__
        return Objective(spec, description, layers=None)
    raise TypeError(
        f"an objective is a featvis Objective, a 'layer:channel' string or a callable taking the "
        f"activations, got {type(spec).__name__}"
    )


# ---- the factory decorator -------------------------------------------------------------
def _shown(value: Any) -> str:
    """How a description shows an argument: layers as their names, numbers short, vectors by length."""
    if isinstance(value, LayerRef):
        return repr(str(value))
    if isinstance(value, float):
        return _format_number(value)
    if isinstance(value, Tensor) or (isinstance(value, Sequence) and not isinstance(value, str)):
        return f"<{len(value) if not isinstance(value, Tensor) else value.numel()}-vector>"
    return repr(value)


def _is_layer_parameter(name: str) -> bool:
    return name == "layer" or (name.startswith("layer") and name[5:].isdigit())


def wrap_objective(factory: Callable[..., ObjectiveFunction] | None = None, *, unit: str | None = None) -> Any:
    """Turn a function that builds an objective's inner function into an objective factory.

    The decorated function takes the objective's arguments and returns the function of the
    activations to maximise. The decorator does the rest, the same for every objective,
    built-in or yours:

    - arguments named ``layer``, ``layer1``, ``layer2``, ... are parsed into
      :class:`~featvis.hooks.LayerRef` (names, selectors ``"attn[0]"``, modules) before the
      function sees them, and become the objective's layers, so that only they are hooked;
    - the description is the call as written: required arguments in order, others as
      keywords where they differ from their defaults (``channel('layer3', 5, batch=1)``);
    - the result is an :class:`Objective`, with the algebra (``+ - * /``).

    Inside the inner function, :meth:`Activations.units <featvis.hooks.Activations.units>`
    reads a layer channels-first with featvis's checks, so that a wrong channel or batch gets
    the same message as in the built-in objectives.

    Args:
        factory: the function to decorate (the decorator is used with or without parentheses).
        unit: for a single-unit objective, the argument naming the unit: sums of such
            objectives with ``batch=i`` on one layer (one unit per image) are then evaluated
            together, with one gather.

    Example:
        >>> @wrap_objective
        ... def channel_contrast(layer, channel, batch=None):
        ...     def value(acts):
        ...         units = acts.units(layer, batch, channel=channel)
        ...         return units.mean() - units.std()
        ...     return value
        >>> print(channel_contrast("layer3", 5, batch=1) - 0.1 * total_variation())
        channel_contrast('layer3', 5, batch=1) - 0.1 * total_variation()
    """
    if factory is None:
        return functools.partial(wrap_objective, unit=unit)
    signature = inspect.signature(factory)
    parameters = list(signature.parameters.values())
    name = factory.__name__

    @functools.wraps(factory)
    def make(*args: Any, **kwargs: Any) -> Objective:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        values = dict(bound.arguments)
        for key in values:
            if _is_layer_parameter(key):
                values[key] = LayerRef.parse(values[key])
        shown = []
        for parameter in parameters:
            value = values[parameter.name]
            if parameter.default is inspect.Parameter.empty:
                shown.append(_shown(value))
            elif _is_layer_parameter(parameter.name):
                if value != LayerRef.parse(parameter.default):
                    shown.append(_shown(value))
            elif value is not None and not _same(value, parameter.default):
                shown.append(f"{parameter.name}={_shown(value)}")
        layers = [value for key, value in values.items() if _is_layer_parameter(key)]
        single = None
        if unit is not None and values.get("batch") is not None:
            single = _Unit(values["layer"], values[unit], values["batch"])
        function = factory(**values)
        return Objective(function, f"{name}({', '.join(shown)})", layers, _unit=single)

    return make


def _same(value: Any, default: Any) -> bool:
    try:
        return bool(value == default)
    except (RuntimeError, TypeError, ValueError):  # tensors and the like: never a default
        return False


def _logits(acts: Activations, ref: LayerRef, batch: int | None, index: int) -> Tensor:
    logits = pick_batch(acts[ref], batch, ref)
    if logits.ndim != 2:
        raise ValueError(
            f"class objectives need (N, classes) outputs, but layer {str(ref)!r} gives shape "
            f"{tuple(logits.shape)}; target the classifier layer (often 'fc', 'linear' or 'head')"
        )
    check_index(logits, index, ref, what="class")
    return logits


def _at_position(units: Tensor, x: int | None, y: int | None, ref: LayerRef) -> Tensor:
    """``(N, C, *positions)`` activations at one position (the centre by default): ``(N, C)``."""
    positions = units.shape[2:]
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


def _image_like(acts: Activations, ref: LayerRef) -> Tensor:
    tensor = acts[ref]
    if tensor.ndim != 4:
        raise ValueError(f"this penalty needs (N, C, H, W) values, but {str(ref)!r} has shape {tuple(tensor.shape)}")
    return tensor


# ---- unit objectives -------------------------------------------------------------
@wrap_objective
def neuron(
    layer: LayerSpec, channel: int, x: int | None = None, y: int | None = None, batch: int | None = None
) -> ObjectiveFunction:
    """One neuron: a channel's activation at one position (the centre by default).

    For ``(N, C, H, W)`` activations the position is ``(y, x)``; for token
    sequences ``(N, T, C)`` it is token ``x``; ``(N, C)`` activations have none.

    Example:
        >>> print(neuron("layer2", 4, x=3, y=5))
        neuron('layer2', 4, x=3, y=5)
    """

    def value(acts: Activations) -> Tensor:
        units = acts.units(layer, batch)
        check_index(units, channel, layer)
        return _at_position(units, x, y, layer)[:, channel].mean()

    return value


@wrap_objective(unit="channel")
def channel(layer: LayerSpec, channel: int, batch: int | None = None) -> ObjectiveFunction:
    """The mean activation of one channel over all positions.

    Example:
        >>> print(channel("features.12", 30, batch=1))
        channel('features.12', 30, batch=1)
    """

    def value(acts: Activations) -> Tensor:
        return acts.units(layer, batch, channel=channel).mean()

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
        return _dot_cosine(_at_position(acts.units(layer, batch), x, y, layer), vec, cossim_pow, layer).mean()

    return value


@wrap_objective
def channel_interpolate(layer1: LayerSpec, channel1: int, layer2: LayerSpec, channel2: int) -> ObjectiveFunction:
    """Interpolate across the batch from one channel to another.

    Image ``i`` of ``N`` maximises ``(1 - t) * channel1 + t * channel2`` with
    ``t = i / (N - 1)``: the first image shows ``channel1``, the last ``channel2``.
    Pair it with :func:`alignment` to keep neighbouring images alike.

    Example:
        >>> print(channel_interpolate("layer3", 1, "layer3", 9))
        channel_interpolate('layer3', 1, 'layer3', 9)
    """

    def value(acts: Activations) -> Tensor:
        first, second = acts.units(layer1, channel=channel1), acts.units(layer2, channel=channel2)
        n = first.shape[0]
        t = torch.linspace(0.0, 1.0, n, device=first.device, dtype=first.dtype) if n > 1 else first.new_zeros(1)
        means1 = first.reshape(n, -1).mean(dim=1)
        means2 = second.reshape(n, -1).mean(dim=1)
        return ((1 - t) * means1 + t * means2).sum()

    return value


# ---- batch objectives -----------------------------------------------------------------
@wrap_objective
def diversity(layer: LayerSpec, group_size: int | None = None) -> ObjectiveFunction:
    """Make the images of a batch differ: minus the mean Gram-matrix cosine between them.

    Each image's style is its channel Gram matrix at ``layer``; the value is
    ``-(sum over pairs i != j of cos(G_i, G_j)) / N``, 0 for a single image.
    Add it to a unit objective with a weight (Lucid uses around 1e-2 to 1e2,
    depending on the unit's scale). With ``group_size=k`` the batch is read as
    consecutive groups of ``k`` images (say, ``k`` images of each class) and only
    images of the same group are pushed apart.

    Example:
        >>> print(channel("layer3", 2) + 0.5 * diversity("layer2"))
        channel('layer3', 2) + 0.5 * diversity('layer2')
        >>> print(diversity("layer2", group_size=4))
        diversity('layer2', group_size=4)
    """
    if group_size is not None and (int(group_size) != group_size or group_size < 1):
        raise ValueError(f"group_size must be a positive whole number, got {group_size!r}")

    def value(acts: Activations) -> Tensor:
        units = acts.units(layer)
        n, c = units.shape[:2]
        size = n if group_size is None else group_size
        if n % size:
            raise ValueError(
                f"diversity({layer}, group_size={group_size}): a batch of {n} images does not split into groups "
                f"of {group_size}; make the batch a multiple of the group size"
            )
        if size < 2:
            return units.new_zeros(())
        flat = units.reshape(n, c, -1)
        grams = flat @ flat.transpose(1, 2) / flat.shape[2]
        grams = F.normalize(grams.reshape(n // size, size, -1), dim=-1, eps=1e-10)
        similarity = grams @ grams.transpose(1, 2)  # (groups, size, size)
        off_diagonal = similarity.sum() - similarity.diagonal(dim1=1, dim2=2).sum()
        return -off_diagonal / n

    return value


@wrap_objective
def alignment(layer: LayerSpec, decay_ratio: float = 2.0) -> ObjectiveFunction:
    """Keep neighbouring images of a batch alike (for interpolations).

    Minus the mean squared difference of the activations of images ``i`` and
    ``i + d``, for ``d`` = 1 to 4, weighted by ``1 / decay_ratio**d``.

    Example:
        >>> print(alignment("layer2"))
        alignment('layer2')
    """

    def value(acts: Activations) -> Tensor:
        units = acts[layer]
        total = units.new_zeros(())
        for d in range(1, min(5, units.shape[0])):
            differences = (units[:-d] - units[d:]).square().reshape(units.shape[0] - d, -1).mean(dim=1)
            total = total + differences.sum() / decay_ratio**d
        return -total

    return value


# ---- penalties: positive amounts, to subtract; their layer is the image by default --------
@wrap_objective
def total_variation(layer: LayerSpec = INPUT) -> ObjectiveFunction:
    """Penalty: the mean absolute difference between neighbouring pixels.

    A positive amount; subtract it to smooth the image. Being a mean, its weight
    means the same at 32x32 and at 224x224.

    Example:
        >>> print(channel("layer3", 0) - 0.05 * total_variation())
        channel('layer3', 0) - 0.05 * total_variation()
    """

    def value(acts: Activations) -> Tensor:
        image = _image_like(acts, layer)
        dy = (image[:, :, 1:, :] - image[:, :, :-1, :]).abs().mean()
        dx = (image[:, :, :, 1:] - image[:, :, :, :-1]).abs().mean()
        return dx + dy

    return value


@wrap_objective
def l1(layer: LayerSpec = INPUT, constant: float = 0.0) -> ObjectiveFunction:
    """Penalty: the mean absolute difference from ``constant``.

    Example:
        >>> print(l1(constant=0.5))
        l1(constant=0.5)
    """

    def value(acts: Activations) -> Tensor:
        return (acts[layer] - constant).abs().mean()

    return value


@wrap_objective
def l2(layer: LayerSpec = INPUT, constant: float = 0.0, epsilon: float = 1e-6) -> ObjectiveFunction:
    """Penalty: the root mean square difference from ``constant``.

    Example:
        >>> print(l2())
        l2()
    """

    def value(acts: Activations) -> Tensor:
        return ((acts[layer] - constant).square().mean() + epsilon).sqrt()

    return value


@wrap_objective
def blur(layer: LayerSpec = INPUT) -> ObjectiveFunction:
    """Penalty: half the mean squared distance from a 3x3-blurred copy of the image.

    The blurred copy is held fixed, so a gradient step on ``-blur()`` moves the
    image towards its blur (Lucid's "blur input each step").

    Example:
        >>> print(channel("layer3", 0) - 0.5 * blur())
        channel('layer3', 0) - 0.5 * blur()
    """

    def value(acts: Activations) -> Tensor:
        image = _image_like(acts, layer)
        with torch.no_grad():
            blurred = F.avg_pool2d(image, 3, stride=1, padding=1, count_include_pad=False)
        return 0.5 * (image - blurred).square().mean()

    return value
