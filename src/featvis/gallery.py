"""A browsable gallery of a layer's units: one PNG per unit and a static ``index.html`` beside them.

:func:`render_gallery` renders every channel of a layer (with :func:`featvis.render_channels`),
records each unit's objective at every step, measures each unit's final activation with one forward
pass of its final image, and calls :func:`write_gallery`, which writes ``unit-000.png``, ... and an
``index.html`` that shows them as a grid of thumbnails, each captioned with its unit number, its final
activation and its curve (inline SVG). Clicking a thumbnail opens an enlarged view; Escape, a click or
the close button closes it, and the arrow keys step through the units. The page has its CSS and
JavaScript inline and loads nothing but the PNGs beside it, so it works from ``file://``, offline. The CSS
and JavaScript are kept as package data, ``featvis/gallery_assets/gallery.css`` and ``gallery.js``.

The command line runs it as ``featvis gallery MODEL LAYER -o DIR`` (see ``docs/cli.md``).

Example:
    >>> import tempfile
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     gallery = render_gallery(model, "1", folder, size=16, steps=4, seed=0)
    ...     [path.name for path in gallery.images], gallery.index.name, tuple(gallery.curves.shape)
    (['unit-000.png', 'unit-001.png', 'unit-002.png', 'unit-003.png'], 'index.html', (4, 4))
"""

from __future__ import annotations

import functools
import html
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from .dataset import top_activating
from .hooks import ActivationCapture, Activations, LayerRef, LayerSpec, model_device_dtype
from .models import resolve_preprocess
from .objectives import Objective, channel
from .render import render_channels
from .result import RenderResult
from .state import rendering_state
from .trust import trust_scores

__all__ = [
    "CurveRecorder",
    "Gallery",
    "curve_svg",
    "gallery_asset",
    "render_gallery",
    "short_number",
    "unit_activations",
    "unit_filename",
    "write_gallery",
]

#: a curve is drawn through at most this many points (longer runs are subsampled evenly)
CURVE_POINTS = 160


@dataclass
class Gallery:
    """What :func:`render_gallery` wrote and measured.

    Attributes:
        directory: the gallery's folder.
        index: its ``index.html``.
        images: the unit PNGs, in the order of :attr:`units`.
        units: the channel shown by each image.
        result: the :class:`~featvis.render.RenderResult` of :func:`featvis.render_channels`.
        curves: ``(units, steps)``: each unit's objective (its channel's mean activation on the
            transformed image, the loss of its own image with the sign flipped) at every step.
        activations: ``(units,)``: each unit's mean activation on its final, untransformed image.
        trust: ``(units,)``: each picture's trust score (with ``trust_data``), else ``None``.

    Example:
        >>> Gallery.__dataclass_fields__.keys() >= {"index", "images", "curves", "activations"}
        True
    """

    directory: Path
    index: Path
    images: list[Path]
    units: list[Any]
    result: RenderResult
    curves: Tensor
    activations: Tensor
    trust: Tensor | None = None


class CurveRecorder:
    """A ``unit=`` factory for :func:`featvis.render_channels` that records each unit's objective.

    Each call makes the unit's :func:`~featvis.objectives.channel` objective, wrapped so that every
    evaluation with gradients enabled (one per step with Adam and the other gradient-based
    optimisers; the check before the first step runs without gradients and is not recorded) appends
    the unit's value. :meth:`curves` stacks them: one row per unit, in the order the units were made.

    Example:
        >>> from torch import nn
        >>> import featvis
        >>> model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.ReLU()).eval()
        >>> recorder = CurveRecorder()
        >>> result = featvis.render_channels(model, "1", size=12, steps=5, progress=False, unit=recorder)
        >>> recorder.curves(result.steps).shape
        torch.Size([2, 5])
    """

    def __init__(self) -> None:
        self.values: list[list[Tensor]] = []

    def __call__(self, layer: LayerSpec, index: int, batch: int) -> Objective:
        unit = channel(layer, index, batch=batch)
        values: list[Tensor] = []
        self.values.append(values)

        def recorded(acts: Activations) -> Tensor:
            value = unit(acts)
            if torch.is_grad_enabled():
                values.append(value.detach().float().reshape(()))
            return value

        return Objective(recorded, unit.description, unit.layers)

    def curves(self, steps: int | None = None) -> Tensor:
        """``(units, steps)`` float tensor on the CPU; each row cut to ``steps`` values (default: the shortest).

        A run stopped early (a non-finite objective, Ctrl-C) returns fewer steps than it recorded;
        pass the result's ``steps`` to drop the values after them.

        Example:
            >>> CurveRecorder().curves().shape
            torch.Size([0, 0])
        """
        if not self.values:
            return torch.zeros(0, 0)
        length = min(len(row) for row in self.values)
        if steps is not None:
            length = min(length, steps)
        return torch.stack([torch.stack(row[:length]) if length else torch.zeros(0) for row in self.values]).cpu()


def unit_activations(
    model: nn.Module,
    layer: LayerSpec,
    images: Tensor,
    units: Sequence[int],
    *,
    preprocess: Callable[[Tensor], Tensor] | bool | None = None,
    batch_size: int = 64,
) -> Tensor:
    """The mean activation of channel ``units[i]`` of ``layer`` on ``images[i]``, one forward pass per batch.

    This is what :func:`featvis.objectives.channel` scores, on the images as they are (no random
    transforms), after the model's preprocessing (``preprocess`` as in :func:`featvis.render_vis`).
    The model comes back as it was.

    Args:
        model: the network.
        layer: the layer the units belong to.
        images: ``(N, C, H, W)`` in [0, 1], such as ``render_channels(...).images``.
        units: the channel of each image, ``N`` of them.
        preprocess: ``None`` for the model's own normalisation, ``False`` for none, or a callable.
        batch_size: images per forward pass.

    Example:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False)).eval()
        >>> _ = model[0].weight.data.copy_(torch.tensor([1.0, -2.0]).view(2, 1, 1, 1))
        >>> unit_activations(model, "0", torch.full((2, 1, 4, 4), 0.5), [0, 1])
        tensor([ 0.5000, -1.0000])
    """
    if images.ndim != 4:
        raise ValueError(f"images must be a (N, C, H, W) batch, got shape {tuple(images.shape)}")
    if len(units) != images.shape[0]:
        raise ValueError(f"got {len(units)} units for {images.shape[0]} images; give one unit per image")
    device, dtype = model_device_dtype(model)
    prepare = resolve_preprocess(preprocess, model, device)
    ref = LayerRef.parse(layer)
    values: list[Tensor] = []
    with rendering_state(model), ActivationCapture(model, [ref]) as capture, torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            chunk = images[start : start + batch_size].to(device)
            acts = capture.run(prepare(chunk).to(dtype), image=chunk)
            for offset in range(chunk.shape[0]):
                values.append(channel(ref, int(units[start + offset]), batch=offset)(acts).float())
    return torch.stack(values).cpu() if values else torch.zeros(0)


def unit_filename(unit: object) -> str:
    """The PNG file name of a unit in a gallery: ``unit-007.png`` for channel 7.

    Example:
        >>> unit_filename(7), unit_filename(1234), unit_filename("a/b")
        ('unit-007.png', 'unit-1234.png', 'unit-a_b.png')
    """
    if isinstance(unit, int) and not isinstance(unit, bool) and unit >= 0:
        return f"unit-{unit:03d}.png"
    return "unit-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", str(unit)).strip("._") + ".png"


def short_number(value: float) -> str:
    """A short, readable number for a caption.

    Example:
        >>> short_number(3.14159), short_number(12345.6), short_number(float("nan"))
        ('3.14', '12346', 'nan')
    """
    if not math.isfinite(value):
        return str(value)
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"


def curve_svg(values: Sequence[float], css_class: str = "curve") -> str:
    """An inline SVG line chart of ``values`` (step 1 at the left), with a dashed zero line when in range;
    ``""`` for fewer than two values.

    Example:
        >>> curve_svg([0.0, 1.0, 2.0]).startswith('<svg class="curve"'), curve_svg([1.0])
        (True, '')
    """
    count = len(values)
    finite = [v for v in values if math.isfinite(v)]
    if count < 2 or not finite:
        return ""
    stride = max(1, math.ceil(count / CURVE_POINTS))
    picked = list(range(0, count, stride))
    if picked[-1] != count - 1:
        picked.append(count - 1)
    low, high = min(finite), max(finite)
    span = high - low or 1.0
    width, height, margin = 100.0, 30.0, 2.0

    def y_of(value: float) -> float:
        return margin + (height - 2 * margin) * (high - value) / span

    points = " ".join(
        f"{width * i / (count - 1):.2f},{y_of(values[i]):.2f}" for i in picked if math.isfinite(values[i])
    )
    zero = ""
    if low < 0 < high:
        zero = f'<line class="zero" x1="0" x2="{width:g}" y1="{y_of(0.0):.2f}" y2="{y_of(0.0):.2f}"/>'
    label = f"objective per step: {short_number(values[0])} at step 1, {short_number(values[-1])} at step {count}"
    return (
        f'<svg class="{css_class}" viewBox="0 0 {width:g} {height:g}" preserveAspectRatio="none" role="img" '
        f'aria-label="{html.escape(label)}"><title>{html.escape(label)}</title>{zero}'
        f'<polyline points="{points}"/></svg>'
    )


#: the folder, inside the featvis package, of the page's stylesheet and script (package data)
_ASSETS = "gallery_assets"


@functools.cache
def gallery_asset(name: str) -> str:
    """The text of ``name`` in featvis's ``gallery_assets/`` (package data): ``gallery.css`` and
    ``gallery.js``, which :func:`write_gallery` puts inline in every page, and ``model_index.css``,
    which ``featvis.model_index`` does.

    Example:
        >>> "grid" in gallery_asset("gallery.css")
        True
    """
    return resources.files("featvis").joinpath(_ASSETS).joinpath(name).read_text(encoding="utf-8")


def write_gallery(
    directory: str | os.PathLike[str],
    result: RenderResult,
    *,
    curves: Tensor | None = None,
    activations: Sequence[float] | Tensor | None = None,
    model_name: str = "model",
    layer: str = "",
    thumbnail: int | None = None,
    trust: Sequence[float] | Tensor | None = None,
) -> list[Path]:
    """Write one PNG per image of ``result`` and an ``index.html`` showing them, into ``directory``.

    The page's title names ``model_name``, ``layer`` and the number of steps; each thumbnail is
    captioned with its unit (from ``result.units``, else its position), its activation and its
    curve. Images up to 128 pixels wide are enlarged with ``image-rendering: pixelated``, so their
    pixels stay sharp. Existing files of the same names are replaced; nothing else is touched.

    Args:
        directory: the folder to write into (made if missing).
        result: images and units, e.g. from :func:`featvis.render_channels`.
        curves: ``(units, steps)`` objective values per step (see :class:`CurveRecorder`); default:
            the loss with the sign flipped when ``result`` is one image, else no curves.
        activations: one number per image, shown in its caption (e.g. :func:`unit_activations`).
        model_name: shown in the title.
        layer: shown in the title.
        thumbnail: the thumbnails' smallest width in CSS pixels (default: four times the images'
            width, but from 96 to 160); the grid's columns stretch to fill the page's width.
        trust: one trust score per image (:func:`featvis.trust.trust_scores`), shown in its caption.

    Returns:
        The paths written: the PNGs in order, then ``index.html``.

    Example:
        >>> import tempfile
        >>> result = RenderResult(torch.rand(2, 3, 8, 8), {}, torch.zeros(2, 5), "demo", 5, units=[4, 9])
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     [p.name for p in write_gallery(folder, result, activations=[0.5, 1.5], layer="conv")]
        ['unit-004.png', 'unit-009.png', 'index.html']
    """
    count = len(result)
    units = list(result.units) if len(result.units) == count else list(range(count))
    names = [unit_filename(unit) for unit in units]
    if len(set(names)) != len(names):
        raise ValueError(f"each unit can appear once in a gallery, got units {units}")
    if curves is None and count == 1 and result.losses.ndim == 1:
        curves = -result.losses.reshape(1, -1)
    if curves is not None and (curves.ndim != 2 or curves.shape[0] != count):
        raise ValueError(f"curves must be (units, steps) with one row per image ({count}), got {tuple(curves.shape)}")
    shown_activations = None if activations is None else [float(a) for a in activations]
    if shown_activations is not None and len(shown_activations) != count:
        raise ValueError(f"got {len(shown_activations)} activations for {count} images; give one per image")
    shown_trust = None if trust is None else [float(t) for t in trust]
    if shown_trust is not None and len(shown_trust) != count:
        raise ValueError(f"got {len(shown_trust)} trust scores for {count} images; give one per image")

    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for picture, name in zip(result.pil(), names):
        picture.save(folder / name)
        written.append(folder / name)

    height, width = result.images.shape[-2:] if count else (0, 0)
    thumb = thumbnail or min(160, max(96, 4 * int(width)))
    pixelated = " pixelated" if width <= 128 else ""
    figures = []
    for position, (unit, name) in enumerate(zip(units, names)):
        activation = "" if shown_activations is None else short_number(shown_activations[position])
        title = f"unit {unit}"
        if activation:
            title += f" · final activation {activation}"
        trusted = ""
        if shown_trust is not None:
            score = f"trust {shown_trust[position]:.2f}"
            trusted = f'<span class="trust" title="how alike its natural examples the network sees it">{score}</span>'
            title += f" · {score}"
        curve = ""
        if curves is not None and curves.shape[1] >= 2:
            row = [float(v) for v in curves[position]]
            curve = curve_svg(row)
            title += f" · objective {short_number(row[0])} at step 1 → {short_number(row[-1])} at step {len(row)}"
        figures.append(
            f'<figure class="unit" id="{html.escape(name[:-4])}" data-unit="{html.escape(str(unit))}" '
            f'data-activation="{html.escape(activation)}" data-title="{html.escape(title)}">'
            f'<a href="{html.escape(name)}" title="{html.escape(title)}">'
            f'<img src="{html.escape(name)}" alt="unit {html.escape(str(unit))}" width="{width}" height="{height}">'
            "</a>"
            f'<figcaption><span class="name">unit {html.escape(str(unit))}</span>'
            f'<span class="activation" title="mean activation of the final image">{html.escape(activation)}</span>'
            f"{trusted}</figcaption>{curve}</figure>"
        )
    steps = result.steps
    heading = f"{model_name} · {layer}" if layer else model_name
    page_title = f"featvis gallery: {heading} · {steps} steps"
    about = (
        f"{count} unit{'s' if count != 1 else ''}, {width}×{height} pixels, {steps} optimisation steps each"
        f"{' (interrupted)' if result.interrupted else ''}. Under each image: its unit, "
        "its mean activation on the final image, and its objective at every step (the curve). "
        "Click an image to enlarge it; Escape or a click closes it, ← and → step through the units."
    )
    first = html.escape(names[0]) if names else ""
    style, script = gallery_asset("gallery.css"), gallery_asset("gallery.js")
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(page_title)}</title>
<style>
{style}</style>
</head>
<body>
<header>
<h1>{html.escape(heading)} · {steps} steps</h1>
<p>{html.escape(about)}</p>
</header>
<main class="grid{pixelated}" style="--thumb: {thumb}px; --aspect: {width} / {height}">
{chr(10).join(figures)}
</main>
<dialog id="viewer" class="{pixelated.strip()}" style="--aspect: {width} / {height}" aria-label="enlarged unit">
<button type="button" aria-label="close">✕</button>
<figure><img id="viewer-image" src="{first}" alt="" width="{width}" height="{height}">
<figcaption id="viewer-caption"></figcaption><div id="viewer-curve"></div>
<p class="hint">Esc or click: close · ← →: previous / next</p></figure>
</dialog>
<script>
{script}</script>
</body>
</html>
"""
    index = folder / "index.html"
    index.write_text(page, encoding="utf-8")
    written.append(index)
    return written


def render_gallery(
    model: nn.Module,
    layer: LayerSpec,
    directory: str | os.PathLike[str],
    channels: Sequence[int] | None = None,
    *,
    steps: int = 128,
    model_name: str | None = None,
    progress: bool = False,
    trust_data: Any = None,
    trust_k: int = 9,
    **render_kwargs: Any,
) -> Gallery:
    """Render units of ``layer`` (every channel by default) and write them as a browsable gallery.

    Runs :func:`featvis.render_channels` with a :class:`CurveRecorder`, measures each unit's final
    activation with :func:`unit_activations`, and writes ``unit-NNN.png`` files and ``index.html``
    with :func:`write_gallery`. The model comes back as it was.

    Args:
        model: the network.
        layer: the layer whose channels to render.
        directory: the folder to write into (made if missing).
        channels: the channels (default: all of them).
        steps: optimisation steps per image.
        model_name: shown in the page's title (default: the model's class name).
        progress: show progress bars.
        trust_data: natural images (a tensor batch, a ``DataLoader`` or any iterable of batches, as
            :func:`featvis.top_activating` takes): each unit's ``trust_k`` top images among them are
            found, and each picture's trust score against them (:func:`featvis.trust.trust_scores`)
            is shown in its caption and kept in :attr:`Gallery.trust`.
        trust_k: how many top natural images per unit.
        **render_kwargs: passed to :func:`featvis.render_channels` (``size``, ``batch_size``,
            ``seed``, ``transforms``, ``preprocess``, ...).

    Example:
        >>> import tempfile
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 3, 3), nn.ReLU()).eval()
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     gallery = render_gallery(model, "1", folder, [2, 0], size=12, steps=3)
        ...     gallery.units, gallery.activations.shape
        ([2, 0], torch.Size([2]))
    """
    if "unit" in render_kwargs:
        raise TypeError("render_gallery renders channels and records their curves itself; it takes no unit=")
    recorder = CurveRecorder()
    result = render_channels(model, layer, channels, steps=steps, progress=progress, unit=recorder, **render_kwargs)
    curves = recorder.curves(result.steps)[: len(result)]
    measured = result.images
    if result.alpha:  # transparent pictures are measured over mid-grey
        measured = measured[:, :-1] * measured[:, -1:] + 0.5 * (1 - measured[:, -1:])
    activations = unit_activations(model, layer, measured, result.units, preprocess=render_kwargs.get("preprocess"))
    trust = None
    if trust_data is not None:
        ref = LayerRef.parse(layer)
        data = [trust_data] if isinstance(trust_data, Tensor) else trust_data
        found = top_activating(model, data, [(str(ref), u) for u in result.units], k=trust_k, progress=False)
        examples = torch.stack([examples.images for examples in found])
        trust = trust_scores(model, ref, measured, examples, preprocess=render_kwargs.get("preprocess"))
    written = write_gallery(
        directory,
        result,
        curves=curves,
        activations=activations,
        model_name=model_name or type(model).__name__,
        layer=str(LayerRef.parse(layer)),
        trust=trust,
    )
    return Gallery(Path(directory), written[-1], written[:-1], list(result.units), result, curves, activations, trust)
