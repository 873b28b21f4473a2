"""The CIFAR-10 ResNets (He et al. 2015, "option A" shortcuts), pretrained.

The weights are those published by Yerlan Idelbayev ("Proper ResNet Implementation for
CIFAR10/CIFAR100 in PyTorch", BSD 2-Clause), fetched through ``torch.hub``'s cache (or read
from a folder given as ``model_dir``), with the file's SHA-256 checked and ``weights_only=True``
loading (see ``featvis.models.weights``). The models declare their input conventions: 32 pixels,
the normalisation they were trained with, and their class names.

Example:
    >>> model = cifar10_resnet20(pretrained=False)
    >>> model.featvis_input_size, CIFAR10_CLASSES[6]
    (32, 'frog')
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch  # noqa: F401 (the examples use it)
import torch.nn.functional as F
from torch import Tensor, nn

from .weights import load_weights_file

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "BasicBlock",
    "CifarResNet",
    "cifar10_resnet20",
    "cifar10_resnet32",
    "cifar10_resnet44",
    "cifar10_resnet56",
    "cifar10_weights_file",
]

#: The CIFAR-10 class names, in label order.
CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
#: Input normalisation the pretrained CIFAR-10 ResNets were trained with.
CIFAR10_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
CIFAR10_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

_WEIGHTS_URL = "https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/pretrained_models/{}"
_WEIGHTS = {
    20: "resnet20-12fca82f.th",
    32: "resnet32-d509ac18.th",
    44: "resnet44-014dd654.th",
    56: "resnet56-4bfd9763.th",
}


def cifar10_weights_file(depth: int) -> str:
    """The file name of the published weights of the CIFAR-10 ResNet of ``depth`` layers (20, 32, 44 or 56).

    ``cifar10_resnet20(model_dir=folder)`` and the others load ``folder/<this name>``.

    Example:
        >>> cifar10_weights_file(20)
        'resnet20-12fca82f.th'
    """
    return _WEIGHTS[depth]


class _ShortcutA(nn.Module):
    """Parameter-free shortcut: every second pixel, channels zero-padded on both sides."""

    def __init__(self, pad: int) -> None:
        super().__init__()
        self.pad = pad

    def forward(self, x: Tensor) -> Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm, plus the shortcut, then ReLU.

    Example:
        >>> BasicBlock(16, 32, stride=2)(torch.rand(1, 16, 8, 8)).shape
        torch.Size([1, 32, 4, 4])
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = _ShortcutA(planes // 4)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet for 32x32 CIFAR images: ``conv1``, ``bn1``, ``layer1``-``layer3``, ``linear``.

    Args:
        blocks: BasicBlocks per stage (3 for ResNet-20, 5, 7, 9 for -32, -44, -56).
        num_classes: outputs of the final linear layer.

    Example:
        >>> CifarResNet(3)(torch.rand(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    featvis_input_size = 32
    featvis_normalization = (CIFAR10_MEAN, CIFAR10_STD)
    featvis_classes = CIFAR10_CLASSES

    def __init__(self, blocks: int, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._stage(16, 16, blocks, stride=1)
        self.layer2 = self._stage(16, 32, blocks, stride=2)
        self.layer3 = self._stage(32, 64, blocks, stride=2)
        self.linear = nn.Linear(64, num_classes)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                nn.init.kaiming_normal_(module.weight)

    @staticmethod
    def _stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [BasicBlock(in_planes, planes, stride)]
        layers += [BasicBlock(planes, planes) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def _cifar_resnet(
    depth: int, pretrained: bool, progress: bool, model_dir: str | os.PathLike[str] | None
) -> CifarResNet:
    model = CifarResNet((depth - 2) // 6)
    if pretrained:
        checkpoint = load_weights_file(_WEIGHTS_URL.format(_WEIGHTS[depth]), model_dir, progress)
        state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else checkpoint
        state = {key.removeprefix("module."): value for key, value in state.items()}
        model.load_state_dict(state)
    return model.eval()


def _factory(depth: int) -> Callable[..., CifarResNet]:
    def build(
        pretrained: bool = True, progress: bool = True, model_dir: str | os.PathLike[str] | None = None
    ) -> CifarResNet:
        return _cifar_resnet(depth, pretrained, progress, model_dir)

    build.__name__ = build.__qualname__ = f"cifar10_resnet{depth}"
    build.__doc__ = f"""ResNet-{depth} for CIFAR-10, pretrained by default (in eval mode).

    Args:
        pretrained: load the published weights ({_WEIGHTS[depth]}).
        progress: show a download progress bar.
        model_dir: folder holding (or to receive) the weights file; default
            ``<torch.hub.get_dir()>/checkpoints``.

    Example:
        >>> model = cifar10_resnet{depth}(pretrained=False)
        >>> model(torch.rand(1, 3, 32, 32)).shape
        torch.Size([1, 10])
    """
    return build


cifar10_resnet20 = _factory(20)
cifar10_resnet32 = _factory(32)
cifar10_resnet44 = _factory(44)
cifar10_resnet56 = _factory(56)
