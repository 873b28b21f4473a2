"""Models featvis knows: pretrained CIFAR-10 ResNets, and each model's input conventions.

``render_vis`` asks this module how to feed a model: :func:`default_preprocess`
gives the normalisation and :func:`default_input_size` the usual image size.
Any model can declare both with two attributes:

```python
model.featvis_normalization = ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))  # mean, std
model.featvis_input_size = 64
```

featvis's own models carry them, and torchvision's classification models get
ImageNet's normalisation and 224 pixels.

The CIFAR-10 ResNets (He et al. 2015, "option A" shortcuts) load the weights
published by Yerlan Idelbayev ("Proper ResNet Implementation for CIFAR10/CIFAR100
in PyTorch", BSD 2-Clause) through ``torch.hub``'s cache, with the file's SHA-256
checked and ``weights_only=True`` loading.

Example:
    >>> model = cifar10_resnet20(pretrained=False)
    >>> model.featvis_input_size, CIFAR10_CLASSES[6]
    (32, 'frog')
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CifarResNet",
    "cifar10_resnet20",
    "cifar10_resnet32",
    "cifar10_resnet44",
    "cifar10_resnet56",
    "default_input_channels",
    "default_input_size",
    "default_preprocess",
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


# ---- input conventions ------------------------------------------------------------
def unwrap(model: nn.Module) -> nn.Module:
    """The model inside ``nn.DataParallel``, ``DistributedDataParallel`` and ``torch.compile``'s wrappers.

    Example:
        >>> inner = nn.Linear(2, 2)
        >>> unwrap(nn.DataParallel(inner)) is inner
        True
    """
    while isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        model = model.module
    return getattr(model, "_orig_mod", model)  # torch.compile's wrapper


def _is_torchvision_classifier(model: nn.Module) -> bool:
    return type(model).__module__.startswith("torchvision.models")


def default_preprocess(model: nn.Module) -> nn.Module:
    """The module that turns [0, 1] images into what ``model`` expects.

    ``model.featvis_normalization = (mean, std)`` wins; torchvision's models get
    ImageNet's; anything else gets the identity.

    Example:
        >>> default_preprocess(cifar10_resnet20(pretrained=False))
        Normalize(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    """
    from .transforms import IMAGENET_MEAN, IMAGENET_STD, Normalize

    inner = unwrap(model)
    normalization = getattr(inner, "featvis_normalization", None)
    if normalization is not None:
        mean, std = normalization
        return Normalize(mean, std)
    if _is_torchvision_classifier(inner):
        return Normalize(IMAGENET_MEAN, IMAGENET_STD)
    return nn.Identity()


def resolve_preprocess(
    preprocess: Callable[[Tensor], Tensor] | bool | None, model: nn.Module, device: torch.device
) -> Callable[[Tensor], Tensor]:
    """What turns [0, 1] images into the model's input, as ``render_vis(preprocess=...)`` reads it:
    ``None`` or ``True``, the model's own normalisation (:func:`default_preprocess`); ``False``,
    none; else the callable given. A module is moved to ``device``.

    Example:
        >>> resolve_preprocess(False, nn.Linear(2, 2), torch.device("cpu"))
        Identity()
    """
    if preprocess is None or preprocess is True:
        prepare: Callable[[Tensor], Tensor] = default_preprocess(model)
    elif preprocess is False:
        prepare = nn.Identity()
    else:
        prepare = preprocess
    return prepare.to(device) if isinstance(prepare, nn.Module) else prepare


def default_input_size(model: nn.Module) -> int | tuple[int, int]:
    """The image size to render at when none is given: ``model.featvis_input_size``, else 224.

    Example:
        >>> default_input_size(nn.Linear(2, 2))
        224
    """
    return getattr(unwrap(model), "featvis_input_size", 224)


def default_input_channels(model: nn.Module) -> int:
    """The number of image channels to render when none is given.

    ``model.featvis_input_channels`` wins; else the ``in_channels`` of the model's
    first 2-d convolution; else 3.

    Example:
        >>> default_input_channels(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU()))
        1
        >>> default_input_channels(nn.Linear(2, 2))
        3
    """
    inner = unwrap(model)
    declared = getattr(inner, "featvis_input_channels", None)
    if declared is not None:
        return int(declared)
    first = first_convolution(inner)
    return first[1].in_channels if first is not None else 3


def first_convolution(model: nn.Module) -> tuple[str, nn.Conv2d] | None:
    """The first ``nn.Conv2d`` in ``model.named_modules()`` order, with its name, or ``None``.

    Example:
        >>> first_convolution(nn.Sequential(nn.ReLU(), nn.Conv2d(1, 2, 3)))[0]
        '1'
    """
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            return name, module
    return None


# ---- the CIFAR-10 ResNets -------------------------------------------------------------
class _ShortcutA(nn.Module):
    """Parameter-free shortcut: every second pixel, channels zero-padded on both sides."""

    def __init__(self, pad: int) -> None:
        super().__init__()
        self.pad = pad

    def forward(self, x: Tensor) -> Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm, plus the shortcut, then ReLU."""

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


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_weights_file(url: str, model_dir: str | os.PathLike[str] | None = None, progress: bool = True) -> Any:
    """Fetch a weights file through torch.hub's cache, check its hash, and load it safely.

    The file name's ``-<hex>.`` part is the start of its SHA-256, as in
    ``torch.hub``. A cached file is checked too, so a tampered or truncated file is
    refused with a message saying so. Loading uses ``weights_only=True``.

    Args:
        url: where the file is published.
        model_dir: the cache folder (default: ``<torch.hub.get_dir()>/checkpoints``).
        progress: show a download progress bar.

    Example:
        >>> load_weights_file("https://example.org/w-00000000.th", model_dir="/nonexistent")  # doctest: +SKIP
    """
    filename = os.path.basename(url)
    prefix = filename.rsplit(".", 1)[0].rsplit("-", 1)[-1]
    folder = os.fspath(model_dir) if model_dir is not None else os.path.join(torch.hub.get_dir(), "checkpoints")
    path = os.path.join(folder, filename)
    if not os.path.exists(path):
        os.makedirs(folder, exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, path, hash_prefix=prefix, progress=progress)
        except (OSError, RuntimeError) as error:
            raise RuntimeError(
                f"could not download the weights {filename} from {url} ({error}). Without a network, put "
                f"the file in {folder} (or pass model_dir=) and featvis will load it from there."
            ) from error
    actual = _sha256(path)
    if not actual.startswith(prefix):
        raise RuntimeError(
            f"the weights file {path} is damaged or not the published one: its SHA-256 starts with "
            f"{actual[: len(prefix)]}, expected {prefix}. Delete it to download it again."
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise RuntimeError(f"could not load the weights file {path} safely: {error}") from error


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
