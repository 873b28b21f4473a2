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

from . import animation, dataset, dream, gallery, gradients, hooks, models, objectives, optim, param, transforms
from .dataset import top_activating
from .dream import deepdream
from .gallery import render_gallery
from .hooks import LayerRef, layer_names
from .objectives import Objective
from .render import RenderResult, auto_batch_size, render_channels, render_vis

__all__ = [
    "LayerRef",
    "Objective",
    "RenderResult",
    "animation",
    "auto_batch_size",
    "dataset",
    "deepdream",
    "dream",
    "gallery",
    "gradients",
    "hooks",
    "layer_names",
    "models",
    "objectives",
    "optim",
    "param",
    "render_channels",
    "render_gallery",
    "render_vis",
    "top_activating",
    "transforms",
]

__version__ = "0.1.0"
