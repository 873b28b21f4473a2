"""What a render returns: :class:`RenderResult`, the images and how they were reached.

A result holds the final images (``N, C, H, W`` on the CPU, in [0, 1]), the
snapshots kept during the run, and the loss history. It gives NumPy arrays, PIL
images, PNG files and grids (laid out by :class:`~featvis.grid.GridOptions`),
animations of its snapshots (``featvis.animation``), and shows itself as a
grid in Jupyter.

Example:
    >>> import torch
    >>> result = RenderResult(torch.rand(2, 3, 8, 8), {}, torch.zeros(3), "demo", 3)
    >>> result
    RenderResult(2 images 3x8x8, 3 steps, final loss 0, objective='demo')
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO

import torch
from torch import Tensor

from .grid import GridOptions, Labels, grid, readable_scale, to_pil

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image as PILImage

__all__ = ["RenderResult"]


@dataclass(repr=False)
class RenderResult:
    """What :func:`render_vis` reached.

    Attributes:
        images: final images, ``(N, C, H, W)`` float tensor on the CPU, in [0, 1].
        snapshots: images at each requested threshold step, ``{step: images}``.
        losses: the loss (minus the objective) at every step done, on the CPU:
            ``(steps,)`` for one run, ``(runs, steps)`` for :func:`render_channels` (a run
            that stopped before the others, interrupted, has NaN after its last step).
        objective: the objective's description.
        steps: the number of optimisation steps done.
        interrupted: ``True`` if the run was stopped early (Ctrl-C).
        units: for :func:`render_channels`, the unit shown by each image.
        alpha: the images' last channel is their opacity (a transparent parameterisation,
            ``featvis.param.image(..., alpha=True)``): PNGs are saved with it (RGBA), and grids and
            notebooks show the images over a checkerboard.
        importance: with ``render_vis(..., importance=True)``, ``(N, H, W)``: where in each image the
            objective looked, the absolute gradient with respect to the image summed over the channels
            and over the steps (see :meth:`importance_overlay`).

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
    alpha: bool = False
    importance: Tensor | None = None

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
        """One PIL image per batch element (``"L"`` for 1 channel, else ``"RGB"``; ``"RGBA"`` with :attr:`alpha`).

        Example:
            >>> RenderResult(torch.zeros(1, 1, 4, 4), {}, torch.zeros(1), "x", 1).pil()[0].mode
            'L'
        """
        return to_pil(self.images if images is None else images, alpha=self.alpha)

    def grid(
        self,
        nrow: int | None = None,
        padding: int = 2,
        images: Tensor | None = None,
        *,
        labels: Labels = None,
        scale: int | None = None,
    ) -> PILImage:
        """All images in one PIL image, ``nrow`` per row (a near-square grid by default).

        Args:
            nrow: images per row.
            padding: white pixels between and around the images.
            images: images to show instead of :attr:`images` (e.g. a snapshot).
            labels: a caption under each image: one per image, or ``True`` for
                :attr:`units` (what :func:`render_channels` rendered).
            scale: enlarge each image this many times (nearest neighbour). By default small
                images are enlarged to about 128 pixels a side, at most 8 times
                (:func:`~featvis.grid.readable_scale`: 32x32 pictures 4 times), so that they
                and their captions can be read; ``scale=1`` keeps each pixel one pixel.

        Example:
            >>> result = RenderResult(torch.rand(4, 3, 32, 32), {}, torch.zeros(1), "x", 1)
            >>> result.grid().size  # enlarged 4 times
            (262, 262)
            >>> result.grid(scale=1).size
            (70, 70)
            >>> result.grid(nrow=4, labels=["a", "b", "c", "d"], scale=2).size[0]
            266
        """
        shown = self.images if images is None else images
        if shown.ndim != 4:
            raise ValueError(
                f"a grid shows images (N, C, H, W); these are {tuple(shown.shape)}: use .images or .numpy()"
            )
        if scale is None:
            scale = readable_scale(*shown.shape[-2:])
        options = GridOptions(nrow=nrow, padding=padding, labels=labels, scale=scale)
        return grid(shown, options, units=self.units, alpha=self.alpha)

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
        labels: Labels = None,
        scale: int | None = None,
    ) -> None:
        """Save all images as one PNG grid (arguments as in :meth:`grid`: small images are enlarged
        to a readable size unless ``scale`` says otherwise).

        Example:
            >>> import tempfile, pathlib
            >>> result = RenderResult(torch.rand(3, 3, 8, 8), {}, torch.zeros(1), "x", 1)
            >>> with tempfile.TemporaryDirectory() as d:
            ...     result.save_grid(pathlib.Path(d) / "grid.png", nrow=3, labels=["a", "b", "c"], scale=2)
        """
        self.grid(nrow=nrow, padding=padding, labels=labels, scale=scale).save(path)

    def __repr__(self) -> str:
        count, *shape = self.images.shape  # (N, C, H, W) images, or (N, C, L) signals, or volumes
        parts = [f"{count} image{'s' if count != 1 else ''} {'x'.join(map(str, shape))}", f"{self.steps} steps"]
        if self.losses.numel():
            rows = self.losses.reshape(-1, self.losses.shape[-1])
            last = [row[torch.isfinite(row)][-1] for row in rows if bool(torch.isfinite(row).any())]
            if last:
                parts.append(f"final loss {float(torch.stack(last).mean()):.4g}")
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
        labels = len(self.units) == len(self) or None
        return self.grid(labels=labels)

    def _png_bytes(self) -> bytes:
        buffer = io.BytesIO()
        self.display_grid().save(buffer, format="PNG")
        return buffer.getvalue()

    def _repr_png_(self) -> bytes | None:
        # a notebook shows images as a grid; signals and volumes (not (N, C, H, W)) as the text repr
        return self._png_bytes() if self.images.ndim == 4 else None

    def _repr_html_(self) -> str | None:
        import base64
        import html

        if self.images.ndim != 4:
            return None
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
        step_caption: bool = True,
        **grid_options: Any,
    ) -> None:
        """Save the snapshots, then the final images, as an animated GIF: one frame per
        snapshot, each the grid of the batch (see :func:`featvis.animation.save_gif`).

        Render with ``snapshot_every=k`` to have snapshots.

        Args:
            path: a ``.gif`` file name, or a binary file open for writing.
            fps: frames per second.
            loop: times to play it again after the first (``0``: forever; ``None``: play once).
            hold_last: the last frame stays at least this many seconds.
            step_caption: write ``step k of N`` under each frame.
            **grid_options: the grid of each frame: ``nrow``, ``padding``, ``labels``,
                ``scale``, as in :class:`~featvis.grid.GridOptions`.

        Example:
            >>> import tempfile, pathlib
            >>> result = RenderResult(torch.rand(2, 3, 8, 8), {2: torch.rand(2, 3, 8, 8)}, torch.zeros(4), "x", 4)
            >>> with tempfile.TemporaryDirectory() as d:
            ...     result.save_gif(pathlib.Path(d) / "run.gif", fps=4, nrow=2, scale=4)
        """
        from . import animation

        animation.save_gif(
            self, path, fps=fps, loop=loop, hold_last=hold_last, step_caption=step_caption, **grid_options
        )

    def save_mp4(
        self,
        path: str | os.PathLike[str],
        *,
        fps: float = 8,
        hold_last: float = 1.0,
        step_caption: bool = True,
        **grid_options: Any,
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

        animation.save_mp4(self, path, fps=fps, hold_last=hold_last, step_caption=step_caption, **grid_options)

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

    def importance_overlay(self, mode: str = "alpha", quantile: float = 0.99) -> RenderResult:
        """A result that shows :attr:`importance` on the images: ``"alpha"`` makes it their opacity (the
        pictures fade into a checkerboard where the objective did not look), ``"heat"`` darkens the
        pictures and paints importance over them in red. Each image's importance is scaled to [0, 1]
        by its ``quantile`` (so that a few very large values do not hide the rest).

        Example:
            >>> maps = torch.rand(2, 8, 8)
            >>> result = RenderResult(torch.rand(2, 3, 8, 8), {}, torch.zeros(1), "x", 1, importance=maps)
            >>> shown = result.importance_overlay()
            >>> shown.alpha, tuple(shown.images.shape)
            (True, (2, 4, 8, 8))
        """
        if self.importance is None:
            raise ValueError("this result has no importance maps: render with render_vis(..., importance=True)")
        if mode not in ("alpha", "heat"):
            raise ValueError(f"mode must be 'alpha' or 'heat', got {mode!r}")
        maps = self.importance.float()
        scale = torch.quantile(maps.flatten(1), quantile, dim=1).clamp_min(1e-12)
        weight = (maps / scale[:, None, None]).clamp(0, 1)[:, None]
        colours = self.images[:, :-1] if self.alpha else self.images
        if mode == "alpha":
            shown, alpha = torch.cat([colours, weight], dim=1), True
        else:
            red = torch.zeros_like(colours[:, :3]) if colours.shape[1] >= 3 else torch.zeros_like(colours)
            red[:, 0] = 1.0
            shown, alpha = colours * 0.4 * (1 - weight) + red * weight + colours * 0.6 * weight, False
        return RenderResult(
            shown, {}, self.losses, self.objective, self.steps, self.interrupted, list(self.units), alpha
        )

    @staticmethod
    def concatenate(results: Sequence[RenderResult]) -> RenderResult:
        """Join the results of several runs (images and snapshots along the batch). The losses are
        one row per run, as long as the longest; a shorter run's row ends in NaN. ``steps`` is the
        fewest steps a run did.

        Example:
            >>> one = RenderResult(torch.rand(1, 3, 4, 4), {}, torch.zeros(2), "a", 2)
            >>> RenderResult.concatenate([one, one]).images.shape
            torch.Size([2, 3, 4, 4])
            >>> cut = RenderResult(torch.rand(1, 3, 4, 4), {}, torch.ones(1), "a", 1, interrupted=True)
            >>> RenderResult.concatenate([one, cut]).losses.tolist()
            [[0.0, 0.0], [1.0, nan]]
        """
        if not results:
            raise ValueError("nothing to concatenate")
        common = set(results[0].snapshots).intersection(*(r.snapshots for r in results[1:]))
        steps = min(r.steps for r in results)
        rows = [r.losses.reshape(1, -1) if r.losses.ndim == 1 else r.losses for r in results]
        longest = max(row.shape[-1] for row in rows)
        losses = torch.full((sum(len(row) for row in rows), longest), float("nan"), dtype=rows[0].dtype)
        start = 0
        for row in rows:
            losses[start : start + len(row), : row.shape[-1]] = row
            start += len(row)
        return RenderResult(
            images=torch.cat([r.images for r in results]),
            snapshots={s: torch.cat([r.snapshots[s] for r in results]) for s in sorted(common)},
            losses=losses,
            objective=" | ".join(dict.fromkeys(r.objective for r in results)),
            steps=steps,
            interrupted=any(r.interrupted for r in results),
            units=[u for r in results for u in r.units],
            alpha=all(r.alpha for r in results),
            importance=(
                torch.cat([r.importance for r in results]) if all(r.importance is not None for r in results) else None
            ),
        )
