"""DeepDream: start from a photo and amplify what a layer of the network sees in it.

:func:`deepdream` climbs the gradient of an objective (by default the mean square
of a whole layer's activations) directly on the pixels of a given image, with the
three tricks of Mordvintsev et al.'s DeepDream notebooks:

- **octaves**: the dream starts on a small copy of the photo and goes on at
  sizes growing by ``octave_scale``; what the dream added is carried up from one
  size to the next and added to the photo at that size, so large patterns form at
  the small sizes and the photo's own fine detail is never lost;
- **Laplacian-pyramid normalisation** (:func:`laplacian_normalize`): the
  gradient is split into frequency bands (:func:`laplacian_split`), each band is
  divided by its own root mean square, and the bands are merged again
  (:func:`laplacian_merge`), so that the coarse structure of the gradient is not
  drowned by its high-frequency noise;
- **tiles** (``tile_size``): the gradient is computed tile by tile, each tile
  with its own forward and backward pass, so that the memory needed grows with the
  tile, not with the image; the image is rolled by a random shift before tiling
  and rolled back after, so that the seams fall elsewhere at every step and do
  not show.

Example:
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()).eval()
    >>> photo = torch.rand(3, 40, 48)
    >>> result = deepdream(model, photo, "1", octaves=2, steps=2, seed=0, preprocess=False, progress=False)
    >>> result.images.shape, result.steps
    (torch.Size([1, 3, 40, 48]), 4)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import objectives as objectives_module
from .generators import generator, run_random
from .hooks import ActivationCapture, model_device_dtype
from .loop import optimize
from .models import default_input_channels, first_convolution, resolve_preprocess
from .objectives import Objective, ObjectiveLike, as_objective
from .probe import prepare_capture
from .result import RenderResult
from .state import check_seed, denormals_flushed, rendering_state

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

__all__ = [
    "MIN_TILE_SIZE",
    "as_image_batch",
    "deepdream",
    "laplacian_merge",
    "laplacian_normalize",
    "laplacian_split",
]

#: the smallest ``tile_size`` accepted: smaller tiles are mostly border for a network of 3x3
#: convolutions, and cost more in per-pass overhead than they save in memory
MIN_TILE_SIZE = 8

ImageLike = Union[Tensor, "PILImage"]

#: the 5-tap binomial filter (an approximate Gaussian) that blurs before each halving of the pyramid
_BINOMIAL = (1.0, 4.0, 6.0, 4.0, 1.0)


# ---- the Laplacian pyramid ---------------------------------------------------------------
def _check_batch(tensor: Tensor, what: str) -> None:
    if not isinstance(tensor, Tensor) or tensor.ndim != 4 or not tensor.is_floating_point():
        shape = tuple(tensor.shape) if isinstance(tensor, Tensor) else type(tensor).__name__
        raise ValueError(f"{what} must be a floating-point (N, C, H, W) tensor, got {shape}")


def _binomial_kernel(tensor: Tensor) -> Tensor:
    """The 5x5 binomial kernel (weights summing to 1) in ``tensor``'s dtype and device."""
    taps = torch.tensor(_BINOMIAL, dtype=tensor.dtype, device=tensor.device)
    return torch.outer(taps, taps) / taps.sum() ** 2


def _blur_halve(tensor: Tensor) -> Tensor:
    """Blur with the 5x5 binomial filter (borders repeated) and keep every second pixel, from the first.

    A side of ``n`` pixels becomes ``ceil(n / 2)``.
    """
    channels = tensor.shape[1]
    padded = F.pad(tensor, (2, 2, 2, 2), mode="replicate")
    return F.conv2d(padded, _binomial_kernel(tensor).expand(channels, 1, 5, 5), stride=2, groups=channels)


def _expand(tensor: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """The inverse resampling of :func:`_blur_halve`: pixel ``k`` goes back to position ``2k`` of ``size``.

    Zeros are put between the pixels and the result is blurred with the binomial
    filter (a transposed convolution), divided by what the filter's weights add
    up to at each output pixel (1 inside, less at the borders). A linear ramp
    comes back exactly, away from the borders.
    """
    channels, height, width = tensor.shape[1:]
    extra = (int(size[0]) - (2 * height - 1), int(size[1]) - (2 * width - 1))
    if not all(value in (0, 1) for value in extra):
        raise ValueError(f"cannot expand {height}x{width} to {tuple(size)}: each side must be 2n - 1 or 2n")
    kernel = _binomial_kernel(tensor)[None, None] * 4
    spread = F.conv_transpose2d(
        tensor, kernel.expand(channels, 1, 5, 5), stride=2, padding=2, output_padding=extra, groups=channels
    )
    weights = F.conv_transpose2d(
        tensor.new_ones(1, 1, height, width), kernel, stride=2, padding=2, output_padding=extra
    )
    return spread / weights


def _resize(tensor: Tensor, size: tuple[int, int] | torch.Size) -> Tensor:
    """Bilinear resize to ``size`` (height, width); antialiased when shrinking."""
    size = (int(size[0]), int(size[1]))
    if tuple(tensor.shape[-2:]) == size:
        return tensor
    shrinking = size[0] < tensor.shape[-2] or size[1] < tensor.shape[-1]
    return F.interpolate(tensor, size=size, mode="bilinear", align_corners=False, antialias=shrinking)


def laplacian_split(tensor: Tensor, levels: int) -> list[Tensor]:
    """Split ``(N, C, H, W)`` values into ``levels`` frequency bands, finest first.

    Each band but the last is what a blur-and-halve step loses: the values minus
    the blurred half-size copy expanded back (Burt and Adelson's pyramid, with a
    5x5 binomial filter); the last band is the coarsest copy.
    :func:`laplacian_merge` adds them back up to the input.

    Example:
        >>> x = torch.rand(1, 3, 16, 12)
        >>> [tuple(band.shape[-2:]) for band in laplacian_split(x, 3)]
        [(16, 12), (8, 6), (4, 3)]
        >>> torch.allclose(laplacian_merge(laplacian_split(x, 3)), x, atol=1e-6)
        True
    """
    _check_batch(tensor, "the tensor to split")
    if not isinstance(levels, int) or isinstance(levels, bool) or levels < 1:
        raise ValueError(f"levels must be a positive integer, got {levels!r}")
    bands = []
    current = tensor
    for _ in range(levels - 1):
        coarser = _blur_halve(current)
        bands.append(current - _expand(coarser, current.shape[-2:]))
        current = coarser
    bands.append(current)
    return bands


def laplacian_merge(bands: list[Tensor]) -> Tensor:
    """Add Laplacian bands (finest first, as :func:`laplacian_split` gives them) back into one tensor.

    Example:
        >>> x = torch.rand(2, 1, 9, 9, dtype=torch.float64)
        >>> bool((laplacian_merge(laplacian_split(x, 4)) - x).abs().max() < 1e-12)
        True
    """
    if not bands:
        raise ValueError("laplacian_merge needs at least one band")
    current = bands[-1]
    for band in reversed(bands[:-1]):
        current = _expand(current, band.shape[-2:]) + band
    return current


def _rms(tensor: Tensor) -> Tensor:
    """The root mean square of each batch element, shaped ``(N, 1, 1, 1)``, at least the smallest normal float."""
    return tensor.square().mean(dim=(1, 2, 3), keepdim=True).sqrt().clamp_min(torch.finfo(tensor.dtype).tiny)


def _normalized_bands(gradient: Tensor, levels: int) -> list[Tensor]:
    """The Laplacian bands of ``gradient``, each divided by its own root mean square (per image)."""
    bands = laplacian_split(gradient, levels) if levels > 1 else [gradient]
    return [band / _rms(band) for band in bands]


def laplacian_normalize(gradient: Tensor, levels: int = 4) -> Tensor:
    """Give every frequency band of ``gradient`` the same weight, and the result unit scale.

    The gradient of each image of the batch is split into ``levels`` Laplacian
    bands, each band divided by its root mean square, the bands merged, and the
    result divided by its root mean square again, so that a step of ``s`` times
    it changes pixels by ``s`` (root mean square) whatever ``levels`` is.
    ``levels`` 0 or 1 is plain normalisation: the gradient divided by its root
    mean square. A gradient of zeros stays zeros.

    Example:
        >>> g = torch.randn(2, 3, 32, 32)
        >>> normalized = laplacian_normalize(g, levels=4)
        >>> [round(rms, 4) for rms in normalized.square().mean(dim=(1, 2, 3)).sqrt().tolist()]
        [1.0, 1.0]
    """
    _check_batch(gradient, "the gradient")
    if not isinstance(levels, int) or isinstance(levels, bool) or levels < 0:
        raise ValueError(f"levels must be a whole number >= 0 (0 or 1: plain normalisation), got {levels!r}")
    merged = laplacian_merge(_normalized_bands(gradient, levels))
    return merged / _rms(merged)


# ---- tiles -------------------------------------------------------------------------------
def _tile_bounds(length: int, tile_size: int | None) -> list[tuple[int, int]]:
    """``(start, stop)`` of near-equal tiles covering ``range(length)``, none longer than ``tile_size``.

    Equal tiles (rather than full tiles and a remainder) keep every tile at least
    half the tile size, so that no tile is a sliver the network cannot see into.
    """
    if tile_size is None or length <= tile_size:
        return [(0, length)]
    count = math.ceil(length / tile_size)
    cuts = [round(k * length / count) for k in range(count + 1)]
    return list(zip(cuts[:-1], cuts[1:]))


def _tiled_gradient(
    objective_of: Callable[[Tensor], Tensor], image: Tensor, tile_size: int | None, shift: tuple[int, int]
) -> tuple[Tensor, Tensor]:
    """The objective's value and its gradient with respect to ``image``, one tile at a time.

    ``image`` is rolled by ``shift`` (height, width), cut into tiles, and each
    tile gets its own forward and backward pass; the tile gradients, rolled back,
    form the gradient. Each tile's objective is weighted by its share of the
    image's area, so that for a mean over positions computed by pointwise layers
    the tiled gradient is the whole image's gradient.
    """
    height, width = image.shape[-2:]
    rolled = image.roll(shift, dims=(2, 3)) if any(shift) else image
    gradient = torch.zeros_like(rolled)
    total = torch.zeros((), device=image.device)
    for top, bottom in _tile_bounds(height, tile_size):
        for left, right in _tile_bounds(width, tile_size):
            tile = rolled[:, :, top:bottom, left:right].detach().requires_grad_(True)
            share = (bottom - top) * (right - left) / (height * width)
            value = objective_of(tile) * share
            (tile_gradient,) = torch.autograd.grad(value, tile)
            gradient[:, :, top:bottom, left:right] = tile_gradient
            total = total + value.detach()
    if any(shift):
        gradient = gradient.roll((-shift[0], -shift[1]), dims=(2, 3))
    return total, gradient


def _random_shift(height: int, width: int, tile_size: int | None) -> tuple[int, int]:
    """A random roll along each axis that is cut into several tiles (none along the others)."""
    if tile_size is None:
        return 0, 0
    cpu = generator("cpu")
    shift_y = int(torch.randint(height, (), generator=cpu)) if height > tile_size else 0
    shift_x = int(torch.randint(width, (), generator=cpu)) if width > tile_size else 0
    return shift_y, shift_x


# ---- arguments ---------------------------------------------------------------------------
def as_image_batch(image: ImageLike, model: nn.Module) -> Tensor:
    """A float32 ``(N, C, H, W)`` tensor in [0, 1] from a ``(C, H, W)`` or ``(N, C, H, W)`` tensor or a
    PIL image, checked against what ``model`` takes (its values, its channels), for the functions that
    start from a photo (DeepDream, accentuation, caricatures, the semantic dictionary).

    Example:
        >>> from torch import nn
        >>> as_image_batch(torch.rand(3, 8, 8), nn.Sequential(nn.Conv2d(3, 2, 1))).shape
        torch.Size([1, 3, 8, 8])
    """
    from PIL import Image as PILModule

    if isinstance(image, PILModule.Image):
        mode = "L" if default_input_channels(model) == 1 else "RGB"
        data = torch.frombuffer(bytearray(image.convert(mode).tobytes()), dtype=torch.uint8)
        batch = data.reshape(image.height, image.width, -1).permute(2, 0, 1)[None].float() / 255
        return batch
    if not isinstance(image, Tensor):
        raise TypeError(
            f"image must be a torch tensor (C, H, W) or (N, C, H, W) with values in [0, 1], or a PIL image, "
            f"got {type(image).__name__}"
        )
    if image.ndim not in (3, 4):
        raise ValueError(
            f"image must be a (C, H, W) or (N, C, H, W) tensor, got shape {tuple(image.shape)}; "
            "for an (H, W, C) array use tensor.permute(2, 0, 1)"
        )
    if not image.is_floating_point():
        raise ValueError(
            f"image must be a floating-point tensor with values in [0, 1], got dtype {image.dtype}; "
            "for 8-bit pixels use image.float() / 255"
        )
    batch = image if image.ndim == 4 else image[None]
    if batch.numel() == 0:
        raise ValueError(f"image is empty (shape {tuple(image.shape)})")
    low, high = float(batch.min()), float(batch.max())
    if not (math.isfinite(low) and math.isfinite(high)) or low < -1e-6 or high > 1 + 1e-6:
        raise ValueError(
            f"image values must lie in [0, 1], got values from {low:g} to {high:g}; for 8-bit pixels divide by "
            "255 (featvis takes values in [0, 1]), and pass images before normalisation (preprocess does that)"
        )
    first = first_convolution(model)
    if first is not None and first[1].in_channels != batch.shape[1]:
        name, conv = first
        raise ValueError(
            f"the image has {batch.shape[1]} channels but the model takes {conv.in_channels} (its first "
            f"convolution {name!r} has in_channels={conv.in_channels}); give an image with "
            f"{conv.in_channels} channels"
        )
    return batch.detach().float().clamp(0, 1)


def _dream_objective(spec: ObjectiveLike) -> Objective:
    """A layer name means that layer's DeepDream objective; anything else as in ``render_vis``."""
    if isinstance(spec, str):
        name, sep, unit = spec.rpartition(":")
        if sep and name and unit.strip().lstrip("-").isdigit():
            return as_objective(spec)
        return objectives_module.layer(spec)
    return as_objective(spec)


def _positive_int(value: Any, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _octave_sizes(height: int, width: int, octaves: int, octave_scale: float) -> list[tuple[int, int]]:
    """The sizes the dream runs at, smallest first; the last is the image's own size."""
    return [
        (max(1, round(height / octave_scale**k)), max(1, round(width / octave_scale**k)))
        for k in reversed(range(octaves))
    ]


def _check_arguments(
    octaves: int, octave_scale: float, steps: int, step_size: float, laplacian_levels: int, tile_size: int | None
) -> None:
    _positive_int(octaves, "octaves")
    _positive_int(steps, "steps")
    if isinstance(octave_scale, bool) or not isinstance(octave_scale, (int, float)) or not octave_scale > 1:
        raise ValueError(
            f"octave_scale must be a number greater than 1 (each octave is that many times larger than the "
            f"previous one; 1.4 is usual), got {octave_scale!r}"
        )
    if isinstance(step_size, bool) or not isinstance(step_size, (int, float)) or not step_size > 0:
        raise ValueError(f"step_size must be a positive number, got {step_size!r}")
    if not isinstance(laplacian_levels, int) or isinstance(laplacian_levels, bool) or laplacian_levels < 0:
        raise ValueError(
            f"laplacian_levels must be a whole number >= 0 (0: plain normalisation), got {laplacian_levels!r}"
        )
    if tile_size is not None and (
        not isinstance(tile_size, int) or isinstance(tile_size, bool) or tile_size < MIN_TILE_SIZE
    ):
        raise ValueError(
            f"tile_size must be None (the whole image at once) or a whole number of pixels >= {MIN_TILE_SIZE}, "
            f"got {tile_size!r}; smaller tiles are mostly border for the network"
        )


# ---- deepdream ---------------------------------------------------------------------------
def deepdream(
    model: nn.Module,
    image: ImageLike,
    objective: ObjectiveLike,
    *,
    octaves: int = 4,
    octave_scale: float = 1.4,
    steps: int = 10,
    step_size: float = 0.006,
    laplacian_levels: int = 4,
    tile_size: int | None = None,
    preprocess: Callable[[Tensor], Tensor] | bool | None = None,
    seed: int | None = None,
    progress: bool = True,
) -> RenderResult:
    """Amplify in ``image`` what ``objective`` responds to, by gradient ascent on its pixels.

    The image is dreamt at ``octaves`` sizes, smallest first, each ``octave_scale``
    times the previous one, the last being the image's own size. At each size,
    ``steps`` steps move the pixels along the objective's gradient, normalised by
    :func:`laplacian_normalize` and scaled so that the root mean square change of
    the pixels is ``step_size``; pixels stay in [0, 1]. What the dream added at
    one size is enlarged and added to the photo at the next, so the photo's detail
    survives.

    Args:
        model: any ``torch.nn.Module`` taking image batches. It runs in eval mode,
            without weight gradients, up to the deepest layer the objective needs,
            on its own device, and comes back as it was (weights, train/eval mode,
            ``requires_grad`` flags, no hooks).
        image: the start, a ``(C, H, W)`` or ``(N, C, H, W)`` tensor with values
            in [0, 1], or a PIL image. Each image of a batch is dreamt on its own.
        objective: a layer name (``"layer2"``: the mean square of its activations,
            :func:`featvis.objectives.layer`), a ``"layer:channel"`` string, an
            :class:`~featvis.objectives.Objective`, or a function of the
            activations returning a scalar. Objectives that read ``"input"`` see
            the image (or the tile) being dreamt.
        octaves: how many sizes to dream at (1: the image's size only).
        octave_scale: the ratio between consecutive sizes, greater than 1.
        steps: gradient steps per octave.
        step_size: the root mean square change of the pixels at each step
            (before clamping to [0, 1]).
        laplacian_levels: frequency bands the gradient is split into before each
            band is normalised (:func:`laplacian_normalize`); 0 (or 1) for plain
            normalisation of the whole gradient.
        tile_size: ``None`` computes the gradient on the whole image at once; an
            int computes it on tiles at most that many pixels a side, one forward
            and backward pass each, after a random roll of the image that changes
            at every step. Memory then grows with the tile, not the image. For
            models whose layers see beyond a tile (most do), the tiled gradient
            differs near seams, which the random roll spreads out.
        preprocess: what turns [0, 1] images into the model's input, as in
            :func:`featvis.render_vis` (``None``: the model's own normalisation
            when featvis knows it; ``False``: none; or a callable).
        seed: seeds the random rolls (with ``tile_size``), so that a run repeats;
            the caller's random state is restored afterwards.
        progress: show a tqdm progress bar.

    Returns:
        A :class:`~featvis.render.RenderResult`: ``images`` the dream at the
        image's size (``(N, C, H, W)``, on the CPU, in [0, 1]); ``losses`` minus
        the objective at every step (on the octave's image before that step's
        update); ``snapshots`` the dream at the end of each octave, at that
        octave's size, keyed by the number of steps done; ``steps`` the steps
        done in all. Ctrl-C stops early and returns the dream so far, enlarged to
        the image's size (``interrupted=True``).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3)).eval()
        >>> photo = torch.rand(1, 3, 32, 32)
        >>> result = deepdream(model, photo, "2", octaves=3, steps=2, tile_size=16, seed=0, progress=False)
        >>> [tuple(snapshot.shape[-2:]) for snapshot in result.snapshots.values()]
        [(16, 16), (23, 23), (32, 32)]
        >>> bool(result.images.min() >= 0 and result.images.max() <= 1)
        True
    """
    check_seed(seed)
    _check_arguments(octaves, octave_scale, steps, step_size, laplacian_levels, tile_size)
    objective = _dream_objective(objective)
    device, dtype = model_device_dtype(model)
    photo = as_image_batch(image, model).to(device)
    prepare = resolve_preprocess(preprocess, model, device)
    height, width = photo.shape[-2:]
    sizes = _octave_sizes(height, width, octaves, octave_scale)
    bases = [_resize(photo, size) for size in sizes]

    def run(capture: ActivationCapture, pixels: Tensor) -> Any:
        return capture.run(prepare(pixels).to(dtype), image=pixels)

    with (
        rendering_state(model),
        run_random(seed, device),
        denormals_flushed(device),
        torch.inference_mode(False),
        torch.enable_grad(),
    ):
        capture = _checked_capture(model, objective, run, bases[0], tile_size)

        def objective_of(pixels: Tensor) -> Tensor:
            return objective(run(capture, pixels)).float().reshape(())

        dream = _Dream(bases, steps, objective_of, step_size, laplacian_levels, tile_size)
        with capture:
            outcome = optimize(
                dream,
                octaves * steps,
                images=lambda: dream.pixels,
                snapshot_at=[steps * (octave + 1) for octave in range(octaves)],
                progress=progress,
                description=f"deepdream {objective}",
                device=torch.device("cpu"),
                what="deepdream",
            )
        # the dream so far on the full-size photo (the dream itself when every octave ran)
        final = dream.on(photo) if outcome.interrupted else dream.pixels
    return RenderResult(
        final.detach().float().cpu(),
        outcome.snapshots,
        outcome.losses,
        f"deepdream {objective}",
        outcome.done,
        outcome.interrupted,
    )


class _Dream:
    """DeepDream's step: gradient ascent on the pixels, octave by octave (the step number says which)."""

    def __init__(
        self,
        bases: list[Tensor],
        steps: int,
        objective_of: Callable[[Tensor], Tensor],
        step_size: float,
        laplacian_levels: int,
        tile_size: int | None,
    ) -> None:
        self.bases, self.steps, self.objective_of = bases, steps, objective_of
        self.step_size, self.laplacian_levels, self.tile_size = step_size, laplacian_levels, tile_size
        self.pixels, self.base = bases[0].clone(), bases[0]

    def on(self, photo: Tensor) -> Tensor:
        """What the dream added so far, on ``photo`` (resized to its size)."""
        return (photo + _resize(self.pixels - self.base, tuple(photo.shape[-2:]))).clamp(0, 1)

    def __call__(self, number: int) -> Tensor:
        base = self.bases[(number - 1) // self.steps]
        if base is not self.base:  # the photo at this size, plus what the dream added so far
            self.pixels, self.base = self.on(base), base
        shift = _random_shift(*base.shape[-2:], self.tile_size)
        value, gradient = _tiled_gradient(self.objective_of, self.pixels, self.tile_size, shift)
        step = laplacian_normalize(gradient, self.laplacian_levels)
        self.pixels = (self.pixels + self.step_size * step).clamp_(0, 1)
        return -value


def _checked_capture(
    model: nn.Module,
    objective: Objective,
    run: Callable[[ActivationCapture, Tensor], Any],
    smallest: Tensor,
    tile_size: int | None,
) -> ActivationCapture:
    """Hook the objective's layers, checked on one forward pass of the smallest piece the dream will use."""
    height = min(stop - start for start, stop in _tile_bounds(smallest.shape[-2], tile_size))
    width = min(stop - start for start, stop in _tile_bounds(smallest.shape[-1], tile_size))
    piece = smallest[:, :, :height, :width]

    def run_forward(capture: ActivationCapture, probe: Tensor | None = None) -> Any:
        return run(capture, piece if probe is None else probe.to(piece.device))

    try:
        return prepare_capture(model, objective, run_forward, piece.shape)
    except ValueError as error:
        if "too small" not in str(error):
            raise
        what = "smallest octave" if (height, width) == tuple(smallest.shape[-2:]) else "smallest tile"
        raise ValueError(
            f"deepdream's {what} ({height}x{width} pixels) is too small for this model, whose forward pass "
            f"fails on it; use fewer octaves, a smaller octave_scale, a larger tile_size or a larger image. "
            f"Details: {error}"
        ) from error
