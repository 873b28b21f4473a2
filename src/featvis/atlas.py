"""Activation atlases (Carter et al. 2019): what a layer sees across many images, laid out as a map.

:func:`collect_activations` runs images through the model and keeps a layer's activation vector
at random positions of each (into one preallocated tensor: memory grows with the number of vectors
times the channels, never with the images). :func:`activation_atlas` lays the vectors out in 2-D
(UMAP where ``umap-learn`` is installed, else scikit-learn's t-SNE, after a PCA to 50 dimensions),
cuts the layout into a grid, averages the vectors that fall in each cell, and renders each average
as a direction (:func:`featvis.objectives.direction`, with a cosine term, as the paper does). The
:class:`Atlas` is one picture of all cells in their places (:meth:`Atlas.image`), and
:meth:`Atlas.save` writes it with a browsable ``index.html``.

Example:
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
    >>> vectors = collect_activations(model, "1", torch.rand(20, 3, 8, 8), per_image=2, seed=0)
    >>> vectors.shape
    torch.Size([40, 4])
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from . import param as param_module
from .generators import run_generators
from .hooks import ActivationCapture, LayerSpec, model_device_dtype
from .layers import LayerRef
from .models import default_input_size, resolve_preprocess
from .objectives import Objective
from .objectives import direction as direction_objective
from .render import render_vis
from .result import RenderResult
from .sizes import size_pair
from .state import rendering_state

__all__ = ["Atlas", "activation_atlas", "collect_activations", "layout_2d"]


def _batches(images: Any) -> Iterable[Tensor]:
    """Image batches from a tensor (in chunks of 64) or an iterable of batches (tensors or (images, ...))."""
    if isinstance(images, Tensor):
        yield from images.split(64)
        return
    for batch in images:
        yield batch[0] if isinstance(batch, (tuple, list)) else batch


def collect_activations(
    model: nn.Module,
    layer: LayerSpec,
    images: Any,
    *,
    per_image: int = 1,
    limit: int = 100_000,
    preprocess: Any = None,
    seed: int = 0,
) -> Tensor:
    """``layer``'s activation vectors at ``per_image`` random positions of each image: ``(count, C)``.

    Args:
        model: any image model.
        layer: a layer with ``(N, C, H, W)`` (or ``(N, C)``) outputs.
        images: an ``(N, C, H, W)`` tensor in [0, 1], or an iterable of batches (a ``DataLoader``).
        per_image: positions drawn per image (with replacement).
        limit: stop after this many vectors (only the vectors are kept, so memory stays within
            ``limit`` x channels whatever the number of images).
        preprocess: as in :func:`featvis.render_vis`.
        seed: the positions' random draws.

    Example:
        >>> from torch import nn
        >>> collect_activations(nn.Sequential(nn.Conv2d(3, 2, 1)), "0", torch.rand(5, 3, 4, 4), limit=3).shape
        torch.Size([3, 2])
    """
    device, dtype = model_device_dtype(model)
    prepare = resolve_preprocess(preprocess, model, device)
    reference = LayerRef.parse(layer)
    kept: list[Tensor] = []  # the vectors only, never the images: memory grows with min(count, limit) x C
    filled = 0
    with (
        rendering_state(model, warn=False),
        ActivationCapture(model, [reference]) as capture,
        torch.no_grad(),
        run_generators(seed) as generators,
    ):
        draw = generators.get("cpu")
        for batch in _batches(images):
            acts = capture.run(prepare(batch.to(device).float()).to(dtype))[reference].float()
            flat = acts.flatten(2) if acts.ndim > 2 else acts[:, :, None]  # (N, C, positions)
            count, channels, positions = flat.shape
            picks = torch.randint(positions, (count, per_image), generator=draw).to(flat.device)
            vectors = flat.gather(2, picks[:, None, :].expand(-1, channels, -1)).permute(0, 2, 1).reshape(-1, channels)
            kept.append(vectors[: limit - filled].cpu())
            filled += len(kept[-1])
            if filled >= limit:
                break
    if not kept:
        raise ValueError("images gave no image batch")
    return torch.cat(kept)


def layout_2d(vectors: Tensor, method: str = "auto", seed: int = 0) -> Tensor:
    """A 2-D layout of ``vectors`` (``(count, C)``) scaled to [0, 1]: ``"umap"`` (``umap-learn``),
    ``"tsne"`` (scikit-learn, after a PCA to at most 50 dimensions), or ``"auto"`` (UMAP if installed).

    Example:
        >>> layout_2d(torch.rand(30, 6), method="tsne").shape
        torch.Size([30, 2])
    """
    data = vectors.detach().float()
    if data.shape[1] > 50:
        centred = data - data.mean(0)
        _, _, basis = torch.linalg.svd(centred, full_matrices=False)
        data = centred @ basis[:50].T
    array = data.numpy()
    if method == "auto":
        method = "umap" if importlib.util.find_spec("umap") is not None else "tsne"
    if method == "umap":
        import umap

        points = umap.UMAP(n_components=2, random_state=seed).fit_transform(array)
    elif method == "tsne":
        try:
            from sklearn.manifold import TSNE
        except ImportError:
            raise ImportError(
                "the atlas's layout needs scikit-learn (pip install 'featvis[sklearn]') or umap-learn"
            ) from None
        perplexity = float(min(30, max(2, (len(array) - 1) // 3)))
        points = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(array)
    else:
        raise ValueError(f"method must be 'auto', 'umap' or 'tsne', got {method!r}")
    layout = torch.as_tensor(points, dtype=torch.float32)
    low, high = layout.min(0).values, layout.max(0).values
    return (layout - low) / (high - low).clamp_min(1e-12)


@dataclass
class Atlas:
    """An activation atlas: each grid cell's mean activation vector and its picture.

    Attributes:
        grid: cells along each side.
        cells: ``(row, column)`` of each rendered cell.
        counts: how many vectors fell in each rendered cell.
        directions: ``(cells, C)``: each cell's mean activation vector.
        pictures: one picture per cell (a :class:`~featvis.result.RenderResult`).
        layout: ``(count, 2)``: every vector's place, in [0, 1] (x, y).

    Example:
        >>> atlas = Atlas(2, [(0, 0), (1, 1)], [3, 1], torch.rand(2, 4),
        ...               RenderResult(torch.rand(2, 3, 4, 4), {}, torch.zeros(1), "x", 1), torch.rand(4, 2))
        >>> atlas.image().size
        (8, 8)
    """

    grid: int
    cells: list[tuple[int, int]]
    counts: list[int]
    directions: Tensor
    pictures: RenderResult
    layout: Tensor

    def image(self) -> Any:
        """All cells' pictures in their places on one white canvas (a PIL image).

        Example:
            >>> atlas = Atlas(1, [(0, 0)], [1], torch.rand(1, 2),
            ...               RenderResult(torch.rand(1, 3, 5, 5), {}, torch.zeros(1), "x", 1), torch.rand(1, 2))
            >>> atlas.image().size
            (5, 5)
        """
        from PIL import Image

        tiles = self.pictures.pil()
        width, height = tiles[0].size
        canvas = Image.new("RGB", (self.grid * width, self.grid * height), "white")
        for (row, column), tile in zip(self.cells, tiles):
            canvas.paste(tile.convert("RGB"), (column * width, row * height))
        return canvas

    def save(self, directory: str | os.PathLike[str]) -> Path:
        """Write ``atlas.png``, each cell's ``cell-R-C.png`` and an ``index.html`` that shows the cells in
        their places, each with its count; return ``index.html``.

        Example:
            >>> import tempfile
            >>> atlas = Atlas(1, [(0, 0)], [4], torch.rand(1, 2),
            ...               RenderResult(torch.rand(1, 3, 5, 5), {}, torch.zeros(1), "x", 1), torch.rand(4, 2))
            >>> with tempfile.TemporaryDirectory() as folder:
            ...     atlas.save(folder).name
            'index.html'
        """
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        self.image().save(folder / "atlas.png")
        figures = []
        for (row, column), count, tile in zip(self.cells, self.counts, self.pictures.pil()):
            name = f"cell-{row}-{column}.png"
            tile.save(folder / name)
            figures.append(
                f'<a class="cell" href="{name}" style="grid-row: {row + 1}; grid-column: {column + 1}" '
                f'title="{count} activations"><img src="{name}" alt="cell {row}, {column}"></a>'
            )
        page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>featvis activation atlas</title>
<style>body {{ font: 14px system-ui, sans-serif; margin: 1rem; }}
.atlas {{ display: grid; grid-template-columns: repeat({self.grid}, 1fr); gap: 2px; max-width: 96vmin; }}
.cell img {{ width: 100%; display: block; image-rendering: pixelated; }}</style></head>
<body><h1>Activation atlas</h1><p>{len(self.cells)} cells of a {self.grid}x{self.grid} grid over
{len(self.layout)} activations; each cell is the picture of its activations' mean (hover for how many).</p>
<div class="atlas">{"".join(figures)}</div>
<p><img src="atlas.png" alt="the whole atlas" style="max-width: 96vmin; image-rendering: pixelated"></p>
</body></html>
"""
        index = folder / "index.html"
        index.write_text(page, encoding="utf-8")
        return index


def activation_atlas(
    model: nn.Module,
    layer: LayerSpec,
    images: Any,
    *,
    grid: int = 8,
    min_count: int = 3,
    per_image: int = 1,
    limit: int = 100_000,
    method: str = "auto",
    cossim_pow: float = 1.0,
    batch_size: int = 16,
    size: int | tuple[int, int] | None = None,
    seed: int = 0,
    preprocess: Any = None,
    **render_kwargs: Any,
) -> Atlas:
    """Collect ``layer``'s activations over ``images``, lay them out, grid them, render each cell's mean.

    Args:
        model: any image model.
        layer: the layer.
        images: an ``(N, C, H, W)`` tensor in [0, 1] or an iterable of batches.
        grid: cells along each side.
        min_count: a cell with fewer vectors is left empty.
        per_image, limit: as in :func:`collect_activations`.
        method: the layout (:func:`layout_2d`).
        cossim_pow: the direction objective's cosine term.
        batch_size: cells rendered together.
        size: the cells' pictures' size (default: the model's input size).
        seed: the positions, the layout and the renders.
        preprocess: as in :func:`featvis.render_vis`.
        **render_kwargs: passed to :func:`featvis.render_vis` (``steps``, ``transforms``, ...).

    Example:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
        >>> atlas = activation_atlas(model, "1", torch.rand(40, 3, 8, 8), grid=2, min_count=1,
        ...                          method="tsne", size=8, steps=2, progress=False)
        >>> sum(atlas.counts), atlas.pictures.images.shape[1:]
        (40, torch.Size([3, 8, 8]))
    """
    vectors = collect_activations(
        model, layer, images, per_image=per_image, limit=limit, preprocess=preprocess, seed=seed
    )
    layout = layout_2d(vectors, method=method, seed=seed)
    cell = (layout * grid).long().clamp(0, grid - 1)  # (count, 2): column (x), row (y)
    index = cell[:, 1] * grid + cell[:, 0]
    counts = torch.bincount(index, minlength=grid * grid)
    sums = torch.zeros(grid * grid, vectors.shape[1]).index_add_(0, index, vectors)
    kept = (counts >= min_count).nonzero().flatten().tolist()
    if not kept:
        raise ValueError(
            f"no cell of the {grid}x{grid} grid has {min_count} activations: use a smaller grid or min_count"
        )
    directions = sums[kept] / counts[kept, None].float()
    height, width = size_pair(size if size is not None else default_input_size(model))
    pictures = []
    for start in range(0, len(kept), batch_size):
        chunk = directions[start : start + batch_size]
        objective = Objective.sum(
            direction_objective(layer, vector, batch=i, cossim_pow=cossim_pow) for i, vector in enumerate(chunk)
        )
        image = param_module.image(width, height, batch=len(chunk), seed=seed + start)
        pictures.append(render_vis(model, objective, image, seed=seed + start, preprocess=preprocess, **render_kwargs))
    return Atlas(
        grid,
        [(k // grid, k % grid) for k in kept],
        [int(counts[k]) for k in kept],
        directions,
        RenderResult.concatenate(pictures),
        layout,
    )
