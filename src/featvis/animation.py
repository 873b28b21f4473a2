"""Animations of a render: the batch's grid at each snapshot, one frame per snapshot.

:func:`render_vis` keeps a CPU copy of the images every ``k`` steps when asked
(``snapshot_every=k``); :func:`frames` turns those copies (and the final images)
into grid pictures with a step counter, :func:`save_gif` writes them as an
animated GIF with Pillow, and :func:`save_mp4` as an H.264 MP4 through whichever
video writer is installed (``imageio`` with ``imageio-ffmpeg``, or PyAV); neither
is a dependency of featvis. :class:`~featvis.render.RenderResult` has the same
functions as methods (``result.save_gif(...)``, ``result.animation()``, ...).

Example:
    >>> import torch
    >>> from torch import nn
    >>> import featvis
    >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
    >>> result = featvis.render_vis(model, "0:1", size=16, steps=6, snapshot_every=2, progress=False)
    >>> [step for step, _ in frames(result)]
    [2, 4, 6]
"""

from __future__ import annotations

import importlib.util
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Union

import torch
from torch import Tensor

from .grid import GridOptions, caption_font, fit_text

if TYPE_CHECKING:
    from IPython.display import Image as IPythonImage
    from PIL.Image import Image as PILImage

    from .result import RenderResult

__all__ = [
    "animation",
    "frames",
    "gif_bytes",
    "gif_durations",
    "save_animation",
    "save_gif",
    "save_mp4",
    "snapshot_steps",
    "video_writer",
]

PathLike = Union[str, "os.PathLike[str]"]

#: what to install for MP4s, said by the error raised when no video writer is found
MP4_INSTALL_HINT = "pip install imageio imageio-ffmpeg  (or: pip install av)"


def snapshot_steps(result: RenderResult) -> list[tuple[int, Tensor]]:
    """``(step, images)`` for each snapshot in step order, then the final images if no snapshot has them.

    Snapshots whose images differ in size from the final ones (:func:`featvis.deepdream`
    keeps one per octave, each at its own size) are resized to the final size (bilinear),
    so that every frame of an animation has the same size.

    Example:
        >>> from featvis.render import RenderResult
        >>> result = RenderResult(torch.rand(1, 3, 8, 8), {2: torch.rand(1, 3, 4, 4)}, torch.zeros(5), "x", 5)
        >>> [(step, tuple(images.shape)) for step, images in snapshot_steps(result)]
        [(2, (1, 3, 8, 8)), (5, (1, 3, 8, 8))]
    """
    final = result.images
    pairs = [(step, result.snapshots[step]) for step in sorted(result.snapshots)]
    if result.steps not in result.snapshots:
        pairs.append((result.steps, final))
    size = tuple(final.shape[-2:])
    resized = []
    for step, images in pairs:
        if tuple(images.shape[-2:]) != size:
            images = torch.nn.functional.interpolate(
                images.float(), size=size, mode="bilinear", align_corners=False
            ).clamp(0, 1)
        resized.append((step, images))
    return resized


def frames(result: RenderResult, *, step_caption: bool = True, **grid_options: Any) -> list[tuple[int, PILImage]]:
    """One grid picture per snapshot, and the final images last: ``[(step, picture), ...]``.

    Each picture is ``result.grid(images=snapshot, **grid_options)`` with, when
    ``step_caption`` is true, a white strip below saying ``step 12 of 256``
    (``step 12`` or ``12`` where the grid is too narrow for it).

    Args:
        result: a render with snapshots (``render_vis(..., snapshot_every=k)``).
        step_caption: write the step number under each frame.
        **grid_options: the grid of each frame: ``nrow``, ``padding``, ``labels`` and
            ``scale``, as in :class:`~featvis.grid.GridOptions`.

    Raises:
        ValueError: the result has no snapshots (an animation of one frame is surely
            not what was meant).

    Example:
        >>> from featvis.render import RenderResult
        >>> result = RenderResult(torch.rand(2, 3, 8, 8), {3: torch.rand(2, 3, 8, 8)}, torch.zeros(6), "x", 6)
        >>> [(step, picture.size) for step, picture in frames(result, nrow=2, step_caption=False)]
        [(3, (22, 12)), (6, (22, 12))]
    """
    if not result.snapshots:
        raise ValueError(
            "this result has no snapshots to animate; render with snapshot_every=k "
            "(e.g. featvis.render_vis(..., snapshot_every=4)) or thresholds=[...]"
        )
    options = GridOptions(**grid_options)
    pictures = []
    for step, images in snapshot_steps(result):
        picture = result.grid(options.nrow, options.padding, images, labels=options.labels, scale=options.scale)
        if step_caption:
            picture = _with_step_caption(picture, step, result.steps)
        pictures.append((step, picture))
    return pictures


def _with_step_caption(picture: PILImage, step: int, steps: int) -> PILImage:
    """``picture`` above a white strip saying ``step 12 of 256`` (or ``step 12``, or ``12``: the
    longest that fits the width), centred."""
    from PIL import Image, ImageDraw

    font, strip = caption_font(picture.width)
    canvas = Image.new(picture.mode, (picture.width, picture.height + strip), color="white")
    canvas.paste(picture, (0, 0))
    draw = ImageDraw.Draw(canvas)
    candidates = [f"step {step} of {steps}", f"step {step}", str(step)]
    fitting = [text for text in candidates if draw.textlength(text, font=font) <= picture.width]
    text = fitting[0] if fitting else fit_text(draw, candidates[-1], font, picture.width)
    left = (picture.width - draw.textlength(text, font=font)) / 2
    draw.text((left, picture.height + 1), text, fill="black", font=font)
    return canvas


def _check_timing(fps: float, hold_last: float) -> None:
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not 0 < fps <= 100:
        raise ValueError(f"fps must be a number of frames per second in (0, 100], got {fps!r}")
    if isinstance(hold_last, bool) or not isinstance(hold_last, (int, float)) or hold_last < 0:
        raise ValueError(f"hold_last must be a number of seconds >= 0, got {hold_last!r}")


def gif_durations(count: int, fps: float, hold_last: float) -> list[int]:
    """Milliseconds each of ``count`` GIF frames stays: ``1000 / fps``, and the last frame
    at least ``hold_last`` seconds. GIFs count in hundredths of a second, so each is
    rounded to a multiple of 10 ms (at least 20 ms: browsers slow faster frames down).

    Example:
        >>> gif_durations(3, fps=8, hold_last=1.0)
        [120, 120, 1000]
    """
    each = max(20, 10 * round(100 / fps))
    last = max(each, 10 * round(100 * hold_last))
    return [each] * (count - 1) + [last]


def save_gif(
    result: RenderResult,
    path: PathLike | BinaryIO,
    *,
    fps: float = 8,
    loop: int | None = 0,
    hold_last: float = 1.0,
    step_caption: bool = True,
    **grid_options: Any,
) -> None:
    """Write the render's snapshots as an animated GIF (with Pillow).

    Args:
        result: a render with snapshots (``render_vis(..., snapshot_every=k)``).
        path: a file name, or a binary file open for writing.
        fps: frames per second (each frame lasts ``1000 / fps`` ms, rounded to 10 ms).
        loop: times to play it again after the first (``0``: forever; ``None``: play once).
        hold_last: the last frame (the final images) stays at least this many seconds.
        step_caption: write the step number under each frame.
        **grid_options: the grid of each frame (``nrow``, ``padding``, ``labels``, ``scale``),
            as in :class:`~featvis.grid.GridOptions`.

    GIFs have 256 colours a frame: each frame gets its own palette, without
    dithering, which keeps flat areas flat and smooth gradients slightly banded.

    Example:
        >>> import tempfile, pathlib
        >>> from featvis.render import RenderResult
        >>> result = RenderResult(torch.rand(2, 3, 8, 8), {2: torch.rand(2, 3, 8, 8)}, torch.zeros(4), "x", 4)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     save_gif(result, pathlib.Path(d) / "run.gif", fps=4, scale=4)
    """
    _check_timing(fps, hold_last)
    if loop is not None and (isinstance(loop, bool) or not isinstance(loop, int) or loop < 0):
        raise ValueError(f"loop must be a number of repeats >= 0 (0 loops forever) or None (play once), got {loop!r}")
    pictures = [picture for _, picture in frames(result, step_caption=step_caption, **grid_options)]
    palettised = [_palettised(picture) for picture in pictures]
    options: dict[str, Any] = {
        "format": "GIF",  # whatever the file's suffix
        "save_all": True,
        "append_images": palettised[1:],
        "duration": gif_durations(len(palettised), fps, hold_last),
        "disposal": 1,  # each frame covers the whole picture: leave it in place, no flashes
    }
    if loop is not None:
        options["loop"] = loop
    palettised[0].save(path, **options)


def _palettised(picture: PILImage) -> PILImage:
    """``picture`` with at most 256 colours, exactly when it has no more, else median cut without dithering."""
    from PIL import Image

    if picture.mode == "L":
        return picture
    return picture.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)


def gif_bytes(result: RenderResult, **options: Any) -> bytes:
    """The animated GIF of :func:`save_gif` (same options), as bytes.

    Example:
        >>> from featvis.render import RenderResult
        >>> result = RenderResult(torch.rand(1, 3, 8, 8), {1: torch.rand(1, 3, 8, 8)}, torch.zeros(2), "x", 2)
        >>> gif_bytes(result)[:6]
        b'GIF89a'
    """
    buffer = io.BytesIO()
    save_gif(result, buffer, **options)
    return buffer.getvalue()


def video_writer() -> str | None:
    """The MP4 writer :func:`save_mp4` would use: ``"imageio"`` (``imageio`` with
    ``imageio-ffmpeg``, preferred), ``"av"`` (PyAV), or ``None`` when neither is installed.

    Example:
        >>> video_writer() in ("imageio", "av", None)
        True
    """
    if importlib.util.find_spec("imageio") is not None and importlib.util.find_spec("imageio_ffmpeg") is not None:
        return "imageio"
    if importlib.util.find_spec("av") is not None:
        return "av"
    return None


def save_mp4(
    result: RenderResult,
    path: PathLike,
    *,
    fps: float = 8,
    hold_last: float = 1.0,
    step_caption: bool = True,
    writer: str | None = None,
    **grid_options: Any,
) -> None:
    """Write the render's snapshots as an H.264 MP4 video.

    Uses ``imageio`` with ``imageio-ffmpeg`` or else PyAV, whichever is installed
    (neither is a featvis dependency). Frames are padded with white to even sizes
    (H.264 needs them) and the last frame is repeated to last ``hold_last`` seconds.

    Args:
        result: a render with snapshots (``render_vis(..., snapshot_every=k)``).
        path: the file to write.
        fps: frames per second.
        hold_last: the final images stay at least this many seconds.
        step_caption: write the step number under each frame.
        **grid_options: the grid of each frame (``nrow``, ``padding``, ``labels``, ``scale``),
            as in :class:`~featvis.grid.GridOptions`.
        writer: ``"imageio"`` or ``"av"`` to choose; default: :func:`video_writer`.

    Raises:
        ImportError: no video writer is installed; the message says what to install.

    Example:
        >>> import tempfile, pathlib
        >>> from featvis.render import RenderResult
        >>> result = RenderResult(torch.rand(1, 3, 8, 8), {1: torch.rand(1, 3, 8, 8)}, torch.zeros(2), "x", 2)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     if video_writer() is not None:
        ...         save_mp4(result, pathlib.Path(d) / "run.mp4", scale=4)
    """
    _check_timing(fps, hold_last)
    if writer is None:
        writer = video_writer()
        if writer is None:
            raise ImportError(f"writing an MP4 needs a video writer, and none is installed: {MP4_INSTALL_HINT}")
    elif writer not in ("imageio", "av"):
        raise ValueError(f"writer must be 'imageio', 'av' or None (pick what is installed), got {writer!r}")
    pictures = [picture for _, picture in frames(result, step_caption=step_caption, **grid_options)]
    arrays = [_even_rgb(picture) for picture in pictures]
    arrays += [arrays[-1]] * max(0, round(hold_last * fps) - 1)
    if writer == "imageio":
        _write_imageio(arrays, Path(path), fps)
    else:
        _write_av(arrays, Path(path), fps)


def _even_rgb(picture: PILImage) -> Any:
    """An ``(H, W, 3)`` uint8 array of ``picture``, padded with white on the right and bottom to even sides."""
    from PIL import Image

    rgb = picture.convert("RGB")
    width, height = rgb.width + rgb.width % 2, rgb.height + rgb.height % 2
    if (width, height) != rgb.size:
        canvas = Image.new("RGB", (width, height), color="white")
        canvas.paste(rgb, (0, 0))
        rgb = canvas
    import numpy as np

    return np.asarray(rgb, dtype=np.uint8)


def _write_imageio(arrays: list[Any], path: Path, fps: float) -> None:
    try:
        import imageio.v2 as imageio
    except ImportError as error:
        raise ImportError(f"writer='imageio' needs imageio and imageio-ffmpeg: {MP4_INSTALL_HINT}") from error
    # macro_block_size=1: no resizing by imageio (the frames are already even-sized)
    options = {"fps": fps, "codec": "libx264", "pixelformat": "yuv420p", "output_params": ["-crf", "18"]}
    with imageio.get_writer(path, format="FFMPEG", mode="I", macro_block_size=1, **options) as video:
        for array in arrays:
            video.append_data(array)


def _write_av(arrays: list[Any], path: Path, fps: float) -> None:
    try:
        import av
    except ImportError as error:
        raise ImportError(f"writer='av' needs PyAV: pip install av (or: {MP4_INSTALL_HINT})") from error
    from fractions import Fraction

    height, width = arrays[0].shape[:2]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "18"}
        for array in arrays:
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def save_animation(result: RenderResult, path: PathLike, **options: Any) -> None:
    """:func:`save_gif` or :func:`save_mp4`, by the file's suffix (``.gif`` or ``.mp4``).

    Example:
        >>> import tempfile, pathlib
        >>> from featvis.render import RenderResult
        >>> result = RenderResult(torch.rand(1, 3, 8, 8), {1: torch.rand(1, 3, 8, 8)}, torch.zeros(2), "x", 2)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     save_animation(result, pathlib.Path(d) / "run.gif", fps=2)
    """
    suffix = Path(path).suffix.lower()
    if suffix == ".gif":
        save_gif(result, path, **options)
    elif suffix == ".mp4":
        save_mp4(result, path, **options)
    else:
        raise ValueError(f"cannot tell the animation format from {str(path)!r}: name the file *.gif or *.mp4")


def animation(result: RenderResult, **options: Any) -> IPythonImage:
    """The animated GIF of :func:`save_gif` (same options) as an ``IPython.display.Image``:
    the last expression of a notebook cell, or ``display(...)``, plays it inline.

    Example:
        >>> from featvis.render import RenderResult
        >>> result = RenderResult(torch.rand(1, 3, 8, 8), {1: torch.rand(1, 3, 8, 8)}, torch.zeros(2), "x", 2)
        >>> animation(result, scale=4).format
        'gif'
    """
    try:
        from IPython.display import Image
    except ImportError as error:
        raise ImportError(
            "showing an animation inline needs IPython (pip install ipython); "
            "or write it to a file with result.save_gif(path)"
        ) from error
    return Image(data=gif_bytes(result, **options), format="gif")
