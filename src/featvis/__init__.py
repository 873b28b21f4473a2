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

from . import (
    animation,
    batching,
    dataset,
    dataset_examples,
    dream,
    gallery,
    gradients,
    grid,
    hooks,
    loop,
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
    transforms,
)
from .batching import auto_batch_size
from .dataset import top_activating
from .dream import deepdream
from .gallery import render_gallery
from .hooks import LayerRef, layer_names
from .objectives import Objective
from .render import render_channels, render_vis
from .result import RenderResult

__all__ = [
    "LayerRef",
    "Objective",
    "RenderResult",
    "animation",
    "auto_batch_size",
    "batching",
    "dataset",
    "dataset_examples",
    "deepdream",
    "dream",
    "gallery",
    "gradients",
    "grid",
    "hooks",
    "layer_names",
    "loop",
    "models",
    "objectives",
    "optim",
    "param",
    "probe",
    "receptive",
    "render_channels",
    "render_gallery",
    "render_vis",
    "result",
    "sizes",
    "state",
    "step",
    "top_activating",
    "transforms",
]

__version__ = "0.1.0"
