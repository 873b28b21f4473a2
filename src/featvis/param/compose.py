"""The whole parameterisation: :class:`Image` (basis, then colour, then output) and its factories.

:func:`image` builds the usual one in one call, from a basis named, a basis class or a basis
module (see :class:`~featvis.param.Basis`); :func:`laplacian_pyramid`, :func:`lowres_image`,
:func:`maco` and :func:`interpolation_image` build the others with their own settings.

Example:
    >>> from featvis.param import image
    >>> image(16, batch=2)().shape
    torch.Size([2, 3, 16, 16])
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator, Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from ..state import check_seed, seeded
from .basis import check_size
from .color import ColorDecorrelation, OutputKind, make_decorrelation
from .interpolation import DEFAULT_SHARED, InterpolationImage
from .magnitude import MACO_PHASE_SCALE, MacoImage, power_law_amplitude
from .spatial import (
    DEFAULT_DECAY,
    FourierImage,
    LaplacianPyramidImage,
    LowResImage,
    PixelImage,
    UpsampleMode,
    default_decay,
)

__all__ = [
    "BasisKind",
    "Image",
    "image",
    "interpolation_image",
    "laplacian_pyramid",
    "lowres_image",
    "maco",
]

#: The built-in bases :func:`image` knows by name.
BasisKind = Literal["fourier", "pixel", "laplacian", "lowres", "maco"]
#: What ``basis`` may be, in the words of the errors.
_ACCEPTED = (
    "'fourier', 'pixel', 'laplacian', 'lowres' or 'maco', a basis class (called as cls(batch, channels, "
    "height, width)) or a basis module (an nn.Module whose forward() returns (N, C, H, W) images)"
)


@contextlib.contextmanager
def _start_drawn_with(seed: int | None) -> Iterator[None]:
    """Draw the start values inside from the CPU's generator seeded with ``seed`` (``None``: torch's
    global state, as it is); the caller's random state comes back after."""
    with seeded(check_seed(seed), torch.device("cpu"), mix=False):
        yield


class Image(nn.Module):
    """A complete parameterisation: basis, colour decorrelation and output function.

    Calling it returns images of shape ``(N, C, H, W)`` with values in [0, 1].

    Its random start: :attr:`start_seed` is the seed it was drawn from (``None`` when drawn from
    torch's global generator); :meth:`draw_start` draws it anew from a seed, and ``render_vis(...,
    seed=)`` does that for a start nobody chose (:meth:`random_start_untouched`).

    Args:
        basis: a :class:`PixelImage`, :class:`FourierImage` or any module following the
            :class:`~featvis.param.Basis` protocol: a ``forward()`` returning an unbounded
            ``(N, C, H, W)`` tensor (and, to support :meth:`set_image`, a ``set_raw(raw)`` method).
        decorrelation: a :class:`ColorDecorrelation`, or ``None`` for none.
        output: ``"sigmoid"`` squashes smoothly into (0, 1); ``"clamp"`` adds the
            mean colour and clamps to [0, 1], letting gradients through unchanged.
        alpha: the basis's last channel is the images' opacity (RGBA images, the alpha channel last):
            it skips the colour decorrelation and goes through the same output function (0.5 at a raw 0).
            ``render_vis`` then composites the images over random backgrounds at each step
            (:class:`~featvis.transforms.RandomBackground`).

    Example:
        >>> p = Image(FourierImage(1, 3, 16, 16), ColorDecorrelation())
        >>> images = p().detach()
        >>> float(images.min()) >= 0 and float(images.max()) <= 1
        True
    """

    def __init__(
        self,
        basis: nn.Module,
        decorrelation: ColorDecorrelation | None = None,
        output: OutputKind = "sigmoid",
        alpha: bool = False,
    ) -> None:
        super().__init__()
        if output not in ("sigmoid", "clamp"):
            raise ValueError(f"output must be 'sigmoid' or 'clamp', got {output!r}")
        self.basis = basis
        self.decorrelation = decorrelation
        self.output = output
        self.alpha = bool(alpha)
        shape = tuple(basis().shape)
        if len(shape) != 4:
            raise ValueError(f"the basis must return (N, C, H, W) images, got shape {shape}")
        if self.alpha and shape[1] < 2:
            raise ValueError(f"alpha=True needs a basis of colour channels and an opacity channel, got {shape[1]}")
        self.shape: tuple[int, int, int, int] = shape  # type: ignore[assignment]
        #: the learning rate ``render_vis``'s default optimiser uses for it (None: its own default)
        self.learning_rate: float | None = None
        #: the seed the random start was drawn from; None: torch's global generator, or an image chosen
        self.start_seed: int | None = None
        self._drawn = self._fingerprint()  # None once a start is chosen: set, or looked at
        colours = shape[1] - self.alpha
        if decorrelation is not None and decorrelation.channels != colours:
            raise ValueError(
                f"the colour decorrelation works on {decorrelation.channels} channels but the image has {colours}"
            )

    @property
    def batch(self) -> int:
        """Number of images."""
        return self.shape[0]

    @property
    def channels(self) -> int:
        """Number of channels of each image (with the opacity channel, when :attr:`alpha`)."""
        return self.shape[1]

    @property
    def height(self) -> int:
        """Image height in pixels."""
        return self.shape[2]

    @property
    def width(self) -> int:
        """Image width in pixels."""
        return self.shape[3]

    @torch.no_grad()
    def _fingerprint(self) -> tuple[float, ...]:
        """Three sums of each basis parameter's values, in float64 and without a copy of them: all of them,
        their squares, and every seventh; they change when any value changes."""
        sums = []
        for p in self.basis.parameters():
            values = p.detach().reshape(-1)
            sums += [
                values.sum(dtype=torch.float64),
                torch.linalg.vector_norm(values, dtype=torch.float64),
                values[::7].sum(dtype=torch.float64),
            ]
        return tuple(torch.stack(sums).tolist()) if sums else ()

    def random_start_untouched(self) -> bool:
        """Whether the start is random, drawn from torch's global generator (no ``seed=``), and nobody
        has chosen it since: not set to an image, not looked at (called), not changed.
        ``render_vis(..., seed=)`` then draws it anew from its seed. Only a basis with
        ``reset_parameters(generator)`` (every built-in one) can be drawn anew.

        Example:
            >>> p = image(8)
            >>> p.random_start_untouched(), image(8, seed=0).random_start_untouched()
            (True, False)
            >>> start = p()  # looked at: the run will start from it
            >>> p.random_start_untouched()
            False
        """
        return (
            self.start_seed is None
            and self._drawn is not None
            and callable(getattr(self.basis, "reset_parameters", None))
            and self._fingerprint() == self._drawn
        )

    def draw_start(self, seed: int) -> None:
        """Draw the random start anew from a generator seeded with ``seed``, on the CPU whatever the
        device: the start ``image(..., seed=seed)`` has. The basis must have a
        ``reset_parameters(generator)`` method (every built-in one has).

        Example:
            >>> p = image(16)
            >>> p.draw_start(3)
            >>> p.start_seed, torch.equal(p(), image(16, seed=3)())
            (3, True)
        """
        seed = check_seed(seed)
        if seed is None:
            raise TypeError("draw_start needs a seed (a whole number), got None")
        reset = getattr(self.basis, "reset_parameters", None)
        if not callable(reset):
            raise TypeError(
                f"{type(self.basis).__name__} has no reset_parameters(generator) method to draw its start "
                "from a seed: give it one, or draw the start yourself under torch.manual_seed"
            )
        reset(torch.Generator().manual_seed(seed % 2**64))
        self.start_seed = seed
        self._drawn = self._fingerprint()

    def at_size(self, height: int, width: int | None = None) -> Image:
        """This parameterisation drawn at ``height x width``, its parameters shared: for a basis that draws
        at any size (one with ``at_size(height, width)``, such as :class:`CPPNImage`).

        Example:
            >>> from featvis.param import cppn
            >>> cppn(16).at_size(64)().shape
            torch.Size([1, 3, 64, 64])
        """
        resize = getattr(self.basis, "at_size", None)
        if not callable(resize):
            raise TypeError(f"{type(self.basis).__name__} draws at one size only; a CPPN (param.cppn) draws at any")
        return Image(resize(height, width or height), self.decorrelation, self.output, self.alpha)

    def _mean(self, like: Tensor) -> Tensor:
        if self.decorrelation is not None:
            mean = self.decorrelation.mean
        else:
            mean = torch.full((self.channels - self.alpha,), 0.5, device=like.device)
        return mean.to(like)[None, :, None, None]

    def forward(self) -> Tensor:
        self._drawn = None  # a start seen is a start chosen: render_vis keeps it
        raw = self.basis()
        opacity = None
        if self.alpha:
            raw, opacity = raw[:, :-1], raw[:, -1:]
        colours = self.decorrelation(raw) if self.decorrelation is not None else raw
        if self.output == "sigmoid":
            shown = torch.sigmoid(colours)
            return shown if opacity is None else torch.cat([shown, torch.sigmoid(opacity)], dim=1)
        shifted = colours + self._mean(colours)
        if opacity is not None:
            shifted = torch.cat([shifted, opacity + 0.5], dim=1)
        # straight-through clamp: valid values forward, the raw gradient backward
        return shifted + (shifted.clamp(0.0, 1.0) - shifted).detach()

    @torch.no_grad()
    def set_image(self, images: Tensor) -> None:
        """Set the parameters so that the parameterisation returns ``images``.

        ``images`` has values in [0, 1] and shape ``(N, C, H, W)``, or ``(C, H, W)``
        to use one image for every batch element. With ``output="sigmoid"``, values
        are kept a little inside (0, 1) so that they stay reachable.

        Example:
            >>> p = image(8, batch=1)
            >>> target = torch.rand(1, 3, 8, 8) * 0.8 + 0.1
            >>> p.set_image(target); bool(torch.allclose(p(), target, atol=1e-3))
            True
        """
        device = next(iter(self.parameters())).device
        images = torch.as_tensor(images, dtype=torch.float32, device=device)
        given = tuple(images.shape)
        if images.ndim == 3:
            images = images[None]
        if self.alpha and images.ndim == 4 and images.shape[1] == self.channels - 1:  # colours: start opaque
            images = torch.cat([images, torch.ones_like(images[:, :1])], dim=1)
        if images.ndim != 4 or images.shape[1:] != torch.Size(self.shape[1:]) or images.shape[0] not in (1, self.batch):
            raise ValueError(
                f"the starting image must have shape ({self.batch}, {self.channels}, {self.height}, {self.width}) "
                f"or ({self.channels}, {self.height}, {self.width}) to match this parameterisation, got {given}"
            )
        images = images.expand(self.batch, -1, -1, -1)
        opacity = None
        if self.alpha:
            images, opacity = images[:, :-1], images[:, -1:]
        if self.output == "sigmoid":
            colours = torch.logit(images.clamp(1e-3, 1 - 1e-3))
        else:
            colours = images - self._mean(images)
        raw = self.decorrelation.inverse(colours) if self.decorrelation is not None else colours
        if opacity is not None:
            raw_opacity = torch.logit(opacity.clamp(1e-3, 1 - 1e-3)) if self.output == "sigmoid" else opacity - 0.5
            raw = torch.cat([raw, raw_opacity], dim=1)
        set_raw = getattr(self.basis, "set_raw", None)
        if set_raw is None:
            raise TypeError(f"{type(self.basis).__name__} has no set_raw(raw) method to start from an image")
        set_raw(raw)
        self.start_seed, self._drawn = None, None  # a start chosen: render_vis keeps it


def _options_taken(signature: inspect.Signature | None, options: dict[str, object]) -> dict[str, object]:
    """The ``options`` that ``cls``'s signature has an argument for (all of them if it has ``**kwargs``)."""
    if signature is None:
        return {}
    arguments = signature.parameters.values()
    if any(argument.kind is inspect.Parameter.VAR_KEYWORD for argument in arguments):
        return dict(options)
    named = {
        argument.name
        for argument in arguments
        if argument.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    return {name: value for name, value in options.items() if name in named}


def _basis_from_class(cls: type, batch: int, channels: int, height: int, width: int, **options: object) -> nn.Module:
    """``cls(batch, channels, height, width, **options)``, with only the options its signature takes."""
    if not issubclass(cls, nn.Module):
        raise TypeError(f"a basis class must be a subclass of torch.nn.Module, got {cls.__name__}")
    try:
        signature: inspect.Signature | None = inspect.signature(cls)
    except (TypeError, ValueError):
        signature = None
    taken = _options_taken(signature, options)
    if signature is not None:
        try:
            signature.bind(batch, channels, height, width, **taken)
        except TypeError as error:
            raise TypeError(
                f"a basis class is called as cls(batch, channels, height, width), but {cls.__name__}{signature} "
                f"does not take that: {error}"
            ) from None
    return cls(batch, channels, height, width, **taken)


def _check_basis_size(basis: nn.Module, batch: int, channels: int, height: int, width: int) -> None:
    """Raise a ``ValueError`` saying which size differs if ``basis()`` is not ``(batch, channels, height, width)``."""
    with torch.no_grad():
        made = basis()
    if not isinstance(made, Tensor):
        raise TypeError(f"the basis must return a tensor of (N, C, H, W) images, got a {type(made).__name__}")
    shape = tuple(made.shape)
    if len(shape) != 4:
        raise ValueError(f"the basis must return (N, C, H, W) images, got shape {shape}")
    differs = [
        words
        for got, asked, words in (
            (shape[0], batch, f"it makes {shape[0]} images but batch={batch}"),
            (shape[1], channels, f"it has {shape[1]} channels but channels={channels}"),
            (shape[2], height, f"it is {shape[2]} pixels high but h={height}"),
            (shape[3], width, f"it is {shape[3]} pixels wide but w={width}"),
        )
        if got != asked
    ]
    if differs:
        raise ValueError(
            f"the basis {type(basis).__name__} does not make the images asked for: {'; '.join(differs)} "
            "(give image() the basis's sizes, or build the basis with these)"
        )


def image(
    w: int,
    h: int | None = None,
    batch: int = 1,
    channels: int = 3,
    fft: bool = True,
    decorrelate: bool = True,
    *,
    decay: float | None = None,
    sd: float = 0.01,
    output: OutputKind = "sigmoid",
    init: Tensor | None = None,
    basis: BasisKind | type[nn.Module] | nn.Module | None = None,
    seed: int | None = None,
    alpha: bool = False,
) -> Image:
    """Build the usual parameterisation in one call.

    Args:
        w: width in pixels.
        h: height in pixels (defaults to ``w``).
        batch: number of images.
        channels: channels per image (1 for grayscale, 3 for RGB, or more).
        fft: use the Fourier basis (:class:`FourierImage`) instead of pixels.
        decorrelate: use a :class:`ColorDecorrelation` (ImageNet's for 3 channels,
            the identity for other counts).
        decay: ``1/f`` exponent of the Fourier basis (default :func:`~featvis.param.default_decay`:
            1.4, and 1.6 for large images, 128 pixels a side and up).
        sd: standard deviation of the random start.
        output: ``"sigmoid"`` or ``"clamp"``.
        init: optional starting image(s) in [0, 1], ``(N, C, H, W)`` or ``(C, H, W)``,
            instead of noise.
        basis: the basis instead of ``fft`` (see :class:`~featvis.param.Basis`). A name:
            ``"fourier"``, ``"pixel"``, ``"laplacian"`` (:class:`LaplacianPyramidImage`),
            ``"lowres"`` (:class:`LowResImage`, 4 times smaller) or ``"maco"``
            (:class:`MacoImage`, with :func:`power_law_amplitude`), each with its defaults
            (:func:`laplacian_pyramid`, :func:`lowres_image` and :func:`maco` take their own
            settings). A class, your own or a built-in one: called as
            ``cls(batch, channels, h, w)``, with ``sd=`` and ``decay=`` too if its signature
            takes them. A module already built: used as it is; it must return
            ``(batch, channels, h, w)`` images, else a ``ValueError`` says which size differs.
        seed: draw the random start from a generator seeded with this, so that the same call
            gives the same start image (pass the same ``seed`` to ``render_vis`` too, and the whole
            run repeats). ``None``: from torch's global random state. Torch's global state is left
            as it was either way.
        alpha: add an opacity channel (RGBA images: ``channels + 1`` of them, the opacity last),
            for transparent pictures: ``render_vis`` composites them over random backgrounds at
            each step, and :func:`featvis.objectives.transparency` rewards transparency. A basis
            class or module then makes ``channels + 1`` channels; not with ``"maco"``.

    Example:
        >>> p = image(64, 48, batch=4, channels=1)
        >>> p().shape
        torch.Size([4, 1, 48, 64])
        >>> type(image(32, basis="laplacian").basis).__name__
        'LaplacianPyramidImage'
        >>> image(32, batch=2, basis=LowResImage)().shape  # a class: made at this size
        torch.Size([2, 3, 32, 32])
        >>> image(32, basis=PixelImage(1, 3, 32, 32)).basis.pixels.shape  # a module: used as it is
        torch.Size([1, 3, 32, 32])
        >>> torch.equal(image(16, seed=3)(), image(16, seed=3)())  # the same start image
        True
    """
    with _start_drawn_with(seed):  # a basis class of yours draws from torch's global generator, seeded
        made = _image(w, h, batch, channels, fft, decorrelate, decay, sd, output, basis, alpha)
    return _start_from(made, seed, init)


def _start_from(made: Image, seed: int | None, init: Tensor | None) -> Image:
    """``made`` with its start drawn from ``seed`` (by its own generator, so that threads cannot
    interleave the draws), then set to ``init`` when given."""
    if seed is not None:
        if callable(getattr(made.basis, "reset_parameters", None)):
            made.draw_start(seed)
        else:
            made.start_seed = seed
    if init is not None:
        made.set_image(init)
    return made


def _image(
    w: int,
    h: int | None,
    batch: int,
    channels: int,
    fft: bool,
    decorrelate: bool,
    decay: float | None,
    sd: float,
    output: OutputKind,
    basis: BasisKind | type[nn.Module] | nn.Module | None,
    alpha: bool = False,
) -> Image:
    h = w if h is None else h
    check_size(batch, channels, h, w)
    colours, channels = channels, channels + int(alpha)  # the basis makes the opacity too
    decay = default_decay(h, w) if decay is None else decay
    kind = basis if basis is not None else ("fourier" if fft else "pixel")
    chosen: nn.Module
    if isinstance(kind, str):
        if kind == "fourier":
            chosen = FourierImage(batch, channels, h, w, decay=decay, sd=sd)
        elif kind == "pixel":
            chosen = PixelImage(batch, channels, h, w, sd=sd)
        elif kind == "laplacian":
            chosen = LaplacianPyramidImage(batch, channels, h, w, decay=decay, sd=sd)
        elif kind == "lowres":
            chosen = LowResImage(batch, channels, h, w, sd=sd)
        elif kind == "maco":
            if alpha:
                raise ValueError("alpha=True works with the 'fourier', 'pixel', 'laplacian' and 'lowres' bases")
            amplitude = power_law_amplitude(h, w, channels, decorrelate=decorrelate, output=output)
            chosen = MacoImage(batch, channels, h, w, amplitude)
        else:
            raise ValueError(f"basis must be {_ACCEPTED}, got {basis!r}")
    elif inspect.isclass(kind):
        chosen = _basis_from_class(kind, batch, channels, h, w, sd=sd, decay=decay)
        _check_basis_size(chosen, batch, channels, h, w)
    elif isinstance(kind, nn.Module):
        chosen = kind
        _check_basis_size(chosen, batch, channels, h, w)
    else:
        raise TypeError(f"basis must be {_ACCEPTED}, got {kind!r} of type {type(kind).__name__}")
    decorrelation = None
    if decorrelate:
        decorrelation = ColorDecorrelation() if colours == 3 else ColorDecorrelation.identity(colours)
    return Image(chosen, decorrelation, output=output, alpha=alpha)


# ---- factories for the other bases ----------------------------------------------------------
def _finish(
    basis: nn.Module,
    decorrelate: bool | ColorDecorrelation,
    output: OutputKind,
    init: Tensor | None,
    seed: int | None,
) -> Image:
    decorrelation = make_decorrelation(decorrelate, int(basis().shape[1]))
    return _start_from(Image(basis, decorrelation, output=output), seed, init)


def laplacian_pyramid(
    w: int,
    h: int | None = None,
    batch: int = 1,
    channels: int = 3,
    decorrelate: bool | ColorDecorrelation = True,
    *,
    levels: int | None = None,
    decay: float = DEFAULT_DECAY,
    sd: float = 0.01,
    mode: UpsampleMode = "bilinear",
    output: OutputKind = "sigmoid",
    init: Tensor | None = None,
    seed: int | None = None,
) -> Image:
    """A :class:`LaplacianPyramidImage` with colour decorrelation and an output function.

    Arguments as in :func:`image` (``seed`` too) and :class:`LaplacianPyramidImage`; ``decorrelate``
    may also be your own :class:`ColorDecorrelation`.

    Example:
        >>> p = laplacian_pyramid(32, batch=2, levels=4)
        >>> p().shape, len(p.basis.tensors)
        (torch.Size([2, 3, 32, 32]), 4)
    """
    h = w if h is None else h
    with _start_drawn_with(seed):
        basis = LaplacianPyramidImage(batch, channels, h, w, levels=levels, decay=decay, sd=sd, mode=mode)
    return _finish(basis, decorrelate, output, init, seed)


def lowres_image(
    w: int,
    h: int | None = None,
    batch: int = 1,
    channels: int = 3,
    decorrelate: bool | ColorDecorrelation = True,
    *,
    low: int | tuple[int, int] | None = None,
    factor: float | None = None,
    mode: UpsampleMode = "bilinear",
    sd: float = 0.01,
    output: OutputKind = "sigmoid",
    init: Tensor | None = None,
    seed: int | None = None,
) -> Image:
    """A :class:`LowResImage` (a small tensor upsampled) with colour decorrelation and an output function.

    Arguments as in :func:`image` (``seed`` too) and :class:`LowResImage`.

    Example:
        >>> p = lowres_image(32, factor=8)
        >>> p.basis.low.shape[-2:], p().shape[-2:]
        (torch.Size([4, 4]), torch.Size([32, 32]))
    """
    h = w if h is None else h
    with _start_drawn_with(seed):
        basis = LowResImage(batch, channels, h, w, low=low, factor=factor, mode=mode, sd=sd)
    return _finish(basis, decorrelate, output, init, seed)


def maco(
    w: int,
    h: int | None = None,
    batch: int = 1,
    channels: int = 3,
    spectrum: Tensor | None = None,
    decorrelate: bool | ColorDecorrelation = True,
    *,
    output: OutputKind = "sigmoid",
    phase_scale: float = MACO_PHASE_SCALE,
    init: Tensor | None = None,
    seed: int | None = None,
) -> Image:
    """A MACO parameterisation (:class:`MacoImage`): learnt phase, fixed natural amplitude.

    Args:
        w, h, batch, channels: as in :func:`image`.
        spectrum: the fixed amplitude, ``(C, H, W // 2 + 1)``: from
            ``natural_amplitude_spectrum(your_images, (h, w), decorrelate=..., output=...)``
            with the same ``decorrelate`` and ``output``; default
            :func:`power_law_amplitude` (no data needed).
        decorrelate: ``True`` (ImageNet's for 3 channels), ``False``, or a :class:`ColorDecorrelation`.
        output: ``"sigmoid"`` or ``"clamp"``.
        phase_scale: see :class:`MacoImage`.
        init: optional starting image(s); only their phase is kept (see :meth:`MacoImage.set_raw`).
        seed: as in :func:`image`: the random start phase drawn from a generator seeded with it.

    Example:
        >>> p = maco(32, batch=2)
        >>> p().shape
        torch.Size([2, 3, 32, 32])
    """
    h = w if h is None else h
    check_size(batch, channels, h, w)
    if spectrum is None:
        plain = decorrelate is False or (decorrelate is True and channels != 3)
        spectrum = power_law_amplitude(h, w, channels, decorrelate=not plain, output=output)
    with _start_drawn_with(seed):
        basis = MacoImage(batch, channels, h, w, spectrum, phase_scale=phase_scale)
    return _finish(basis, decorrelate, output, init, seed)


def interpolation_image(
    w: int,
    h: int | None = None,
    frames: int = 6,
    channels: int = 3,
    decorrelate: bool | ColorDecorrelation = True,
    *,
    shared: Sequence[tuple[int, int]] = DEFAULT_SHARED,
    decay: float = DEFAULT_DECAY,
    sd: float = 0.01,
    mode: UpsampleMode = "bilinear",
    shared_weight: float = 3.0,
    output: OutputKind = "sigmoid",
    seed: int | None = None,
) -> Image:
    """Frames for an interpolation between two units, with low-resolution parts shared between neighbours.

    Use it with :func:`featvis.objectives.channel_interpolate` (frame ``i`` of ``frames``
    blends from the first unit to the second) so that consecutive frames stay aligned. See
    :class:`InterpolationImage`. ``seed`` as in :func:`image`.

    Example:
        >>> from featvis import objectives
        >>> p = interpolation_image(32, frames=5)
        >>> objective = objectives.channel_interpolate("layer3", 1, "layer3", 9)
        >>> p().shape
        torch.Size([5, 3, 32, 32])
    """
    h = w if h is None else h
    with _start_drawn_with(seed):
        basis = InterpolationImage(
            frames, channels, h, w, shared=shared, decay=decay, sd=sd, mode=mode, shared_weight=shared_weight
        )
    return _finish(basis, decorrelate, output, None, seed)
