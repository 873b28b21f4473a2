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

from .batch import alignment, channel_interpolate, diversity
from .core import Objective, ObjectiveFunction, ObjectiveLike, as_objective, channel, wrap_objective
from .matching import match_distribution
from .penalties import blur, l1, l2, total_variation, transparency
from .units import class_logit, class_prob, direction, direction_neuron, layer, neuron, token_centre, token_grid

__all__ = [
    "Objective",
    "ObjectiveFunction",
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
    "match_distribution",
    "neuron",
    "token_centre",
    "token_grid",
    "total_variation",
    "transparency",
    "wrap_objective",
]
