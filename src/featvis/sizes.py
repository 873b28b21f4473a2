"""Image sizes: the one place where ``32``, ``(48, 64)`` and ``"48x64"`` become ``(height, width)``.

Every function of featvis that takes a ``size`` (``render_vis``, ``render_channels``,
``auto_batch_size``, the parameterisations, the command line) reads it here, so that
they accept the same things and say the same thing about a wrong one.

Example:
    >>> from featvis.sizes import size_pair
    >>> size_pair(32), size_pair((48, 64))
    ((32, 32), (48, 64))
"""

from __future__ import annotations

import re
from typing import Union

__all__ = ["LARGE_IMAGE", "Size", "is_large", "parse_size", "size_pair"]

#: A size as users give it: ``N`` for a square, or ``(height, width)``.
Size = Union[int, "tuple[int, int]"]

#: Images whose smaller side has at least this many pixels get the defaults made for large images
#: (ImageNet's 224x224): random crops and a stronger blur (``featvis.transforms.for_size``), and a
#: steeper Fourier scaling (``featvis.param.default_decay``). docs/benchmarks.md says why.
LARGE_IMAGE = 128


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def size_pair(size: Size) -> tuple[int, int]:
    """``(height, width)`` from ``N`` or ``(height, width)``; a ``ValueError`` for anything else.

    Example:
        >>> size_pair(224)
        (224, 224)
        >>> size_pair([24, 32])
        (24, 32)
        >>> size_pair(0)
        Traceback (most recent call last):
        ...
        ValueError: size must be a positive whole number or a (height, width) pair of them, got 0
    """
    if isinstance(size, (tuple, list)):
        pair = tuple(int(v) if hasattr(v, "__index__") and not isinstance(v, bool) else v for v in size)
    else:
        pair = (size, size)
    if len(pair) != 2 or not all(_is_count(v) for v in pair):
        raise ValueError(f"size must be a positive whole number or a (height, width) pair of them, got {size!r}")
    return pair  # type: ignore[return-value]


def parse_size(text: str) -> Size:
    """A size written as text: ``"32"`` (a square) or ``"48x64"`` (height x width).

    Example:
        >>> parse_size("32"), parse_size("48x64")
        (32, (48, 64))
        >>> parse_size("big")
        Traceback (most recent call last):
        ...
        ValueError: 'big' is not a size; give N (square) or HxW, e.g. 32 or 48x64
    """
    match = re.fullmatch(r"(\d+)(?:x(\d+))?", text.strip().lower())
    if match is None or int(match[1]) < 1 or (match[2] is not None and int(match[2]) < 1):
        raise ValueError(f"{text!r} is not a size; give N (square) or HxW, e.g. 32 or 48x64")
    return int(match[1]) if match[2] is None else (int(match[1]), int(match[2]))


def is_large(size: Size) -> bool:
    """Whether images of ``size`` get the defaults made for large images (see :data:`LARGE_IMAGE`).

    Example:
        >>> is_large(32), is_large(224), is_large((96, 160))
        (False, True, False)
    """
    return min(size_pair(size)) >= LARGE_IMAGE
