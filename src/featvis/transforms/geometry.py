"""Geometric transforms: padding, and random shifts, zooms, rotations and crops drawn per image.

Every random one here is a :class:`RandomAffine`: it draws one ``(2, 3)`` sampling matrix per
image (:meth:`RandomAffine.sample_matrices`) and applies them all in one ``grid_sample``.

Example:
    >>> import torch
    >>> RandomCrop(size=(0.5, 1.0))(torch.rand(2, 3, 16, 16)).shape
    torch.Size([2, 3, 16, 16])
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal, TypeVar, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..generators import generator

__all__ = ["Amount", "Fill", "Jitter", "Pad", "RandomAffine", "RandomCrop", "RandomRotate", "RandomScale"]

#: an amount of movement: pixels (an int) or a fraction of the image's smaller side (a float)
Amount = Union[int, float]
Fill = Union[float, Literal["border", "reflection"]]


def _to_pixels(amount: Amount, height: int, width: int) -> float:
    """An int is pixels; a float is a fraction of the smaller side."""
    if isinstance(amount, bool) or amount < 0:
        raise ValueError(f"an amount of movement must be a non-negative int or float, got {amount!r}")
    if isinstance(amount, int):
        return float(amount)
    return float(amount) * min(height, width)


def _check_images(images: Tensor) -> None:
    if images.ndim != 4:
        raise ValueError(f"transforms take image batches of shape (N, C, H, W), got {tuple(images.shape)}")


class Pad(nn.Module):
    """Pad every side of the image (the image grows by ``2 * amount``).

    Args:
        amount: pixels (int) or a fraction of the smaller side (float).
        mode: ``"constant"``, ``"reflect"`` or ``"replicate"``.
        value: the fill value for ``"constant"``.

    Example:
        >>> Pad(2)(torch.zeros(1, 3, 8, 8)).shape
        torch.Size([1, 3, 12, 12])
    """

    def __init__(
        self, amount: Amount = 0.05, mode: Literal["constant", "reflect", "replicate"] = "constant", value: float = 0.5
    ) -> None:
        super().__init__()
        _to_pixels(amount, 1, 1)
        self.amount, self.mode, self.value = amount, mode, value

    def forward(self, images: Tensor) -> Tensor:
        _check_images(images)
        pad = round(_to_pixels(self.amount, images.shape[2], images.shape[3]))
        if pad == 0:
            return images
        if self.mode == "constant":
            return F.pad(images, (pad,) * 4, mode="constant", value=self.value)
        return F.pad(images, (pad,) * 4, mode=self.mode)

    def extra_repr(self) -> str:
        return f"amount={self.amount!r}, mode={self.mode!r}, value={self.value!r}"


def _pixel_centres(height: int, width: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """(height * width, 3) rows ``(x, y, 1)``: each pixel centre in [-1, 1] coordinates (``align_corners=False``)."""
    xs = (torch.arange(width, device=device, dtype=dtype) * 2 + 1) / width - 1
    ys = (torch.arange(height, device=device, dtype=dtype) * 2 + 1) / height - 1
    return torch.stack(
        [
            xs.expand(height, width),
            ys[:, None].expand(height, width),
            torch.ones_like(ys[:, None].expand(height, width)),
        ],
        dim=-1,
    ).view(-1, 3)


#: small tensors the transforms keep between steps, per cache: at most this many entries
_KEPT = 16
#: pixel centres by (height, width, device, dtype), for _affine_grid; none larger than _CENTRES_LARGEST
#: pixels (a large image's grid costs little beside its transform)
_CENTRES: dict[tuple[int, int, torch.device, torch.dtype], Tensor] = {}
_CENTRES_LARGEST = 512 * 512

_Kept = TypeVar("_Kept")


def _kept(cache: dict[Any, _Kept], key: Any, device: torch.device, make: Callable[[], _Kept]) -> _Kept:
    """``make()``, kept in ``cache`` under ``key`` where that is safe: not while compiling (the compiler
    folds the constant) or capturing a CUDA graph, at most ``_KEPT`` entries, made outside inference mode
    (so that autograd can use it later)."""
    capturing = device.type == "cuda" and torch.cuda.is_current_stream_capturing()
    if torch.compiler.is_compiling() or capturing:
        return make()
    value = cache.get(key)
    if value is None:
        if len(cache) >= _KEPT:
            cache.clear()
        with torch.inference_mode(False):
            value = cache.setdefault(key, make())
    return value


def _centres(height: int, width: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """The pixel centres for :func:`_affine_grid`, kept for small images."""
    if height * width > _CENTRES_LARGEST:
        return _pixel_centres(height, width, device, dtype)
    return _kept(_CENTRES, (height, width, device, dtype), device, lambda: _pixel_centres(height, width, device, dtype))


def _affine_grid(matrices: Tensor, height: int, width: int) -> Tensor:
    """``F.affine_grid(matrices, (n, c, height, width), align_corners=False)``, computed as one matrix product.

    The pixel centres are made once per size, and every image's grid comes out of a single
    ``(height * width, 3) @ (3, 2 * n)`` product: on a CPU ten (32x32) to twenty-five (224x224) times faster than
    ``F.affine_grid``, whose batched product of tiny matrices dominates a small image's transform.
    Half-precision matrices are multiplied in float32.

    Example:
        >>> matrices = torch.tensor([[[0.9, 0.1, 0.05], [-0.1, 0.9, 0.0]]]).repeat(2, 1, 1)
        >>> expected = F.affine_grid(matrices, [2, 3, 5, 7], align_corners=False)
        >>> bool(torch.allclose(_affine_grid(matrices, 5, 7), expected, atol=1e-6))
        True
    """
    n = matrices.shape[0]
    dtype = matrices.dtype if matrices.dtype == torch.float64 else torch.float32
    centres = _centres(height, width, matrices.device, dtype)
    grid = centres @ matrices.to(dtype).permute(2, 0, 1).reshape(3, 2 * n)  # (H * W, n * 2)
    grid = grid.view(height * width, n, 2).transpose(0, 1).reshape(n, height, width, 2)
    return grid.to(matrices.dtype)


def _sampling_matrices(
    extent: Tensor, angle: Tensor, x_shift: Tensor, y_shift: Tensor, height: int, width: int
) -> Tensor:
    """``(n, 2, 3)`` sampling matrices: per image, a window ``extent`` times the image's size turned by
    ``angle`` (radians) and centred at ``(x_shift, y_shift)`` in the grid's [-1, 1] units."""
    cos, sin = torch.cos(angle) * extent, torch.sin(angle) * extent
    # rotate in pixel units, so that non-square images are not sheared; one stack of the six entries
    aspect = height / width
    entries = [cos, sin * -aspect, x_shift, sin * (1 / aspect), cos, y_shift]
    return torch.stack(entries, dim=1).view(-1, 2, 3)


class RandomAffine(nn.Module):
    """Random translation, zoom and rotation, drawn per image, in one ``grid_sample``.

    For each image, a shift in ``[-translate, translate]`` pixels along each axis,
    a zoom factor in ``scale`` (``> 1`` magnifies) and an angle in
    ``[-degrees, degrees]`` are drawn uniformly. The output has the input's size.

    Args:
        translate: largest shift, pixels (int) or a fraction of the smaller side (float).
        scale: ``(low, high)`` range of zoom factors, or one factor.
        degrees: largest rotation angle in degrees.
        fill: a constant for the uncovered area, or ``"border"`` / ``"reflection"``.
        integer_shifts: round shifts to whole pixels (no interpolation when there
            is no zoom or rotation).
        mode: ``"bilinear"`` or ``"nearest"`` interpolation.

    Example:
        >>> t = RandomAffine(translate=0.1, scale=(0.9, 1.1), degrees=15)
        >>> t(torch.rand(2, 3, 20, 30)).shape
        torch.Size([2, 3, 20, 30])
    """

    def __init__(
        self,
        translate: Amount = 0.0,
        scale: float | tuple[float, float] = 1.0,
        degrees: float = 0.0,
        fill: Fill = 0.5,
        integer_shifts: bool = False,
        mode: Literal["bilinear", "nearest"] = "bilinear",
    ) -> None:
        super().__init__()
        _to_pixels(translate, 1, 1)
        low, high = (scale, scale) if isinstance(scale, (int, float)) else tuple(scale)
        if not 0 < low <= high:
            raise ValueError(f"scale must be a positive (low, high) range, got {scale!r}")
        if degrees < 0:
            raise ValueError(f"degrees must be non-negative, got {degrees!r}")
        if isinstance(fill, str) and fill not in ("border", "reflection"):
            raise ValueError(f"fill must be a number, 'border' or 'reflection', got {fill!r}")
        self.translate, self.scale, self.degrees = translate, (float(low), float(high)), float(degrees)
        self.fill, self.integer_shifts, self.mode = fill, integer_shifts, mode
        self._range_cache: dict[tuple[object, ...], tuple[Tensor, Tensor]] = {}

    def sample_matrices(self, images: Tensor) -> Tensor:
        """Draw one ``(2, 3)`` sampling matrix per image, as ``F.affine_grid`` takes them.

        The matrix maps output coordinates to input coordinates, both normalised
        to [-1, 1].

        Example:
            >>> matrices = RandomAffine(translate=2).sample_matrices(torch.zeros(4, 3, 16, 16))
            >>> matrices.shape
            torch.Size([4, 2, 3])
            >>> bool((matrices[:, :, 2].abs() <= 2 * 2 / 16).all())  # shifts of at most 2 of 16 pixels
            True
        """
        n, _, height, width = images.shape
        device = images.device
        # per image, four uniform numbers mapped in one operation to a shift along x and y (in the grid's
        # [-1, 1] units, 2 / size a pixel), a zoom and an angle: a step's few small operations add up
        start, span = self._ranges(height, width, device)
        draws = torch.rand(n, 4, device=device, generator=generator(device))
        x_shift, y_shift, zoom, angle = torch.addcmul(start, draws, span).unbind(1)
        if self.integer_shifts:  # uniform over the whole numbers in [-shift, shift]
            whole = math.floor(_to_pixels(self.translate, height, width))
            pixels = torch.randint(-whole, whole + 1, (n, 2), device=device, generator=generator(device))
            x_shift, y_shift = pixels[:, 0] * (2 / width), pixels[:, 1] * (2 / height)
        return _sampling_matrices(zoom.reciprocal(), angle, x_shift, y_shift, height, width)

    def _ranges(self, height: int, width: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """Start and span of the four uniform draws (x and y shift in grid units, zoom, angle), kept per size
        and device: making them anew each step would copy from the host, which waits for a GPU."""
        shift = _to_pixels(self.translate, height, width)
        low, high = self.scale
        radians = math.radians(self.degrees)
        cache = self.__dict__.setdefault("_range_cache", {})  # (absent from an object saved before it existed)
        return _kept(
            cache,
            (height, width, device, shift, low, high, radians),
            device,
            lambda: (
                torch.tensor([-2 * shift / width, -2 * shift / height, low, -radians], device=device),
                torch.tensor([4 * shift / width, 4 * shift / height, high - low, 2 * radians], device=device),
            ),
        )

    def __getstate__(self) -> dict[str, object]:
        # a saved or copied transform leaves its kept ranges behind (they may sit on a GPU)
        return {**self.__dict__, "_range_cache": {}}

    def forward(self, images: Tensor) -> Tensor:
        _check_images(images)
        matrices = self.sample_matrices(images).to(images.dtype)
        grid = _affine_grid(matrices, images.shape[-2], images.shape[-1])
        if isinstance(self.fill, str):
            return F.grid_sample(images, grid, mode=self.mode, padding_mode=self.fill, align_corners=False)
        shifted = images - self.fill
        sampled = F.grid_sample(shifted, grid, mode=self.mode, padding_mode="zeros", align_corners=False)
        return sampled.add_(self.fill)  # in place: one image-sized buffer less a step

    def extra_repr(self) -> str:
        return f"translate={self.translate!r}, scale={self.scale!r}, degrees={self.degrees!r}, fill={self.fill!r}" + (
            ", integer_shifts=True" if self.integer_shifts else ""
        )


class RandomCrop(RandomAffine):
    """A random crop of each image, enlarged back to the image's size: a zoom into a random part of it.

    For each image, the crop's side is a fraction of the image's drawn uniformly from ``size``,
    its place is drawn uniformly among those that keep it inside the image, and it may be turned
    by an angle in ``[-degrees, degrees]`` (the corners a turn uncovers are filled). One
    ``grid_sample`` does it all. Optimising through crops from a quarter of the image to the
    whole of it, as faccent's box crops do, makes a picture whose parts read at every scale:
    whole objects, not only their textures.

    With ``final_size``, the range changes over a run: it is ``size`` at step 1 and moves in a
    straight line to ``final_size`` at step ``final_step``, and stays there. ``render_vis`` tells
    the crop the step (:func:`featvis.transforms.set_step`); until it is told, the crop uses
    ``size``. Crops that widen to the whole image are meant to let the early steps lay out objects
    at several sizes and the late ones make the whole frame read as one picture (measured at
    224x224 in docs/benchmarks.md: no better than fixed crops).

    Args:
        size: ``(low, high)`` range of the crop's side, as a fraction of the image's (``high`` at most 1).
        degrees: largest rotation angle in degrees.
        fill: a constant for the uncovered area, or ``"border"`` / ``"reflection"``.
        final_size: the range at ``final_step`` and after, or ``None`` for ``size`` throughout.
        final_step: the step (from 1) at which the range reaches ``final_size``. It counts steps, not
            a share of the run, so a run of k steps returns what a longer run shows at step k.

    Example:
        >>> crop = RandomCrop(size=(0.5, 1.0))
        >>> crop(torch.rand(2, 3, 16, 16)).shape
        torch.Size([2, 3, 16, 16])
        >>> matrices = crop.sample_matrices(torch.zeros(1000, 3, 16, 16))
        >>> zoom, shift = matrices[:, 0, 0], matrices[:, :, 2].abs()
        >>> bool((zoom >= 0.5).all() and (zoom <= 1).all() and (shift <= 1 - zoom[:, None] + 1e-6).all())
        True
        >>> widening = RandomCrop(size=(0.25, 1.0), final_size=(1.0, 1.0), final_step=5)
        >>> [widening.size_at(step) for step in (1, 3, 5, 9)]
        [(0.25, 1.0), (0.625, 1.0), (1.0, 1.0), (1.0, 1.0)]
    """

    def __init__(
        self,
        size: tuple[float, float] = (0.25, 1.0),
        degrees: float = 0.0,
        fill: Fill = 0.5,
        final_size: tuple[float, float] | None = None,
        final_step: int = 128,
    ) -> None:
        low, high = _check_crop_size(size, "size")
        if final_size is not None:
            final_low, final_high = _check_crop_size(final_size, "final_size")
            low, high = min(low, final_low), max(high, final_high)
        if isinstance(final_step, bool) or not isinstance(final_step, int) or final_step < 1:
            raise ValueError(f"final_step must be a whole number from 1, got {final_step!r}")
        # the zoom range covers every range the run goes through
        super().__init__(scale=(1 / high, 1 / low), degrees=degrees, fill=fill)
        self.size = (float(size[0]), float(size[1]))
        self.final_size = None if final_size is None else (float(final_size[0]), float(final_size[1]))
        self.final_step = final_step
        self.step = 1
        # the range now, as (low, high - low) in a tensor that set_step changes in place: a compiled
        # transform reads it as an input, where a Python number would be compiled in, step by step
        self.register_buffer("current", torch.tensor([self.size[0], self.size[1] - self.size[0]]), persistent=False)

    def set_step(self, step: int) -> None:
        """Use the range of ``step`` (from 1) from now on; ``render_vis`` calls it before each step.

        Example:
            >>> crop = RandomCrop(size=(0.5, 0.5), final_size=(1.0, 1.0), final_step=2)
            >>> crop.set_step(2)
            >>> crop.sample_matrices(torch.zeros(1, 3, 8, 8))[0, 0, 0].item()
            1.0
        """
        self.step = step
        if self.final_size is not None:
            low, high = self.size_at(step)
            with torch.no_grad():
                self.current.copy_(torch.tensor([low, high - low]))

    def size_at(self, step: int) -> tuple[float, float]:
        """The ``(low, high)`` range of the crop's side at ``step`` (from 1).

        Example:
            >>> RandomCrop(size=(0.2, 0.6), final_size=(0.6, 1.0), final_step=3).size_at(2)
            (0.4, 0.8)
        """
        if self.final_size is None:
            return self.size
        along = min(1.0, (step - 1) / (self.final_step - 1)) if self.final_step > 1 else 1.0
        low, high = (start + (end - start) * along for start, end in zip(self.size, self.final_size))
        return (round(low, 12), round(high, 12))

    def sample_matrices(self, images: Tensor) -> Tensor:
        """Draw one ``(2, 3)`` sampling matrix per image: the crop's side times a rotation, and its centre.

        Example:
            >>> matrices = RandomCrop(size=(0.5, 0.5)).sample_matrices(torch.zeros(3, 3, 8, 8))
            >>> matrices[:, 0, 0].tolist(), bool((matrices[:, :, 2].abs() <= 0.5).all())
            ([0.5, 0.5, 0.5], True)
        """
        n, _, height, width = images.shape
        draws = torch.rand(n, 4, device=images.device, generator=generator(images.device))
        if getattr(self, "final_size", None) is None:  # (a crop saved before schedules existed has none)
            low, high = self.size
            side = draws[:, 0] * (high - low) + low  # the crop's side, as a fraction of the image's
        else:
            low_span = self.current.to(draws.device)
            side = torch.addcmul(low_span[0], draws[:, 0], low_span[1])
        # the crop's centre, in the grid's [-1, 1] units, anywhere that keeps the crop inside
        x_shift, y_shift = (draws[:, 1:3] * 2 - 1).mul(1 - side[:, None]).unbind(1)
        angle = (draws[:, 3] * 2 - 1) * math.radians(self.degrees)
        return _sampling_matrices(side, angle, x_shift, y_shift, height, width)

    def extra_repr(self) -> str:
        shown = f"size={self.size!r}, degrees={self.degrees!r}, fill={self.fill!r}"
        if self.final_size is None:
            return shown
        return shown + f", final_size={self.final_size!r}, final_step={self.final_step!r}"


def _check_crop_size(size: tuple[float, float], name: str) -> tuple[float, float]:
    low, high = size
    if not 0 < low <= high <= 1:
        raise ValueError(f"{name} must be a (low, high) range of fractions with 0 < low <= high <= 1, got {size!r}")
    return float(low), float(high)


class Jitter(RandomAffine):
    """Shift each image by a random whole number of pixels in ``[-shift, shift]``.

    Example:
        >>> Jitter(3)(torch.rand(5, 1, 16, 16)).shape
        torch.Size([5, 1, 16, 16])
    """

    def __init__(self, shift: Amount = 0.03, fill: Fill = 0.5) -> None:
        super().__init__(translate=shift, fill=fill, integer_shifts=True)


class RandomScale(RandomAffine):
    """Zoom each image about its centre by a random factor in ``scale``.

    Example:
        >>> RandomScale((0.8, 1.2))(torch.rand(2, 3, 10, 10)).shape
        torch.Size([2, 3, 10, 10])
    """

    def __init__(self, scale: tuple[float, float] = (0.9, 1.1), fill: Fill = 0.5) -> None:
        super().__init__(scale=scale, fill=fill)


class RandomRotate(RandomAffine):
    """Rotate each image about its centre by a random angle in ``[-degrees, degrees]``.

    Example:
        >>> RandomRotate(20)(torch.rand(2, 3, 10, 10)).shape
        torch.Size([2, 3, 10, 10])
    """

    def __init__(self, degrees: float = 10.0, fill: Fill = 0.5) -> None:
        super().__init__(degrees=degrees, fill=fill)
