"""The default transforms: :func:`standard` for small images, :func:`crops` for large ones,
:func:`for_size` choosing between them, and :func:`as_transform`, which turns what a user passes
to ``render_vis(transforms=...)`` into one transform.

Example:
    >>> import torch
    >>> for_size(32)(torch.rand(1, 3, 32, 32)).shape
    torch.Size([1, 3, 32, 32])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Union

from torch import Tensor, nn

from ..sizes import Size, is_large
from .compose import Compose
from .filters import RandomBlur
from .geometry import Amount, Fill, RandomAffine, RandomCrop

__all__ = ["TransformSpec", "as_transform", "crops", "for_size", "standard"]


#: what ``render_vis(transforms=...)`` takes: a module, a callable, a list of them, or ``None`` (the default)
TransformSpec = Union[nn.Module, Callable[[Tensor], Tensor], Sequence[Callable[[Tensor], Tensor]], None]


def as_transform(transforms: TransformSpec, size: Size | None = None) -> Callable[[Tensor], Tensor]:
    """One transform from what a user may pass: ``None`` gives the defaults for images of ``size``
    (:func:`for_size`; :func:`standard` when the size is not known), a list or tuple is composed
    (``[]`` applies none), a module or any other callable is used as it is.

    Example:
        >>> import torch
        >>> from featvis.transforms import Pad
        >>> as_transform([Pad(2), lambda images: images * 0.5])(torch.ones(1, 3, 4, 4)).shape
        torch.Size([1, 3, 8, 8])
        >>> as_transform(3)
        Traceback (most recent call last):
        ...
        TypeError: transforms must be a module, a callable or a list of them, got int
    """
    if transforms is None:
        return standard() if size is None else for_size(size)
    if isinstance(transforms, (list, tuple)):
        return Compose(*transforms)
    if not callable(transforms):
        raise TypeError(f"transforms must be a module, a callable or a list of them, got {type(transforms).__name__}")
    return transforms


def crops(
    size: tuple[float, float] = (0.5, 1.0),
    degrees: float = 10.0,
    fill: Fill = 0.5,
    blur: float | tuple[float, float] = (0.0, 2.0),
    final_size: tuple[float, float] | None = None,
    final_step: int = 128,
) -> Compose:
    """The default transforms for large images: a slight random blur, then a random crop of each image.

    Each step, each image is blurred (sigma drawn from ``blur``, in pixels) and then seen through
    a random crop whose side is a fraction in ``size`` of the image's, enlarged back to the
    image's size and turned by up to ``degrees`` (:class:`RandomCrop`). Optimised through crops
    down to half the image, a picture holds whole objects at several scales, in a scene,
    rather than one texture over the frame (faccent's box crops do the same, with 16 crops per
    step; here one per image per step, so a step costs one forward pass). The blur before the
    crop keeps the picture's meaning when it is blurred or halved. With ``final_size``, the
    range moves from ``size`` at step 1 to ``final_size`` at step ``final_step`` (crops that
    widen to the whole image: ``crops(size=(0.25, 1.0), final_size=(1.0, 1.0))``; measured, not
    better than the default, in docs/benchmarks.md). Measured at 224x224 in docs/benchmarks.md.

    Example:
        >>> import torch
        >>> crops()(torch.rand(2, 3, 64, 64)).shape
        torch.Size([2, 3, 64, 64])
        >>> widening = crops(size=(0.25, 1.0), final_size=(1.0, 1.0))
        >>> widening[1].size_at(1), widening[1].size_at(128)
        ((0.25, 1.0), (1.0, 1.0))
    """
    crop = RandomCrop(size=size, degrees=degrees, fill=fill, final_size=final_size, final_step=final_step)
    if blur in (0, (0, 0)):
        return Compose(crop)
    return Compose(RandomBlur(blur), crop)


def for_size(size: Size) -> Compose:
    """The default transforms for images of ``size``: :func:`standard` for small images,
    :func:`crops` for large ones (``featvis.sizes.LARGE_IMAGE`` pixels a side and up).
    ``render_vis`` uses these when given no ``transforms``.

    Example:
        >>> type(for_size(32)[0]).__name__, type(for_size(224)[1]).__name__
        ('RandomAffine', 'RandomCrop')
    """
    return crops() if is_large(size) else standard()


def standard(
    translate: Amount = 0.06,
    scale: tuple[float, float] = (0.9, 1.1),
    degrees: float = 10.0,
    fill: Fill = 0.5,
    blur: float | tuple[float, float] = (0.0, 0.5),
) -> Compose:
    """The default transforms: a random shift, zoom and rotation per image, then a slight random blur.

    The geometric part follows Lucid's standard transforms (pad 12 then jitter 8
    and 4 pixels, zoom 0.9 to 1.1, rotation up to 10 degrees, at 224 pixels), with
    the shift given relative to the image size so that small images get as much
    robustness as large ones. It is one :class:`RandomAffine`, so one resampling.
    A :class:`RandomBlur` with sigma up to half a pixel follows (``blur=0`` turns it
    off): small pictures then keep their meaning after a blur or a 2x resize late in
    a run too, at a small cost in sharpness (measured in docs/benchmarks.md). At
    224x224, half a pixel hardly changes anything.

    Example:
        >>> import torch
        >>> standard()(torch.rand(3, 3, 32, 32)).shape
        torch.Size([3, 3, 32, 32])
        >>> standard(blur=0)
        Compose(
          (0): RandomAffine(translate=0.06, scale=(0.9, 1.1), degrees=10.0, fill=0.5)
        )
    """
    geometry = RandomAffine(translate=translate, scale=scale, degrees=degrees, fill=fill)
    if blur in (0, (0, 0)):
        return Compose(geometry)
    return Compose(geometry, RandomBlur(blur))
