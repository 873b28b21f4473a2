"""The objective and its algebra: :class:`Objective`, :func:`as_objective`, and
:func:`wrap_objective`, the decorator every objective factory is made with.

A ``"layer:n"`` string means ``channel("layer", n)``, so :func:`channel`, the
one objective the algebra itself needs, lives here too.

Example:
    >>> print(2 * channel("layer3", 5) - channel("layer2", 1) / 4)
    2 * channel('layer3', 5) - channel('layer2', 1) / 4
"""

from __future__ import annotations

import functools
import inspect
import numbers
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, Union

import torch
from torch import Tensor

from ..hooks import Activations, LayerRef, LayerSpec, token_grid

__all__ = ["Objective", "ObjectiveFunction", "ObjectiveLike", "as_objective", "channel", "wrap_objective"]

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
        tensor = acts.channels_first(ref)
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
        >>> from featvis.objectives import total_variation
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


@wrap_objective(unit="channel")
def channel(layer: LayerSpec, channel: int, batch: int | None = None) -> ObjectiveFunction:
    """The mean activation of one channel over all positions. For a ViT's tokens (a class token and a
    square grid of patches, :func:`~featvis.hooks.token_grid`), over the patches only: the class token
    is no position of the picture.

    Example:
        >>> print(channel("features.12", 30, batch=1))
        channel('features.12', 30, batch=1)
    """

    def value(acts: Activations) -> Tensor:
        units = acts.units(layer, batch, channel=channel)
        if acts.tokens(layer):
            grid = token_grid(units.shape[-1])
            if grid is not None:
                units = units[..., grid[0] :]  # the patches, after the class token
        return units.mean()

    return value
