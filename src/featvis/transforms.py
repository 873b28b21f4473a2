"""Transformation robustness: random geometric changes applied at every step.

Each transform is an :class:`torch.nn.Module` mapping an image batch
``(N, C, H, W)`` to an image batch. The random ones draw their parameters
**independently for each image** from torch's random number generator, and apply
them all in one batched, differentiable ``grid_sample`` on the image's device.
They keep the image size, so models with a fixed input size work too; the part
of the frame that the moved image no longer covers is filled (grey by default).

Amounts of movement are given as an ``int`` (pixels) or a ``float`` (a fraction
of the image's smaller side), so that the defaults suit a 32x32 model as well as a
224x224 one.

Example:
    >>> import torch
    >>> from featvis import transforms
    >>> t = transforms.Compose(transforms.Jitter(2), transforms.RandomRotate(10))
    >>> t(torch.rand(4, 3, 32, 32)).shape
    torch.Size([4, 3, 32, 32])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .sizes import Size, is_large

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Compose",
    "Jitter",
    "Lambda",
    "Normalize",
    "Pad",
    "RandomAffine",
    "RandomBlur",
    "RandomCrop",
    "RandomRotate",
    "RandomScale",
    "TransformSpec",
    "as_transform",
    "crops",
    "for_size",
    "standard",
]

#: Mean and standard deviation of ImageNet's RGB channels (torchvision's models).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

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
        x_shift, y_shift, zoom, angle = torch.addcmul(start, torch.rand(n, 4, device=device), span).unbind(1)
        if self.integer_shifts:  # uniform over the whole numbers in [-shift, shift]
            whole = math.floor(_to_pixels(self.translate, height, width))
            pixels = torch.randint(-whole, whole + 1, (n, 2), device=device)
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

    Args:
        size: ``(low, high)`` range of the crop's side, as a fraction of the image's (``high`` at most 1).
        degrees: largest rotation angle in degrees.
        fill: a constant for the uncovered area, or ``"border"`` / ``"reflection"``.

    Example:
        >>> crop = RandomCrop(size=(0.5, 1.0))
        >>> crop(torch.rand(2, 3, 16, 16)).shape
        torch.Size([2, 3, 16, 16])
        >>> matrices = crop.sample_matrices(torch.zeros(1000, 3, 16, 16))
        >>> zoom, shift = matrices[:, 0, 0], matrices[:, :, 2].abs()
        >>> bool((zoom >= 0.5).all() and (zoom <= 1).all() and (shift <= 1 - zoom[:, None] + 1e-6).all())
        True
    """

    def __init__(self, size: tuple[float, float] = (0.25, 1.0), degrees: float = 0.0, fill: Fill = 0.5) -> None:
        low, high = size
        if not 0 < low <= high <= 1:
            raise ValueError(f"size must be a (low, high) range of fractions with 0 < low <= high <= 1, got {size!r}")
        super().__init__(scale=(1 / high, 1 / low), degrees=degrees, fill=fill)
        self.size = (float(low), float(high))

    def sample_matrices(self, images: Tensor) -> Tensor:
        """Draw one ``(2, 3)`` sampling matrix per image: the crop's side times a rotation, and its centre.

        Example:
            >>> matrices = RandomCrop(size=(0.5, 0.5)).sample_matrices(torch.zeros(3, 3, 8, 8))
            >>> matrices[:, 0, 0].tolist(), bool((matrices[:, :, 2].abs() <= 0.5).all())
            ([0.5, 0.5, 0.5], True)
        """
        n, _, height, width = images.shape
        low, high = self.size
        draws = torch.rand(n, 4, device=images.device)
        side = draws[:, 0] * (high - low) + low  # the crop's side, as a fraction of the image's
        # the crop's centre, in the grid's [-1, 1] units, anywhere that keeps the crop inside
        x_shift, y_shift = (draws[:, 1:3] * 2 - 1).mul(1 - side[:, None]).unbind(1)
        angle = (draws[:, 3] * 2 - 1) * math.radians(self.degrees)
        return _sampling_matrices(side, angle, x_shift, y_shift, height, width)

    def extra_repr(self) -> str:
        return f"size={self.size!r}, degrees={self.degrees!r}, fill={self.fill!r}"


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


def _replicate(images: Tensor, pad: int, dim: int) -> Tensor:
    """Pad ``pad`` copies of the edge on both sides of ``dim`` (as ``F.pad(mode="replicate")``, which
    ``torch.compile`` does not always get right on CPU)."""
    first, last = images.narrow(dim, 0, 1), images.narrow(dim, images.shape[dim] - 1, 1)
    sizes = [-1] * images.ndim
    sizes[dim] = pad
    return torch.cat([first.expand(sizes), images, last.expand(sizes)], dim=dim)


def _pad_edges(images: Tensor, rows: int, columns: int) -> Tensor:
    """Repeat the edge ``rows`` times above and below and ``columns`` times left and right.

    ``F.pad(mode="replicate")`` is one operation forward and backward; under ``torch.compile`` the
    padding is built from slices, which the compiler always gets right on CPU.
    """
    if torch.compiler.is_compiling():
        padded = _replicate(images, columns, -1) if columns else images
        return _replicate(padded, rows, -2) if rows else padded
    return F.pad(images, (columns, columns, rows, rows), mode="replicate")


#: RandomBlur kernels up to this many taps a side run as one 2-D convolution, wider ones as two 1-D ones
_LARGEST_SQUARE_KERNEL = 5


class RandomBlur(nn.Module):
    """Gaussian blur whose standard deviation (in pixels) is drawn per image from ``sigma``.

    Optimising through a random blur makes the picture keep its meaning when it is
    blurred or resized, instead of resting on pixel-exact detail: a small network
    on 32x32 inputs is otherwise easily driven by patterns that a 2x resize erases.
    The kernel is a Gaussian ``2 * ceil(2 * max(sigma)) + 1`` taps wide, borders
    replicated, applied in one 2-D convolution when it is small (the default
    half-pixel blur: 3x3) and as two 1-D ones otherwise; sigma 0 leaves the image
    as it is.

    Args:
        sigma: ``(low, high)`` range, or one number for a fixed blur.

    Example:
        >>> blur = RandomBlur((0.0, 1.0))
        >>> blur(torch.rand(4, 3, 16, 16)).shape
        torch.Size([4, 3, 16, 16])
    """

    def __init__(self, sigma: float | tuple[float, float] = (0.0, 1.0)) -> None:
        super().__init__()
        low, high = (sigma, sigma) if isinstance(sigma, (int, float)) else sigma
        if not 0 <= low <= high:
            raise ValueError(f"sigma must be a range 0 <= low <= high in pixels, got {sigma!r}")
        self.low, self.high = float(low), float(high)
        self.radius = max(1, math.ceil(2 * self.high))

    def forward(self, images: Tensor) -> Tensor:
        n, c, h, w = images.shape
        if self.high == 0:
            return images
        sigma = self.low + (self.high - self.low) * torch.rand(n, device=images.device, dtype=images.dtype)
        offsets = torch.arange(-self.radius, self.radius + 1, device=images.device, dtype=images.dtype)
        weights = torch.exp(-0.5 * (offsets / sigma.clamp_min(1e-3)[:, None]) ** 2)
        weights = (weights / weights.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # (n * c, taps)
        flat = images.reshape(1, n * c, h, w)
        r, taps = self.radius, weights.shape[1]
        if taps <= _LARGEST_SQUARE_KERNEL:  # one small 2-D convolution costs less than two 1-D ones
            kernels = weights[:, :, None] * weights[:, None, :]
            flat = F.conv2d(_pad_edges(flat, r, r), kernels[:, None], groups=n * c)
            return flat.view(n, c, h, w)
        flat = F.conv2d(_pad_edges(flat, 0, r), weights.view(n * c, 1, 1, taps), groups=n * c)
        flat = F.conv2d(_pad_edges(flat, r, 0), weights.view(n * c, 1, taps, 1), groups=n * c)
        return flat.view(n, c, h, w)

    def extra_repr(self) -> str:
        return f"sigma=({self.low}, {self.high})"


class Normalize(nn.Module):
    """Subtract a per-channel mean and divide by a per-channel standard deviation.

    Example:
        >>> normalize = Normalize(IMAGENET_MEAN, IMAGENET_STD)
        >>> normalize(torch.full((1, 3, 2, 2), 0.485))[0, 0, 0, 0].item()
        0.0
    """

    mean: Tensor
    std: Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        mean_t = torch.as_tensor(mean, dtype=torch.float32).flatten()
        std_t = torch.as_tensor(std, dtype=torch.float32).flatten()
        if mean_t.shape != std_t.shape:
            raise ValueError(f"mean and std need the same number of channels, got {len(mean_t)} and {len(std_t)}")
        if bool((std_t <= 0).any()):
            raise ValueError("std must be positive")
        self.register_buffer("mean", mean_t.reshape(1, -1, 1, 1))
        self.register_buffer("std", std_t.reshape(1, -1, 1, 1))

    def forward(self, images: Tensor) -> Tensor:
        if images.ndim != 4 or images.shape[1] != self.mean.shape[1]:
            raise ValueError(
                f"Normalize expects images with {self.mean.shape[1]} channels, got shape {tuple(images.shape)}"
            )
        return (images - self.mean.to(images)).div_(self.std.to(images))  # in place on the fresh difference

    def extra_repr(self) -> str:
        def show(values: Tensor) -> str:
            return "(" + ", ".join(f"{v:.4g}" for v in values.flatten().tolist()) + ")"

        return f"mean={show(self.mean)}, std={show(self.std)}"


class Lambda(nn.Module):
    """A plain function of an image batch as a transform module (so that it composes and moves
    with the others). :class:`Compose` wraps any callable that is not a module in one.

    Example:
        >>> flip = Lambda(lambda images: images.flip(-1))
        >>> flip(torch.arange(3.0).reshape(1, 1, 1, 3)).flatten().tolist()
        [2.0, 1.0, 0.0]
    """

    def __init__(self, function: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        if not callable(function):
            raise TypeError(
                f"a transform is a callable taking and returning an image batch, got {type(function).__name__}"
            )
        self.function = function

    def forward(self, images: Tensor) -> Tensor:
        return self.function(images)

    def extra_repr(self) -> str:
        return getattr(self.function, "__name__", type(self.function).__name__)


class Compose(nn.Sequential):
    """Apply transforms one after the other: modules, or any callables taking and returning an
    image batch (each wrapped in a :class:`Lambda`).

    Example:
        >>> Compose(Pad(4), Jitter(2))(torch.rand(1, 3, 8, 8)).shape
        torch.Size([1, 3, 16, 16])
        >>> Compose(Pad(1), lambda images: images.flip(-1))(torch.rand(1, 3, 8, 8)).shape
        torch.Size([1, 3, 10, 10])
    """

    def __init__(self, *transforms: Callable[[Tensor], Tensor]) -> None:
        super().__init__(*(t if isinstance(t, nn.Module) else Lambda(t) for t in transforms))


#: what ``render_vis(transforms=...)`` takes: a module, a callable, a list of them, or ``None`` (the default)
TransformSpec = Union[nn.Module, Callable[[Tensor], Tensor], Sequence[Callable[[Tensor], Tensor]], None]


def as_transform(transforms: TransformSpec, size: Size | None = None) -> Callable[[Tensor], Tensor]:
    """One transform from what a user may pass: ``None`` gives the defaults for images of ``size``
    (:func:`for_size`; :func:`standard` when the size is not known), a list or tuple is composed
    (``[]`` applies none), a module or any other callable is used as it is.

    Example:
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
) -> Compose:
    """The default transforms for large images: a slight random blur, then a random crop of each image.

    Each step, each image is blurred (sigma drawn from ``blur``, in pixels) and then seen through
    a random crop whose side is a fraction in ``size`` of the image's, enlarged back to the
    image's size and turned by up to ``degrees`` (:class:`RandomCrop`). Optimised through crops
    down to half the image, a picture holds whole objects at several scales, in a scene,
    rather than one texture over the frame (faccent's box crops do the same, with 16 crops per
    step; here one per image per step, so a step costs one forward pass). The blur before the
    crop keeps the picture's meaning when it is blurred or halved. Measured at 224x224 in
    docs/benchmarks.md.

    Example:
        >>> crops()(torch.rand(2, 3, 64, 64)).shape
        torch.Size([2, 3, 64, 64])
    """
    crop = RandomCrop(size=size, degrees=degrees, fill=fill)
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
