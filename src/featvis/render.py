"""The render loop: optimise an image so that an objective is maximised.

One step is: parameterisation -> transforms -> preprocessing -> model (with
hooks on the targeted layers only, stopped after the deepest one) -> objective
-> loss -> optimizer step. :func:`render_vis` runs it and returns a
:class:`RenderResult`; :func:`render_channels` renders many units of a layer,
one image each, in chunks.

Example:
    >>> import torch
    >>> from torch import nn
    >>> import featvis
    >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
    >>> result = featvis.render_vis(model, "0:1", size=16, steps=4, progress=False)
    >>> result.images.shape
    torch.Size([1, 3, 16, 16])
"""

from __future__ import annotations

import contextlib
import io
import math
import operator
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, Union

import torch
from torch import Tensor, nn

from . import param as param_module
from . import transforms as transforms_module
from .gradients import normalize_gradients as _normalize_gradients
from .gradients import redirected_relu as _redirected_relu
from .hooks import (
    ActivationCapture,
    LayerNotReachedError,
    LayerRef,
    LayerSpec,
    _MissingLayer,
    model_device_dtype,
    resolve_layer,
)
from .models import _first_convolution, _unwrap, default_input_channels, default_input_size, default_preprocess
from .objectives import Objective, ObjectiveLike, as_objective
from .objectives import channel as channel_objective

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image as PILImage

__all__ = ["RenderResult", "auto_batch_size", "render_channels", "render_vis"]

OptimizerSpec = Union[torch.optim.Optimizer, type, Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer], None]
TransformSpec = Union[nn.Module, Callable[[Tensor], Tensor], Sequence[Callable[[Tensor], Tensor]], None]


# ---- the result ---------------------------------------------------------------------
def _displayable(images: Tensor) -> Tensor:
    """(N, C, H, W) in [0, 1] -> (N, 1 or 3, H, W): grayscale and RGB as they are,
    two channels averaged, more than three shown by their first three."""
    channels = images.shape[1]
    if channels in (1, 3):
        return images
    if channels == 2:
        return images.mean(dim=1, keepdim=True)
    return images[:, :3]


def _caption_font(width: int) -> tuple[Any, int]:
    """A font sized for captions under images ``width`` pixels wide, and the caption strip's height."""
    from PIL import ImageFont

    size = max(8, min(14, width // 6))
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one fixed bitmap font
        font = ImageFont.load_default()
        size = 11
    return font, size + 4


def _fit_text(draw: Any, text: str, font: Any, width: int) -> str:
    """``text``, cut and ended with an ellipsis where it is wider than ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


#: a notebook shows small images enlarged to about this many pixels a side ...
_DISPLAY_SIDE = 128
#: ... but at most this many times
_DISPLAY_MAX_SCALE = 8


@dataclass(repr=False)
class RenderResult:
    """What :func:`render_vis` reached.

    Attributes:
        images: final images, ``(N, C, H, W)`` float tensor on the CPU, in [0, 1].
        snapshots: images at each requested threshold step, ``{step: images}``.
        losses: the loss (minus the objective) at every step done, on the CPU:
            ``(steps,)`` for one run, ``(runs, steps)`` for :func:`render_channels`.
        objective: the objective's description.
        steps: the number of optimisation steps done.
        interrupted: ``True`` if the run was stopped early (Ctrl-C).
        units: for :func:`render_channels`, the unit shown by each image.

    Example:
        >>> result = RenderResult(torch.rand(2, 3, 8, 8), {}, torch.zeros(3), "demo", 3)
        >>> result.numpy().shape, len(result.pil())
        ((2, 8, 8, 3), 2)
    """

    images: Tensor
    snapshots: dict[int, Tensor]
    losses: Tensor
    objective: str
    steps: int
    interrupted: bool = False
    units: list[Any] = field(default_factory=list)

    def __len__(self) -> int:
        return self.images.shape[0]

    def numpy(self, images: Tensor | None = None) -> np.ndarray:
        """Images as a float32 NumPy array ``(N, H, W, C)`` in [0, 1].

        Example:
            >>> RenderResult(torch.zeros(1, 1, 4, 5), {}, torch.zeros(1), "x", 1).numpy().shape
            (1, 4, 5, 1)
        """
        images = self.images if images is None else images
        return images.detach().float().cpu().permute(0, 2, 3, 1).numpy()

    def pil(self, images: Tensor | None = None) -> list[PILImage]:
        """One PIL image per batch element (``"L"`` for 1 channel, else ``"RGB"``).

        Example:
            >>> RenderResult(torch.zeros(1, 1, 4, 4), {}, torch.zeros(1), "x", 1).pil()[0].mode
            'L'
        """
        from PIL import Image

        images = _displayable(self.images if images is None else images)
        array = (images.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
        array = array.permute(0, 2, 3, 1).numpy()
        if array.shape[3] == 1:
            return [Image.fromarray(a[:, :, 0], mode="L") for a in array]
        return [Image.fromarray(a, mode="RGB") for a in array]

    def grid(
        self,
        nrow: int | None = None,
        padding: int = 2,
        images: Tensor | None = None,
        *,
        labels: Sequence[object] | bool | None = None,
        scale: int = 1,
    ) -> PILImage:
        """All images in one PIL image, ``nrow`` per row (a near-square grid by default).

        Args:
            nrow: images per row.
            padding: white pixels between and around the images.
            images: images to show instead of :attr:`images` (e.g. a snapshot).
            labels: a caption under each image: one per image, or ``True`` for
                :attr:`units` (what :func:`render_channels` rendered).
            scale: enlarge each image this many times (nearest neighbour), so that
                32x32 pictures and their captions can be read.

        Example:
            >>> result = RenderResult(torch.rand(4, 3, 8, 8), {}, torch.zeros(1), "x", 1)
            >>> result.grid().size
            (22, 22)
            >>> result.grid(nrow=4, labels=["a", "b", "c", "d"], scale=4).size[0]
            138
        """
        from PIL import Image, ImageDraw

        images = _displayable(self.images if images is None else images)
        count = images.shape[0]
        captions = self._captions(labels, count)
        if scale < 1 or int(scale) != scale:
            raise ValueError(f"scale must be a positive whole number, got {scale!r}")
        tiles = self.pil(images)
        if scale != 1:
            tiles = [tile.resize((tile.width * scale, tile.height * scale), Image.NEAREST) for tile in tiles]
        width, height = tiles[0].size
        font, caption_height = _caption_font(width) if captions else (None, 0)
        per_row = nrow or max(1, math.ceil(math.sqrt(count)))
        rows = math.ceil(count / per_row)
        cell_w, cell_h = width + padding, height + caption_height + padding
        canvas = Image.new(tiles[0].mode, (padding + per_row * cell_w, padding + rows * cell_h), color="white")
        draw = ImageDraw.Draw(canvas)
        for index, tile in enumerate(tiles):
            x = padding + (index % per_row) * cell_w
            y = padding + (index // per_row) * cell_h
            canvas.paste(tile, (x, y))
            if captions:
                text = _fit_text(draw, captions[index], font, width)
                text_width = draw.textlength(text, font=font)
                draw.text((x + (width - text_width) / 2, y + height + 1), text, fill="black", font=font)
        return canvas

    def _captions(self, labels: Sequence[object] | bool | None, count: int) -> list[str]:
        if labels is None or labels is False:
            return []
        if labels is True:
            if len(self.units) != count:
                raise ValueError("labels=True shows the rendered units, but this result has none; pass the labels")
            labels = self.units
        captions = [str(label) for label in labels]
        if len(captions) != count:
            raise ValueError(f"got {len(captions)} labels for {count} images; give one label per image")
        return captions

    def save(self, path: str | os.PathLike[str], index: int = 0) -> None:
        """Save one image (``index``) as a PNG file.

        Example:
            >>> import tempfile, pathlib
            >>> result = RenderResult(torch.rand(1, 3, 8, 8), {}, torch.zeros(1), "x", 1)
            >>> with tempfile.TemporaryDirectory() as d:
            ...     result.save(pathlib.Path(d) / "unit.png")
        """
        self.pil(self.images[index : index + 1] if index != -1 else self.images[-1:])[0].save(path)

    def save_grid(
        self,
        path: str | os.PathLike[str],
        nrow: int | None = None,
        padding: int = 2,
        *,
        labels: Sequence[object] | bool | None = None,
        scale: int = 1,
    ) -> None:
        """Save all images as one PNG grid (arguments as in :meth:`grid`).

        Example:
            >>> import tempfile, pathlib
            >>> result = RenderResult(torch.rand(3, 3, 8, 8), {}, torch.zeros(1), "x", 1)
            >>> with tempfile.TemporaryDirectory() as d:
            ...     result.save_grid(pathlib.Path(d) / "grid.png", nrow=3, labels=["a", "b", "c"], scale=2)
        """
        self.grid(nrow=nrow, padding=padding, labels=labels, scale=scale).save(path)

    def __repr__(self) -> str:
        count, channels, height, width = self.images.shape
        parts = [f"{count} image{'s' if count != 1 else ''} {channels}x{height}x{width}", f"{self.steps} steps"]
        if self.losses.numel():
            parts.append(f"final loss {float(self.losses.reshape(-1, self.losses.shape[-1])[:, -1].mean()):.4g}")
        if self.snapshots:
            parts.append(f"{len(self.snapshots)} snapshot{'s' if len(self.snapshots) != 1 else ''}")
        if self.interrupted:
            parts.append("interrupted")
        objective = self.objective if len(self.objective) <= 60 else self.objective[:57] + "..."
        return f"RenderResult({', '.join(parts)}, objective={objective!r})"

    def display_grid(self) -> PILImage:
        """The grid a notebook shows for this result: small images enlarged (nearest
        neighbour, up to 8 times) to about 128 pixels, and each captioned with its unit
        when :attr:`units` names one per image (:func:`render_channels`).

        Example:
            >>> RenderResult(torch.rand(2, 3, 32, 32), {}, torch.zeros(1), "x", 1).display_grid().size
            (262, 132)
        """
        height, width = self.images.shape[-2:]
        scale = max(1, min(_DISPLAY_MAX_SCALE, _DISPLAY_SIDE // max(height, width)))
        labels = len(self.units) == len(self) or None
        return self.grid(labels=labels, scale=scale)

    def _png_bytes(self) -> bytes:
        buffer = io.BytesIO()
        self.display_grid().save(buffer, format="PNG")
        return buffer.getvalue()

    def _repr_png_(self) -> bytes:
        return self._png_bytes()

    def _repr_html_(self) -> str:
        import base64
        import html

        png = base64.b64encode(self._png_bytes()).decode("ascii")
        caption = html.escape(repr(self)[len("RenderResult(") : -1])
        return (
            f'<figure style="margin:0"><img src="data:image/png;base64,{png}" style="image-rendering:pixelated"/>'
            f'<figcaption style="font-size:smaller">{caption}</figcaption></figure>'
        )

    def show(self) -> None:
        """Display the grid inline in a Jupyter notebook (does nothing elsewhere).

        Example:
            >>> RenderResult(torch.rand(1, 3, 8, 8), {}, torch.zeros(1), "x", 1).show()
        """
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:
            return
        if get_ipython() is None:  # a plain Python session: nothing to display in
            return
        display(self)

    # ---- animations (featvis.animation does the work) ----
    def save_gif(
        self,
        path: str | os.PathLike[str] | BinaryIO,
        *,
        fps: float = 8,
        loop: int | None = 0,
        hold_last: float = 1.0,
        nrow: int | None = None,
        padding: int = 2,
        labels: Sequence[object] | bool | None = None,
        scale: int = 1,
        step_caption: bool = True,
    ) -> None:
        """Save the snapshots, then the final images, as an animated GIF: one frame per
        snapshot, each the grid of the batch (see :func:`featvis.animation.save_gif`).

        Render with ``snapshot_every=k`` to have snapshots.

        Args:
            path: a ``.gif`` file name, or a binary file open for writing.
            fps: frames per second.
            loop: times to play it again after the first (``0``: forever; ``None``: play once).
            hold_last: the last frame stays at least this many seconds.
            nrow, padding, labels, scale: the grid of each frame, as in :meth:`grid`.
            step_caption: write ``step k of N`` under each frame.

        Example:
            >>> import tempfile, pathlib
            >>> result = RenderResult(torch.rand(2, 3, 8, 8), {2: torch.rand(2, 3, 8, 8)}, torch.zeros(4), "x", 4)
            >>> with tempfile.TemporaryDirectory() as d:
            ...     result.save_gif(pathlib.Path(d) / "run.gif", fps=4, nrow=2, scale=4)
        """
        from . import animation

        animation.save_gif(
            self,
            path,
            fps=fps,
            loop=loop,
            hold_last=hold_last,
            nrow=nrow,
            padding=padding,
            labels=labels,
            scale=scale,
            step_caption=step_caption,
        )

    def save_mp4(
        self,
        path: str | os.PathLike[str],
        *,
        fps: float = 8,
        hold_last: float = 1.0,
        nrow: int | None = None,
        padding: int = 2,
        labels: Sequence[object] | bool | None = None,
        scale: int = 1,
        step_caption: bool = True,
    ) -> None:
        """Save the snapshots, then the final images, as an H.264 MP4 video, with
        ``imageio`` + ``imageio-ffmpeg`` or PyAV, whichever is installed (an
        ``ImportError`` says what to install when neither is). Arguments as in
        :meth:`save_gif`; see :func:`featvis.animation.save_mp4`.

        Example:
            >>> import tempfile, pathlib
            >>> from featvis.animation import video_writer
            >>> result = RenderResult(torch.rand(1, 3, 8, 8), {1: torch.rand(1, 3, 8, 8)}, torch.zeros(2), "x", 2)
            >>> with tempfile.TemporaryDirectory() as d:
            ...     if video_writer() is not None:
            ...         result.save_mp4(pathlib.Path(d) / "run.mp4", scale=4)
        """
        from . import animation

        animation.save_mp4(
            self,
            path,
            fps=fps,
            hold_last=hold_last,
            nrow=nrow,
            padding=padding,
            labels=labels,
            scale=scale,
            step_caption=step_caption,
        )

    def save_animation(self, path: str | os.PathLike[str], **options: Any) -> None:
        """:meth:`save_gif` or :meth:`save_mp4`, chosen by the file's suffix (``.gif`` or ``.mp4``).

        Example:
            >>> import tempfile, pathlib
            >>> result = RenderResult(torch.rand(1, 3, 8, 8), {1: torch.rand(1, 3, 8, 8)}, torch.zeros(2), "x", 2)
            >>> with tempfile.TemporaryDirectory() as d:
            ...     result.save_animation(pathlib.Path(d) / "run.gif", fps=2)
        """
        from . import animation

        animation.save_animation(self, path, **options)

    def animation(self, **options: Any) -> Any:
        """The animated GIF of :meth:`save_gif` (same options) as an ``IPython.display.Image``,
        which plays inline as a notebook cell's last expression.

        Example:
            >>> result = RenderResult(torch.rand(1, 3, 8, 8), {1: torch.rand(1, 3, 8, 8)}, torch.zeros(2), "x", 2)
            >>> result.animation(scale=4, fps=2).format
            'gif'
        """
        from . import animation

        return animation.animation(self, **options)

    @staticmethod
    def concatenate(results: Sequence[RenderResult]) -> RenderResult:
        """Join the results of several runs (images and snapshots along the batch).

        Example:
            >>> one = RenderResult(torch.rand(1, 3, 4, 4), {}, torch.zeros(2), "a", 2)
            >>> RenderResult.concatenate([one, one]).images.shape
            torch.Size([2, 3, 4, 4])
        """
        if not results:
            raise ValueError("nothing to concatenate")
        common = set(results[0].snapshots).intersection(*(r.snapshots for r in results[1:]))
        steps = min(r.steps for r in results)
        return RenderResult(
            images=torch.cat([r.images for r in results]),
            snapshots={s: torch.cat([r.snapshots[s] for r in results]) for s in sorted(common)},
            losses=torch.stack([r.losses[:steps] for r in results]),
            objective=" | ".join(dict.fromkeys(r.objective for r in results)),
            steps=steps,
            interrupted=any(r.interrupted for r in results),
            units=[u for r in results for u in r.units],
        )


# ---- model state -------------------------------------------------------------------
@contextlib.contextmanager
def _rendering_state(model: nn.Module) -> Iterator[None]:
    """Eval mode and no weight gradients inside; each module's mode and every
    parameter's ``requires_grad`` restored afterwards, whatever happens."""
    training = [(module, module.training) for module in model.modules()]
    grads = [(p, p.requires_grad) for p in model.parameters()]
    try:
        inner = _unwrap(model)  # a new DataParallel wrapper is in training mode; what counts is the model inside
        if inner.training:
            warnings.warn(
                f"{type(inner).__name__} is in training mode; featvis renders in eval mode and puts "
                "training mode back afterwards",
                stacklevel=4,
            )
        model.eval()
        for p, _ in grads:
            p.requires_grad_(False)
        yield
    finally:
        for module, mode in training:
            module.training = mode
        for p, flag in grads:
            p.requires_grad_(flag)


def _run_seed(seed: int) -> int:
    """The seed a run's generators get for ``seed=seed``: ``seed`` mixed, so that a run's random draws do not
    replay those of ``torch.manual_seed(seed)``, with which a caller may have drawn the starting image.

    Example:
        >>> _run_seed(0) != 0 and _run_seed(0) != _run_seed(1)
        True
    """
    return (operator.index(seed) * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) % 2**63


@contextlib.contextmanager
def _seeded(seed: int | None, device: torch.device, mix: bool = True) -> Iterator[None]:
    """Seed torch's generators inside, and give the caller's states back after.

    ``mix=True`` (a run) seeds with :func:`_run_seed`; ``mix=False`` (a starting image drawn
    before a run) with ``seed`` itself, as ``torch.manual_seed(seed)`` would, so that the run's
    draws do not replay the image's.
    """
    if seed is None:
        yield
        return
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(_run_seed(seed) if mix else operator.index(seed))
        yield


def _flushing_denormals() -> bool:
    """Whether this thread flushes denormal floats to zero (torch can set it but not read it)."""
    return float(torch.tensor([1e-40], dtype=torch.float32)[0] * 1.0) == 0.0


@contextlib.contextmanager
def _denormals_flushed(device: torch.device) -> Iterator[None]:
    """On a CPU, treat floats below 1.2e-38 as zero inside (x86 computes with them many times slower,
    and a picture does not depend on them); the caller's setting comes back after."""
    # nothing to do off the CPU, when already flushing, or on a CPU that cannot flush
    if device.type != "cpu" or _flushing_denormals() or not torch.set_flush_denormal(True):
        yield
        return
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


@contextlib.contextmanager
def _memory_format(model: nn.Module, layout: torch.memory_format | None) -> Iterator[None]:
    """The model's 4-D parameters and buffers in ``layout`` inside; the very same tensors back after."""
    if layout is None:
        yield
        return
    saved = [(t, t.data) for t in [*model.parameters(), *model.buffers()] if t.ndim == 4]
    try:
        for tensor, data in saved:
            tensor.data = data.contiguous(memory_format=layout)
        yield
    finally:
        for tensor, data in saved:
            tensor.data = data


# ---- argument handling ----------------------------------------------------------
def _compile_options(compile: bool | dict[str, Any]) -> dict[str, Any] | None:
    if compile is False:
        return None
    if compile is True:
        return {}
    if isinstance(compile, dict):
        return dict(compile)
    raise TypeError(f"compile must be True, False or a dict of torch.compile options, got {type(compile).__name__}")


def _check_steps(steps: int, thresholds: Iterable[int] | None, snapshot_every: int | None = None) -> list[int]:
    """The sorted steps at which to keep snapshots: ``thresholds`` and every ``snapshot_every``-th step."""
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if snapshot_every is not None and (
        not isinstance(snapshot_every, int) or isinstance(snapshot_every, bool) or snapshot_every < 1
    ):
        raise ValueError(
            f"snapshot_every must be a positive number of steps (or None for none), got {snapshot_every!r}"
        )
    every = range(snapshot_every, steps + 1, snapshot_every) if snapshot_every else ()
    chosen = sorted(set(thresholds or ()).union(every))
    for t in chosen:
        if not isinstance(t, int) or not 1 <= t <= steps:
            raise ValueError(f"thresholds must be step numbers from 1 to steps={steps}, got {t!r}")
    return chosen


def _make_transforms(transforms: TransformSpec) -> Callable[[Tensor], Tensor]:
    if transforms is None:
        return transforms_module.standard()
    if isinstance(transforms, (list, tuple)):
        return transforms_module.Compose(*transforms)
    if not callable(transforms):
        raise TypeError(f"transforms must be a module, a callable or a list of them, got {type(transforms).__name__}")
    return transforms


def _make_preprocess(
    preprocess: Callable[[Tensor], Tensor] | bool | None, model: nn.Module, device: torch.device
) -> Callable[[Tensor], Tensor]:
    """``None``/``True``: the model's own normalisation; ``False``: none; else the callable given."""
    if preprocess is None or preprocess is True:
        prepare: Callable[[Tensor], Tensor] = default_preprocess(model)
    elif preprocess is False:
        prepare = nn.Identity()
    else:
        prepare = preprocess
    return prepare.to(device) if isinstance(prepare, nn.Module) else prepare


#: the default optimiser: Adam at this learning rate for the first DEFAULT_LR_HOLD steps, lower after them
DEFAULT_LR = 0.1
#: the default learning rate is held for this many steps ...
DEFAULT_LR_HOLD = 64
#: ... and then falls as (DEFAULT_LR_HOLD / step) ** DEFAULT_LR_POWER, steps counted from 1: a quarter at
#: step 128, a sixteenth at step 256
DEFAULT_LR_POWER = 2.0


def _default_lr_factor(step: int) -> float:
    """The default learning rate at 0-based ``step``, as a share of DEFAULT_LR.

    It depends on the step only, not on the number of steps asked for, so a run of
    k steps returns the picture that a longer run shows at step k. The early steps
    make the picture (a high rate makes it robust soon); the later ones refine it
    instead of piling up fine detail.

    Example:
        >>> [_default_lr_factor(k) for k in (0, 63, 127, 255)]
        [1.0, 1.0, 0.25, 0.0625]
    """
    return min(1.0, DEFAULT_LR_HOLD / (step + 1)) ** DEFAULT_LR_POWER


_FUSED_ADAM_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _make_optimizer(optimizer: OptimizerSpec, parameters: list[nn.Parameter]) -> torch.optim.Optimizer:
    if optimizer is None:
        # the fused update is one kernel per step instead of a dozen small operations (CPU and CUDA)
        fused = all(p.device.type in ("cpu", "cuda") and p.dtype in _FUSED_ADAM_DTYPES for p in parameters)
        return torch.optim.Adam(parameters, lr=DEFAULT_LR, fused=fused or None)
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    made = optimizer(parameters)
    if not isinstance(made, torch.optim.Optimizer):
        raise TypeError(
            "optimizer must be a torch.optim.Optimizer, an Optimizer class, or a function taking the "
            f"image parameters and returning an Optimizer; it returned {type(made).__name__}"
        )
    return made


def _make_param(param: nn.Module | None, model: nn.Module, size: int | tuple[int, int] | None) -> nn.Module:
    if param is None:
        height, width = _size_pair(size if size is not None else default_input_size(model))
        return param_module.image(width, height, channels=default_input_channels(model))
    if not isinstance(param, nn.Module):
        raise TypeError(
            f"param must be a torch.nn.Module returning images (e.g. featvis.param.image(224)), "
            f"got {type(param).__name__}"
        )
    if size is not None:
        raise ValueError("give either param or size, not both: the parameterisation fixes the size")
    return param


def _size_pair(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


def _prepare_capture(
    model: nn.Module,
    objective: Objective,
    run_forward: Callable[[ActivationCapture, Tensor | None], Any],
    image_shape: torch.Size,
) -> ActivationCapture:
    """Hook the objective's layers and check the objective on one forward pass.

    For a plain callable (layers unknown), the layers it reads are found here: each
    read of a layer that is not hooked yet adds a hook and retries. A forward pass
    that fails is explained (wrong number of channels, an image too small) before
    any optimisation step.
    """
    capture = ActivationCapture(model, objective.layers or ())
    for _ in range(len(list(model.modules())) + 1):
        try:
            with capture, torch.no_grad():
                try:
                    activations = run_forward(capture, None)
                except (RuntimeError, ValueError) as error:
                    _explain_forward_failure(model, capture, run_forward, image_shape, error)
                    raise
                value = objective(activations)
        except _MissingLayer as missing:
            if objective.layers is not None and missing.module not in capture.names:
                raise RuntimeError(
                    f"the objective {objective} read layer {missing.name!r} that it does not list in its "
                    "layers; add it to Objective(..., layers=[...])"
                ) from None
            capture.add(missing.module, missing.name)
            continue
        _check_value(value, objective)
        return capture
    raise RuntimeError("could not find the layers read by the objective")  # pragma: no cover


#: the largest side of the probe images used to find the smallest size a model accepts
_LARGEST_PROBE = 1024


def _explain_forward_failure(
    model: nn.Module,
    capture: ActivationCapture,
    run_forward: Callable[[ActivationCapture, Tensor | None], Any],
    image_shape: torch.Size,
    error: Exception,
) -> None:
    """Raise a clear ValueError when the failed forward pass has a known cause; return otherwise."""
    if isinstance(error, LayerNotReachedError):  # says what is wrong already; larger images would not help
        return
    channels, (height, width) = image_shape[1], image_shape[-2:]
    first = _first_convolution(model)
    if first is not None and first[1].in_channels != channels:
        name, conv = first
        raise ValueError(
            f"the model expects {conv.in_channels}-channel images (its first convolution {name!r} has "
            f"in_channels={conv.in_channels}) but the image has {channels}; make the image with "
            f"featvis.param.image(..., channels={conv.in_channels}), or leave param out and featvis picks it"
        ) from error

    def works(h: int, w: int) -> bool:
        probe = torch.full((1, channels, h, w), 0.5)
        try:
            run_forward(capture, probe)
        except (RuntimeError, ValueError):
            return False
        return True

    # a size problem fails at this size and works at some larger one (same aspect ratio, up to
    # _LARGEST_PROBE pixels a side, so that probing stays cheap)
    factor = 2
    while max(height, width) * factor <= _LARGEST_PROBE and not works(height * factor, width * factor):
        factor *= 2
    if max(height, width) * factor > _LARGEST_PROBE:
        return
    low, high = height * factor // 2, height * factor  # low fails, high works (heights)
    while high - low > 1:
        middle = (low + high) // 2
        if works(middle, math.ceil(middle * width / height)):
            high = middle
        else:
            low = middle
    smallest = f"{high}x{math.ceil(high * width / height)}"
    raise ValueError(
        f"the image ({height}x{width}) is too small for this model: its forward pass fails with "
        f"{type(error).__name__}: {str(error).strip().splitlines()[0]}. The smallest size that works is "
        f"{smallest} (height x width); render at that size or larger (size=... or featvis.param.image(...))"
    ) from error


def _check_value(value: Any, objective: Objective) -> None:
    if not isinstance(value, Tensor):
        raise TypeError(f"the objective {objective} must return a tensor, got {type(value).__name__}")
    if value.numel() != 1:
        raise ValueError(
            f"the objective {objective} must return a scalar, got a tensor of shape {tuple(value.shape)}; "
            "reduce it, e.g. with .mean() or .sum()"
        )
    if not bool(torch.isfinite(value).all()):
        raise ValueError(
            f"the objective {objective} is {value.item()} on the start image, before any step; "
            "an objective must give a finite number (guard divisions and logarithms, e.g. with an epsilon)"
        )


# ---- render_vis ------------------------------------------------------------------
def render_vis(
    model: nn.Module,
    objective: ObjectiveLike,
    param: nn.Module | None = None,
    *,
    optimizer: OptimizerSpec = None,
    transforms: TransformSpec = None,
    steps: int = 256,
    thresholds: Iterable[int] | None = None,
    snapshot_every: int | None = None,
    preprocess: Callable[[Tensor], Tensor] | bool | None = None,
    seed: int | None = None,
    progress: bool = True,
    size: int | tuple[int, int] | None = None,
    channels_last: bool = False,
    autocast: torch.dtype | None = None,
    compile: bool | dict[str, Any] = False,
    redirected_relu: int = 16,
    normalize_gradients: bool | float = False,
) -> RenderResult:
    """Optimise an image so that ``objective`` is maximised, and return it.

    Args:
        model: any ``torch.nn.Module`` taking image batches. It comes back as it
            was: same weights, train/eval mode and ``requires_grad`` flags, no hooks.
            It runs in eval mode, without weight gradients, and only up to the
            deepest layer the objective needs. On a CPU, denormal floats (below
            1.2e-38) are flushed to zero during the run, which spares the slow
            path x86 takes on them; the caller's setting comes back after.
        objective: an :class:`~featvis.objectives.Objective`, a ``"layer:channel"``
            string, or a function of the activations returning a scalar.
        param: the image parameterisation (default: ``featvis.param.image(size)``,
            Fourier basis with decorrelated colours). It is moved to the model's
            device; its own dtype is kept (float32 by default) and images are cast
            to the model's dtype.
        optimizer: ``None`` for Adam with learning rate 0.1 for 64 steps, then
            ``0.1 * (64 / step) ** 2`` (0.025 at step 128): the picture at step k
            does not depend on ``steps``, survives resizing early, and keeps a
            natural spectrum later (measured in docs/benchmarks.md); an Optimizer class,
            a function ``parameters -> Optimizer``, or an Optimizer made on
            ``param.parameters()``. LBFGS works (each step calls a closure). An
            optimizer with ``gradient_free = True`` (such as
            :class:`featvis.optim.EvolutionStrategy`) gets a closure that only
            computes the loss, without gradients, for models that are not
            differentiable.
        transforms: random transforms applied at every step (default
            :func:`featvis.transforms.standard`); a module, a callable, or a list
            (composed). ``[]`` applies none.
        steps: number of optimisation steps.
        thresholds: steps at which to keep a copy of the images (in
            :attr:`RenderResult.snapshots`).
        snapshot_every: also keep a copy every this many steps (steps ``k``,
            ``2k``, ... up to ``steps``), for animations
            (:meth:`RenderResult.save_gif`). Each copy is a float32 CPU tensor of
            the whole batch, ``N*C*H*W*4`` bytes: 12 KB for one 32x32 RGB image,
            but 4.8 MB for 8 images of 224x224, so every 4 steps of 512 keeps
            616 MB; snapshot less often for large batches and long runs.
        preprocess: what turns [0, 1] images into the model's input. ``None``
            uses the model's own normalisation when featvis knows it (featvis's
            models, torchvision's ImageNet models), else none; ``False`` none.
        seed: seeds torch's generators for this run (the caller's random state is
            restored afterwards), so that a CPU run repeats exactly. A ``param``
            you pass was drawn when you made it: call ``torch.manual_seed`` before
            making it too, or leave ``param`` out and give ``size``. The run's
            generators get ``seed`` mixed, so its random transforms never replay
            the numbers that ``torch.manual_seed(seed)`` gave your starting image.
        progress: show a tqdm progress bar (a widget in notebooks).
        size: image size ``H`` or ``(H, W)`` when ``param`` is not given
            (default: the model's usual input size, or 224).
        channels_last: run the model in the channels-last memory layout (its 4-D
            weights are converted for the run and the originals put back after).
            Often faster for convolutions on GPUs with tensor cores and on CPUs.
        autocast: ``torch.bfloat16`` or ``torch.float16`` runs the preprocessing,
            the model and the objective under ``torch.autocast`` (mixed precision;
            meant for CUDA). The image and the optimiser stay in float32.
        compile: ``True`` (or a dict of ``torch.compile`` options, such as
            ``{"mode": "max-autotune"}``) compiles one whole step, from the
            parameterisation to the objective, with ``torch.compile``. The
            layers after the deepest target are dropped by the compiler instead
            of cut by a hook. The first step pays the compilation (seconds to a
            minute); it pays off on GPUs and long runs.
        redirected_relu: for this many first steps, ReLUs that would block the
            whole gradient of an image let through the part that raises their
            inputs (:func:`featvis.gradients.redirected_relu`), so that units that
            start inactive still render; other images and units get the ordinary
            gradient. ``0`` turns it off. These steps run uncompiled.
        normalize_gradients: scale each image's gradient to unit norm and add a
            little noise before each optimiser step
            (:func:`featvis.gradients.normalize_gradients`); a float sets the
            noise's norm (``True`` is 0.01). Useful with SGD; Adam already
            normalises per value.

    Returns:
        A :class:`RenderResult`. Ctrl-C stops the run early and still returns
        what was reached (``interrupted=True``).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from featvis import objectives
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 8, 3)).eval()
        >>> objective = objectives.channel("2", 3) - 0.1 * objectives.total_variation()
        >>> result = render_vis(model, objective, size=24, steps=8, seed=0, progress=False)
        >>> result.images.shape, result.losses.shape
        (torch.Size([1, 3, 24, 24]), torch.Size([8]))
    """
    objective = as_objective(objective)
    chosen_thresholds = _check_steps(steps, thresholds, snapshot_every)
    device, dtype = model_device_dtype(model)
    transform = _make_transforms(transforms)
    prepare = _make_preprocess(preprocess, model, device)
    if isinstance(transform, nn.Module):
        transform = transform.to(device)

    compile_options = _compile_options(compile)
    if isinstance(redirected_relu, bool) or not isinstance(redirected_relu, int) or redirected_relu < 0:
        raise ValueError(f"redirected_relu must be a number of steps >= 0 (0 turns it off), got {redirected_relu!r}")
    noise = 1e-2 if normalize_gradients is True else float(normalize_gradients)
    if noise < 0:
        raise ValueError(f"normalize_gradients must be True, False or a noise norm >= 0, got {normalize_gradients!r}")
    if autocast is not None and autocast not in (torch.bfloat16, torch.float16):
        raise ValueError(f"autocast must be torch.bfloat16, torch.float16 or None, got {autocast!r}")
    layout = torch.channels_last if channels_last else None
    mixed = (lambda: torch.autocast(device.type, dtype=autocast)) if autocast is not None else contextlib.nullcontext

    with _seeded(seed, device), _rendering_state(model), _memory_format(model, layout), _denormals_flushed(device):
        image_param = _make_param(param, model, size).to(device)
        parameters = [p for p in image_param.parameters() if p.requires_grad]
        if not parameters:
            raise ValueError("the parameterisation has no parameters that require gradients")
        opt = _make_optimizer(optimizer, parameters)
        # the default optimiser's learning rate follows the step (_default_lr_factor); one you pass is left alone
        schedule = torch.optim.lr_scheduler.LambdaLR(opt, _default_lr_factor) if optimizer is None else None

        def forward(capture: ActivationCapture, probe: Tensor | None = None, redirect: bool = False) -> Any:
            images = image_param() if probe is None else probe.to(device)
            transformed = transform(images)
            with mixed():
                inputs = prepare(transformed).to(dtype)
                if layout is not None:
                    inputs = inputs.contiguous(memory_format=layout)
                with _redirected_relu(redirect):
                    return capture.run(inputs, image=images)

        with torch.no_grad():
            start_shape = image_param().shape
        capture = _prepare_capture(model, objective, forward, start_shape)

        def loss_value(redirect: bool = False) -> Tensor:
            activations = forward(capture, redirect=redirect)
            with mixed():
                return -objective(activations).float().reshape(())

        eager_loss_value = loss_value
        if compile_options is not None:
            # one graph from the parameterisation to the loss: the hooks record without stopping the
            # pass, and the compiler drops the layers whose outputs the loss does not use
            capture.stop_early = False
            loss_value = torch.compile(loss_value, **compile_options)
        step = 0

        def closure() -> Tensor:
            opt.zero_grad(set_to_none=True)
            loss = eager_loss_value(redirect=True) if step <= redirected_relu else loss_value()
            if not loss.requires_grad:
                raise RuntimeError(
                    f"the objective {objective} has no gradient with respect to the image: the model or its "
                    "preprocessing is not differentiable (it detaches its input, or goes through NumPy). "
                    "Use a gradient-free optimiser: render_vis(..., optimizer=featvis.optim.EvolutionStrategy)"
                )
            loss.backward()
            if normalize_gradients is not False:
                _normalize_gradients(parameters, noise=noise, batch=start_shape[0])
            return loss

        def loss_only() -> Tensor:
            # a gradient-free optimiser (featvis.optim.EvolutionStrategy) only reads the loss, possibly many
            # times per step with its own perturbations of the parameters: no graph, no backward pass
            with torch.no_grad():
                return loss_value()

        step_closure = loss_only if getattr(opt, "gradient_free", False) else closure

        history = torch.full((steps,), float("nan"), device=device)
        snapshots: dict[int, Tensor] = {}
        done, interrupted = 0, False
        # Non-finite losses are looked for now and then, not at every step (reading a loss waits for the
        # device). The fallback is the last parameters whose loss was seen to be finite.
        checked, last_finite, last_finite_step = 0, [p.detach().clone() for p in parameters], 0
        bar = _progress_bar(steps, str(objective), progress)
        try:
            with capture:
                for step in range(1, steps + 1):
                    check = step in chosen_thresholds or step % _FINITE_CHECK_EVERY == 0 or step == steps
                    before = [p.detach().clone() for p in parameters] if check else None
                    loss = opt.step(step_closure)
                    history[step - 1] = loss.detach()
                    if schedule is not None:
                        schedule.step()
                    done = step
                    bar.update(1)
                    if before is not None:
                        bad = _first_non_finite(history, checked, step)
                        if bad is not None:
                            _restore(parameters, last_finite)
                            warnings.warn(
                                f"the objective {objective} became non-finite ({history[bad].item()}) at step "
                                f"{bad + 1}; stopped, and returned the images of step {last_finite_step}, the "
                                "last ones with a finite objective",
                                RuntimeWarning,
                                stacklevel=2,
                            )
                            done = last_finite_step
                            snapshots = {k: v for k, v in snapshots.items() if k <= done}
                            break
                        # the parameters before this step gave the finite loss history[step - 1]
                        checked, last_finite, last_finite_step = step, before, step - 1
                    if step in chosen_thresholds:
                        with torch.no_grad():
                            snapshots[step] = image_param().detach().float().cpu()
                        bar.set_postfix(loss=f"{history[step - 1].item():.4g}")
        except KeyboardInterrupt:
            interrupted = True
            warnings.warn(f"rendering interrupted after {done} of {steps} steps", stacklevel=2)
        finally:
            bar.close()
        with torch.no_grad():
            images = image_param().detach().float().cpu()
    losses = history[:done].cpu()
    return RenderResult(images, snapshots, losses, str(objective), done, interrupted)


#: render_vis looks for a non-finite loss every this many steps (and at thresholds and the end)
_FINITE_CHECK_EVERY = 16


def _first_non_finite(history: Tensor, start: int, stop: int) -> int | None:
    """The 0-based index of the first non-finite loss in ``history[start:stop]``, or None."""
    finite = torch.isfinite(history[start:stop])
    if bool(finite.all()):
        return None
    return start + int((~finite).nonzero()[0, 0])


def _restore(parameters: list[nn.Parameter], saved: list[Tensor]) -> None:
    with torch.no_grad():
        for parameter, value in zip(parameters, saved):
            parameter.copy_(value)


def _progress_bar(total: int, description: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    label = description if len(description) <= 40 else description[:37] + "..."
    return tqdm(total=total, desc=label, disable=not enabled, leave=False)


# ---- many units -----------------------------------------------------------------
def _layer_width(model: nn.Module, layer: LayerSpec, size: tuple[int, int], channels: int, preprocess: Any) -> int:
    """Number of channels of ``layer``, from one forward pass of one grey image."""
    device, dtype = model_device_dtype(model)
    prepare = _make_preprocess(preprocess, model, device)
    probe = torch.full((1, channels, *size), 0.5, device=device)
    ref = LayerRef.parse(layer)
    with _rendering_state(model), ActivationCapture(model, [ref]) as capture, torch.no_grad():
        output = capture.run(prepare(probe).to(dtype))[ref]
    return int(output.shape[1] if output.ndim != 3 else output.shape[2])


def render_channels(
    model: nn.Module,
    layer: LayerSpec,
    channels: Sequence[int] | None = None,
    *,
    batch_size: int | None = None,
    size: int | tuple[int, int] | None = None,
    image_channels: int | None = None,
    unit: Callable[[LayerSpec, int, int], Objective] | None = None,
    param: Callable[[int], nn.Module] | None = None,
    seed: int | None = None,
    **render_kwargs: Any,
) -> RenderResult:
    """Render many units of one layer, one image per unit, ``batch_size`` at a time.

    Each chunk is one :func:`render_vis` call whose objective gives batch element
    ``i`` its own unit (``channel(layer, unit_i, batch=i)``), and its images go to
    the CPU before the next chunk starts, so memory grows with ``batch_size``,
    not with the number of units.

    Args:
        model: the network.
        layer: the layer whose units to render.
        channels: the units (default: every channel of the layer).
        batch_size: images optimised together (default: :func:`auto_batch_size`,
            which picks what fits the device's free memory).
        size: image size (default: the model's usual input size, or 224).
        image_channels: channels of the rendered images (default: what the model
            takes, see :func:`featvis.models.default_input_channels`).
        unit: ``(layer, index, batch) -> Objective`` for each unit
            (default :func:`featvis.objectives.channel`).
        param: ``batch -> parameterisation`` (default ``featvis.param.image``).
        seed: base seed; chunk ``k`` uses ``seed + k``.
        **render_kwargs: passed to :func:`render_vis` (steps, transforms, ...).

    Example:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
        >>> result = render_channels(model, "0", batch_size=3, size=12, steps=2, progress=False)
        >>> result.images.shape, result.units
        (torch.Size([4, 3, 12, 12]), [0, 1, 2, 3])
    """
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    height, width = _size_pair(size if size is not None else default_input_size(model))
    if image_channels is None:
        image_channels = default_input_channels(model)
    resolve_layer(model, LayerRef.parse(layer))
    make_unit = unit or (lambda lay, index, batch: channel_objective(lay, index, batch=batch))
    device = model_device_dtype(model)[0]
    results = []
    with _rendering_state(model):  # warn about training mode once, not once per chunk
        if channels is None:
            width_of_layer = _layer_width(
                model, layer, (height, width), image_channels, render_kwargs.get("preprocess")
            )
            channels = range(width_of_layer)
        units = list(channels)
        if not units:
            raise ValueError("no channels to render")
        if batch_size is None:
            batch_size = auto_batch_size(
                model, layer, (height, width), image_channels=image_channels, preprocess=render_kwargs.get("preprocess")
            )
        for chunk_index, start in enumerate(range(0, len(units), batch_size)):
            chunk = units[start : start + batch_size]
            chunk_seed = None if seed is None else seed + chunk_index
            objective = Objective.sum(make_unit(layer, u, i) for i, u in enumerate(chunk))
            with _seeded(chunk_seed, device, mix=False):  # the start image; the run mixes its seed
                chunk_param = (
                    param(len(chunk))
                    if param
                    else param_module.image(width, height, batch=len(chunk), channels=image_channels)
                )
            result = render_vis(model, objective, chunk_param, seed=chunk_seed, **render_kwargs)
            result.units = chunk
            results.append(result)
            if result.interrupted:
                break
    return RenderResult.concatenate(results)


# ---- batch size -------------------------------------------------------------------
#: auto_batch_size's ceiling on a CPU, where larger batches no longer speed up each image
CPU_BATCH_LIMIT = 16
#: ... and on an accelerator
ACCELERATOR_BATCH_LIMIT = 512
#: what one image costs, as a multiple of the activations the forward pass saves for the backward
#: pass (gradients as large as the activations, transient outputs, the image, Adam's state)
_MEMORY_PER_SAVED_BYTE = 3.0


def _saved_bytes(
    model: nn.Module, layer: LayerSpec, batch: int, channels: int, size: tuple[int, int], prepare: Any
) -> int:
    """Bytes of the distinct tensors one forward pass of ``batch`` grey images saves for backward."""
    device, dtype = model_device_dtype(model)
    storages: dict[int, int] = {}

    def pack(tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    image = torch.full((batch, channels, *size), 0.5, device=device, requires_grad=True)
    with (
        torch.enable_grad(),
        ActivationCapture(model, [LayerRef.parse(layer)]) as capture,
        torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor),
    ):
        capture.run(prepare(image).to(dtype))
    return sum(storages.values())


def _free_memory(device: torch.device) -> int:
    """Bytes free on ``device``: the CUDA allocator's view, or the system's available memory."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return 4 << 30


def auto_batch_size(
    model: nn.Module,
    layer: LayerSpec,
    size: int | tuple[int, int] | None = None,
    *,
    image_channels: int | None = None,
    preprocess: Callable[[Tensor], Tensor] | bool | None = None,
    memory: int | None = None,
) -> int:
    """How many images to optimise together when rendering units of ``layer``.

    One probe forward pass with one image and one with two give what an image adds
    to the tensors kept for the backward pass; the batch is the number of images
    whose estimated cost (:data:`_MEMORY_PER_SAVED_BYTE` times that) fits in half
    of ``memory``, at most :data:`CPU_BATCH_LIMIT` on a CPU (larger batches no
    longer make each image cheaper there) and :data:`ACCELERATOR_BATCH_LIMIT`
    elsewhere, and at least 1.

    Args:
        model: the network.
        layer: the layer whose units will be rendered (the probes stop there).
        size: image size (default: the model's usual input size, or 224).
        image_channels: channels of the images (default: what the model takes).
        preprocess: as in :func:`render_vis`.
        memory: bytes to plan with (default: what is free on the model's device).

    Example:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()).eval()
        >>> auto_batch_size(model, "1", size=32, memory=2**30)
        16
        >>> auto_batch_size(model, "1", size=32, memory=600_000)
        2
    """
    device = model_device_dtype(model)[0]
    height, width = _size_pair(size if size is not None else default_input_size(model))
    channels = image_channels if image_channels is not None else default_input_channels(model)
    prepare = _make_preprocess(preprocess, model, device)
    with _rendering_state(model):
        one, two = (_saved_bytes(model, layer, n, channels, (height, width), prepare) for n in (1, 2))
    per_image = _MEMORY_PER_SAVED_BYTE * max(two - one, 1)  # what does not grow with the batch cancels
    available = _free_memory(device) if memory is None else memory
    limit = CPU_BATCH_LIMIT if device.type == "cpu" else ACCELERATOR_BATCH_LIMIT
    return max(1, min(limit, int(available / 2 // per_image)))
