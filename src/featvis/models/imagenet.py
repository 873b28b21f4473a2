"""The 1000 ImageNet (ILSVRC-2012) class names, and a class's index by its name.

The names are torchvision's (the ``categories`` of its ImageNet weights' metadata), in
label order, so that ``imagenet_classes()[i]`` names the ``i``-th output of any ImageNet
classifier, featvis's EfficientNet-Lite models and torchvision's alike. They are read
once, on first use (importing ``torchvision.models`` takes a moment).

Example:
    >>> imagenet_classes()[1], imagenet_class("goldfish")
    ('goldfish', 1)
    >>> imagenet_class("Espresso")
    967
"""

from __future__ import annotations

import difflib
from functools import cache

__all__ = ["imagenet_class", "imagenet_classes"]


@cache
def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet class names in label order, as torchvision's weights' metadata gives them.

    Example:
        >>> names = imagenet_classes()
        >>> len(names), names[0], names[281], names[967]
        (1000, 'tench', 'tabby', 'espresso')
    """
    from torchvision.models import ResNet50_Weights

    return tuple(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def imagenet_class(name: str) -> int:
    """The index of the ImageNet class called ``name`` (case and surrounding spaces do not matter).

    Raises:
        ValueError: no class has that name; the message gives the close ones, with their indices.

    Example:
        >>> imagenet_class("tiger cat")
        282
        >>> imagenet_class("gold fish")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: ImageNet has no class 'gold fish'; close: 'goldfish' (1), 'goldfinch' (11), ...
    """
    names = imagenet_classes()
    wanted = " ".join(name.split()).lower()
    lowered = [class_name.lower() for class_name in names]
    if wanted in lowered:
        return lowered.index(wanted)
    containing = [i for i, class_name in enumerate(lowered) if wanted and wanted in class_name]
    containing.sort(key=lambda i: wanted not in lowered[i].split())  # whole words first
    similar = [lowered.index(close) for close in difflib.get_close_matches(wanted, lowered, n=5, cutoff=0.6)]
    close = list(dict.fromkeys(containing[:5] + similar))[:8]
    listed = ", ".join(f"{names[i]!r} ({i})" for i in close)
    hint = f"close: {listed}; " if close else ""
    raise ValueError(f"ImageNet has no class {name!r}; {hint}featvis.models.imagenet_classes() lists all {len(names)}")
