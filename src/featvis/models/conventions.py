"""How featvis feeds a model: its normalisation, image size and channel count.

``render_vis`` asks this module how to feed a model: :func:`default_preprocess`
gives the normalisation, :func:`default_input_size` the usual image size and
:func:`default_input_channels` the number of channels. Any model can declare them
with attributes:

```python
model.featvis_normalization = ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))  # mean, std
model.featvis_input_size = 64
model.featvis_input_channels = 3
```

featvis's own models carry them, and torchvision's classification models get
ImageNet's normalisation and 224 pixels.

Example:
    >>> model = nn.Conv2d(1, 4, 3)
    >>> model.featvis_input_size = 28
    >>> default_input_size(model), default_input_channels(model)
    (28, 1)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

__all__ = [
    "default_input_channels",
    "default_input_size",
    "default_preprocess",
    "first_convolution",
    "resolve_preprocess",
    "unwrap",
]


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside ``nn.DataParallel``, ``DistributedDataParallel`` and ``torch.compile``'s wrappers.

    Example:
        >>> inner = nn.Linear(2, 2)
        >>> unwrap(nn.DataParallel(inner)) is inner
        True
    """
    while isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    return getattr(model, "_orig_mod", model)  # torch.compile's wrapper


def _is_torchvision_classifier(model: nn.Module) -> bool:
    return type(model).__module__.startswith("torchvision.models")


def default_preprocess(model: nn.Module) -> nn.Module:
    """The module that turns [0, 1] images into what ``model`` expects.

    ``model.featvis_normalization = (mean, std)`` wins; torchvision's models get
    ImageNet's; anything else gets the identity.

    Example:
        >>> model = nn.Conv2d(3, 4, 3)
        >>> model.featvis_normalization = ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
        >>> default_preprocess(model)
        Normalize(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
        >>> default_preprocess(nn.Conv2d(3, 4, 3))
        Identity()
    """
    from ..transforms import IMAGENET_MEAN, IMAGENET_STD, Normalize

    inner = unwrap(model)
    normalization = getattr(inner, "featvis_normalization", None)
    if normalization is not None:
        mean, std = normalization
        return Normalize(mean, std)
    if _is_torchvision_classifier(inner):
        return Normalize(IMAGENET_MEAN, IMAGENET_STD)
    return nn.Identity()


def resolve_preprocess(
    preprocess: Callable[[Tensor], Tensor] | bool | None, model: nn.Module, device: torch.device
) -> Callable[[Tensor], Tensor]:
    """What turns [0, 1] images into the model's input, as ``render_vis(preprocess=...)`` reads it:
    ``None`` or ``True``, the model's own normalisation (:func:`default_preprocess`); ``False``,
    none; else the callable given. A module is moved to ``device``.

    Example:
        >>> resolve_preprocess(False, nn.Linear(2, 2), torch.device("cpu"))
        Identity()
    """
    if preprocess is None or preprocess is True:
        prepare: Callable[[Tensor], Tensor] = default_preprocess(model)
    elif preprocess is False:
        prepare = nn.Identity()
    else:
        prepare = preprocess
    return prepare.to(device) if isinstance(prepare, nn.Module) else prepare


def default_input_size(model: nn.Module) -> int | tuple[int, int]:
    """The image size to render at when none is given: ``model.featvis_input_size``, else 224.

    Example:
        >>> default_input_size(nn.Linear(2, 2))
        224
    """
    return getattr(unwrap(model), "featvis_input_size", 224)


def default_input_channels(model: nn.Module) -> int:
    """The number of image channels to render when none is given.

    ``model.featvis_input_channels`` wins; else the ``in_channels`` of the model's
    first 2-d convolution; else 3.

    Example:
        >>> default_input_channels(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU()))
        1
        >>> default_input_channels(nn.Linear(2, 2))
        3
    """
    inner = unwrap(model)
    declared = getattr(inner, "featvis_input_channels", None)
    if declared is not None:
        return int(declared)
    first = first_convolution(inner)
    return first[1].in_channels if first is not None else 3


def first_convolution(model: nn.Module) -> tuple[str, nn.Conv2d] | None:
    """The first ``nn.Conv2d`` in ``model.named_modules()`` order, with its name, or ``None``.

    Example:
        >>> first_convolution(nn.Sequential(nn.ReLU(), nn.Conv2d(1, 2, 3)))[0]
        '1'
    """
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return name, module
    return None
