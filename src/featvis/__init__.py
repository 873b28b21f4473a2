"""featvis: feature visualisation by optimisation, for any PyTorch model.

Start from noise and optimise the input image so that a chosen unit of a trained
network (a neuron, a channel, a layer, a class logit, a direction, or any function
of activations) is maximised.

Example:
    >>> import featvis
    >>> from featvis import objectives
    >>> model = featvis.models.cifar10_resnet20(pretrained=False)
    >>> result = featvis.render_vis(model, objectives.channel("layer2", 3), steps=2, progress=False)
    >>> result.images.shape
    torch.Size([1, 3, 32, 32])
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what the names below are; at run time each is imported when first used
    from . import (
        accentuation,
        animation,
        atlas,
        backward_hooks,
        batching,
        dataset,
        dataset_examples,
        distributed,
        dream,
        facets,
        factorisation,
        gallery,
        generators,
        gradients,
        grid,
        hooks,
        jobs,
        loop,
        model_index,
        models,
        objectives,
        optim,
        param,
        probe,
        receptive,
        result,
        sizes,
        state,
        step,
        threads,
        transforms,
        trust,
        whole_model,
    )
    from .accentuation import accentuate
    from .batching import auto_batch_size
    from .dataset import top_activating
    from .dream import deepdream
    from .factorisation import reduce
    from .gallery import render_gallery
    from .hooks import LayerRef, layer_names
    from .objectives import Objective
    from .render import render_channels, render_vis
    from .result import RenderResult
    from .whole_model import render_model

#: the public functions and classes, and the module each comes from
_NAMES = {
    "accentuate": "accentuation",
    "auto_batch_size": "batching",
    "top_activating": "dataset",
    "deepdream": "dream",
    "reduce": "factorisation",
    "render_gallery": "gallery",
    "LayerRef": "hooks",
    "layer_names": "hooks",
    "Objective": "objectives",
    "render_channels": "render",
    "render_vis": "render",
    "RenderResult": "result",
    "render_model": "whole_model",
}
#: the public modules
_MODULES = {
    "accentuation", "animation", "atlas", "backward_hooks", "batching", "dataset", "dataset_examples", "distributed",
    "dream", "facets", "factorisation", "gallery", "generators", "gradients", "grid", "hooks", "jobs", "loop",
    "model_index", "models", "objectives", "optim", "param", "probe", "receptive", "render", "result", "sizes",
    "state", "step", "threads", "transforms", "trust", "whole_model",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    """Import featvis's modules and names when first used, so that ``import featvis`` (and the
    ``featvis`` command's ``--help``) does not wait for torch until something needs it."""
    if name in _MODULES:
        value = importlib.import_module(f".{name}", __name__)
    elif name in _NAMES:
        value = getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    else:
        raise AttributeError(f"module 'featvis' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_MODULES, *_NAMES})


__all__ = [
    "LayerRef",
    "Objective",
    "RenderResult",
    "accentuate",
    "accentuation",
    "animation",
    "atlas",
    "auto_batch_size",
    "backward_hooks",
    "batching",
    "dataset",
    "dataset_examples",
    "deepdream",
    "distributed",
    "dream",
    "facets",
    "factorisation",
    "gallery",
    "generators",
    "gradients",
    "grid",
    "hooks",
    "jobs",
    "layer_names",
    "loop",
    "model_index",
    "models",
    "objectives",
    "optim",
    "param",
    "probe",
    "receptive",
    "reduce",
    "render_channels",
    "render_gallery",
    "render_model",
    "render_vis",
    "result",
    "sizes",
    "state",
    "step",
    "threads",
    "top_activating",
    "transforms",
    "trust",
    "whole_model",
]

__version__ = "0.1.0"
