"""Transformation robustness: random geometric changes applied at every step.

Each transform is an :class:`torch.nn.Module` mapping an image batch
``(N, C, H, W)`` to an image batch. The random ones draw their parameters
**independently for each image** from the run's own generator (``featvis.generators``), and apply
them all in one batched, differentiable ``grid_sample`` on the image's device.
They keep the image size, so models with a fixed input size work too; the part
of the frame that the moved image no longer covers is filled (grey by default).

Amounts of movement are given as an ``int`` (pixels) or a ``float`` (a fraction
of the image's smaller side), so that the defaults suit a 32x32 model as well as a
224x224 one.

Some transforms change over a run: a step-aware transform has a ``set_step(step)`` method, which
``render_vis`` calls through :func:`set_step` before each step (steps counted from 1): crops that
widen over a run (:class:`RandomCrop`'s ``final_size``) use it, and a transform of your own may
do the same.

The package is split by concern; everything here is importable from ``featvis.transforms``:

- ``featvis.transforms.geometry``: :class:`Pad`, :class:`RandomAffine` and its kinds
  (:class:`RandomCrop`, :class:`Jitter`, :class:`RandomScale`, :class:`RandomRotate`);
- ``featvis.transforms.filters``: :class:`RandomBlur`, :class:`Normalize`;
- ``featvis.transforms.colour``: :class:`ColorJitter` and :class:`GaussianNoise` (for ViTs);
- ``featvis.transforms.background``: :class:`RandomBackground`, which composites transparent
  images over random backgrounds (``render_vis`` puts it first for a parameterisation with alpha);
- ``featvis.transforms.compose``: :class:`Compose`, :class:`Lambda`, :func:`set_step` (and
  :func:`step_setters`);
- ``featvis.transforms.defaults``: :func:`standard`, :func:`crops`, :func:`for_size`,
  :func:`as_transform`.

Example:
    >>> import torch
    >>> from featvis import transforms
    >>> t = transforms.Compose(transforms.Jitter(2), transforms.RandomRotate(10))
    >>> t(torch.rand(4, 3, 32, 32)).shape
    torch.Size([4, 3, 32, 32])
"""

from __future__ import annotations

from .background import BACKGROUNDS, RandomBackground
from .colour import ColorJitter, GaussianNoise
from .compose import Compose, Lambda, set_step, step_setters
from .defaults import TransformSpec, as_transform, crops, for_size, standard
from .filters import IMAGENET_MEAN, IMAGENET_STD, Normalize, RandomBlur
from .geometry import Amount as Amount
from .geometry import Fill as Fill
from .geometry import Jitter, Pad, RandomAffine, RandomCrop, RandomRotate, RandomScale

__all__ = [
    "BACKGROUNDS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ColorJitter",
    "Compose",
    "GaussianNoise",
    "Jitter",
    "Lambda",
    "Normalize",
    "Pad",
    "RandomAffine",
    "RandomBackground",
    "RandomBlur",
    "RandomCrop",
    "RandomRotate",
    "RandomScale",
    "TransformSpec",
    "as_transform",
    "crops",
    "for_size",
    "set_step",
    "standard",
    "step_setters",
]
