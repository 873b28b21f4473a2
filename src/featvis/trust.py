"""Can a picture be trusted? Whether the network processes a unit's picture as it processes the unit's
real examples.

Geirhos et al. 2023 (*Don't trust your eyes: on the (un)reliability of feature visualizations*)
showed that a picture can raise a unit through a path that natural images never take. A picture that
the network processes like the unit's top natural examples is more likely to show what the unit
does on real images. :func:`trust_scores` measures that: at each layer before the unit's, the
cosine similarity between the picture's activation pattern (each channel's mean over the positions)
and the mean pattern of the unit's top natural examples, averaged over those layers: near 1, the
picture took the examples' path; near 0 or below, another one.

Example:
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3)).eval()
    >>> examples = torch.rand(2, 5, 3, 10, 10)  # 5 natural examples for each of 2 pictures
    >>> trust_scores(model, "2", torch.rand(2, 3, 10, 10), examples).shape
    torch.Size([2])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .hooks import ActivationCapture, LayerSpec, model_device_dtype
from .layers import LayerRef, resolve_layer
from .models import resolve_preprocess
from .state import rendering_state

__all__ = ["activation_patterns", "earlier_layers", "trust_scores"]

#: the layers whose patterns :func:`trust_scores` compares by default
COMPARED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def earlier_layers(model: nn.Module, layer: LayerSpec) -> list[str]:
    """The convolution and linear layers defined before ``layer`` in the model (its ``named_modules``
    order, which for most models is the order they run in).

    Example:
        >>> from torch import nn
        >>> earlier_layers(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3)), "2")
        ['0']
    """
    name, _ = resolve_layer(model, LayerRef.parse(layer))
    found = []
    for other, module in model.named_modules():
        if other == name:
            return found
        if other and isinstance(module, COMPARED) and not name.startswith(other + "."):
            found.append(other)
    return found


def activation_patterns(
    model: nn.Module, layers: Sequence[str], images: Tensor, *, preprocess: Any = None, batch_size: int = 64
) -> list[Tensor]:
    """Each image's activation pattern at each of ``layers``: each channel's mean over the positions,
    ``[(N, C_l) for each layer]``.

    Example:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 2, 3))
        >>> [p.shape for p in activation_patterns(model, ["0", "1"], torch.rand(3, 3, 8, 8))]
        [torch.Size([3, 4]), torch.Size([3, 2])]
    """
    device, dtype = model_device_dtype(model)
    prepare = resolve_preprocess(preprocess, model, device)
    refs = [LayerRef.parse(layer) for layer in layers]
    pooled: list[list[Tensor]] = [[] for _ in refs]
    with rendering_state(model, warn=False), ActivationCapture(model, refs) as capture, torch.no_grad():
        for start in range(0, len(images), batch_size):
            acts = capture.run(prepare(images[start : start + batch_size].to(device)).to(dtype))
            for index, ref in enumerate(refs):
                values = acts[ref].float()
                pooled[index].append((values.flatten(2).mean(2) if values.ndim > 2 else values).cpu())
    return [torch.cat(parts) for parts in pooled]


def trust_scores(
    model: nn.Module,
    layer: LayerSpec,
    pictures: Tensor,
    examples: Tensor,
    *,
    layers: Sequence[str] | None = None,
    preprocess: Any = None,
) -> Tensor:
    """For each picture, how alike the network processes it and its unit's natural examples: the mean,
    over ``layers`` (default :func:`earlier_layers` of ``layer``), of the cosine similarity between the
    picture's activation pattern and its examples' mean pattern. ``(N,)``, from -1 to 1.

    Args:
        model: the network.
        layer: the units' layer.
        pictures: ``(N, C, H, W)``: one picture per unit.
        examples: ``(N, K, C, H, W)``: each unit's K natural examples (e.g. ``top_activating(...).crops``
            resized, or their images).
        layers: the layers to compare at.
        preprocess: as in :func:`featvis.render_vis`.

    Example:
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3)).eval()
        >>> same = torch.rand(1, 3, 8, 8)
        >>> round(float(trust_scores(model, "2", same, same[:, None].repeat(1, 3, 1, 1, 1))[0]), 4)
        1.0
    """
    if examples.ndim != pictures.ndim + 1 or examples.shape[0] != pictures.shape[0]:
        raise ValueError(
            f"examples must be (N, K, C, H, W): K examples for each of the {pictures.shape[0]} pictures, "
            f"got shape {tuple(examples.shape)}"
        )
    compared = list(layers) if layers is not None else earlier_layers(model, layer)
    if not compared:
        raise ValueError(
            f"there are no layers before {str(LayerRef.parse(layer))!r} to compare at: name them (layers=)"
        )
    count, per_unit = examples.shape[:2]
    mine = activation_patterns(model, compared, pictures, preprocess=preprocess)
    theirs = activation_patterns(model, compared, examples.flatten(0, 1), preprocess=preprocess)
    similarities = [
        nn.functional.cosine_similarity(picture, natural.reshape(count, per_unit, -1).mean(1), dim=1)
        for picture, natural in zip(mine, theirs)
    ]
    return torch.stack(similarities).mean(0)
