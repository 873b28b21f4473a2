"""Frames with shared parts, for interpolations between two units.

:class:`InterpolationImage` makes a batch of frames, each its own image plus low-resolution
parts shared with its neighbours, so that consecutive frames of an interpolation stay aligned
(as in Lucid).

Example:
    >>> from featvis.param import InterpolationImage
    >>> InterpolationImage(4, 3, 16, 16)().shape
    torch.Size([4, 3, 16, 16])
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .basis import check_size, draw_normal
from .spatial import (
    DEFAULT_DECAY,
    FourierImage,
    UpsampleMode,
    check_mode,
    fourier_start_variance,
    upsample,
    upsampled_noise_variance,
)

__all__ = ["DEFAULT_SHARED", "InterpolationImage", "frame_weights"]

#: Lucid's shared parts for interpolation: ``(keyframes, factor)``: a tensor ``factor`` times
#: smaller than the image, with ``keyframes`` values along the frames (1: the same for all frames;
#: 2: one at each end, blended linearly in between).
DEFAULT_SHARED: tuple[tuple[int, int], ...] = ((1, 2), (1, 4), (1, 8), (2, 8), (1, 16), (2, 16))


def frame_weights(keyframes: int, frames: int) -> Tensor:
    """``(frames, keyframes)`` linear blending: frame 0 is keyframe 0, the last frame the last keyframe.

    Row ``f`` holds the weights of the keyframes in frame ``f``; each row sums to 1.

    Example:
        >>> frame_weights(2, 3)
        tensor([[1.0000, 0.0000],
                [0.5000, 0.5000],
                [0.0000, 1.0000]], dtype=torch.float64)
    """
    weights = torch.zeros(frames, keyframes, dtype=torch.float64)
    positions = torch.linspace(0, keyframes - 1, frames, dtype=torch.float64) if frames > 1 else torch.zeros(1)
    for frame, position in enumerate(positions.tolist()):
        below = min(math.floor(position), keyframes - 1)
        fraction = position - below
        weights[frame, below] += 1 - fraction
        if fraction > 0:
            weights[frame, below + 1] += fraction
    return weights


class InterpolationImage(nn.Module):
    """A batch of frames, each its own image plus low-resolution parts shared with its neighbours.

    Frame ``f`` is ``unique[f] + sum_i gain_i * blend_i(f)``: ``unique`` is a per-frame basis
    (a :class:`FourierImage` by default) and each shared part ``(keyframes, factor)`` is a
    learnable ``(keyframes, C, ceil(H / factor), ceil(W / factor))`` tensor, upsampled to the
    image size and blended linearly across the frames (a part with 1 keyframe is the same in
    every frame). Neighbouring frames share most of their coarse structure, so an
    interpolation between two units (``objectives.channel_interpolate``) changes smoothly
    from frame to frame instead of showing unrelated pictures (as in Lucid). The gains are
    ``c * factor ** (decay - 1)`` (as in :class:`LaplacianPyramidImage`), with ``c`` making the
    shared parts' start as strong as the unique part's.

    Args:
        frames, channels, height, width: the shape of the batch (``frames`` images).
        shared: the shared parts, ``(keyframes, factor)`` pairs, ``1 <= keyframes <= frames``
            (default :data:`DEFAULT_SHARED`, Lucid's).
        unique: the per-frame basis (default ``FourierImage(frames, channels, height, width, decay, sd)``).
        decay: ``1/f`` exponent of the default unique part and of the shared gains.
        sd: standard deviation of the random starts.
        mode: ``"bilinear"`` or ``"bicubic"`` spatial upsampling.

    Example:
        >>> basis = InterpolationImage(5, 3, 32, 32)
        >>> basis().shape, len(basis.shared)
        (torch.Size([5, 3, 32, 32]), 6)
    """

    gains: Tensor

    def __init__(
        self,
        frames: int,
        channels: int,
        height: int,
        width: int,
        shared: Sequence[tuple[int, int]] = DEFAULT_SHARED,
        unique: nn.Module | None = None,
        decay: float = DEFAULT_DECAY,
        sd: float = 0.01,
        mode: UpsampleMode = "bilinear",
        shared_weight: float = 3.0,
    ) -> None:
        super().__init__()
        check_size(frames, channels, height, width)
        check_mode(mode)
        self.height, self.width, self.mode = height, width, mode
        if unique is None:
            unique = FourierImage(frames, channels, height, width, decay=decay, sd=sd)
            target = fourier_start_variance(height, width, decay, sd)
        else:
            with torch.no_grad():
                start = unique()
            if tuple(start.shape) != (frames, channels, height, width):
                raise ValueError(
                    f"the unique basis must return ({frames}, {channels}, {height}, {width}) images, "
                    f"got {tuple(start.shape)}"
                )
            target = float(start.double().pow(2).mean())
        self.unique = unique
        parts = []
        for part in shared:
            if (
                not isinstance(part, (tuple, list))
                or len(part) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in part)
                or not 1 <= part[0] <= frames
                or part[1] < 1
            ):
                raise ValueError(
                    f"each shared part must be a (keyframes, factor) pair of whole numbers with 1 <= keyframes <= "
                    f"frames={frames} and factor >= 1, got {part!r}"
                )
            parts.append((int(part[0]), int(part[1])))
        self.parts = parts
        sizes = [(math.ceil(height / factor), math.ceil(width / factor)) for _, factor in parts]
        self.sd = float(sd)
        self.shared = nn.ParameterList(nn.Parameter(torch.empty(k, channels, *s)) for (k, _), s in zip(parts, sizes))
        draw_normal(self.shared, self.sd)
        weights = [frame_weights(k, frames) for k, _ in parts]
        for i, w in enumerate(weights):
            self.register_buffer(f"blend{i}", w.float(), persistent=False)
        shape_gains = [float(factor) ** (float(decay) - 1.0) for _, factor in parts]
        variance = sum(
            g * g * sd * sd * upsampled_noise_variance(s, (height, width), mode) * float((w**2).sum(dim=1).mean())
            for g, s, w in zip(shape_gains, sizes, weights)
        )
        c = shared_weight * math.sqrt(target / variance) if variance > 0 and target > 0 else 1.0
        self.register_buffer("gains", torch.tensor([c * g for g in shape_gains]), persistent=False)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Draw the random start anew from ``generator`` (``None``: torch's global one): the unique
        part's (when it has ``reset_parameters``), then the shared parts'.

        Example:
            >>> basis = InterpolationImage(3, 3, 16, 16)
            >>> basis.reset_parameters(torch.Generator().manual_seed(0)); basis().shape
            torch.Size([3, 3, 16, 16])
        """
        reset_unique = getattr(self.unique, "reset_parameters", None)
        if callable(reset_unique):
            reset_unique(generator)
        draw_normal(self.shared, self.sd, generator)

    def forward(self) -> Tensor:
        total = self.unique()
        size = (self.height, self.width)
        for i, (gain, part) in enumerate(zip(self.gains, self.shared)):
            blend = getattr(self, f"blend{i}")
            upsampled = upsample(part, size, self.mode)
            total = total + gain * torch.einsum("fk,kchw->fchw", blend, upsampled)
        return total

    @torch.no_grad()
    def set_raw(self, raw: Tensor) -> None:
        """Put ``raw`` in the unique part and zero the shared parts (``forward()`` then returns ``raw``).

        Example:
            >>> basis = InterpolationImage(3, 1, 8, 8, shared=[(1, 2), (2, 4)])
            >>> target = torch.rand(3, 1, 8, 8)
            >>> basis.set_raw(target); bool(torch.allclose(basis(), target, atol=1e-5))
            True
        """
        set_raw = getattr(self.unique, "set_raw", None)
        if set_raw is None:
            raise TypeError(f"{type(self.unique).__name__} has no set_raw(raw) method to start from an image")
        set_raw(raw)
        for part in self.shared:
            part.zero_()
